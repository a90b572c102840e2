"""Alert rules apply each case's changes in order: a change older than the one a
watched case applied (a redelivery, two events overtaking each other) is ignored. The
order is the ``cases.changed`` outbox row id, which the NATS message names too."""

import asyncio
import time
from datetime import timedelta

import nats
import orjson
import pytest
import sqlalchemy as sa

import services.alerts as alerts
from services.alerts.models import Alert, WatchedCase
from services.alerts.rules import process
from shared.bus import Topic, emit
from shared.models import OutboxEvent, Tenant
from shared.nats_bus import NatsBridge, subject
from tests.conftest import TENANT
from tests.distributed.test_nats_bridge import _delete_streams

KEY = ("H0001", "PIT-2026-31", "e1", "Observation/o1")


@pytest.fixture(autouse=True)
def no_grace(runtime):
    """A breach at once, so that an older change applied wrongly shows as a page."""
    with runtime.write() as session:
        session.get(Tenant, TENANT).alert_grace_seconds = 0


def change(clock, status, *, stop=None):
    """A radiology critical value whose 10-minute deadline (and grace) passed long ago."""
    start = clock.now() - timedelta(minutes=30)
    return {
        "indicator": "PIT-2026-31",
        "encounter_id": "e1",
        "key": "Observation/o1",
        "old_status": None,
        "status": status,
        "department": "radiology",
        "period_date": "2026-03-02",
        "clock_start": start.isoformat(),
        "clock_stop": stop.isoformat() if stop else None,
        "deadline": (start + timedelta(minutes=10)).isoformat(),
        "at_risk_at": (start + timedelta(minutes=7)).isoformat(),
    }


def emit_events(runtime, *changes):
    """One outbox event per change, in this order; their ids."""
    with runtime.write() as session:
        for c in changes:
            emit(session, TENANT, Topic.CASES_CHANGED, TENANT, {"changes": [c]})
        session.flush()
        rows = session.scalars(sa.select(OutboxEvent).order_by(OutboxEvent.id)).all()
        return [r.id for r in rows][-len(changes) :]


def apply(runtime, event_id):
    with runtime.write() as session:
        process(session, runtime, [session.get(OutboxEvent, event_id)])


def kinds(runtime):
    with runtime.read() as session:
        return sorted(session.scalars(sa.select(Alert.kind)).all())


def test_an_older_change_after_a_newer_one_is_ignored(runtime, clock):
    met = change(clock, "numerator", stop=clock.now() - timedelta(minutes=25))
    old, new = emit_events(runtime, change(clock, "pending"), met)
    apply(runtime, new)  # documented in time: nothing to say
    apply(runtime, old)  # the pending state from before: would be a breach
    assert kinds(runtime) == []
    with runtime.read() as session:
        row = session.get(WatchedCase, KEY)
        assert row is not None
        assert (row.status, row.applied_order) == ("numerator", new)


def test_an_older_change_cannot_undo_a_resolution(runtime, clock):
    pending, late = emit_events(runtime, change(clock, "pending"), change(clock, "pending"))
    apply(runtime, pending)
    assert kinds(runtime) == ["case.breached"]
    met = change(clock, "numerator", stop=clock.now() - timedelta(minutes=25))
    [resolved] = emit_events(runtime, met)
    apply(runtime, resolved)
    apply(runtime, late)  # older than the resolution
    assert kinds(runtime) == ["case.breached", "case.resolved"]
    with runtime.read() as session:
        row = session.get(WatchedCase, KEY)
        assert (row.status, row.check_at, row.applied_order) == ("numerator", None, resolved)


def test_newer_changes_still_apply(runtime, clock):
    met = change(clock, "numerator", stop=clock.now() - timedelta(minutes=25))
    first, second = emit_events(runtime, met, change(clock, "pending"))
    apply(runtime, first)
    apply(runtime, second)  # a correction: the notification was retracted
    assert kinds(runtime) == ["case.breached"]


async def _publish(url: str, prefix: str, event_id: int) -> None:
    nc = await nats.connect(url)
    try:
        body = orjson.dumps({"id": event_id, "tenant": TENANT, "key": TENANT})
        await nc.jetstream().publish(subject(prefix, Topic.CASES_CHANGED), body)
    finally:
        await nc.close()


def test_a_message_redelivered_late_through_nats_is_ignored(runtime, clock):
    """The older event's message comes after the newer one's (it was nak'd, or its
    consumer stalled past ``ack_wait``): the consumer applies it second."""
    met = change(clock, "numerator", stop=clock.now() - timedelta(minutes=25))
    old, new = emit_events(runtime, change(clock, "pending"), met)
    with runtime.write() as session:  # the relay already sent the older one
        session.execute(
            sa.update(OutboxEvent).where(OutboxEvent.id == old).values(published_at=clock.now())
        )
    prefix = f"QCO{time.monotonic_ns() % 10**8}"
    runtime.stop.clear()
    bridge = NatsBridge(
        runtime, alerts.handlers(runtime), prefix=prefix, durable_prefix=prefix.lower()
    )
    bridge.start()

    def processed(event_id):
        with runtime.read() as session:
            return session.get(OutboxEvent, event_id).processed_at is not None

    def wait_for(event_id):
        for _ in range(200):
            if processed(event_id):
                return
            time.sleep(0.05)
        raise AssertionError(f"event {event_id} not processed")

    try:
        assert bridge.ready.wait(10), "could not connect to NATS at 127.0.0.1:4222"
        wait_for(new)
        assert not processed(old)
        asyncio.run(_publish(runtime.settings.nats_url, prefix, old))  # the late delivery
        wait_for(old)
        assert kinds(runtime) == []
        with runtime.read() as session:
            row = session.get(WatchedCase, KEY)
            assert (row.status, row.applied_order) == ("numerator", new)
    finally:
        runtime.stop.set()
        bridge.join(timeout=10)
        asyncio.run(_delete_streams(runtime.settings.nats_url, prefix))
