"""In-process replay, for profiling ingest without HTTP:
``python -m bench.replay [--episodes 200 --days 3 --seed 3] [--url URL] [--bundle-size N]
[--resend] [--pipeline] [--profile] [--statements]``.

Replays the synthetic feed through ``IngestUnit`` + ``process_bundle`` inside
``runtime.write_tx``, one transaction per Bundle, as ``POST /fhir`` does, without the
HTTP edge and without the indicator workers. ``--resend`` replays it twice and measures
the second pass (identical re-sends); ``--pipeline`` also drains the indicator worker
after every Bundle, as a single-process server does, so the profile includes the
re-evaluation of the touched episodes; ``--profile`` prints a cProfile summary.
``--bundle-size N`` re-packs the feed's entries into Bundles of N, as the ``ingest``
scenario's unique stream does; ``--statements`` counts the SQL statements the measured
pass sends (an ``executemany`` counts once), per Bundle and by kind and table.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import sqlalchemy as sa

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
    parser.add_argument("--bundle-size", type=int, help="re-pack into Bundles of N entries")
    parser.add_argument("--statements", action="store_true", help="count SQL statements")
    args = parser.parse_args()
    url = args.url or f"sqlite:///{tempfile.mkdtemp(prefix='qcpulse-replay-')}/replay.db"
    runtime = Runtime.from_settings(
        Settings(database_url=url, bootstrap_tenant="H0001", bootstrap_admin_key="replay-admin-key")
    )
    prepare(runtime)
    feed = data.sends(args.episodes, args.days, seed=args.seed)
    bundles: list[dict[str, Any]]
    if args.bundle_size:
        bundles = [orjson.loads(r[2]) for r in data.unique_stream(feed, args.bundle_size)]
    else:
        bundles = [s.bundle for s in feed]
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
    counting = count_statements(runtime.engine) if args.statements else nullcontext(Counter())
    with counting as statements:
        replay()
    if profile:
        profile.disable()
    seconds = time.perf_counter() - started
    print(
        f"{len(bundles)} bundles, {resources} resources in {seconds:.2f} s: "
        f"{resources / seconds:.0f} resources/s, {len(bundles) / seconds:.0f} bundles/s"
    )
    if statements:
        total = statements.total()
        print(f"{total} statements, {total / len(bundles):.1f} per Bundle:")
        for kind, n in statements.most_common():
            print(f"  {n / len(bundles):6.2f}  {kind}")
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
    runtime.close()
    return 0


@contextmanager
def count_statements(engine: sa.Engine) -> Iterator[Counter[str]]:
    """Statements sent while the block runs, by verb and table (``INSERT outbox``); an
    ``executemany`` counts once."""
    seen: Counter[str] = Counter()

    def count(*args: Any) -> None:
        words = args[2].split()  # (conn, cursor, statement, parameters, context, many)
        verb = words[0].upper()
        after = {"INSERT": "INTO", "DELETE": "FROM", "SELECT": "FROM"}.get(verb)
        upper = [w.upper() for w in words]
        if verb == "UPDATE":
            table = words[1]
        elif after in upper:
            table = words[upper.index(after) + 1]
        else:
            table = ""
        seen[f"{verb} {table.strip(chr(34))}".strip()] += 1

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


if __name__ == "__main__":
    raise SystemExit(main())
