"""Peak RSS of the server process while it ingests (SQLite, bundles of 50)."""

from __future__ import annotations

from bench import data
from bench.context import Context
from bench.server import Database, Server, post_all, rss_sampler
from bench.stats import Results


def run(ctx: Context) -> Results:
    results = Results("memory")
    target = ctx.shared.get("memory_resources") or ctx.size(2000, 1_000_000)
    # A synthetic episode over a year yields about 34 unique resources.
    feed = data.sends(max(20, target // 30), 365, seed=19)
    requests = data.unique_stream(feed, 50)
    total = 0
    chosen = []
    for request in requests:
        if total >= target:
            break
        chosen.append(request)
        total += request[3]
    for _ in range(ctx.repeats if ctx.quick else 1):
        with Database("sqlite", ctx.pg_admin_url) as db, Server(db.url) as server:
            idle = server.rss()
            with rss_sampler(server) as rss:
                load = post_all(server.url, server.key("M", "ingest"), chosen, clients=ctx.clients)
            if load.failed:
                raise RuntimeError(f"memory: {load.errors[:3]}")
            results.add("RSS at start", "MB", idle / 2**20)
            results.add("peak RSS while ingesting", "MB", rss["peak"] / 2**20)
            results.add("ingest rate", "res/s", load.resources / load.seconds)
    results.notes.append(f"{total} resources in {len(chosen)} bundles of 50")
    return results
