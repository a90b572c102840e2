"""The alert service's loops, each a thin wrapper over a function tests call directly.

* the ``cases.changed`` consumer: :func:`process` in the consumer's transaction, so
  the rule effects, the alerts, their queued deliveries and the processed mark commit
  together (an event is never applied twice, never lost);
* the clock timer: :func:`run_timer_once` every ``timer_interval`` (0.5 s) re-decides
  watched cases whose at-risk time or deadline came, from ``runtime.clock`` — so a
  deadline fires at most about a second late with no new data, and one that passed
  while the service was down fires on the first tick after start;
* the delivery loop: a :class:`~services.alerts.delivery.Dispatcher` woken when a
  delivery row commits or an attempt finishes, and at least every second.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from sqlalchemy.orm import Session

from services.alerts import repository, rules
from services.alerts.delivery import Dispatcher, deliver_due_once
from services.alerts.service import DELIVERIES_TOPIC, flush_digests
from shared.bus import Handler, OutboxConsumer, Topic, WorkerThread
from shared.metrics import EVENTS_PROCESSED
from shared.models import OutboxEvent
from shared.runtime import Runtime

__all__ = [
    "deliver_due_once",
    "drain",
    "handlers",
    "loops",
    "process",
    "run_timer_once",
    "start_workers",
]

#: The delivery loop polls this often for retries that came due (new rows wake it).
DELIVERY_POLL_SECONDS = 1.0


def process(session: Session, runtime: Runtime, events: Sequence[OutboxEvent]) -> None:
    """Handle a batch of ``cases.changed`` events in the caller's transaction."""
    rules.process(session, runtime, events)
    EVENTS_PROCESSED.labels(Topic.CASES_CHANGED.value).inc(len(events))


def handlers(runtime: Runtime) -> dict[Topic, Handler]:
    """The topics this service consumes, and how (for either transport)."""
    return {Topic.CASES_CHANGED: lambda session, events: process(session, runtime, events)}


def consumer(runtime: Runtime) -> OutboxConsumer:
    return OutboxConsumer(
        Topic.CASES_CHANGED, runtime.write_factory, handlers(runtime)[Topic.CASES_CHANGED]
    )


def run_timer_once(runtime: Runtime) -> int:
    """Fire the case alerts that the clock made due; returns how many cases it looked at."""
    now = runtime.clock.now()
    # Look before taking the write lock: on SQLite every write transaction queues
    # behind ingest, and this runs twice a second.
    with runtime.read() as session:
        cases = repository.has_due_watched_cases(session, now)
        digests = repository.has_due_digests(session, now)
    done = 0
    if cases:
        done += runtime.write_tx(lambda session: rules.decide_due(session, runtime, now))
    if digests:
        done += runtime.write_tx(
            lambda session: flush_digests(session, settings=runtime.settings, now=now)
        )
    return done


def drain(runtime: Runtime) -> int:
    """Consume every outstanding ``cases.changed`` event and run the timer (tests, CLI)."""
    total = consumer(runtime).drain()
    while n := run_timer_once(runtime):
        total += n
    return total


class _DeliveryLoop(WorkerThread):
    def __init__(self, runtime: Runtime) -> None:
        self.dispatcher = Dispatcher(runtime)
        super().__init__(
            "alerts-delivery",
            self.dispatcher.step,
            stop=runtime.stop,
            notifier=runtime.notifier,
            topic=DELIVERIES_TOPIC,
            interval=DELIVERY_POLL_SECONDS,
        )

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.dispatcher.close()


def loops(runtime: Runtime) -> list[threading.Thread]:
    """The loops driven by the clock and the queue (not by events): timer, delivery.
    Not started."""
    return [
        WorkerThread(
            "alerts-timer",
            lambda: run_timer_once(runtime),
            stop=runtime.stop,
            interval=runtime.settings.timer_interval.total_seconds(),
        ),
        _DeliveryLoop(runtime),
    ]


def start_workers(runtime: Runtime) -> list[threading.Thread]:
    """Start the consumer (over the in-process outbox), the timer and the delivery loop.
    ``qcpulse.app.start_workers`` wires :func:`handlers` and :func:`loops` instead, so
    that the consumer also runs over NATS in the distributed mode."""
    threads: list[threading.Thread] = [
        WorkerThread(
            "consume-cases.changed",
            consumer(runtime).run_once,
            stop=runtime.stop,
            notifier=runtime.notifier,
            topic=Topic.CASES_CHANGED.value,
            interval=1.0,
        ),
        *loops(runtime),
    ]
    for thread in threads:
        thread.start()
    return threads
