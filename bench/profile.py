"""Where a benchmark's server time went: ``python -m bench.profile DIR [FILE…]``.

Reads the py-spy recordings ``python -m bench --profile DIR`` made (collapsed stacks,
every thread, wall-clock samples) and splits each server's samples by phase — the
first phase whose code is on the stack — and, within each phase, the share spent in
the database driver (on PostgreSQL: waiting for the server).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

#: (phase, pattern on the stack); the first that matches names the sample.
PHASES: tuple[tuple[str, str], ...] = (
    ("webhook delivery", r"services/alerts/delivery"),
    ("alert rules", r"services/alerts"),
    ("indicator re-evaluation", r"services/indicators"),
    ("$import runner", r"services/ingest/bulk\.py"),
    ("authentication", r"shared/auth\.py"),
    ("read phase (precheck)", r"\bprecheck"),
    ("write phase", r"process_bundle|IngestUnit|write_tx"),
    ("outbox claim and mark", r"shared/bus\.py"),
    ("request body", r"read_json|services/ingest/router"),
    ("event loop idle", r"EpollSelector\.select"),
)
OTHER = "other (HTTP stack, thread hand-offs)"
_DRIVER = re.compile(
    r"psycopg|sqlite3|do_execute|do_commit|do_executemany|_on_begin|fetch(one|all)"
)
_COMPILED = [(name, re.compile(pattern)) for name, pattern in PHASES]


def phases(lines: Iterable[str]) -> tuple[Counter[str], Counter[str]]:
    """Samples per phase, and of them those whose innermost frames are the driver."""
    total: Counter[str] = Counter()
    driver: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        name = next((n for n, pattern in _COMPILED if pattern.search(stack)), OTHER)
        total[name] += int(count)
        if _DRIVER.search(";".join(stack.split(";")[-4:])):
            driver[name] += int(count)
    return total, driver


def report(paths: Sequence[Path], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    total: Counter[str] = Counter()
    driver: Counter[str] = Counter()
    for path in paths:
        with path.open() as f:
            t, d = phases(f)
        total.update(t)
        driver.update(d)
    samples = sum(total.values())
    print(f"{', '.join(p.name for p in paths)}: {samples} samples", file=out)
    print(f"  {'phase':38} {'share':>6}  in the driver", file=out)
    for name, n in total.most_common():
        print(f"  {name:38} {100 * n / samples:5.1f} %  {100 * driver[name] / n:5.0f} %", file=out)
    print(f"  {'all':38} {'':6}   {100 * sum(driver.values()) / samples:5.0f} %", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("paths", nargs="+", help="a --profile DIR, or recordings in it")
    parser.add_argument("--together", action="store_true", help="one table for all files")
    args = parser.parse_args(argv)
    files: list[Path] = []
    for raw in args.paths:
        path = Path(raw)
        files.extend(sorted(path.glob("*.txt")) if path.is_dir() else [path])
    if args.together:
        report(files)
    else:
        for path in files:
            report([path])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
