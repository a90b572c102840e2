"""The outbox: rows commit with the data they announce or not at all; consumers mark
them processed in the same transaction as their effects."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from shared.bus import OutboxConsumer, Topic, emit
from shared.models import OutboxEvent, Tenant
from tests.conftest import TENANT


def pending(runtime, topic=Topic.EPISODE_CHANGED):
    with runtime.read() as session:
        return session.scalars(
            sa.select(OutboxEvent.key)
            .where(OutboxEvent.topic == topic.value, OutboxEvent.processed_at.is_(None))
            .order_by(OutboxEvent.id)
        ).all()


def test_emit_commits_with_the_transaction_and_notifies(runtime):
    seen = runtime.notifier.version(Topic.EPISODE_CHANGED.value)
    with runtime.write() as session:
        emit(session, TENANT, Topic.EPISODE_CHANGED, "e1", {"encounter_id": "e1"})
        assert runtime.notifier.version(Topic.EPISODE_CHANGED.value) == seen
    assert runtime.notifier.version(Topic.EPISODE_CHANGED.value) == seen + 1
    assert runtime.notifier.version(Topic.CASES_CHANGED.value) == 0
    assert pending(runtime) == ["e1"]


def test_rollback_drops_the_event_and_the_notification(runtime):
    seen = runtime.notifier.version(Topic.EPISODE_CHANGED.value)

    def failing_work(session):
        session.get(Tenant, TENANT).name = "renamed"
        emit(session, TENANT, Topic.EPISODE_CHANGED, "e1", {"encounter_id": "e1"})
        session.flush()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        runtime.write_tx(failing_work)
    assert pending(runtime) == []
    assert runtime.notifier.version(Topic.EPISODE_CHANGED.value) == seen
    with runtime.read() as session:
        assert session.get(Tenant, TENANT).name == "示例医院"
    # A later commit on a recycled session must not announce the dropped topic.
    with runtime.write() as session:
        session.get(Tenant, TENANT).name = "示例医院"
    assert runtime.notifier.version(Topic.EPISODE_CHANGED.value) == seen


class TestConsumer:
    def emit_many(self, runtime, keys):
        with runtime.write() as session:
            for key in keys:
                emit(session, TENANT, Topic.EPISODE_CHANGED, key, {"encounter_id": key})
            emit(session, TENANT, Topic.CASES_CHANGED, "other", {})

    def test_handles_each_event_once(self, runtime):
        self.emit_many(runtime, ["a", "b", "c"])
        handled: list[list[str]] = []
        consumer = OutboxConsumer(
            Topic.EPISODE_CHANGED,
            runtime.write_factory,
            lambda s, events: handled.append([e.key for e in events]),
            batch_size=2,
        )
        assert consumer.drain() == 3
        assert handled == [["a", "b"], ["c"]]
        assert consumer.run_once() == 0
        assert pending(runtime) == []
        assert pending(runtime, Topic.CASES_CHANGED) == ["other"]

    def test_a_failing_handler_applies_nothing_and_parks_the_event(self, runtime):
        self.emit_many(runtime, ["a"])

        def handler(session, events):
            session.get(Tenant, TENANT).name = "half done"
            raise RuntimeError("handler failed")

        consumer = OutboxConsumer(Topic.EPISODE_CHANGED, runtime.write_factory, handler)
        assert consumer.run_once() == 1
        assert pending(runtime) == []  # parked, so that the topic moves on
        with runtime.read() as session:
            assert session.get(Tenant, TENANT).name == "示例医院"  # nothing half done
            parked = session.scalars(sa.select(OutboxEvent).where(OutboxEvent.key == "a")).one()
        assert parked.error == "RuntimeError: handler failed"

    def test_handle_skips_events_already_processed(self, runtime):
        self.emit_many(runtime, ["a"])
        calls: list[int] = []
        consumer = OutboxConsumer(
            Topic.EPISODE_CHANGED,
            runtime.write_factory,
            lambda s, events: calls.append(len(events)),
        )
        with runtime.write() as session:
            events = session.scalars(
                sa.select(OutboxEvent).where(OutboxEvent.topic == Topic.EPISODE_CHANGED.value)
            ).all()
            consumer.handle(session, events)
        with runtime.write() as session:
            events = session.scalars(
                sa.select(OutboxEvent).where(OutboxEvent.topic == Topic.EPISODE_CHANGED.value)
            ).all()
            consumer.handle(session, events)
        assert calls == [1]


def test_a_poison_event_is_parked_and_the_topic_moves_on(runtime):
    import sqlalchemy as sa

    from shared.bus import OutboxConsumer, Topic, emit
    from shared.models import OutboxEvent

    with runtime.write() as session:
        for key in ("ok-1", "poison", "ok-2"):
            emit(session, "H0001", Topic.EPISODE_CHANGED, key, {"encounter_id": key})
    handled: list[str] = []

    def handler(session, events):
        if any(e.key == "poison" for e in events):
            raise ValueError("cannot evaluate")
        handled.extend(e.key for e in events)

    consumer = OutboxConsumer(Topic.EPISODE_CHANGED, runtime.write_factory, handler)
    consumer.drain()
    assert handled == ["ok-1", "ok-2"]
    with runtime.read() as session:
        rows = {r.key: r for r in session.scalars(sa.select(OutboxEvent))}
    assert rows["poison"].processed_at is not None
    assert rows["poison"].error == "ValueError: cannot evaluate"
    assert rows["ok-1"].error is None and rows["ok-2"].error is None
