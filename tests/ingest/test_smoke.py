from tests.fhir_factories import stemi_visit


def test_post_stemi_visit_and_read_back(app_client, ingest_headers):
    r = app_client.post("/fhir", json=stemi_visit(), headers=ingest_headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "transaction-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created"] * 4
    r = app_client.get("/fhir/Procedure/pr1", headers=ingest_headers)
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "1"
