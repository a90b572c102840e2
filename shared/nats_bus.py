"""The distributed transport: the outbox relayed through NATS JetStream.

Why keep the outbox when NATS is there: the outbox row commits with the data it
announces, so nothing is announced that did not commit, and nothing committed goes
unannounced if the process dies before publishing. The relay copies unpublished
rows to a stream per topic with ``Nats-Msg-Id`` = the row id (JetStream drops
duplicates within its window). Consumers are durable pull consumers; for each batch
they load the rows named by the messages and hand the unprocessed ones to the same
``handler(session, events)`` the embedded mode uses, marking them processed in the
same transaction, then ack. A message delivered twice finds its row processed and
changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence

import nats
import orjson
import sqlalchemy as sa
import structlog
from nats.js.api import ConsumerConfig, StreamConfig
from nats.js.errors import NotFoundError as StreamNotFound

from shared.bus import ANY_TOPIC, Handler, OutboxConsumer, Topic
from shared.clock import utcnow
from shared.db import is_postgres, transaction
from shared.models import OutboxEvent
from shared.runtime import Runtime

log = structlog.get_logger(__name__)


def stream_name(prefix: str, topic: Topic) -> str:
    return f"{prefix}_{topic.value.replace('.', '_').upper()}"


def subject(prefix: str, topic: Topic) -> str:
    return f"{prefix.lower()}.{topic.value}"


class NatsBridge(threading.Thread):
    """One thread with an asyncio loop: the relay, and consumers for the given topics."""

    def __init__(
        self,
        runtime: Runtime,
        handlers: dict[Topic, Handler],
        *,
        relay: bool = True,
        prefix: str = "QCPULSE",
        durable_prefix: str = "qcpulse",
        batch: int = 200,
    ) -> None:
        super().__init__(name="nats-bridge", daemon=True)
        self.runtime = runtime
        self.handlers = handlers
        self.relay_enabled = relay
        self.prefix = prefix
        self.durable_prefix = durable_prefix
        self.batch = batch
        self.ready = threading.Event()
        self.published = 0
        self.consumed = 0

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        nc = await nats.connect(
            self.runtime.settings.nats_url, name="qcpulse", max_reconnect_attempts=-1
        )
        try:
            js = nc.jetstream()
            for topic in Topic:
                await self._ensure_stream(js, topic)
            tasks = [asyncio.create_task(self._consume(js, t, h)) for t, h in self.handlers.items()]
            if self.relay_enabled:
                tasks.append(asyncio.create_task(self._relay(js)))
            self.ready.set()
            while not self.runtime.stop.is_set():
                await asyncio.sleep(0.1)
                for task in tasks:
                    if task.done() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            await nc.close()

    async def _ensure_stream(self, js: nats.js.JetStreamContext, topic: Topic) -> None:
        name = stream_name(self.prefix, topic)
        try:
            await js.stream_info(name)
        except StreamNotFound:
            await js.add_stream(
                StreamConfig(
                    name=name,
                    subjects=[subject(self.prefix, topic)],
                    duplicate_window=120.0,
                    max_age=7 * 24 * 3600.0,
                )
            )

    # -- relay ------------------------------------------------------------------

    def _claim_unpublished(self) -> list[tuple[int, str, str, str]]:
        with transaction(self.runtime.write_factory) as session:
            query = (
                sa.select(OutboxEvent.id, OutboxEvent.topic, OutboxEvent.tenant_id, OutboxEvent.key)
                .where(OutboxEvent.published_at.is_(None), OutboxEvent.processed_at.is_(None))
                .order_by(OutboxEvent.id)
                .limit(self.batch)
            )
            if is_postgres(session):
                query = query.with_for_update(skip_locked=True)
            return [(i, t, tn, k) for i, t, tn, k in session.execute(query)]

    def _mark_published(self, ids: Sequence[int]) -> None:
        with transaction(self.runtime.write_factory) as session:
            session.execute(
                sa.update(OutboxEvent)
                .where(OutboxEvent.id.in_(list(ids)))
                .values(published_at=utcnow())
            )

    async def _relay(self, js: nats.js.JetStreamContext) -> None:
        while True:
            try:
                await self._relay_once(js)
            except Exception:
                # Unpublished rows stay unpublished and are tried again: nothing is lost.
                log.exception("NATS relay failed; retrying")
                await asyncio.sleep(1.0)

    async def _relay_once(self, js: nats.js.JetStreamContext) -> None:
        rows = await asyncio.to_thread(self._claim_unpublished)
        if not rows:
            notifier = self.runtime.notifier
            await asyncio.to_thread(notifier.wait, ANY_TOPIC, notifier.version(ANY_TOPIC), 0.2)
            return
        for row_id, topic, tenant_id, key in rows:
            body = orjson.dumps({"id": row_id, "tenant": tenant_id, "key": key})
            await js.publish(
                subject(self.prefix, Topic(topic)), body, headers={"Nats-Msg-Id": str(row_id)}
            )
        await asyncio.to_thread(self._mark_published, [r[0] for r in rows])
        self.published += len(rows)

    # -- consumers --------------------------------------------------------------

    async def _consume(self, js: nats.js.JetStreamContext, topic: Topic, handler: Handler) -> None:
        durable = f"{self.durable_prefix}-{topic.value.replace('.', '-')}"
        sub = await js.pull_subscribe(
            subject(self.prefix, topic),
            durable=durable,
            stream=stream_name(self.prefix, topic),
            config=ConsumerConfig(ack_wait=60.0, max_ack_pending=10_000),
        )
        consumer = OutboxConsumer(topic, self.runtime.write_factory, handler)
        while True:
            try:
                msgs = await sub.fetch(self.batch, timeout=1.0)
            except TimeoutError:
                continue
            except nats.errors.TimeoutError:
                continue
            ids = sorted({int(orjson.loads(m.data)["id"]) for m in msgs})
            try:
                await asyncio.to_thread(self._handle, consumer, ids)
            except Exception:
                # Nothing was applied (the transaction rolled back): ask for redelivery
                # later instead of letting one bad batch stop the consumer for good.
                log.exception("NATS batch failed; redelivering later", topic=topic.value)
                for m in msgs:
                    await m.nak(delay=5.0)
                continue
            for m in msgs:
                await m.ack()
            self.consumed += len(msgs)

    def _handle(self, consumer: OutboxConsumer, ids: list[int]) -> None:
        def work(session: sa.orm.Session) -> None:
            query = sa.select(OutboxEvent).where(OutboxEvent.id.in_(ids)).order_by(OutboxEvent.id)
            if is_postgres(session):
                query = query.with_for_update()
            consumer.handle(session, session.scalars(query).all())

        self.runtime.write_tx(work)
