"""The alert consumer over the distributed transport (NATS JetStream on 127.0.0.1:4222):
the same handler, the same effects as in-process."""

import asyncio
import time
from datetime import timedelta

import sqlalchemy as sa

import services.alerts as alerts
from services.alerts.models import Alert
from shared.bus import Topic, emit
from shared.nats_bus import NatsBridge
from tests.conftest import TENANT
from tests.distributed.test_nats_bridge import _delete_streams


def test_cases_changed_through_nats_raises_the_alert(runtime, clock):
    deadline = clock.now() - timedelta(minutes=5)
    change = {
        "indicator": "PIT-2026-31",
        "encounter_id": "e1",
        "key": "Observation/o1",
        "old_status": "pending",
        "status": "denominator",
        "department": "radiology",
        "period_date": "2026-03-02",
        "clock_start": (deadline - timedelta(minutes=10)).isoformat(),
        "clock_stop": (deadline + timedelta(minutes=2)).isoformat(),  # late: a breach now
        "deadline": deadline.isoformat(),
        "at_risk_at": None,
    }
    prefix = f"QCA{time.monotonic_ns() % 10**8}"
    runtime.stop.clear()
    bridge = NatsBridge(
        runtime, alerts.handlers(runtime), prefix=prefix, durable_prefix=prefix.lower()
    )
    bridge.start()
    try:
        assert bridge.ready.wait(10), "could not connect to NATS at 127.0.0.1:4222"
        with runtime.write() as session:
            emit(
                session,
                TENANT,
                Topic.CASES_CHANGED,
                TENANT,
                {"at": clock.now().isoformat(), "changes": [change]},
            )
        kinds: list[str] = []
        for _ in range(200):
            with runtime.read() as session:
                kinds = list(session.scalars(sa.select(Alert.kind)).all())
            if kinds:
                break
            time.sleep(0.05)
        assert kinds == ["case.breached"]
    finally:
        runtime.stop.set()
        bridge.join(timeout=10)
        asyncio.run(_delete_streams(runtime.settings.nats_url, prefix))
