"""A unit writes its new versions once, in ``finish()``: what it made and did not
write is either written or dropped with the rollback, never committed half-way and
never lost silently."""

from __future__ import annotations

import pytest

from services.ingest.bundles import process_bundle
from services.ingest.service import IngestUnit
from shared.errors import NotFoundError
from tests.conftest import TENANT
from tests.fhir_factories import encounter, patient
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
