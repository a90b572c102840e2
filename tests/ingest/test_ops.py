"""Operations endpoints: /health, /ready, /metrics."""

from __future__ import annotations

import re

from tests.fhir_factories import stemi_visit
from tests.ingest.helpers import sqlite_writer_holding_the_lock


def test_health(app_client):
    r = app_client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_ready_when_the_schema_is_current(app_client):
    r = app_client.get("/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}


def test_ready_does_not_queue_behind_writers(app_client, runtime):
    with sqlite_writer_holding_the_lock(runtime) as released:
        r = app_client.get("/ready")
        answered_under_lock = not released.is_set()
    assert answered_under_lock
    assert r.json() == {"status": "ready"}


def _counter(text: str, rtype: str, outcome: str) -> float:
    pattern = (
        rf'^qcpulse_resources_ingested_total\{{(?=[^}}]*outcome="{outcome}")'
        rf'(?=[^}}]*type="{rtype}")[^}}]*\}} ([0-9.e+]+)$'
    )
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_ingested_resources(app_client, ingest_headers):
    before = app_client.get("/metrics").text
    app_client.post("/fhir", json=stemi_visit(), headers=ingest_headers)
    app_client.post("/fhir", json=stemi_visit(), headers=ingest_headers)
    r = app_client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "qcpulse_resources_ingested_total" in text
    assert _counter(text, "Procedure", "created") - _counter(before, "Procedure", "created") == 1
    assert (
        _counter(text, "Procedure", "unchanged") - _counter(before, "Procedure", "unchanged")
    ) == 1
    assert "qcpulse_http_requests_total" in text
    # Counts only: no patient data in the exposition.
    assert "Patient/p1" not in text
    assert "张三" not in text


def test_not_ready_when_the_schema_is_missing(tmp_path, settings):
    from fastapi.testclient import TestClient

    from qcpulse.app import create_app
    from shared.runtime import Runtime

    empty = Runtime.from_settings(
        settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'empty.db'}"})
    )
    try:
        with TestClient(create_app(runtime=empty, run_workers=False)) as client:
            r = client.get("/ready")
            assert r.status_code == 503
            assert r.json() == {"status": "unavailable", "detail": "schema not current"}
            assert client.get("/health").status_code == 200
    finally:
        empty.close()
