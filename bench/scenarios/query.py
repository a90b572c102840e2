"""Value, series (months) and breakdown over one year of cases loaded through the
product's own ingest (HTTP Bundles, ``bench.year``), p50/p99 per query kind."""

from __future__ import annotations

import itertools
import time

from bench import year
from bench.context import Context
from bench.server import Database, Load, Server, client, post_all
from bench.stats import Results, percentile

CODES = year.CODES
YEAR = "from=2025-01-01&to=2025-12-31"
#: Requests generated and posted at a time, so a million cases never sit in memory.
CHUNK = 2000


def run(ctx: Context) -> Results:
    results = Results("query")
    episodes = ctx.shared.get("cases") or ctx.size(2000, 1_000_000)
    per_kind = ctx.size(30, 200)
    with Database("sqlite", ctx.pg_admin_url) as db, Server(db.url) as server:
        load = Load()
        requests = year.requests(episodes)
        key = server.key("H0001", "admin")
        while chunk := list(itertools.islice(requests, CHUNK)):
            part = post_all(server.url, key, chunk, clients=ctx.clients)
            if part.failed:
                raise RuntimeError(f"query load: {part.errors[:3]}")
            load.requests += part.requests
            load.resources += part.resources
            load.seconds += part.seconds
        n_resources = load.resources
        with client(server.url, server.key("H0001")) as http:
            # Wait until the indicator consumer has caught up with the load: every
            # episode arrived in the year and none is excluded, so each is a case.
            caught_up = time.perf_counter()
            settle_deadline = caught_up + 600 + episodes / 100
            value_path = f"/api/v1/indicators/{CODES[0]}/value?{YEAR}"
            while http.get(value_path).json()["denominator"] < episodes:
                if time.perf_counter() > settle_deadline:
                    raise RuntimeError(f"query: indicators still behind: {http.get(value_path)}")
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
        f"one year: {episodes} inpatient episodes, {n_resources} resources loaded over HTTP in "
        f"{load.seconds:.1f} s ({n_resources / load.seconds:.0f} res/s), indicators settled "
        f"{settled:.1f} s later; denominators over the year {denominators}; "
        f"{per_kind} sequential queries per kind per run over {', '.join(CODES)}"
    )
    return results
