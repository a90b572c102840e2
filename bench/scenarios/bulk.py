"""``POST /fhir/$import`` of an ndjson backfill against ``qcpulse serve``, on each
database, beside the same run's one-core validation ceiling (the ingest scenario's).

The body holds the synthetic feed's resources, one per line, in the order the feed
sent them (a resource sent twice is two lines: the second is an update). The clock
runs from the request until the status URL answers ``200``: the body stored, every
line validated, applied, mapped and its events in the outbox, as a backfill's user
waits for it. The indicator workers then decide the cases in the background, as they
do for any ingest; that time is measured after it (``… until indicators drained``)."""

from __future__ import annotations

import gzip
import time

import httpx
import orjson
import sqlalchemy as sa

from bench import data
from bench.context import Context
from bench.scenarios.ingest import validation_ceiling
from bench.server import Database, Server
from bench.stats import Results
from shared.db import create_engine_for

#: Seconds a backfill may take before the run is called failed.
TIMEOUT = 3600.0


def _ndjson(feed_resources: list[dict[str, object]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in feed_resources)


def _import(server: Server, key: str, body: bytes) -> tuple[float, dict[str, object]]:
    """Seconds from ``POST /fhir/$import`` to its status answering ``200``, and that
    status."""
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/fhir+ndjson",
        "Content-Encoding": "gzip",
    }
    with httpx.Client(base_url=server.url, timeout=300) as http:
        started = time.perf_counter()
        r = http.post("/fhir/$import", content=gzip.compress(body, 1), headers=headers)
        if r.status_code != 202:
            raise RuntimeError(f"$import answered {r.status_code}: {r.text[:500]}")
        status_url = r.headers["Content-Location"]
        deadline = started + TIMEOUT
        while time.perf_counter() < deadline:
            s = http.get(status_url, headers={"Authorization": f"Bearer {key}"})
            if s.status_code == 200:
                return time.perf_counter() - started, s.json()
            if s.status_code != 202:
                raise RuntimeError(f"$import status answered {s.status_code}: {s.text[:500]}")
            time.sleep(0.05)
    raise RuntimeError(f"$import did not finish in {TIMEOUT} s")


def _drained(database_url: str, deadline: float) -> None:
    """Wait until every outbox event has been processed (the cases decided)."""
    engine = create_engine_for(database_url)
    try:
        while time.perf_counter() < deadline:
            with engine.connect() as conn:
                left = conn.scalar(
                    sa.text("SELECT count(*) FROM outbox WHERE processed_at IS NULL")
                )
            if not left:
                return
            time.sleep(0.1)
    finally:
        engine.dispose()
    raise RuntimeError("the indicator consumer did not drain")


def run(ctx: Context) -> Results:
    results = Results("bulk")
    feed = data.sends(ctx.size(20, 400), ctx.size(2, 30), seed=13)
    requests = data.unique_stream(feed, 50)
    resources = data.resources_of(requests)
    body = _ndjson(resources)
    for _ in range(ctx.repeats):
        results.add("validation ceiling", "res/s", validation_ceiling(requests))
    validation = results.figures["validation ceiling"].median
    for kind in ctx.databases:
        try:
            db = Database(kind, ctx.pg_admin_url).__enter__()
        except Exception as exc:
            results.skip(f"{kind}: cannot create a scratch database ({exc})")
            continue
        try:
            with Server(db.url) as server:
                for rep in range(ctx.repeats):
                    key = server.key(f"B{rep}", "ingest")
                    cpu0 = server.cpu_seconds()
                    seconds, status = _import(server, key, body)
                    cpu = server.cpu_seconds() - cpu0
                    done = int(status["applied"]) + int(status["unchanged"])  # type: ignore[call-overload]
                    if status["failed"] or done != len(resources):
                        raise RuntimeError(f"bulk {kind}: {str(status)[:500]}")
                    rate = len(resources) / seconds
                    results.add(f"{kind} $import resources/s", "res/s", rate)
                    results.add(f"{kind} $import server CPU", "% of a core", 100 * cpu / seconds)
                    results.add(f"{kind} $import ÷ validation ceiling", "ratio", rate / validation)
                    started = time.perf_counter()
                    _drained(db.url, started + TIMEOUT)
                    total = seconds + time.perf_counter() - started
                    results.add(
                        f"{kind} $import until indicators drained resources/s",
                        "res/s",
                        len(resources) / total,
                    )
        finally:
            db.__exit__()
    results.notes.append(
        f"{len(resources)} lines ({len(body) // 1024} KiB of ndjson, sent gzipped) "
        f"from {len(feed)} synthetic sends, some lines re-sending identical content; "
        "each run into a fresh tenant of one `qcpulse serve` (one process: the import "
        "runs in its background work)"
    )
    return results
