"""Two workers re-evaluating one episode at once (the timer and the consumer, or two
replicas) must not both apply the same counter delta. On PostgreSQL (READ COMMITTED)
this needs the per-episode lock in Evaluator.reevaluate; SQLite serialises writers."""

from __future__ import annotations

import threading

from services.indicators import verify
from services.indicators.worker import drain, evaluator_for
from services.ingest.service import IngestUnit
from tests.conftest import TENANT
from tests.fhir_factories import condition, encounter, patient, procedure


def put(runtime, *resources):
    with runtime.write() as session:
        unit = IngestUnit(
            session, TENANT, runtime.tenant_zone(session, TENANT), runtime.clock.now()
        )
        for resource in resources:
            unit.put(resource)
        unit.finish()


def reevaluate_together(runtime, workers: int = 4) -> None:
    evaluator = evaluator_for(runtime)
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()

            def tx(session):
                tz = runtime.tenant_zone(session, TENANT)
                evaluator.reevaluate(session, TENANT, ["e1"], runtime.clock.now(), tz)

            runtime.write_tx(tx)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_concurrent_reevaluation_of_one_episode_counts_once(runtime):
    for round_ in range(8):
        put(runtime, patient(), encounter(), condition())
        drain(runtime)  # STEMI pending: no PCI yet
        pci = procedure(start=f"2026-03-02T11:{10 + round_:02d}:00+08:00")
        put(runtime, pci)  # the event is not consumed: the workers below race on it
        reevaluate_together(runtime)
        report = verify(runtime)
        assert report.ok, (round_, report.differences)
        put(runtime, {**pci, "status": "entered-in-error"})
        drain(runtime)
