"""From a posted bundle to an indicator value, through the outbox and the evaluator."""

from datetime import timedelta

from services.indicators.maintenance import verify
from services.indicators.worker import drain
from tests.fhir_factories import condition, encounter, patient, procedure, stemi_visit, transaction


def value(client, headers, code="PIT-2026-23", **params):
    params = {"from": "2026-03-01", "to": "2026-03-31", **params}
    r = client.get(f"/api/v1/indicators/{code}/value", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_stemi_pci_within_90_minutes_counts_in_numerator(
    app_client, runtime, ingest_headers, reader_headers
):
    assert app_client.post("/fhir", json=stemi_visit(), headers=ingest_headers).status_code == 200
    drain(runtime)
    v = value(app_client, reader_headers)
    assert (v["numerator"], v["denominator"], v["rate"]) == (1, 1, 1.0)
    assert v["meets_target"] is True
    # Re-sending the same bundle changes nothing.
    app_client.post("/fhir", json=stemi_visit(), headers=ingest_headers)
    drain(runtime)
    assert value(app_client, reader_headers)["denominator"] == 1
    assert verify(runtime).ok


def test_correction_moves_case_out_of_numerator(
    app_client, runtime, ingest_headers, reader_headers
):
    app_client.post("/fhir", json=stemi_visit(), headers=ingest_headers)
    late = procedure(start="2026-03-02T11:31:00+08:00")  # 91 minutes after arrival
    app_client.put("/fhir/Procedure/pr1", json=late, headers=ingest_headers)
    drain(runtime)
    v = value(app_client, reader_headers)
    assert (v["numerator"], v["denominator"]) == (0, 1)
    cases = app_client.get(
        "/api/v1/indicators/PIT-2026-23/cases",
        headers=reader_headers,
        params={"from": "2026-03-01", "to": "2026-03-31"},
    ).json()["cases"]
    assert [c["status"] for c in cases] == ["denominator"]
    assert cases[0]["elapsed_minutes"] == 91.0
    assert verify(runtime).ok


def test_pending_without_pci_then_episode_closes(
    app_client, runtime, clock, ingest_headers, reader_headers
):
    bundle = transaction(patient(), encounter(), condition())
    app_client.post("/fhir", json=bundle, headers=ingest_headers)
    drain(runtime)
    assert value(app_client, reader_headers)["pending"] == 1
    clock.advance(timedelta(hours=3))
    drain(runtime)
    assert value(app_client, reader_headers)["pending"] == 1  # a late PCI could still come
    closed = encounter(end="2026-03-03T10:00:00+08:00")
    app_client.put("/fhir/Encounter/e1", json=closed, headers=ingest_headers)
    drain(runtime)
    v = value(app_client, reader_headers)
    assert (v["pending"], v["denominator"]) == (0, 0)
    assert verify(runtime).ok
