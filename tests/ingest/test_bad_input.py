"""Bad input: each answers 4xx with an OperationOutcome that names the entry and the
element, and changes nothing it should not (the whole store is compared)."""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import OTHER_TENANT, TENANT
from tests.fhir_factories import condition, encounter, patient, procedure, transaction
from tests.ingest.conftest import MAX_BODY, MAX_DEPTH, MAX_ENTRIES
from tests.ingest.helpers import (
    bundle,
    dump_all,
    entry,
    issues,
    outbox_keys,
    store_counts,
)

FOREIGN_ENCOUNTER = f"https://qcpulse.example.org/fhir/{OTHER_TENANT}/Encounter/e1"


@pytest.fixture
def seeded(app_client, ingest_headers, runtime):
    """A stored visit, so 'unchanged' means something."""
    r = app_client.post(
        "/fhir", json=transaction(patient(), encounter(), condition()), headers=ingest_headers
    )
    assert r.status_code == 200, r.text
    return dump_all(runtime.engine)


def assert_unchanged(runtime, before):
    assert dump_all(runtime.engine) == before


class TestMalformed:
    def test_malformed_json_to_fhir(self, app_client, ingest_headers, runtime, seeded):
        r = app_client.post(
            "/fhir",
            content=b'{"resourceType": "Bundle", "entry": [',
            headers={**ingest_headers, "Content-Type": "application/fhir+json"},
        )
        assert r.status_code == 400
        (issue,) = issues(r)
        assert issue["code"] == "structure"
        assert "malformed JSON" in issue["diagnostics"]
        assert issue["expression"] == ["$"]
        assert_unchanged(runtime, seeded)

    def test_malformed_json_to_put(self, app_client, ingest_headers, runtime, seeded):
        r = app_client.put(
            "/fhir/Patient/p1",
            content=b"{not json",
            headers={**ingest_headers, "Content-Type": "application/fhir+json"},
        )
        assert r.status_code == 400
        assert issues(r)[0]["code"] == "structure"
        assert_unchanged(runtime, seeded)

    def test_empty_body(self, app_client, ingest_headers, runtime, seeded):
        r = app_client.post("/fhir", content=b"", headers=ingest_headers)
        assert r.status_code == 400
        assert issues(r)[0]["code"] == "structure"
        assert_unchanged(runtime, seeded)


class TestEnvelope:
    def test_a_non_bundle_to_fhir(self, app_client, ingest_headers, runtime, seeded):
        r = app_client.post("/fhir", json=patient("p2"), headers=ingest_headers)
        assert r.status_code == 422
        (issue,) = issues(r)
        assert "takes a Bundle, not 'Patient'" in issue["diagnostics"]
        assert issue["expression"] == ["resourceType"]
        assert_unchanged(runtime, seeded)

    def test_a_json_array_to_fhir(self, app_client, ingest_headers, runtime, seeded):
        r = app_client.post("/fhir", json=[patient("p2")], headers=ingest_headers)
        assert r.status_code == 422
        assert "not 'list'" in issues(r)[0]["diagnostics"]
        assert_unchanged(runtime, seeded)

    def test_a_collection_bundle(self, app_client, ingest_headers, runtime, seeded):
        body = transaction(patient("p2"), btype="collection")
        r = app_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 422
        assert issues(r)[0]["expression"] == ["Bundle.type"]
        assert_unchanged(runtime, seeded)

    def test_entry_without_request(self, app_client, ingest_headers, runtime, seeded):
        body = bundle(entry(patient("p2")), {"resource": patient("p3")})
        r = app_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 422
        assert issues(r)[0]["expression"] == ["Bundle.entry[1].request"]
        assert_unchanged(runtime, seeded)

    def test_unsupported_method(self, app_client, ingest_headers, runtime, seeded):
        bad = {"request": {"method": "PATCH", "url": "Patient/p1"}, "resource": patient()}
        r = app_client.post("/fhir", json=bundle(bad), headers=ingest_headers)
        assert r.status_code == 422
        (issue,) = issues(r)
        assert issue["code"] == "not-supported"
        assert issue["expression"] == ["Bundle.entry[0].request.method"]
        assert_unchanged(runtime, seeded)


class TestUnknownType:
    def test_put_to_an_unknown_type(self, app_client, ingest_headers, runtime, seeded):
        r = app_client.put(
            "/fhir/Foo/1", json={"resourceType": "Foo", "id": "1"}, headers=ingest_headers
        )
        assert r.status_code == 400
        assert issues(r)[0]["code"] == "not-supported"
        assert_unchanged(runtime, seeded)

    def test_body_type_differs_from_url(self, app_client, ingest_headers, runtime, seeded):
        r = app_client.put(
            "/fhir/Patient/p1", json={"resourceType": "Foo", "id": "p1"}, headers=ingest_headers
        )
        assert r.status_code == 400
        assert issues(r)[0]["expression"] == ["resourceType"]
        assert_unchanged(runtime, seeded)

    def test_unknown_type_in_a_transaction(self, app_client, ingest_headers, runtime, seeded):
        body = bundle(
            entry(patient("p2")),
            {
                "request": {"method": "PUT", "url": "Foo/1"},
                "resource": {"resourceType": "Foo", "id": "1"},
            },
        )
        r = app_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 422
        (issue,) = issues(r)
        assert issue["code"] == "not-supported"
        assert issue["expression"] == ["Bundle.entry[1].request.url"]
        assert_unchanged(runtime, seeded)

    def test_unknown_type_in_a_batch_fails_alone(self, app_client, ingest_headers, runtime):
        body = bundle(
            entry(patient("p2")),
            {
                "request": {"method": "PUT", "url": "Foo/1"},
                "resource": {"resourceType": "Foo", "id": "1"},
            },
            btype="batch",
        )
        r = app_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 200
        statuses = [e["response"]["status"] for e in r.json()["entry"]]
        assert statuses == ["201 Created", "422 Unprocessable content"]
        assert store_counts(runtime, TENANT)["fhir_resources"] == 1


class TestValidation:
    @staticmethod
    def bad_encounter():
        enc = encounter("e2")
        enc["period"]["start"] = "2026-13-45T99:00:00+08:00"
        return enc

    def test_invalid_resource_in_a_transaction_stores_nothing(
        self, app_client, ingest_headers, runtime, seeded
    ):
        body = transaction(patient("p2"), self.bad_encounter(), condition("c2", "e2", "p2"))
        r = app_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 422
        found = issues(r)
        assert [i["expression"] for i in found] == [["Bundle.entry[1].resource.period.start"]]
        assert_unchanged(runtime, seeded)

    def test_every_bad_entry_is_named(self, app_client, ingest_headers, runtime, seeded):
        bad_patient = patient("p2")
        bad_patient["unknownElement"] = 1
        body = transaction(bad_patient, self.bad_encounter())
        r = app_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 422
        expressions = [i["expression"][0] for i in issues(r)]
        assert expressions == [
            "Bundle.entry[0].resource.unknownElement",
            "Bundle.entry[1].resource.period.start",
        ]
        assert issues(r)[0]["code"] == "structure"
        assert_unchanged(runtime, seeded)

    def test_invalid_resource_in_a_batch_fails_alone(self, app_client, ingest_headers, runtime):
        body = transaction(
            patient("p2"), self.bad_encounter(), condition("c2", "e2", "p2"), btype="batch"
        )
        r = app_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 200
        out = r.json()
        assert out["type"] == "batch-response"
        assert [e["response"]["status"] for e in out["entry"]] == [
            "201 Created",
            "422 Unprocessable content",
            "201 Created",
        ]
        outcome = out["entry"][1]["response"]["outcome"]
        assert outcome["issue"][0]["expression"] == ["Bundle.entry[1].resource.period.start"]
        assert "outcome" not in out["entry"][0]["response"]
        assert app_client.get("/fhir/Encounter/e2", headers=ingest_headers).status_code == 404
        assert app_client.get("/fhir/Condition/c2", headers=ingest_headers).status_code == 200
        counts = store_counts(runtime, TENANT)
        assert counts["fhir_resources"] == 2
        assert counts["fhir_resource_versions"] == 2
        assert counts["episodes"] == 0
        assert counts["clinical_facts"] == 1
        assert outbox_keys(runtime, TENANT) == ["e2"]  # the Condition's episode

    def test_invalid_single_put(self, app_client, ingest_headers, runtime, seeded):
        r = app_client.put("/fhir/Encounter/e2", json=self.bad_encounter(), headers=ingest_headers)
        assert r.status_code == 422
        assert issues(r)[0]["expression"] == ["Encounter.period.start"]
        assert_unchanged(runtime, seeded)

    def test_invalid_change_keeps_the_stored_version(
        self, app_client, ingest_headers, runtime, seeded
    ):
        bad = encounter()
        bad["period"]["start"] = "yesterday"
        r = app_client.put("/fhir/Encounter/e1", json=bad, headers=ingest_headers)
        assert r.status_code == 422
        assert_unchanged(runtime, seeded)
        r = app_client.get("/fhir/Encounter/e1", headers=ingest_headers)
        assert r.json()["meta"]["versionId"] == "1"


class TestIdMismatch:
    def test_single_put(self, app_client, ingest_headers, runtime, seeded):
        r = app_client.put("/fhir/Patient/p1", json=patient("p2"), headers=ingest_headers)
        assert r.status_code == 400
        (issue,) = issues(r)
        assert issue["expression"] == ["Patient.id"]
        assert "'p2'" in issue["diagnostics"]
        assert "'p1'" in issue["diagnostics"]
        assert_unchanged(runtime, seeded)

    def test_invalid_id_in_url(self, app_client, ingest_headers, runtime, seeded):
        r = app_client.put("/fhir/Patient/bad_id!", json=patient("bad_id!"), headers=ingest_headers)
        assert r.status_code == 400
        assert_unchanged(runtime, seeded)

    def test_in_a_transaction(self, app_client, ingest_headers, runtime, seeded):
        bad = entry(patient("p2"))
        bad["request"]["url"] = "Patient/p3"
        r = app_client.post(
            "/fhir", json=bundle(entry(encounter("e2")), bad), headers=ingest_headers
        )
        assert r.status_code == 422
        assert issues(r)[0]["expression"] == ["Bundle.entry[1].resource.id"]
        assert_unchanged(runtime, seeded)


class TestLimits:
    def test_bundle_over_the_entry_limit(self, limited_client, ingest_headers, runtime, seeded):
        body = transaction(*(patient(f"px{i}") for i in range(MAX_ENTRIES + 1)))
        r = limited_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 422
        (issue,) = issues(r)
        assert issue["code"] == "too-costly"
        assert issue["expression"] == ["Bundle.entry"]
        assert f"limit is {MAX_ENTRIES}" in issue["diagnostics"]
        assert_unchanged(runtime, seeded)

    def test_bundle_at_the_entry_limit_is_fine(self, limited_client, ingest_headers):
        body = transaction(*(patient(f"px{i}") for i in range(MAX_ENTRIES)))
        assert limited_client.post("/fhir", json=body, headers=ingest_headers).status_code == 200

    def test_body_over_the_size_limit(self, limited_client, ingest_headers, runtime, seeded):
        big = patient("p2", name="张" * MAX_BODY)
        r = limited_client.put("/fhir/Patient/p2", json=big, headers=ingest_headers)
        assert r.status_code == 413
        assert issues(r)[0]["code"] == "too-costly"
        assert_unchanged(runtime, seeded)

    def test_streamed_body_over_the_size_limit(
        self, limited_client, ingest_headers, runtime, seeded
    ):
        payload = orjson.dumps(transaction(patient("p2", name="x" * MAX_BODY)))

        def chunks():
            for i in range(0, len(payload), 512):
                yield payload[i : i + 512]

        r = limited_client.post("/fhir", content=chunks(), headers=ingest_headers)
        assert "content-length" not in {k.lower() for k in r.request.headers}
        assert r.status_code == 413
        assert_unchanged(runtime, seeded)

    def test_json_nested_too_deeply(self, limited_client, ingest_headers, runtime, seeded):
        deep: dict = {"x": 1}
        for _ in range(MAX_DEPTH + 1):
            deep = {"extension": [deep]}
        body = {**patient("p2"), "_gender": deep}
        r = limited_client.put("/fhir/Patient/p2", json=body, headers=ingest_headers)
        assert r.status_code == 400
        assert issues(r)[0]["code"] == "too-costly"
        assert_unchanged(runtime, seeded)


class TestDeleteAbsent:
    def test_single(self, app_client, ingest_headers, runtime, seeded):
        r = app_client.delete("/fhir/Condition/never", headers=ingest_headers)
        assert r.status_code == 404
        assert issues(r)[0]["code"] == "not-found"
        assert_unchanged(runtime, seeded)

    def test_in_a_transaction(self, app_client, ingest_headers, runtime, seeded):
        body = bundle(entry(procedure("pr9")), entry(condition("never"), "DELETE"))
        r = app_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 404
        (issue,) = issues(r)
        assert issue["expression"] == ["Bundle.entry[1].request.url"]
        assert_unchanged(runtime, seeded)

    def test_in_a_batch(self, app_client, ingest_headers, runtime, seeded):
        body = bundle(entry(procedure("pr9")), entry(condition("never"), "DELETE"), btype="batch")
        r = app_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 200
        responses = [e["response"] for e in r.json()["entry"]]
        assert [x["status"] for x in responses] == ["201 Created", "404 Not found"]
        assert responses[1]["outcome"]["issue"][0]["code"] == "not-found"
        assert app_client.get("/fhir/Procedure/pr9", headers=ingest_headers).status_code == 200


class TestForeignTenantReference:
    def test_single_put_is_refused(self, app_client, ingest_headers, runtime, seeded):
        cond = condition("c2")
        cond["encounter"] = {"reference": FOREIGN_ENCOUNTER}
        r = app_client.put("/fhir/Condition/c2", json=cond, headers=ingest_headers)
        assert r.status_code == 422
        (issue,) = issues(r)
        assert issue["code"] == "forbidden"
        assert issue["expression"] == ["Condition.encounter.reference"]
        assert_unchanged(runtime, seeded)

    def test_in_a_transaction_nothing_is_stored(self, app_client, ingest_headers, runtime, seeded):
        proc = procedure("pr2")
        proc["subject"] = {"reference": f"https://h.example/fhir/{OTHER_TENANT}/Patient/p1"}
        body = transaction(patient("p2"), proc)
        r = app_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 422
        (issue,) = issues(r)
        assert issue["code"] == "forbidden"
        assert issue["expression"] == ["Bundle.entry[1].resource.subject.reference"]
        assert_unchanged(runtime, seeded)

    def test_nested_in_a_list_with_history(self, app_client, ingest_headers, runtime, seeded):
        cond = condition("c2")
        cond["evidence"] = [
            {
                "detail": [
                    {"reference": "Observation/o1"},
                    {"reference": f"http://h/fhir/{OTHER_TENANT}/Observation/o1/_history/2"},
                ]
            }
        ]
        r = app_client.put("/fhir/Condition/c2", json=cond, headers=ingest_headers)
        assert r.status_code == 422
        assert issues(r)[0]["expression"] == ["Condition.evidence[0].detail[1].reference"]
        assert_unchanged(runtime, seeded)

    def test_a_batch_refuses_only_that_entry(self, app_client, ingest_headers, runtime):
        proc = procedure("pr2")
        proc["encounter"] = {"reference": FOREIGN_ENCOUNTER}
        body = transaction(patient("p2"), proc, btype="batch")
        r = app_client.post("/fhir", json=body, headers=ingest_headers)
        assert r.status_code == 200
        assert [e["response"]["status"] for e in r.json()["entry"]] == [
            "201 Created",
            "422 Unprocessable content",
        ]
        assert app_client.get("/fhir/Procedure/pr2", headers=ingest_headers).status_code == 404

    def test_absolute_reference_to_own_tenant_is_fine(self, app_client, ingest_headers, runtime):
        cond = condition("c2")
        cond["encounter"] = {"reference": f"https://h.example/fhir/{TENANT}/Encounter/e1"}
        r = app_client.put("/fhir/Condition/c2", json=cond, headers=ingest_headers)
        assert r.status_code == 201, r.text
        with runtime.read() as session:
            from services.ingest.models import FactRow

            assert session.get(FactRow, (TENANT, "Condition", "c2")).encounter_id == "e1"
