"""The reads of a Bundle's keys walk the primary key: one query for all its keys must
not become a scan of the tenant's rows (a row-value ``IN (VALUES …)`` did, on SQLite)."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from services.ingest import repository
from tests.conftest import TENANT

KEYS = [("Patient", "p1"), ("Encounter", "e1"), ("Observation", "o1")]


@pytest.mark.parametrize(
    ("read", "table"),
    [(repository.current_heads, "fhir_resources"), (repository.fact_links, "clinical_facts")],
)
def test_a_bundles_keys_are_read_through_the_primary_key(runtime, read, table):
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's planner is the one that fell back to a scan")
    sent: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        sent.append((statement, parameters))

    sa.event.listen(runtime.engine, "before_cursor_execute", capture)
    try:
        with runtime.read() as session:
            read(session, TENANT, KEYS)
    finally:
        sa.event.remove(runtime.engine, "before_cursor_execute", capture)
    statement, parameters = next((s, p) for s, p in sent if table in s)
    raw = runtime.engine.raw_connection()
    try:
        plan = [
            row[3] for row in raw.cursor().execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
        ]
    finally:
        raw.close()
    # The whole key (…type=? AND …id=?), not only tenant_id=?.
    assert any(re.search(r"type=\? AND (resource_)?id=\?", step) for step in plan), plan
