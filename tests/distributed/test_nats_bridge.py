"""The distributed transport against the real NATS JetStream on 127.0.0.1:4222."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import nats
import orjson
import pytest
import sqlalchemy as sa

from shared.bus import Topic, emit
from shared.models import OutboxEvent
from shared.nats_bus import NatsBridge, subject
from tests.conftest import TENANT


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def prefix():
    return f"QCT{uuid.uuid4().hex[:8].upper()}"


async def _delete_streams(url: str, prefix: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    for topic in Topic:
        with contextlib.suppress(Exception):
            await js.delete_stream(f"{prefix}_{topic.value.replace('.', '_').upper()}")
    await nc.close()


@pytest.fixture
def bridge_factory(runtime, prefix):
    bridges: list[NatsBridge] = []

    def make(handlers, relay=True):
        runtime.stop.clear()
        bridge = NatsBridge(
            runtime, handlers, relay=relay, prefix=prefix, durable_prefix=prefix.lower()
        )
        bridge.start()
        assert bridge.ready.wait(10), "could not connect to NATS at 127.0.0.1:4222"
        bridges.append(bridge)
        return bridge

    yield make
    runtime.stop.set()
    for bridge in bridges:
        bridge.join(timeout=10)
    asyncio.run(_delete_streams(runtime.settings.nats_url, prefix))


def _emit(runtime, n):
    with runtime.write() as session:
        for i in range(n):
            emit(session, TENANT, Topic.EPISODE_CHANGED, f"e{i}", {"encounter_id": f"e{i}"})


def test_outbox_rows_reach_the_consumer_once_each(runtime, bridge_factory):
    seen: list[str] = []
    bridge_factory({Topic.EPISODE_CHANGED: lambda s, events: seen.extend(e.key for e in events)})
    _emit(runtime, 25)
    assert wait_for(lambda: len(seen) >= 25)
    time.sleep(0.5)
    assert sorted(seen) == sorted(f"e{i}" for i in range(25))
    with runtime.read() as session:
        rows = session.scalars(sa.select(OutboxEvent)).all()
    assert all(r.published_at is not None and r.processed_at is not None for r in rows)


def test_a_redelivered_message_changes_nothing(runtime, bridge_factory, prefix):
    seen: list[str] = []
    bridge_factory({Topic.EPISODE_CHANGED: lambda s, events: seen.extend(e.key for e in events)})
    _emit(runtime, 1)
    assert wait_for(lambda: len(seen) == 1)
    with runtime.read() as session:
        row_id = session.scalar(sa.select(OutboxEvent.id))

    async def republish():
        nc = await nats.connect(runtime.settings.nats_url)
        js = nc.jetstream()
        # A different msg id gets past JetStream's dedup window: the consumer must cope.
        await js.publish(
            subject(prefix, Topic.EPISODE_CHANGED),
            orjson.dumps({"id": row_id, "tenant": TENANT, "key": "e0"}),
            headers={"Nats-Msg-Id": f"again-{row_id}"},
        )
        await nc.close()

    asyncio.run(republish())
    time.sleep(1.5)
    assert seen == ["e0"]


def test_rows_committed_while_no_consumer_runs_are_delivered_later(runtime, bridge_factory):
    _emit(runtime, 5)  # committed before any bridge exists: the outbox keeps them
    seen: list[str] = []
    bridge_factory({Topic.EPISODE_CHANGED: lambda s, events: seen.extend(e.key for e in events)})
    assert wait_for(lambda: len(seen) == 5)


def test_a_failing_batch_is_redelivered_and_the_bridge_survives(runtime, bridge_factory):
    seen: list[str] = []
    failures = {"left": 1}

    def flaky(session, events):
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("a bug in one batch")
        seen.extend(e.key for e in events)

    bridge = bridge_factory({Topic.EPISODE_CHANGED: flaky})
    _emit(runtime, 3)
    assert wait_for(lambda: len(seen) == 3, timeout=20)
    assert bridge.is_alive()
    _emit(runtime, 1)  # and it keeps consuming afterwards
    assert wait_for(lambda: len(seen) == 4)


async def _stream_names(url: str) -> set[str]:
    nc = await nats.connect(url)
    try:
        return {info.config.name for info in await nc.jetstream().streams_info()}
    finally:
        await nc.close()


def test_a_deployment_uses_its_own_prefix(runtime, prefix):
    """QCPULSE_NATS_PREFIX names the streams a served process creates, so two
    deployments on one NATS server never share (or de-duplicate) each other's events."""
    from qcpulse.app import start_workers
    from shared.runtime import Runtime

    settings = runtime.settings.model_copy(update={"bus": "nats", "nats_prefix": prefix})
    deployment = Runtime(settings=settings, engine=runtime.engine, clock=runtime.clock)
    threads = start_workers(deployment, "indicators")
    try:
        bridge = next(t for t in threads if isinstance(t, NatsBridge))
        assert bridge.ready.wait(10), "could not connect to NATS at 127.0.0.1:4222"
        names = asyncio.run(_stream_names(settings.nats_url))
        assert {f"{prefix}_EPISODE_CHANGED", f"{prefix}_CASES_CHANGED"} <= names
    finally:
        deployment.stop.set()
        for thread in threads:
            thread.join(timeout=10)
        asyncio.run(_delete_streams(settings.nats_url, prefix))
