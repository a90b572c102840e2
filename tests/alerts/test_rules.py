"""The case rules on hand-written ``cases.changed`` events, batched as the consumer
batches them (several events about one case in one transaction)."""

from datetime import timedelta

import sqlalchemy as sa

from services.alerts.models import Alert, WatchedCase
from services.alerts.worker import drain, run_timer_once
from shared.bus import Topic, emit
from tests.conftest import TENANT


def change(clock, status, *, key="Observation/o1", minutes=10, stop=None):
    start = clock.now() - timedelta(minutes=1)
    return {
        "indicator": "PIT-2026-31",
        "encounter_id": "e1",
        "key": key,
        "old_status": None,
        "status": status,
        "department": "radiology",
        "period_date": "2026-03-02",
        "clock_start": start.isoformat(),
        "clock_stop": stop.isoformat() if stop else None,
        "deadline": (start + timedelta(minutes=minutes)).isoformat(),
        "at_risk_at": (start + timedelta(minutes=minutes * 2 / 3)).isoformat(),
    }


def emit_all(runtime, *changes_per_event):
    with runtime.write() as session:
        for changes in changes_per_event:
            emit(
                session,
                TENANT,
                Topic.CASES_CHANGED,
                TENANT,
                {"at": runtime.clock.now().isoformat(), "changes": list(changes)},
            )


def watched(runtime):
    with runtime.read() as session:
        return session.scalars(sa.select(WatchedCase)).all()


def kinds(runtime):
    with runtime.read() as session:
        return sorted(session.scalars(sa.select(Alert.kind)).all())


def test_two_events_about_one_new_case_in_one_batch(runtime, clock):
    emit_all(runtime, [change(clock, "pending")], [change(clock, "pending")])
    assert drain(runtime) >= 2
    [row] = watched(runtime)
    assert row.check_at == row.at_risk_at


def test_a_case_that_comes_and_goes_in_one_batch_leaves_nothing(runtime, clock):
    gone = change(clock, None) | {"clock_start": None, "deadline": None, "at_risk_at": None}
    emit_all(runtime, [change(clock, "pending")], [gone])
    drain(runtime)
    [row] = watched(runtime)  # remembers the order it applied, until a backfill
    assert row.status is None and row.check_at == row.deadline + timedelta(hours=24)
    clock.advance(timedelta(hours=1))
    assert run_timer_once(runtime) == 0
    assert kinds(runtime) == []
    clock.advance(timedelta(hours=24))
    assert run_timer_once(runtime) == 1
    assert watched(runtime) == []


def test_excluded_resolves_silently(runtime, clock):
    emit_all(runtime, [change(clock, "pending")])
    drain(runtime)
    clock.advance(timedelta(minutes=15))  # the deadline and its grace
    run_timer_once(runtime)
    assert kinds(runtime) == ["case.breached"]
    emit_all(runtime, [change(clock, "excluded")])
    drain(runtime)
    with runtime.read() as session:
        [alert] = session.scalars(sa.select(Alert)).all()
    assert (alert.status, alert.resolution) == ("resolved", "excluded")
    assert kinds(runtime) == ["case.breached"]


def test_the_timer_fires_each_case_by_its_own_clock(runtime, clock):
    emit_all(
        runtime,
        [change(clock, "pending", key=f"Observation/o{i}", minutes=10 + 6 * i) for i in range(3)],
    )
    drain(runtime)
    # o0's deadline and grace (9 + 5 min) have passed; o1's and o2's deadlines have not.
    clock.advance(timedelta(minutes=14, seconds=30))
    assert run_timer_once(runtime) == 3  # all three are past their at-risk time
    assert kinds(runtime) == ["case.at_risk", "case.at_risk", "case.breached"]
    assert run_timer_once(runtime) == 0
