"""Single-resource FHIR interactions: PUT/POST/GET/DELETE, versions, history, metadata."""

from __future__ import annotations

from tests.conftest import TENANT
from tests.fhir_factories import condition, encounter, patient
from tests.ingest.helpers import issues, outbox_keys, store_counts


def put(client, resource, headers):
    return client.put(
        f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource, headers=headers
    )


class TestPut:
    def test_create_then_identical_resend_is_a_noop(self, app_client, ingest_headers, runtime):
        r = put(app_client, patient(), ingest_headers)
        assert r.status_code == 201, r.text
        assert r.json()["meta"]["versionId"] == "1"
        assert r.headers["etag"] == 'W/"1"'
        assert r.headers["location"] == "/fhir/Patient/p1/_history/1"
        before = store_counts(runtime, TENANT)

        r = put(app_client, patient(), ingest_headers)
        assert r.status_code == 200
        assert r.json()["meta"]["versionId"] == "1"
        assert store_counts(runtime, TENANT) == before

    def test_resend_ignores_meta_and_key_order(self, app_client, ingest_headers, runtime):
        put(app_client, encounter(), ingest_headers)
        reordered = dict(reversed(list(encounter().items())))
        reordered["meta"] = {
            "versionId": "77",
            "lastUpdated": "2020-01-01T00:00:00Z",
            "source": "mirth",
        }
        r = put(app_client, reordered, ingest_headers)
        assert r.status_code == 200
        assert r.json()["meta"]["versionId"] == "1"
        assert outbox_keys(runtime, TENANT) == ["e1"]

    def test_changed_body_makes_a_new_version_and_keeps_the_old(self, app_client, ingest_headers):
        put(app_client, patient(birth="1962-05-01"), ingest_headers)
        r = put(app_client, patient(birth="1963-01-01"), ingest_headers)
        assert r.status_code == 200
        assert r.json()["meta"]["versionId"] == "2"
        r = app_client.get("/fhir/Patient/p1/_history/1", headers=ingest_headers)
        assert r.status_code == 200
        assert r.json()["birthDate"] == "1962-05-01"
        r = app_client.get("/fhir/Patient/p1", headers=ingest_headers)
        assert r.json()["birthDate"] == "1963-01-01"
        assert r.headers["etag"] == 'W/"2"'

    def test_body_without_id_takes_the_url_id(self, app_client, ingest_headers):
        body = patient()
        del body["id"]
        r = app_client.put("/fhir/Patient/p9", json=body, headers=ingest_headers)
        assert r.status_code == 201
        assert r.json()["id"] == "p9"

    def test_application_json_is_accepted(self, app_client, ingest_headers):
        import orjson

        r = app_client.put(
            "/fhir/Patient/p1",
            content=orjson.dumps(patient()),
            headers={**ingest_headers, "Content-Type": "application/json"},
        )
        assert r.status_code == 201
        assert r.headers["content-type"].startswith("application/fhir+json")


class TestPost:
    def test_server_assigns_the_id(self, app_client, ingest_headers):
        body = patient()
        del body["id"]
        r = app_client.post("/fhir/Patient", json=body, headers=ingest_headers)
        assert r.status_code == 201
        new_id = r.json()["id"]
        assert r.headers["location"] == f"/fhir/Patient/{new_id}/_history/1"
        assert app_client.get(f"/fhir/Patient/{new_id}", headers=ingest_headers).status_code == 200

    def test_a_given_id_is_replaced(self, app_client, ingest_headers):
        r = app_client.post("/fhir/Patient", json=patient("mine"), headers=ingest_headers)
        assert r.status_code == 201
        assert r.json()["id"] != "mine"


class TestDelete:
    def test_delete_then_gone_then_noop(self, app_client, ingest_headers, runtime):
        put(app_client, condition(), ingest_headers)
        r = app_client.delete("/fhir/Condition/c1", headers=ingest_headers)
        assert r.status_code == 200
        assert r.headers["etag"] == 'W/"2"'
        assert r.json()["resourceType"] == "OperationOutcome"

        r = app_client.get("/fhir/Condition/c1", headers=ingest_headers)
        assert r.status_code == 410
        assert issues(r)[0]["code"] == "not-found"

        before = store_counts(runtime, TENANT)
        r = app_client.delete("/fhir/Condition/c1", headers=ingest_headers)
        assert r.status_code == 200
        assert r.headers["etag"] == 'W/"2"'
        assert store_counts(runtime, TENANT) == before

    def test_put_after_delete_recreates_with_next_version(self, app_client, ingest_headers):
        put(app_client, condition(), ingest_headers)
        app_client.delete("/fhir/Condition/c1", headers=ingest_headers)
        r = put(app_client, condition(), ingest_headers)
        assert r.status_code == 201
        assert r.json()["meta"]["versionId"] == "3"
        assert app_client.get("/fhir/Condition/c1", headers=ingest_headers).status_code == 200


class TestReadAndHistory:
    def test_history_lists_versions_newest_first(self, app_client, ingest_headers):
        put(app_client, patient(birth="1960-01-01"), ingest_headers)
        put(app_client, patient(birth="1961-01-01"), ingest_headers)
        put(app_client, patient(birth="1961-01-01"), ingest_headers)  # identical: no version
        app_client.delete("/fhir/Patient/p1", headers=ingest_headers)
        r = app_client.get("/fhir/Patient/p1/_history", headers=ingest_headers)
        assert r.status_code == 200
        body = r.json()
        assert body["type"] == "history"
        assert body["total"] == 3
        assert [e["response"]["etag"] for e in body["entry"]] == ['W/"3"', 'W/"2"', 'W/"1"']
        assert [e["request"]["method"] for e in body["entry"]] == ["DELETE", "PUT", "PUT"]
        assert "resource" not in body["entry"][0]
        assert body["entry"][1]["resource"]["birthDate"] == "1961-01-01"
        assert body["entry"][2]["resource"]["birthDate"] == "1960-01-01"

    def test_unknown_resource_is_404(self, app_client, ingest_headers):
        r = app_client.get("/fhir/Patient/nobody", headers=ingest_headers)
        assert r.status_code == 404
        assert issues(r)[0]["code"] == "not-found"
        assert (
            app_client.get("/fhir/Patient/nobody/_history", headers=ingest_headers).status_code
            == 404
        )

    def test_missing_version_is_404(self, app_client, ingest_headers):
        put(app_client, patient(), ingest_headers)
        r = app_client.get("/fhir/Patient/p1/_history/2", headers=ingest_headers)
        assert r.status_code == 404

    def test_reader_may_read_but_not_write(self, app_client, ingest_headers, reader_headers):
        put(app_client, patient(), ingest_headers)
        assert app_client.get("/fhir/Patient/p1", headers=reader_headers).status_code == 200
        r = put(app_client, patient(birth="1999-01-01"), reader_headers)
        assert r.status_code == 403
        assert issues(r)[0]["code"] == "forbidden"

    def test_metadata_needs_no_key(self, app_client):
        r = app_client.get("/fhir/metadata")
        assert r.status_code == 200
        body = r.json()
        assert body["resourceType"] == "CapabilityStatement"
        assert body["fhirVersion"] == "4.0.1"
        types = {res["type"] for res in body["rest"][0]["resource"]}
        assert {"Patient", "Encounter", "Observation", "Communication"} <= types
        assert {i["code"] for i in body["rest"][0]["interaction"]} == {"transaction", "batch"}


class TestRoutingErrors:
    def test_unsupported_method_is_an_operation_outcome(self, app_client, ingest_headers):
        r = app_client.patch("/fhir/Patient/p1", json={}, headers=ingest_headers)
        assert r.status_code == 405
        assert issues(r)[0]["code"] == "not-supported"

    def test_unknown_api_path_is_problem_json(self, app_client, reader_headers):
        r = app_client.get("/api/v1/nothing-here", headers=reader_headers)
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == 404
