"""In-process replay, for profiling ingest without HTTP:
``python -m bench.replay [--episodes 200 --days 3 --seed 3] [--url URL] [--resend] [--profile]``.

Replays the synthetic feed through ``IngestUnit`` + ``process_bundle`` inside
``runtime.write_tx``, one transaction per Bundle, as ``POST /fhir`` does, without the
HTTP edge and without the indicator workers. ``--resend`` replays it twice and measures
the second pass (identical re-sends); ``--pipeline`` also drains the indicator worker
after every Bundle, as a single-process server does, so the profile includes the
re-evaluation of the touched episodes; ``--profile`` prints a cProfile summary.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bench import data
from qcpulse.app import prepare
from services.indicators.worker import drain
from services.ingest.bundles import process_bundle
from services.ingest.service import IngestUnit
from shared.runtime import Runtime
from shared.settings import Settings


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--days", type=float, default=3)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--resend", action="store_true")
    parser.add_argument("--pipeline", action="store_true", help="drain the indicator worker too")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    url = args.url or f"sqlite:///{tempfile.mkdtemp(prefix='qcpulse-replay-')}/replay.db"
    runtime = Runtime.from_settings(
        Settings(database_url=url, bootstrap_tenant="H0001", bootstrap_admin_key="replay-admin-key")
    )
    prepare(runtime)
    bundles = [s.bundle for s in data.sends(args.episodes, args.days, seed=args.seed)]
    resources = sum(len(b.get("entry") or ()) for b in bundles)
    tz = ZoneInfo("Asia/Shanghai")

    def replay() -> None:
        for bundle in bundles:
            runtime.write_tx(
                lambda session, b=bundle: process_bundle(
                    IngestUnit(session, "H0001", tz, datetime.now(UTC)), b, max_entries=5000
                )
            )
            if args.pipeline:
                drain(runtime)

    if args.resend:
        replay()
    profile = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profile:
        profile.enable()
    replay()
    if profile:
        profile.disable()
    seconds = time.perf_counter() - started
    print(
        f"{len(bundles)} bundles, {resources} resources in {seconds:.2f} s: "
        f"{resources / seconds:.0f} resources/s, {len(bundles) / seconds:.0f} bundles/s"
    )
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
    runtime.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
