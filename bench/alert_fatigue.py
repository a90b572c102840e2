"""Alert fatigue in ``qcpulse demo``: how many ``case.breached`` alerts are later
followed by ``case.resolved`` for the same case (documentation already on its way
arrived just after the page), with no grace after the deadline and with the default.

Runs the demo's generator (same hospital size, seed, 8-hour backlog) in-process on a
hand-moved clock: each send is ingested at its own simulated time, and the indicator
and alert workers (consumers and timers) run after every send and every simulated
minute. Nothing is delivered; the alerts table is counted.

    .venv/bin/python -m bench.alert_fatigue [--hours 24] [--size medium] [--seed 2026]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr

import services.alerts.worker as alert_worker
import services.indicators.worker as indicator_worker
from qcpulse.app import create_app, prepare
from qcpulse.synth import HospitalConfig, generate
from services.alerts.models import Alert
from shared.auth import Role, create_key
from shared.clock import FrozenClock
from shared.logging import configure_logging
from shared.runtime import Runtime
from shared.settings import Settings

TENANT = "H0001"
TICK = timedelta(minutes=1)


def run(grace: timedelta, *, hours: float, size: str, seed: int, backfill: float) -> dict[str, int]:
    db = Path(tempfile.mkdtemp(prefix="qcpulse-fatigue-")) / "qcpulse.db"
    settings = Settings(
        database_url=f"sqlite:///{db}",
        bootstrap_tenant=TENANT,
        bootstrap_admin_key=SecretStr("fatigue-admin-key-0123456789"),
        alert_grace=grace,
        insecure_dev_key=True,
    )
    shanghai = ZoneInfo("Asia/Shanghai")
    today = datetime.now(shanghai).date()
    now = datetime.combine(today, time(14), tzinfo=shanghai)  # the demo starts at 14:00
    clock = FrozenClock(now)
    runtime = Runtime.from_settings(settings, clock=clock)
    prepare(runtime)
    with runtime.write() as session:
        _, ingest_key = create_key(session, TENANT, Role.INGEST, name="fatigue")
    app = create_app(runtime=runtime, run_workers=False)
    headers = {"Authorization": f"Bearer {ingest_key}"}

    def work() -> None:
        indicator_worker.drain(runtime)
        alert_worker.drain(runtime)

    config = HospitalConfig.from_size(size, tenant=TENANT)  # type: ignore[arg-type]
    end = now + timedelta(hours=hours)
    sends = generate(config, start=now - timedelta(hours=backfill), days=365, seed=seed)
    with TestClient(app) as client:
        for send in sends:
            if send.at > end:
                break
            if send.at > clock.now():
                while clock.now() + TICK < send.at:  # the timers' minutes in between
                    clock.set(clock.now() + TICK)
                    work()
                clock.set(send.at)
            r = client.post("/fhir", json=send.bundle, headers=headers)
            if r.status_code >= 500:
                raise RuntimeError(r.text)
            work()
        while clock.now() < end + timedelta(hours=2):  # let late documentation land
            clock.set(clock.now() + TICK)
            work()
    with runtime.read() as session:
        rows = session.execute(
            sa.select(Alert.kind, Alert.indicator, Alert.encounter_id, Alert.case_key).order_by(
                Alert.created_at, Alert.id
            )
        ).all()
    runtime.close()
    resolved = {(i, e, k) for kind, i, e, k in rows if kind == "case.resolved"}
    breached = [(i, e, k) for kind, i, e, k in rows if kind == "case.breached"]
    first = breached[:13]
    return {
        "breached": len(breached),
        "breached_then_resolved": sum(b in resolved for b in breached),
        "first_13_then_resolved": sum(b in resolved for b in first),
        "first_13": len(first),
        "at_risk": sum(kind == "case.at_risk" for kind, *_ in rows),
        "resolved": len(resolved),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.alert_fatigue", description=__doc__)
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours after start")
    parser.add_argument("--size", default="medium", help="hospital size (as qcpulse demo)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--backfill-hours", type=float, default=8.0)
    parser.add_argument("--grace", type=float, help="the 'after' grace in minutes (default 5)")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.WARNING)
    configure_logging("WARNING")
    after = Settings().alert_grace if args.grace is None else timedelta(minutes=args.grace)
    for label, grace in (("before (grace 0)", timedelta(0)), (f"after (grace {after})", after)):
        got = run(
            grace, hours=args.hours, size=args.size, seed=args.seed, backfill=args.backfill_hours
        )
        share = got["breached_then_resolved"] / got["breached"] if got["breached"] else 0.0
        print(
            f"{label}: {got['breached_then_resolved']} of {got['breached']} case.breached "
            f"followed by case.resolved ({share:.0%}); first 13: "
            f"{got['first_13_then_resolved']} of {got['first_13']}; "
            f"at_risk {got['at_risk']}, resolved {got['resolved']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
