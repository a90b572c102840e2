"""Episodes and clinical facts: late Encounters, new versions, retractions, links
through ``about`` and ``context``, Patient changes, the outbox, data quality."""

from __future__ import annotations

import itertools
from datetime import date
from typing import ClassVar

import pytest
import sqlalchemy as sa

from services.ingest import department_names, episode_ids, load_episodes
from services.ingest.models import DepartmentRow
from shared.clinical import FactKind
from tests.conftest import TENANT
from tests.fhir_factories import condition, encounter, patient, procedure, transaction
from tests.ingest.helpers import (
    communication,
    episode,
    fact,
    location,
    medication_administration,
    observation,
    outbox_keys,
    store_counts,
)


def put(client, resource, headers):
    r = client.put(
        f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource, headers=headers
    )
    assert r.status_code in (200, 201), r.text
    return r


def post(client, headers, *resources, btype="transaction"):
    r = client.post("/fhir", json=transaction(*resources, btype=btype), headers=headers)
    assert r.status_code == 200, r.text
    return r


def facts_of(runtime, encounter_id):
    with runtime.read() as session:
        _, facts = load_episodes(session, TENANT, [encounter_id])[encounter_id]
    return sorted((f.resource_type, f.resource_id) for f in facts)


class TestLateEncounter:
    def test_condition_waits_then_joins(self, app_client, ingest_headers, runtime):
        put(app_client, condition(), ingest_headers)
        assert episode(runtime, TENANT, "e1") is None
        assert fact(runtime, TENANT, "Condition", "c1").encounter_id == "e1"
        with runtime.read() as session:
            ep, facts = load_episodes(session, TENANT, ["e1"])["e1"]
        assert ep is None
        assert [f.resource_id for f in facts] == ["c1"]
        assert outbox_keys(runtime, TENANT) == ["e1"]

        put(app_client, encounter(), ingest_headers)
        with runtime.read() as session:
            ep, facts = load_episodes(session, TENANT, ["e1"])["e1"]
            assert list(episode_ids(session, TENANT)) == ["e1"]
        assert ep is not None
        assert (ep.department, ep.department_name, ep.class_code) == ("emergency", "急诊科", "EMER")
        assert [f.kind for f in facts] == [FactKind.CONDITION]
        assert outbox_keys(runtime, TENANT) == ["e1", "e1"]


class TestVersions:
    def test_new_version_replaces_the_fact(self, app_client, ingest_headers, runtime):
        post(app_client, ingest_headers, encounter(), condition())
        put(app_client, condition(code="I21.300"), ingest_headers)
        assert store_counts(runtime, TENANT)["clinical_facts"] == 1
        assert fact(runtime, TENANT, "Condition", "c1").data["codes"] == [
            ["urn:oid:2.16.156.10011.2.3.3.11", "I21.300"]
        ]
        assert outbox_keys(runtime, TENANT) == ["e1", "e1"]

    def test_moving_a_fact_touches_both_episodes(self, app_client, ingest_headers, runtime):
        post(app_client, ingest_headers, encounter("e1"), encounter("e2"), condition())
        put(app_client, condition(eid="e2"), ingest_headers)
        assert fact(runtime, TENANT, "Condition", "c1").encounter_id == "e2"
        assert facts_of(runtime, "e1") == []
        assert outbox_keys(runtime, TENANT)[-2:] == ["e1", "e2"]

    def test_identical_resend_writes_no_event(self, app_client, ingest_headers, runtime):
        post(app_client, ingest_headers, patient(), encounter(), condition())
        n = len(outbox_keys(runtime, TENANT))
        post(app_client, ingest_headers, patient(), encounter(), condition())
        put(app_client, condition(), ingest_headers)
        assert len(outbox_keys(runtime, TENANT)) == n


class TestRetraction:
    def test_delete_removes_the_fact(self, app_client, ingest_headers, runtime):
        post(app_client, ingest_headers, encounter(), procedure())
        assert app_client.delete("/fhir/Procedure/pr1", headers=ingest_headers).status_code == 200
        assert fact(runtime, TENANT, "Procedure", "pr1") is None
        assert facts_of(runtime, "e1") == []
        assert outbox_keys(runtime, TENANT) == ["e1", "e1"]

    @pytest.mark.parametrize(
        "retracted",
        [
            procedure(status="entered-in-error"),
            procedure(status="not-done"),
            {
                **condition(),
                "verificationStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                            "code": "entered-in-error",
                        }
                    ]
                },
            },
            {**observation(), "status": "entered-in-error"},
        ],
        ids=["procedure-eie", "procedure-not-done", "condition-eie", "observation-eie"],
    )
    def test_retracted_version_removes_the_fact(
        self, app_client, ingest_headers, runtime, retracted
    ):
        original = {
            "Procedure": procedure(),
            "Condition": condition(),
            "Observation": observation(),
        }[retracted["resourceType"]]
        post(app_client, ingest_headers, encounter(), original)
        assert fact(runtime, TENANT, original["resourceType"], original["id"]) is not None
        r = put(app_client, retracted, ingest_headers)
        assert r.json()["meta"]["versionId"] == "2"
        assert fact(runtime, TENANT, original["resourceType"], original["id"]) is None
        assert outbox_keys(runtime, TENANT) == ["e1", "e1"]
        # The resource itself is kept, as a version.
        assert (
            app_client.get(
                f"/fhir/{original['resourceType']}/{original['id']}", headers=ingest_headers
            ).status_code
            == 200
        )

    def test_encounter_entered_in_error_removes_the_episode(
        self, app_client, ingest_headers, runtime
    ):
        post(app_client, ingest_headers, patient(), encounter(), condition())
        put(app_client, {**encounter(), "status": "entered-in-error"}, ingest_headers)
        assert episode(runtime, TENANT, "e1") is None
        with runtime.read() as session:
            ep, facts = load_episodes(session, TENANT, ["e1"])["e1"]
        assert ep is None
        assert [f.resource_id for f in facts] == ["c1"]
        assert outbox_keys(runtime, TENANT) == ["e1", "e1"]

    def test_encounter_delete_removes_the_episode(self, app_client, ingest_headers, runtime):
        post(app_client, ingest_headers, encounter())
        app_client.delete("/fhir/Encounter/e1", headers=ingest_headers)
        assert episode(runtime, TENANT, "e1") is None
        put(app_client, encounter(), ingest_headers)
        assert episode(runtime, TENANT, "e1") is not None


class TestPatient:
    def test_patient_change_touches_its_episodes(self, app_client, ingest_headers, runtime):
        post(
            app_client,
            ingest_headers,
            patient("p1"),
            patient("p2"),
            encounter("e1", "p1"),
            encounter("e2", "p1"),
            encounter("e3", "p2"),
        )
        assert episode(runtime, TENANT, "e1").birth_date == date(1962, 5, 1)
        n = len(outbox_keys(runtime, TENANT))
        put(app_client, patient("p1", birth="1970-02-03"), ingest_headers)
        assert outbox_keys(runtime, TENANT)[n:] == ["e1", "e2"]
        assert episode(runtime, TENANT, "e2").birth_date == date(1970, 2, 3)
        assert episode(runtime, TENANT, "e3").birth_date == date(1962, 5, 1)

    def test_name_change_also_touches(self, app_client, ingest_headers, runtime):
        post(app_client, ingest_headers, patient(), encounter())
        put(app_client, patient(name="李四"), ingest_headers)
        assert outbox_keys(runtime, TENANT) == ["e1", "e1"]

    @pytest.mark.parametrize("btype", ["transaction", "batch"])
    def test_patient_after_its_encounter_in_one_bundle(
        self, app_client, ingest_headers, runtime, btype
    ):
        post(app_client, ingest_headers, encounter(), patient(), btype=btype)
        assert episode(runtime, TENANT, "e1").birth_date == date(1962, 5, 1)

    def test_patient_delete_clears_birth_date(self, app_client, ingest_headers, runtime):
        post(app_client, ingest_headers, patient(), encounter())
        app_client.delete("/fhir/Patient/p1", headers=ingest_headers)
        assert episode(runtime, TENANT, "e1").birth_date is None
        assert outbox_keys(runtime, TENANT) == ["e1", "e1"]


class TestLinks:
    ORDERS: ClassVar = list(itertools.permutations(["encounter", "observation", "communication"]))

    @pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
    @pytest.mark.parametrize("together", [False, True], ids=["separate", "one-bundle"])
    def test_communication_joins_through_about(
        self, app_client, ingest_headers, runtime, order, together
    ):
        make = {"encounter": encounter, "observation": observation, "communication": communication}
        resources = [make[name]() for name in order]
        if together:
            post(app_client, ingest_headers, *resources)
        else:
            for res in resources:
                put(app_client, res, ingest_headers)
        comm = fact(runtime, TENANT, "Communication", "m1")
        assert (comm.encounter_id, comm.link_ref) == ("e1", "Observation/o1")
        assert facts_of(runtime, "e1") == [("Communication", "m1"), ("Observation", "o1")]

    def test_communication_follows_its_observation(self, app_client, ingest_headers, runtime):
        post(
            app_client,
            ingest_headers,
            encounter("e1"),
            encounter("e2"),
            observation(),
            communication(),
        )
        n = len(outbox_keys(runtime, TENANT))
        put(app_client, observation(eid="e2"), ingest_headers)
        assert fact(runtime, TENANT, "Communication", "m1").encounter_id == "e2"
        assert outbox_keys(runtime, TENANT)[n:] == ["e1", "e2"]

        app_client.delete("/fhir/Observation/o1", headers=ingest_headers)
        assert fact(runtime, TENANT, "Communication", "m1").encounter_id is None

    def test_communication_retargeted_in_one_bundle(self, app_client, ingest_headers, runtime):
        """A stored link changed and its new target arriving in the same Bundle."""
        post(
            app_client,
            ingest_headers,
            encounter("e1"),
            encounter("e2"),
            observation("o1"),
            communication(about="Observation/o1"),
        )
        post(
            app_client,
            ingest_headers,
            communication(about="Observation/o2"),
            observation("o2", eid="e2"),
        )
        assert fact(runtime, TENANT, "Communication", "m1").encounter_id == "e2"
        put(app_client, observation("o1", eid="e1", value=9.9), ingest_headers)
        assert fact(runtime, TENANT, "Communication", "m1").encounter_id == "e2"

    def test_medication_administration_links_via_context(self, app_client, ingest_headers, runtime):
        put(app_client, medication_administration(), ingest_headers)
        put(app_client, encounter(), ingest_headers)
        ma = fact(runtime, TENANT, "MedicationAdministration", "ma1")
        assert ma.encounter_id == "e1"
        assert ma.data["route"] == [["", "PO"]]
        assert facts_of(runtime, "e1") == [("MedicationAdministration", "ma1")]


class TestDataQuality:
    def test_unlinked_and_unmapped(self, app_client, ingest_headers, reader_headers, runtime):
        post(
            app_client,
            ingest_headers,
            encounter("e1"),
            condition("c1", "e1"),
            condition("c2", "never"),
            location(),
            communication("m1", "Observation/none"),
        )
        r = app_client.get("/api/v1/data-quality", headers=reader_headers)
        assert r.status_code == 200
        body = r.json()
        assert body["unlinked"] == {"Communication": 1, "Condition": 1}
        assert body["unmapped"] == {"Location": 1}
        assert body["unlinked_resources"] == [
            {
                "resource": "Communication/m1",
                "reason": "links through Observation/none, which has no episode",
                "encounter": None,
            },
            {
                "resource": "Condition/c2",
                "reason": "encounter not received",
                "encounter": "Encounter/never",
            },
        ]

    def test_findings_clear_when_the_encounter_arrives(
        self, app_client, ingest_headers, reader_headers
    ):
        put(app_client, condition("c2", "late"), ingest_headers)
        assert app_client.get("/api/v1/data-quality", headers=reader_headers).json()[
            "unlinked"
        ] == {"Condition": 1}
        put(app_client, encounter("late"), ingest_headers)
        body = app_client.get("/api/v1/data-quality", headers=reader_headers).json()
        assert (body["unlinked"], body["unmapped"], body["unlinked_resources"]) == ({}, {}, [])

    def test_deleted_unmapped_resources_are_not_listed(
        self, app_client, ingest_headers, reader_headers
    ):
        put(app_client, location(), ingest_headers)
        app_client.delete("/fhir/Location/l1", headers=ingest_headers)
        assert (
            app_client.get("/api/v1/data-quality", headers=reader_headers).json()["unmapped"] == {}
        )

    def test_ingest_key_may_not_read_the_api(self, app_client, ingest_headers):
        assert app_client.get("/api/v1/data-quality", headers=ingest_headers).status_code == 403


class TestDepartmentDirectory:
    """Department labels come from a directory kept at ingest, not from a scan of
    every episode (a year of a large hospital is a million of them)."""

    def names(self, runtime):
        with runtime.read() as session:
            return department_names(session, TENANT)

    def test_the_last_label_sent_wins_and_no_label_keeps_it(
        self, app_client, ingest_headers, runtime
    ):
        put(app_client, encounter("e1"), ingest_headers)
        put(app_client, encounter("e2", dept="cardiology", dept_name="心内科"), ingest_headers)
        assert self.names(runtime) == {"emergency": "急诊科", "cardiology": "心内科"}

        put(app_client, encounter("e3", dept_name="急诊医学科"), ingest_headers)
        assert self.names(runtime)["emergency"] == "急诊医学科"

        unlabelled = encounter("e4")
        unlabelled["serviceProvider"].pop("display")
        put(app_client, unlabelled, ingest_headers)
        assert self.names(runtime)["emergency"] == "急诊医学科"

    def test_one_bundle_labels_a_department_once(self, app_client, ingest_headers, runtime):
        unlabelled = encounter("e3", dept="icu")
        unlabelled["serviceProvider"].pop("display")
        r = app_client.post(
            "/fhir",
            json=transaction(
                encounter("e1", dept_name="急诊科"),
                encounter("e2", dept_name="急诊医学科"),
                unlabelled,
            ),
            headers=ingest_headers,
        )
        assert r.status_code == 200, r.text
        assert self.names(runtime) == {"emergency": "急诊医学科"}
        with runtime.read() as session:
            rows = session.execute(sa.select(DepartmentRow.code, DepartmentRow.name)).all()
        assert sorted(rows) == [("emergency", "急诊医学科"), ("icu", None)]
