"""A unit writes its new versions and facts once, in ``finish()``: what it made and
did not write is either written or dropped with the rollback, never committed half-way
and never lost silently."""

from __future__ import annotations

import pytest

from bench.replay import count_statements
from services.ingest.bundles import process_bundle
from services.ingest.service import IngestUnit
from shared.errors import NotFoundError
from tests.conftest import OTHER_TENANT, TENANT
from tests.fhir_factories import condition, encounter, patient, procedure
from tests.ingest.helpers import SHANGHAI, bundle, entry, ingest_snapshot, store_counts


def _failing_transaction() -> dict:
    """Two PUTs, then a DELETE of what does not exist: refused whole."""
    return bundle(
        entry(patient("p1")),
        entry(encounter("e1", pid="p1")),
        {"request": {"method": "DELETE", "url": "Condition/never"}},
    )


def test_a_failed_transaction_in_a_savepoint_leaves_nothing_and_the_rest_commits(runtime):
    """HL7 v2 applies a message's Bundle in a savepoint and commits its log row when
    the Bundle fails: the failed Bundle's versions must neither land nor block it."""
    before = store_counts(runtime, TENANT)

    def work(session):
        unit = IngestUnit(session, TENANT, SHANGHAI, runtime.clock.now())
        with pytest.raises(NotFoundError), session.begin_nested():
            process_bundle(unit, _failing_transaction(), max_entries=100)
        # What the caller commits besides: a resource of its own, through a new unit.
        other = IngestUnit(session, TENANT, SHANGHAI, runtime.clock.now())
        other.put(patient("p2"))
        other.finish()

    runtime.write_tx(work)
    snapshot = ingest_snapshot(runtime, TENANT)
    assert set(snapshot["resources"]) == {("Patient", "p2")}
    assert (
        store_counts(runtime, TENANT)["fhir_resource_versions"]
        == before["fhir_resource_versions"] + 1
    )


def test_a_commit_without_finish_fails_instead_of_losing_the_versions(runtime):
    before = store_counts(runtime, TENANT)

    def work(session):
        unit = IngestUnit(session, TENANT, SHANGHAI, runtime.clock.now())
        unit.put(patient("p1"))  # no finish(): the version is still pending

    with pytest.raises(RuntimeError, match="not written"):
        runtime.write_tx(work)
    assert store_counts(runtime, TENANT) == before


def test_a_bundle_writes_each_version_once_in_order(runtime):
    """A resource PUT twice in one Bundle: versions 1 and 2, the head at 2."""

    def work(session):
        unit = IngestUnit(session, TENANT, SHANGHAI, runtime.clock.now())
        changed = patient("p1", name="李四")
        out = process_bundle(unit, bundle(entry(patient("p1")), entry(changed)), max_entries=100)
        return [e["response"]["status"] for e in out["entry"]]

    assert runtime.write_tx(work) == ["201 Created", "200 OK"]
    snapshot = ingest_snapshot(runtime, TENANT)
    assert snapshot["resources"][("Patient", "p1")][0] == 2
    assert [v[2] for v in snapshot["versions"] if v[:2] == ("Patient", "p1")] == [1, 2]


def test_a_bundle_writes_its_facts_with_one_statement_per_kind(runtime):
    """Ten new facts, thirteen new versions, two episodes to announce: one INSERT into
    each table, not one per row."""
    resources = [patient("p1"), encounter("e1", pid="p1"), encounter("e2", pid="p1")]
    resources += [condition(f"c{i}", code=f"I21.00{i}") for i in range(5)]
    resources += [procedure(f"pr{i}", eid="e2") for i in range(5)]

    def work(session):
        unit = IngestUnit(session, TENANT, SHANGHAI, runtime.clock.now())
        process_bundle(unit, bundle(*map(entry, resources)), max_entries=100)

    with count_statements(runtime.engine) as seen:
        runtime.write_tx(work)
    assert seen["INSERT clinical_facts"] == 1
    assert seen["UPDATE clinical_facts"] == 0
    assert seen["INSERT fhir_resource_versions"] == 1
    assert seen["INSERT outbox"] == 1
    assert len(ingest_snapshot(runtime, TENANT)["facts"]) == 10


def test_facts_written_twice_or_deleted_and_recreated_in_one_bundle_keep_the_last_state(
    runtime,
):
    """The facts a unit keeps are each resource's last state: the same as posting only
    that last state to a tenant of its own."""
    stored = [patient("p1"), encounter("e1", pid="p1"), condition("c1"), condition("c2")]

    def post(tenant: str, *entries: dict) -> None:
        def work(session):
            unit = IngestUnit(session, tenant, SHANGHAI, runtime.clock.now())
            process_bundle(unit, bundle(*entries), max_entries=100)

        runtime.write_tx(work)

    post(TENANT, *map(entry, stored))
    post(
        TENANT,
        entry(condition("c3", code="I21.100")),  # new, then changed: inserted once
        entry(condition("c3", code="I21.200")),
        entry(condition("c1", code="I21.300")),  # stored, changed twice: updated once
        entry(condition("c1", code="I21.400")),
        {"request": {"method": "DELETE", "url": "Condition/c2"}},  # deleted, then back
        entry(condition("c2", code="I21.500")),
    )
    final = [
        patient("p1"),
        encounter("e1", pid="p1"),
        condition("c1", code="I21.400"),
        condition("c2", code="I21.500"),
        condition("c3", code="I21.200"),
    ]
    post(OTHER_TENANT, *map(entry, final))
    assert (
        ingest_snapshot(runtime, TENANT)["facts"] == ingest_snapshot(runtime, OTHER_TENANT)["facts"]
    )
