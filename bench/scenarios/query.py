"""Value, series (months) and breakdown over one year of data loaded through the
product's own ingest (HTTP Bundles), p50/p99 per query kind."""

from __future__ import annotations

import time

from bench import data
from bench.context import Context
from bench.server import Database, Server, client, post_all
from bench.stats import Results, percentile

CODES = ("NIT-2026-III-A", "PIT-2026-23", "NIT-2026-V")
YEAR = "from=2026-01-01&to=2026-12-31"


def run(ctx: Context) -> Results:
    results = Results("query")
    episodes = ctx.shared.get("cases") or ctx.size(150, 1_000_000)
    per_kind = ctx.size(30, 200)
    feed = data.sends(episodes, 365, seed=23)
    requests = data.unique_stream(feed, 50)
    n_resources = sum(r[3] for r in requests)
    with Database("sqlite", ctx.pg_admin_url) as db, Server(db.url) as server:
        load = post_all(server.url, server.key("H0001", "admin"), requests, clients=ctx.clients)
        if load.failed:
            raise RuntimeError(f"query load: {load.errors[:3]}")
        with client(server.url, server.key("H0001")) as http:
            # Wait until the indicator consumer has caught up with the load.
            caught_up = time.perf_counter()
            settle_deadline = caught_up + 600
            last = None
            while time.perf_counter() < settle_deadline:
                value = http.get(f"/api/v1/indicators/NIT-2026-V/value?{YEAR}").json()
                if value == last:
                    break
                last = value
                time.sleep(1.0)
            settled = time.perf_counter() - caught_up
            paths = {
                "value": "/api/v1/indicators/{code}/value?" + YEAR,
                "series": "/api/v1/indicators/{code}/series?granularity=month&" + YEAR,
                "breakdown": "/api/v1/indicators/{code}/breakdown?by=department&" + YEAR,
            }
            for _ in range(ctx.repeats):
                for kind, path in paths.items():
                    latencies = []
                    for i in range(per_kind):
                        url = path.format(code=CODES[i % len(CODES)])
                        t0 = time.perf_counter()
                        r = http.get(url)
                        latencies.append(time.perf_counter() - t0)
                        r.raise_for_status()
                    results.add(f"{kind} p50", "ms", 1000 * percentile(latencies, 50))
                    results.add(f"{kind} p99", "ms", 1000 * percentile(latencies, 99))
            denominators = {
                code: http.get(f"/api/v1/indicators/{code}/value?{YEAR}").json()["denominator"]
                for code in CODES
            }
    results.add("load", "s", load.seconds)
    results.notes.append(
        f"one year: {episodes} episodes, {n_resources} resources loaded over HTTP in "
        f"{load.seconds:.1f} s ({n_resources / load.seconds:.0f} res/s), indicators settled "
        f"{settled:.1f} s later; denominators over the year {denominators}; "
        f"{per_kind} sequential queries per kind per run over {', '.join(CODES)}"
    )
    return results
