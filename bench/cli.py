"""``python -m bench [scenario …] [--quick] [--json out.json]``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from bench import machine, server
from bench.context import Context
from bench.stats import Results

SCENARIOS = ("ingest", "bulk", "peer", "latency", "alerts", "query", "memory", "hl7")
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def print_table(all_results: list[Results], out: Any = sys.stdout) -> None:
    rows = [("scenario", "figure", "median", "min", "max", "unit")]
    for res in all_results:
        for fig in res.figures.values():
            j = fig.to_json()
            rows.append(
                (
                    res.scenario,
                    fig.name,
                    _fmt(j["median"]),
                    _fmt(j["min"]),
                    _fmt(j["max"]),
                    fig.unit,
                )
            )
        for why in res.skipped:
            rows.append((res.scenario, why, "", "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for n, row in enumerate(rows):
        print(
            "  ".join(
                cell.rjust(w) if 2 <= i <= 4 else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ),
            file=out,
        )
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)
    for res in all_results:
        for note in res.notes:
            print(f"{res.scenario}: {note}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument("--json", dest="json_out", help="write the results as JSON here")
    parser.add_argument("--repeats", type=int, help="runs per figure (default 3, quick 2)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--pg", default=PG_ADMIN_URL, help="PostgreSQL admin URL for scratch DBs")
    parser.add_argument(
        "--db", action="append", choices=["sqlite", "postgresql"], help="databases (default both)"
    )
    parser.add_argument(
        "--cases",
        type=int,
        help="query: episodes loaded over one year (default quick 300, full 1000000)",
    )
    parser.add_argument(
        "--memory-resources", type=int, help="memory: resources ingested (quick 3000, full 1000000)"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="record every server with py-spy into DIR (summary: python -m bench.profile DIR)",
    )
    args = parser.parse_args(argv)
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        server.PROFILE_DIR = args.profile
    chosen = args.scenarios or list(SCENARIOS)
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    ctx = Context(
        quick=args.quick,
        repeats=args.repeats or (2 if args.quick else 3),
        clients=args.clients,
        pg_admin_url=args.pg,
        databases=args.db or ["sqlite", "postgresql"],
    )
    ctx.shared["cases"] = args.cases
    ctx.shared["memory_resources"] = args.memory_resources
    started = time.perf_counter()
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(),
        "quick": args.quick,
        "repeats": ctx.repeats,
        "clients": ctx.clients,
        "machine": machine.describe(args.pg),
        "scenarios": {},
    }
    all_results: list[Results] = []
    failed = False
    for name in SCENARIOS:
        if name not in chosen:
            continue
        print(f"bench: {name} …", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        module = importlib.import_module(f"bench.scenarios.{name}")
        try:
            results: Results = module.run(ctx)
        except Exception:
            traceback.print_exc()
            results = Results(name)
            results.skipped.append(
                "error: " + traceback.format_exc(limit=1).strip().splitlines()[-1]
            )
            failed = True
        results.notes.append(f"took {time.perf_counter() - t0:.1f} s")
        all_results.append(results)
        report["scenarios"][name] = {
            "figures": [f.to_json() for f in results.figures.values()],
            "skipped": results.skipped,
            "notes": results.notes,
        }
    report["seconds"] = time.perf_counter() - started
    print_table(all_results)
    print(f"bench: {report['seconds']:.1f} s in all", file=sys.stderr)
    if args.json_out:
        with open(args.json_out, "wb") as f:
            f.write(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return 1 if failed else 0
