"""Transaction and batch Bundles: responses, POST with urn:uuid rewriting, DELETE."""

from __future__ import annotations

import copy

import pytest

from services.ingest.bundles import process_bundle
from tests.conftest import TENANT
from tests.fhir_factories import condition, encounter, patient, procedure, stemi_visit, transaction
from tests.ingest.helpers import (
    bundle,
    entry,
    fact,
    in_unit,
    outbox_keys,
    sqlite_writer_holding_the_lock,
    store_counts,
)


class TestTransaction:
    def test_response_has_one_entry_per_request_in_order(self, app_client, ingest_headers):
        r = app_client.post("/fhir", json=stemi_visit(), headers=ingest_headers)
        assert r.status_code == 200
        body = r.json()
        assert body["resourceType"] == "Bundle"
        assert body["type"] == "transaction-response"
        assert [e["response"]["location"] for e in body["entry"]] == [
            "Patient/p1/_history/1",
            "Encounter/e1/_history/1",
            "Condition/c1/_history/1",
            "Procedure/pr1/_history/1",
        ]
        assert [e["response"]["status"] for e in body["entry"]] == ["201 Created"] * 4

    def test_resending_the_same_bundle_is_a_noop(self, app_client, ingest_headers, runtime):
        app_client.post("/fhir", json=stemi_visit(), headers=ingest_headers)
        before = store_counts(runtime, TENANT)
        r = app_client.post("/fhir", json=stemi_visit(), headers=ingest_headers)
        assert r.status_code == 200
        assert [e["response"]["status"] for e in r.json()["entry"]] == ["200 OK"] * 4
        assert [e["response"]["location"] for e in r.json()["entry"]][3] == (
            "Procedure/pr1/_history/1"
        )
        assert store_counts(runtime, TENANT) == before

    def test_changed_entry_gets_a_new_version_others_stay(self, app_client, ingest_headers):
        app_client.post("/fhir", json=stemi_visit(), headers=ingest_headers)
        changed = transaction(patient(), encounter(end="2026-03-05T10:00:00+08:00"))
        r = app_client.post("/fhir", json=changed, headers=ingest_headers)
        assert [e["response"]["location"] for e in r.json()["entry"]] == [
            "Patient/p1/_history/1",
            "Encounter/e1/_history/2",
        ]
        assert [e["response"]["status"] for e in r.json()["entry"]] == ["200 OK", "200 OK"]

    def test_post_entries_get_ids_and_urn_references_are_rewritten(
        self, app_client, ingest_headers, runtime
    ):
        pat, enc, cond = patient(), encounter(), condition()
        for res in (pat, enc, cond):
            del res["id"]
        enc["subject"] = {"reference": "urn:uuid:11111111-0000-0000-0000-000000000001"}
        cond["subject"] = {"reference": "urn:uuid:11111111-0000-0000-0000-000000000001"}
        cond["encounter"] = {"reference": "urn:uuid:11111111-0000-0000-0000-000000000002"}
        body = bundle(
            {
                "fullUrl": "urn:uuid:11111111-0000-0000-0000-000000000001",
                "resource": pat,
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:11111111-0000-0000-0000-000000000002",
                "resource": enc,
                "request": {"method": "POST", "url": "Encounter"},
            },
            {"resource": cond, "request": {"method": "POST", "url": "Condition"}},
        )
        sent = copy.deepcopy(body)
        r = app_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 200, r.text
        locations = [e["response"]["location"] for e in r.json()["entry"]]
        assert [e["response"]["status"] for e in r.json()["entry"]] == ["201 Created"] * 3
        pid, eid, cid = (loc.split("/")[1] for loc in locations)
        assert len({pid, eid, cid}) == 3

        stored_enc = app_client.get(f"/fhir/Encounter/{eid}", headers=ingest_headers).json()
        assert stored_enc["subject"] == {"reference": f"Patient/{pid}"}
        stored_cond = app_client.get(f"/fhir/Condition/{cid}", headers=ingest_headers).json()
        assert stored_cond["encounter"] == {"reference": f"Encounter/{eid}"}
        assert stored_cond["subject"] == {"reference": f"Patient/{pid}"}
        assert fact(runtime, TENANT, "Condition", cid).encounter_id == eid
        assert body == sent  # the request document itself is not rewritten

    def test_urn_rewriting_leaves_the_callers_bundle_alone(self, runtime):
        """A retried transaction parses the same Bundle again: it must still hold the
        urn:uuid references, or POSTed ids (new on each try) would not match."""
        pat = patient()
        del pat["id"]
        enc = encounter()
        enc["subject"] = {"reference": "urn:uuid:p"}
        body = bundle(
            {
                "fullUrl": "urn:uuid:p",
                "resource": pat,
                "request": {"method": "POST", "url": "Patient"},
            },
            entry(enc),
        )
        sent = copy.deepcopy(body)
        out = in_unit(runtime, TENANT, lambda u: process_bundle(u, body, max_entries=10))
        assert body == sent
        pid = out["entry"][0]["response"]["location"].split("/")[1]
        with runtime.read() as session:
            from services.ingest.models import EpisodeRow

            assert session.get(EpisodeRow, (TENANT, "e1")).patient_id == pid

    def test_delete_entries(self, app_client, ingest_headers, runtime):
        app_client.post("/fhir", json=stemi_visit(), headers=ingest_headers)
        body = bundle(entry(procedure(), "DELETE"), entry(condition(), "DELETE"))
        r = app_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 200
        assert [e["response"]["location"] for e in r.json()["entry"]] == [
            "Procedure/pr1/_history/2",
            "Condition/c1/_history/2",
        ]
        assert app_client.get("/fhir/Procedure/pr1", headers=ingest_headers).status_code == 410
        assert fact(runtime, TENANT, "Procedure", "pr1") is None
        assert fact(runtime, TENANT, "Condition", "c1") is None

    def test_same_resource_twice_in_one_transaction(self, app_client, ingest_headers, runtime):
        """The second entry updates what the first wrote (no duplicate-key failure)."""
        body = transaction(
            encounter(),
            encounter(end="2026-03-04T10:00:00+08:00"),
            condition(),
            condition(code="I21.100"),
        )
        r = app_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 200, r.text
        assert [e["response"]["location"] for e in r.json()["entry"]] == [
            "Encounter/e1/_history/1",
            "Encounter/e1/_history/2",
            "Condition/c1/_history/1",
            "Condition/c1/_history/2",
        ]
        assert fact(runtime, TENANT, "Condition", "c1").data["codes"][0][1] == "I21.100"
        assert outbox_keys(runtime, TENANT) == ["e1"]

    @pytest.mark.parametrize("btype", ["transaction", "batch"])
    def test_put_delete_put_in_one_bundle(self, app_client, ingest_headers, runtime, btype):
        body = bundle(
            entry(encounter()),
            entry(condition()),
            entry(condition(), "DELETE"),
            entry(encounter(), "DELETE"),
            entry(condition(code="I21.2")),
            entry(encounter(dept="cardiology")),
            btype=btype,
        )
        r = app_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 200, r.text
        assert [e["response"]["location"] for e in r.json()["entry"]] == [
            "Encounter/e1/_history/1",
            "Condition/c1/_history/1",
            "Condition/c1/_history/2",
            "Encounter/e1/_history/2",
            "Condition/c1/_history/3",
            "Encounter/e1/_history/3",
        ]
        with runtime.read() as session:
            from services.ingest.models import EpisodeRow

            assert session.get(EpisodeRow, (TENANT, "e1")).department == "cardiology"
        assert fact(runtime, TENANT, "Condition", "c1").data["codes"][0][1] == "I21.2"


class TestBatch:
    def test_batch_response(self, app_client, ingest_headers):
        body = transaction(patient(), encounter(), btype="batch")
        r = app_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 200
        assert r.json()["type"] == "batch-response"
        assert [e["response"]["status"] for e in r.json()["entry"]] == ["201 Created"] * 2

    def test_empty_bundle(self, app_client, ingest_headers, runtime):
        r = app_client.post("/fhir", json=bundle(), headers=ingest_headers)
        assert r.status_code == 200
        assert r.json()["entry"] == []
        assert store_counts(runtime, TENANT)["outbox"] == 0


class TestUnchangedBundles:
    """A Bundle that changes nothing is answered from a read, off the write path."""

    def _send_twice(self, app_client, headers, body):
        first = app_client.post("/fhir", json=body, headers=headers)
        assert first.status_code == 200, first.text
        again = app_client.post("/fhir", json=body, headers=headers)
        assert again.status_code == 200, again.text
        return first.json(), again.json()

    @pytest.mark.parametrize("btype", ["transaction", "batch"])
    def test_answer_matches_the_write_path(self, app_client, ingest_headers, runtime, btype):
        app_client.post("/fhir", json=stemi_visit(), headers=ingest_headers)
        gone = condition(cid="c-gone")
        app_client.put("/fhir/Condition/c-gone", json=gone, headers=ingest_headers)
        app_client.delete("/fhir/Condition/c-gone", headers=ingest_headers)
        body = bundle(entry(patient()), entry(encounter()), entry(gone, "DELETE"), btype=btype)
        before = store_counts(runtime, TENANT)
        # The write path's answer for a re-send, computed directly in a unit of work.
        expected = in_unit(
            runtime,
            TENANT,
            lambda unit: process_bundle(unit, copy.deepcopy(body), max_entries=100),
        )
        answered = app_client.post("/fhir", json=body, headers=ingest_headers).json()
        assert answered == expected
        assert answered["type"] == f"{btype}-response"
        assert [e["response"]["etag"] for e in answered["entry"]] == ['W/"1"', 'W/"1"', 'W/"2"']
        assert store_counts(runtime, TENANT) == before

    def test_resend_is_answered_while_another_writer_holds_the_database(
        self, app_client, ingest_headers, runtime
    ):
        first, _ = self._send_twice(app_client, ingest_headers, stemi_visit())
        with sqlite_writer_holding_the_lock(runtime) as released:
            r = app_client.post("/fhir", json=stemi_visit(), headers=ingest_headers)
            answered_under_lock = not released.is_set()
        assert answered_under_lock
        assert r.status_code == 200
        assert [e["response"]["location"] for e in r.json()["entry"]] == [
            e["response"]["location"] for e in first["entry"]
        ]

    def test_one_changed_entry_takes_the_write_path(self, app_client, ingest_headers, runtime):
        self._send_twice(app_client, ingest_headers, stemi_visit())
        events = len(outbox_keys(runtime, TENANT))
        changed = stemi_visit()
        changed["entry"][3]["resource"]["status"] = "in-progress"
        r = app_client.post("/fhir", json=changed, headers=ingest_headers)
        assert [e["response"]["etag"] for e in r.json()["entry"]] == ['W/"1"'] * 3 + ['W/"2"']
        assert len(outbox_keys(runtime, TENANT)) == events + 1
