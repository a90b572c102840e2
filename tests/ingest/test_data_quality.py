"""``GET /api/v1/data-quality``: the findings of services/ingest/quality.py, posted
as real FHIR resources, and each one cleared by re-sending the corrected resource."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.auth import Role
from tests.conftest import OTHER_TENANT, make_key
from tests.fhir_factories import encounter, patient, transaction
from tests.ingest.helpers import observation

JSON = dict[str, Any]

FINDINGS = (
    "discharged_without_end",
    "discharged_without_disposition",
    "episodes_without_patient",
    "patients_without_identifier",
    "unknown_units",
    "part_of_not_received",
    "part_of_cycles",
)
DISCHARGE = "http://terminology.hl7.org/CodeSystem/discharge-disposition"


def put(client: TestClient, headers: dict[str, str], *resources: JSON) -> None:
    for resource in resources:
        r = client.put(
            f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource, headers=headers
        )
        assert r.status_code in (200, 201), r.text


def quality(client: TestClient, headers: dict[str, str], **params: Any) -> JSON:
    r = client.get("/api/v1/data-quality", headers=headers, params=params)
    assert r.status_code == 200, r.text
    body: JSON = r.json()
    return body


def finding(client: TestClient, headers: dict[str, str], name: str, **params: Any) -> JSON:
    found: JSON = quality(client, headers, **params)[name]
    return found


def discharged(eid: str = "e1", *, end: bool = True, code: str | None = "home") -> JSON:
    """A finished inpatient stay, with ``period.end`` unless ``end`` is false."""
    res = encounter(eid, cls="IMP", end="2026-03-05T09:00:00+08:00")
    if not end:
        del res["period"]["end"]
    if code is not None:
        res["hospitalization"] = {
            "dischargeDisposition": {"coding": [{"system": DISCHARGE, "code": code}]}
        }
    return res


def part_of(eid: str, parent: str | None) -> JSON:
    res = encounter(eid)
    if parent is not None:
        res["partOf"] = {"reference": f"Encounter/{parent}"}
    return res


def with_unit(oid: str, unit: str | None, code: str | None = None, eid: str = "e1") -> JSON:
    res = observation(oid, eid)
    quantity: JSON = {"value": 7.0}
    if unit is not None:
        quantity["unit"] = unit
    if code is not None:
        quantity["code"] = code
    res["valueQuantity"] = quantity
    return res


def refs(found: JSON) -> list[str]:
    return [e["resource"] for e in found["examples"]]


def test_an_empty_tenant_has_every_finding_at_zero(app_client, reader_headers):
    body = quality(app_client, reader_headers)
    for name in FINDINGS:
        assert body[name] == {"count": 0, "examples": []}, name
    assert body["unlinked"] == {} and body["unmapped"] == {} and body["unlinked_resources"] == []


def test_findings_are_per_tenant(app_client, ingest_headers, runtime):
    put(app_client, ingest_headers, discharged(end=False), part_of("e2", "gone"), patient())
    other = {"Authorization": f"Bearer {make_key(runtime, Role.READER, OTHER_TENANT)}"}
    body = quality(app_client, other)
    assert all(body[name]["count"] == 0 for name in FINDINGS)


def test_the_ingest_role_may_not_read_them(app_client, ingest_headers):
    assert app_client.get("/api/v1/data-quality", headers=ingest_headers).status_code == 403


class TestDischarges:
    def test_finished_without_an_end(self, app_client, ingest_headers, reader_headers):
        put(app_client, ingest_headers, discharged("e1", end=False), discharged("e2"))
        put(app_client, ingest_headers, encounter("e3"))  # in progress: no end expected
        body = quality(app_client, reader_headers)
        assert body["discharged_without_end"] == {
            "count": 1,
            "examples": [{"resource": "Encounter/e1"}],
        }
        assert body["discharged_without_disposition"]["count"] == 0

        put(app_client, ingest_headers, discharged("e1"))
        assert finding(app_client, reader_headers, "discharged_without_end")["count"] == 0

    def test_finished_without_a_coded_disposition(self, app_client, ingest_headers, reader_headers):
        text_only = discharged("e2", code=None)
        text_only["hospitalization"] = {"dischargeDisposition": {"text": "回家"}}
        put(app_client, ingest_headers, discharged("e1", code=None), text_only, discharged("e3"))
        put(app_client, ingest_headers, encounter("e4"))
        found = finding(app_client, reader_headers, "discharged_without_disposition")
        assert found == {
            "count": 2,
            "examples": [{"resource": "Encounter/e1"}, {"resource": "Encounter/e2"}],
        }

        put(app_client, ingest_headers, discharged("e1", code="exp"), discharged("e2"))
        found = finding(app_client, reader_headers, "discharged_without_disposition")
        assert found == {"count": 0, "examples": []}

    def test_an_ed_visit_that_became_a_stay_needs_no_disposition_of_its_own(
        self, app_client, ingest_headers, reader_headers
    ):
        ward = discharged("w1")
        ward["partOf"] = {"reference": "Encounter/ed1"}
        put(app_client, ingest_headers, discharged("ed1", code=None), discharged("e2", code=None))
        assert refs(finding(app_client, reader_headers, "discharged_without_disposition")) == [
            "Encounter/e2",
            "Encounter/ed1",
        ]
        put(app_client, ingest_headers, ward)
        assert refs(finding(app_client, reader_headers, "discharged_without_disposition")) == [
            "Encounter/e2"
        ]

    def test_one_encounter_can_lack_both(self, app_client, ingest_headers, reader_headers):
        put(app_client, ingest_headers, discharged("e1", end=False, code=None))
        body = quality(app_client, reader_headers)
        assert refs(body["discharged_without_end"]) == ["Encounter/e1"]
        assert refs(body["discharged_without_disposition"]) == ["Encounter/e1"]


class TestPatients:
    def test_episodes_without_a_subject(self, app_client, ingest_headers, reader_headers):
        orphan = encounter("e1")
        del orphan["subject"]
        cancelled = encounter("e2")
        del cancelled["subject"]
        cancelled["status"] = "cancelled"
        group = encounter("e3")
        group["subject"] = {"reference": "Group/g1"}
        put(app_client, ingest_headers, orphan, cancelled, group, encounter("e4"))
        found = finding(app_client, reader_headers, "episodes_without_patient")
        assert found == {
            "count": 2,
            "examples": [{"resource": "Encounter/e1"}, {"resource": "Encounter/e3"}],
        }

        put(app_client, ingest_headers, encounter("e1"), encounter("e3"))
        assert finding(app_client, reader_headers, "episodes_without_patient")["count"] == 0

    def test_patients_without_an_identifier(self, app_client, ingest_headers, reader_headers):
        valueless = patient("p2")
        valueless["identifier"] = [{"system": "urn:oid:2.16.156.10011.1.12"}]
        empty = patient("p3")
        empty["identifier"] = []
        identified = patient("p4")
        identified["identifier"] = [
            {"system": "urn:oid:2.16.156.10011.1.12"},
            {"system": "urn:qcpulse:mrn", "value": "MRN-0004"},
        ]
        put(app_client, ingest_headers, patient("p1"), valueless, empty, identified)
        put(app_client, ingest_headers, patient("p5"))
        assert app_client.delete("/fhir/Patient/p5", headers=ingest_headers).status_code == 200
        found = finding(app_client, reader_headers, "patients_without_identifier")
        assert found == {
            "count": 3,
            "examples": [
                {"resource": "Patient/p1"},
                {"resource": "Patient/p2"},
                {"resource": "Patient/p3"},
            ],
        }

        fixed = patient("p1")
        fixed["identifier"] = [{"system": "urn:qcpulse:mrn", "value": "MRN-0001"}]
        put(app_client, ingest_headers, fixed)
        assert refs(finding(app_client, reader_headers, "patients_without_identifier")) == [
            "Patient/p2",
            "Patient/p3",
        ]


class TestUnits:
    def test_unknown_and_missing_units(self, app_client, ingest_headers, reader_headers):
        put(
            app_client,
            ingest_headers,
            encounter("e1"),
            with_unit("o1", "mg%", "mg%"),
            with_unit("o2", "mg%", None, eid="elsewhere"),
            with_unit("o3", None, None),
            with_unit("o4", "g/L", "g/L"),
            with_unit("o5", "G/L", None),  # a case variant of g/L
            with_unit("o6", "毫摩尔/升", "mmol/L"),  # the code is read first
            with_unit("o7", "g/L", "{copies}/mL"),
        )
        text = observation("o8")
        del text["valueQuantity"]
        text["valueString"] = "阴性"
        put(app_client, ingest_headers, text)
        found = finding(app_client, reader_headers, "unknown_units")
        assert found == {
            "count": 4,
            "examples": [
                {"resource": "Observation/o1", "unit": "mg%", "encounter": "Encounter/e1"},
                {"resource": "Observation/o2", "unit": "mg%", "encounter": "Encounter/elsewhere"},
                {"resource": "Observation/o3", "unit": None, "encounter": "Encounter/e1"},
                {"resource": "Observation/o7", "unit": "{copies}/mL", "encounter": "Encounter/e1"},
            ],
        }

        put(
            app_client,
            ingest_headers,
            with_unit("o1", "mg/dL", "mg/dL"),
            with_unit("o3", "mmol/L", None),
        )
        found = finding(app_client, reader_headers, "unknown_units")
        assert refs(found) == ["Observation/o2", "Observation/o7"]

    def test_a_retracted_observation_is_no_finding(
        self, app_client, ingest_headers, reader_headers
    ):
        put(app_client, ingest_headers, with_unit("o1", "mg%", "mg%"))
        retracted = with_unit("o1", "mg%", "mg%")
        retracted["status"] = "entered-in-error"
        put(app_client, ingest_headers, retracted)
        assert finding(app_client, reader_headers, "unknown_units")["count"] == 0


class TestPartOf:
    def test_a_parent_not_received(self, app_client, ingest_headers, reader_headers):
        put(app_client, ingest_headers, part_of("e2", "e1"), part_of("e3", "e1"))
        put(app_client, ingest_headers, part_of("e4", None))
        found = finding(app_client, reader_headers, "part_of_not_received")
        assert found == {
            "count": 2,
            "examples": [
                {"resource": "Encounter/e2", "part_of": "Encounter/e1"},
                {"resource": "Encounter/e3", "part_of": "Encounter/e1"},
            ],
        }

        put(app_client, ingest_headers, part_of("e1", None))
        body = quality(app_client, reader_headers)
        assert body["part_of_not_received"] == {"count": 0, "examples": []}
        assert body["part_of_cycles"]["count"] == 0

    def test_cycles(self, app_client, ingest_headers, reader_headers):
        r = app_client.post(
            "/fhir",
            json=transaction(
                part_of("b", "a"),
                part_of("a", "b"),
                part_of("c", "a"),  # leads into the cycle, is not in it
                part_of("y", "z"),
                part_of("z", "x"),
                part_of("x", "y"),
                part_of("q", "p"),
                part_of("p", None),
            ),
            headers=ingest_headers,
        )
        assert r.status_code == 200, r.text
        found = finding(app_client, reader_headers, "part_of_cycles")
        assert found == {
            "count": 2,
            "examples": [
                {"resource": "Encounter/a", "cycle": ["Encounter/a", "Encounter/b"]},
                {
                    "resource": "Encounter/x",
                    "cycle": ["Encounter/x", "Encounter/y", "Encounter/z"],
                },
            ],
        }
        assert finding(app_client, reader_headers, "part_of_not_received")["count"] == 0

        put(app_client, ingest_headers, part_of("b", None))
        found = finding(app_client, reader_headers, "part_of_cycles")
        assert refs(found) == ["Encounter/x"]


@pytest.mark.parametrize("limit", [1, 2])
def test_limit_caps_the_examples_not_the_count(app_client, ingest_headers, reader_headers, limit):
    put(
        app_client,
        ingest_headers,
        *(discharged(f"e{i}", end=False) for i in range(3)),
        *(patient(f"p{i}") for i in range(3)),
        *(part_of(f"c{i}", "never") for i in range(3)),
        *(with_unit(f"o{i}", "mg%", "mg%") for i in range(3)),
        part_of("a", "b"),
        part_of("b", "a"),
        part_of("x", "y"),
        part_of("y", "x"),
        part_of("k", "l"),
        part_of("l", "k"),
    )
    body = quality(app_client, reader_headers, limit=limit)
    for name in (
        "discharged_without_end",
        "patients_without_identifier",
        "part_of_not_received",
        "unknown_units",
        "part_of_cycles",
    ):
        assert body[name]["count"] == 3, name
        assert len(body[name]["examples"]) == limit, name
    assert refs(body["discharged_without_end"]) == [f"Encounter/e{i}" for i in range(limit)]
