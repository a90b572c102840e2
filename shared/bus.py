"""The event bus: a transactional outbox, consumed in-process or relayed through NATS.

Producers call :func:`emit` (or :func:`emit_many`) inside their transaction. The row
commits with the data it announces, or not at all. After commit the in-process
:class:`Notifier` wakes the consumer of that topic; in the distributed mode a relay
copies rows to JetStream (see :mod:`shared.nats_bus`). Either way a consumer handles
events with ``handler(session, events)`` and marks them processed in the same
transaction, so a crash between the two never applies an effect twice.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Sequence
from typing import Any, cast

import sqlalchemy as sa
import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from shared.clock import utcnow
from shared.db import is_postgres, transaction
from shared.metrics import EVENTS_PARKED
from shared.models import OutboxEvent

log = structlog.get_logger(__name__)


class Topic(enum.StrEnum):
    #: An episode's resources changed: re-evaluate its cases (consumer: indicators).
    EPISODE_CHANGED = "episode.changed"
    #: Cases changed status or clock, and department rates moved (consumer: alerts).
    CASES_CHANGED = "cases.changed"


#: Waiting on this wakes on any topic (the NATS relay does).
ANY_TOPIC = "*"

_PENDING_TOPICS = "qcpulse_pending_topics"
_NOTIFIER = "qcpulse_notifier"


class Notifier:
    """Wakes consumers when their topic has new committed rows."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[str, int] = {}

    def notify(self, topics: set[str]) -> None:
        with self._cond:
            for topic in (*topics, ANY_TOPIC):
                self._versions[topic] = self._versions.get(topic, 0) + 1
            self._cond.notify_all()

    def version(self, topic: str) -> int:
        with self._cond:
            return self._versions.get(topic, 0)

    def wait(self, topic: str, seen: int, timeout: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self._versions.get(topic, 0) != seen, timeout=timeout)
            return self._versions.get(topic, 0)


def bind_notifier(factory: sessionmaker[Session], notifier: Notifier) -> None:
    factory.kw.setdefault("info", {})[_NOTIFIER] = notifier


_INSERT_EVENT = sa.insert(cast(sa.Table, OutboxEvent.__table__))


def emit(session: Session, tenant_id: str, topic: Topic, key: str, payload: dict[str, Any]) -> None:
    emit_many(session, tenant_id, topic, [(key, payload)])


def emit_many(
    session: Session, tenant_id: str, topic: Topic, events: Sequence[tuple[str, dict[str, Any]]]
) -> None:
    """Write events of one topic, as (key, payload), in one statement (an
    ``executemany``; ids follow the order given). A Core insert: the ORM's unit of work
    sent a Bundle's rows one ``INSERT`` each."""
    if not events:
        return
    session.execute(
        _INSERT_EVENT,
        [
            {"tenant_id": tenant_id, "topic": topic.value, "key": key, "payload": payload}
            for key, payload in events
        ],
    )
    session.info.setdefault(_PENDING_TOPICS, set()).add(topic.value)


def wake_after_commit(session: Session, topic: str) -> None:
    """Wake waiters on ``topic`` when this session commits, without an outbox row: for
    loops that poll a table of their own (webhook deliveries)."""
    session.info.setdefault(_PENDING_TOPICS, set()).add(topic)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    topics: set[str] | None = session.info.pop(_PENDING_TOPICS, None)
    notifier: Notifier | None = session.info.get(_NOTIFIER)
    if topics and notifier is not None:
        notifier.notify(topics)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_TOPICS, None)


Handler = Callable[[Session, Sequence[OutboxEvent]], None]


class OutboxConsumer:
    """Reads unprocessed rows of one topic in batches; effects and the processed mark
    commit together."""

    def __init__(
        self,
        topic: Topic,
        factory: sessionmaker[Session],
        handler: Handler,
        *,
        batch_size: int = 500,
    ) -> None:
        self.topic = topic
        self.factory = factory
        self.handler = handler
        self.batch_size = batch_size

    def run_once(self) -> int:
        """Handle one batch; returns how many events it handled.

        When a batch fails, its events are retried one by one; an event that fails on
        its own is parked (``processed_at`` and ``error`` set, logged, counted) so that
        one bad event never stops its topic. Its data is still stored: ``qcpulse
        verify`` shows the episode as different, and ``recompute`` repairs it.
        """
        try:
            with transaction(self.factory) as session:
                events = self._claim(session, self.batch_size)
                if not events:
                    return 0
                self.handle(session, events)
                return len(events)
        except Exception:
            log.exception(
                "outbox batch failed; retrying its events one by one", topic=self.topic.value
            )
        handled = 0
        while handled < self.batch_size:
            event_id: int | None = None
            try:
                with transaction(self.factory) as session:
                    events = self._claim(session, 1)
                    if not events:
                        break
                    event_id = events[0].id
                    self.handle(session, events)
            except Exception as exc:
                if event_id is None:
                    raise  # the database itself failed: the worker loop retries later
                self._park(event_id, exc)
            handled += 1
        return handled

    def _claim(self, session: Session, limit: int) -> Sequence[OutboxEvent]:
        query = (
            sa.select(OutboxEvent)
            .where(OutboxEvent.topic == self.topic.value, OutboxEvent.processed_at.is_(None))
            .order_by(OutboxEvent.id)
            .limit(limit)
        )
        if is_postgres(session):
            query = query.with_for_update(skip_locked=True)
        return session.scalars(query).all()

    def _park(self, event_id: int, exc: Exception) -> None:
        log.error(
            "outbox event parked",
            topic=self.topic.value,
            event_id=event_id,
            error=type(exc).__name__,
        )
        EVENTS_PARKED.labels(self.topic.value).inc()
        with transaction(self.factory) as session:
            session.execute(
                sa.update(OutboxEvent)
                .where(OutboxEvent.id == event_id)
                .values(processed_at=utcnow(), error=f"{type(exc).__name__}: {exc}"[:2000])
            )

    def handle(self, session: Session, events: Sequence[OutboxEvent]) -> None:
        fresh = [e for e in events if e.processed_at is None]
        if not fresh:
            return
        self.handler(session, fresh)
        now = utcnow()
        session.execute(
            sa.update(OutboxEvent)
            .where(OutboxEvent.id.in_([e.id for e in fresh]))
            .values(processed_at=now)
        )

    def drain(self) -> int:
        total = 0
        while n := self.run_once():
            total += n
        return total


class WorkerThread(threading.Thread):
    """Runs a step function until stopped: on notification for ``topic``, or every
    ``interval`` seconds. Errors are logged and retried; they never kill the loop."""

    def __init__(
        self,
        name: str,
        step: Callable[[], int],
        *,
        stop: threading.Event,
        notifier: Notifier | None = None,
        topic: str | None = None,
        interval: float = 1.0,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.step = step
        self.stop_event = stop
        self.notifier = notifier
        self.topic = topic
        self.interval = interval

    def run(self) -> None:
        seen = -1
        while not self.stop_event.is_set():
            if self.notifier is not None and self.topic is not None:
                seen = self.notifier.version(self.topic)
            try:
                worked = self.step()
            except Exception:
                log.exception("worker step failed", worker=self.name)
                worked = 0
                self.stop_event.wait(1.0)
            if worked:
                continue
            if self.notifier is not None and self.topic is not None:
                self.notifier.wait(self.topic, seen, self.interval)
            else:
                self.stop_event.wait(self.interval)


def outbox_threads(
    runtime_stop: threading.Event, notifier: Notifier, consumers: Sequence[OutboxConsumer]
) -> list[WorkerThread]:
    """The embedded transport: one thread per consumer, woken after each commit."""
    return [
        WorkerThread(
            f"consume-{c.topic.value}",
            c.run_once,
            stop=runtime_stop,
            notifier=notifier,
            topic=c.topic.value,
            interval=1.0,
        )
        for c in consumers
    ]
