"""HTTP transaction Bundles from concurrent clients against ``qcpulse serve``, on each
database, for a stream of unique resources and an integration engine's whole-episode
re-sends, beside two single-process ceilings: validation alone and JSON parsing alone."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import orjson

from bench import data
from bench.context import Context
from bench.server import Cluster, Database, Request, Server, post_all
from bench.stats import Results, percentile


def validation_ceiling(requests: list[Request]) -> float:
    """Resources per second that fhir.resources (R4B) validates in one process."""
    from services.ingest.validation import validate_resource

    resources = data.resources_of(requests)
    for resource in resources:  # model classes are built on first use
        validate_resource(resource)
    started = time.perf_counter()
    for resource in resources:
        validate_resource(resource)
    return len(resources) / (time.perf_counter() - started)


def parse_ceiling(requests: list[Request]) -> float:
    """Resources per second orjson parses (the request bodies) in one process."""
    started = time.perf_counter()
    for _, _, body, _ in requests:
        orjson.loads(body)
    return sum(r[3] for r in requests) / (time.perf_counter() - started)


def _runs(
    ctx: Context,
    results: Results,
    kind: str,
    server: Server | Cluster,
    streams: dict[str, list[Request]],
    validation: float,
) -> None:
    """Every stream ``ctx.repeats`` times, each run into a fresh tenant."""
    urls = server.urls if isinstance(server, Cluster) else server.url
    for rep in range(ctx.repeats):
        for name, requests in streams.items():
            # Each deployment its own tenants: the feed PUTs fixed ids, so a second
            # deployment posting into the first one's tenants would only re-send.
            tag = "C" if isinstance(server, Cluster) else "S"
            tenant = f"I{tag}{rep}{name.replace('/', '')}"
            key = server.key(tenant, "ingest")
            load = post_all(urls, key, requests, clients=ctx.clients, server=server)
            if load.failed:
                log = server.log_tail() if isinstance(server, Server) else ""
                raise RuntimeError(f"ingest {kind} {name}: {load.errors[:3]}\n{log}")
            rate = load.resources / load.seconds
            label = f"{kind} {name}"
            results.add(f"{label} resources/s", "res/s", rate)
            results.add(f"{label} bundles/s", "req/s", load.requests / load.seconds)
            results.add(f"{label} p50", "ms", 1000 * percentile(load.latencies, 50))
            results.add(f"{label} p99", "ms", 1000 * percentile(load.latencies, 99))
            results.add(f"{label} server CPU", "% of a core", 100 * load.cpu_seconds / load.seconds)
            results.add(f"{label} ÷ validation ceiling", "ratio", rate / validation)
            parse = results.figures[f"parse ceiling {name}"].median
            results.add(f"{label} ÷ parse ceiling", "ratio", rate / parse)
            ctx.shared.setdefault(f"max {kind} {name}", []).append(rate)


def run(ctx: Context) -> Results:
    results = Results("ingest")
    feed = data.sends(ctx.size(10, 150), ctx.size(1, 3), seed=11)
    streams: dict[str, list[Request]] = {
        "unique/10": data.unique_stream(feed, 10),
        "unique/50": data.unique_stream(feed, 50),
        "resend": data.resend_stream(feed),
    }
    for _ in range(ctx.repeats):
        results.add("validation ceiling", "res/s", validation_ceiling(streams["unique/10"]))
        for name, requests in streams.items():
            results.add(f"parse ceiling {name}", "res/s", parse_ceiling(requests))
    validation = results.figures["validation ceiling"].median
    for kind in ctx.databases:
        try:
            db = Database(kind, ctx.pg_admin_url).__enter__()
        except Exception as exc:
            results.skip(f"{kind}: cannot create a scratch database ({exc})")
            continue
        try:
            # Both also run as ``serve --workers 2`` (two API processes, one of them
            # running the background work); PostgreSQL also as the distributed mode.
            deployments: list[tuple[str, Callable[[], Server | Cluster]]] = [
                (kind, partial(Server, db.url)),
                (f"{kind} --workers 2", partial(Server, db.url, workers=2)),
            ]
            if kind == "postgresql":
                deployments.append((f"{kind} ×2", partial(Cluster, db.url, ingest_processes=2)))
            for label_db, deploy in deployments:
                try:
                    deployment = deploy().__enter__()
                except Exception as exc:
                    results.skip(f"{label_db}: cannot start ({exc})")
                    continue
                try:
                    _runs(ctx, results, label_db, deployment, streams, validation)
                finally:
                    deployment.__exit__()
        finally:
            db.__exit__()
    n_unique = sum(r[3] for r in streams["unique/10"])
    n_resend = sum(r[3] for r in streams["resend"])
    results.notes.append(
        f"{len(feed)} synthetic sends; unique stream {n_unique} resources, re-send stream "
        f"{n_resend} resources ({len(streams['resend'])} bundles); {ctx.clients} clients; "
        "each run posts into a fresh tenant of the same server; --workers 2: two API "
        "processes, their CPU summed; PostgreSQL ×2 is the "
        "distributed mode: 2 ingest processes (clients spread over them), an indicators "
        "and an alerts process, events through NATS JetStream; its server CPU sums all four"
    )
    return results
