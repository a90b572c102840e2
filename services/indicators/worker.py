"""The indicator worker: consumes ``episode.changed``, and re-decides pending cases
whose deadline passed (the timer), both through :func:`reevaluate_and_announce`."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from sqlalchemy.orm import Session

from services.indicators.engine import CaseChange, Evaluator
from services.indicators.evaluator import Catalogue
from shared.bus import Handler, OutboxConsumer, Topic, WorkerThread, emit
from shared.metrics import EVALUATION_SECONDS, EVENTS_PROCESSED
from shared.models import OutboxEvent, Tenant
from shared.runtime import Runtime


@lru_cache(maxsize=8)
def catalogue_for(indicators_dir: Path | None) -> Catalogue:
    """The shipped definitions, overridden by a deployment's directory. Loaded once."""
    return Catalogue.load(indicators_dir)


#: The catalogue year a tenant that chose none reports.
DEFAULT_CATALOGUE = "2026"


def reported_codes(runtime: Runtime, session: Session, tenant_id: str) -> frozenset[str]:
    """The indicator codes the tenant reports: its catalogue year's (``Catalogue.reported``).
    Every definition is evaluated for every tenant; alerts and lists follow this set."""
    tenant = session.get(Tenant, tenant_id)
    year = (tenant.catalogue if tenant is not None else None) or DEFAULT_CATALOGUE
    return catalogue_for(runtime.settings.indicators_dir).reported(year)


def evaluator_for(runtime: Runtime) -> Evaluator:
    return Evaluator(catalogue_for(runtime.settings.indicators_dir))


def reevaluate_and_announce(
    session: Session,
    runtime: Runtime,
    by_tenant: dict[str, set[str]],
    now: datetime,
) -> list[CaseChange]:
    evaluator = evaluator_for(runtime)
    started = time.perf_counter()
    all_changes: list[CaseChange] = []
    for tenant_id, encounter_ids in sorted(by_tenant.items()):
        tz = runtime.tenant_zone(session, tenant_id)
        changes = evaluator.reevaluate(session, tenant_id, sorted(encounter_ids), now, tz)
        if changes:
            emit(
                session,
                tenant_id,
                Topic.CASES_CHANGED,
                tenant_id,
                {"at": now.isoformat(), "changes": [c.to_json() for c in changes]},
            )
        all_changes.extend(changes)
    EVALUATION_SECONDS.observe(time.perf_counter() - started)
    return all_changes


def handle_events(runtime: Runtime, session: Session, events: Sequence[OutboxEvent]) -> None:
    """Many events for one episode collapse into one evaluation."""
    by_tenant: dict[str, set[str]] = defaultdict(set)
    for event in events:
        by_tenant[event.tenant_id].add(str(event.payload["encounter_id"]))
    reevaluate_and_announce(session, runtime, by_tenant, runtime.clock.now())
    EVENTS_PROCESSED.labels(Topic.EPISODE_CHANGED.value).inc(len(events))


def consumer(runtime: Runtime) -> OutboxConsumer:
    return OutboxConsumer(
        Topic.EPISODE_CHANGED, runtime.write_factory, handlers(runtime)[Topic.EPISODE_CHANGED]
    )


def run_timer_once(runtime: Runtime) -> int:
    """Re-decide episodes with a pending case whose decision time has come."""
    now = runtime.clock.now()
    with runtime.write() as session:
        due = evaluator_for(runtime).due_episodes(session, now)
        if not due:
            return 0
        by_tenant: dict[str, set[str]] = defaultdict(set)
        for tenant_id, encounter_id in due:
            by_tenant[tenant_id].add(encounter_id)
        reevaluate_and_announce(session, runtime, by_tenant, now)
        return len(due)


def drain(runtime: Runtime) -> int:
    """Process everything outstanding now (tests, ``verify``, the CLI)."""
    total = consumer(runtime).drain()
    while run_timer_once(runtime):
        total += 1
    return total


def handlers(runtime: Runtime) -> dict[Topic, Handler]:
    """The topics this service consumes, and how."""
    return {Topic.EPISODE_CHANGED: lambda session, events: handle_events(runtime, session, events)}


def timers(runtime: Runtime) -> list[WorkerThread]:
    """Loops driven by the clock rather than by events: the deadline timer."""
    return [
        WorkerThread(
            "indicators-timer",
            lambda: run_timer_once(runtime),
            stop=runtime.stop,
            interval=runtime.settings.timer_interval.total_seconds(),
        ),
    ]
