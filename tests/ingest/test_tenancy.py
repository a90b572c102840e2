"""No tenant can read or write another's data: keys carry the tenant, relative
references mean the caller's tenant, absolute ones into another tenant are refused."""

from __future__ import annotations

from tests.conftest import OTHER_TENANT, TENANT
from tests.fhir_factories import condition, encounter, patient, transaction
from tests.ingest.helpers import episode, fact, ingest_snapshot, outbox_keys


def test_cross_tenant_read_is_404(app_client, ingest_headers, other_ingest_headers):
    app_client.post("/fhir", json=transaction(patient(), encounter()), headers=ingest_headers)
    for path in ("/fhir/Patient/p1", "/fhir/Patient/p1/_history", "/fhir/Patient/p1/_history/1"):
        assert app_client.get(path, headers=ingest_headers).status_code == 200
        r = app_client.get(path, headers=other_ingest_headers)
        assert r.status_code == 404, path
        assert r.json()["resourceType"] == "OperationOutcome"


def test_cross_tenant_delete_is_404_and_changes_nothing(
    app_client, ingest_headers, other_ingest_headers, runtime
):
    app_client.put("/fhir/Patient/p1", json=patient(), headers=ingest_headers)
    before = ingest_snapshot(runtime, TENANT)
    assert app_client.delete("/fhir/Patient/p1", headers=other_ingest_headers).status_code == 404
    assert ingest_snapshot(runtime, TENANT) == before


def test_same_ids_in_two_tenants_are_two_resources(
    app_client, ingest_headers, other_ingest_headers, runtime
):
    """Tenant B's ``Encounter/e1`` never touches tenant A's ``Encounter/e1``."""
    r = app_client.post(
        "/fhir", json=transaction(patient(), encounter(), condition()), headers=ingest_headers
    )
    assert r.status_code == 200
    before = ingest_snapshot(runtime, TENANT)
    events_before = outbox_keys(runtime, TENANT)

    other = transaction(
        patient(birth="1990-01-01"), encounter(dept="cardiology"), condition(code="I50.900")
    )
    r = app_client.post("/fhir", json=other, headers=other_ingest_headers)
    assert r.status_code == 200
    # Created, not updated: B's ids are its own.
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["201 Created"] * 3

    assert ingest_snapshot(runtime, TENANT) == before
    assert outbox_keys(runtime, TENANT) == events_before
    assert outbox_keys(runtime, OTHER_TENANT) == ["e1"]
    assert episode(runtime, TENANT, "e1").department == "emergency"
    assert episode(runtime, OTHER_TENANT, "e1").department == "cardiology"
    assert fact(runtime, OTHER_TENANT, "Condition", "c1").encounter_id == "e1"
    assert fact(runtime, TENANT, "Condition", "c1").data["codes"][0][1] == "I21.000x001"

    r = app_client.get("/fhir/Encounter/e1", headers=other_ingest_headers)
    assert r.json()["serviceProvider"]["reference"] == "Organization/cardiology"
    r = app_client.get("/fhir/Encounter/e1", headers=ingest_headers)
    assert r.json()["serviceProvider"]["reference"] == "Organization/emergency"


def test_relative_reference_never_links_into_another_tenant(
    app_client, ingest_headers, other_ingest_headers, runtime
):
    """B's Condition names Encounter/e1, which only A has: it waits in B, unlinked."""
    app_client.put("/fhir/Encounter/e1", json=encounter(), headers=ingest_headers)
    before = ingest_snapshot(runtime, TENANT)
    r = app_client.put("/fhir/Condition/c9", json=condition("c9"), headers=other_ingest_headers)
    assert r.status_code == 201
    assert ingest_snapshot(runtime, TENANT) == before
    assert episode(runtime, OTHER_TENANT, "e1") is None
    assert fact(runtime, TENANT, "Condition", "c9") is None


def test_data_quality_is_per_tenant(app_client, ingest_headers, runtime):
    from shared.auth import Role
    from tests.conftest import make_key

    other_reader = {"Authorization": f"Bearer {make_key(runtime, Role.READER, OTHER_TENANT)}"}
    app_client.put("/fhir/Condition/c1", json=condition(), headers=ingest_headers)
    body = app_client.get("/api/v1/data-quality", headers=other_reader).json()
    assert (body["unlinked"], body["unmapped"], body["unlinked_resources"]) == ({}, {}, [])
