"""Integration engines retry and run in parallel: concurrent identical sends must
store one version (a conflicting insert is retried and then finds the row)."""

from __future__ import annotations

import threading

from tests.conftest import TENANT
from tests.fhir_factories import condition, encounter
from tests.ingest.helpers import in_unit, outbox_keys, store_counts

THREADS = 6


def _race(runtime, resource):
    barrier = threading.Barrier(THREADS)
    results: list[str] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            barrier.wait(timeout=10)
            result = in_unit(runtime, TENANT, lambda u: u.put(resource))
            results.append(f"{result.status} v{result.version}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    return sorted(results)


def test_concurrent_identical_creates_store_one_version(runtime):
    results = _race(runtime, condition())
    assert results == ["created v1"] + ["unchanged v1"] * (THREADS - 1)
    counts = store_counts(runtime, TENANT)
    assert counts["fhir_resource_versions"] == 1
    assert counts["clinical_facts"] == 1
    assert outbox_keys(runtime, TENANT) == ["e1"]


def test_concurrent_identical_updates_store_one_new_version(runtime):
    in_unit(runtime, TENANT, lambda u: u.put(encounter()))
    results = _race(runtime, encounter(end="2026-03-03T12:00:00+08:00"))
    assert results == ["unchanged v2"] * (THREADS - 1) + ["updated v2"]
    counts = store_counts(runtime, TENANT)
    assert counts["fhir_resource_versions"] == 2
    assert counts["episodes"] == 1
    assert outbox_keys(runtime, TENANT) == ["e1", "e1"]
