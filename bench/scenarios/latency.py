"""From a POST's response to the indicator value reflecting it, while background
ingest runs at about half the maximum rate measured (SQLite, the embedded mode)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import orjson

from bench import data
from bench.context import Context
from bench.server import Database, Server, client, post_all
from bench.stats import Results, percentile

DAY = "2026-03-02"


def stemi_bundle(n: int) -> bytes:
    """A STEMI visit (arrival 10:00, PCI 11:10 local) with ids unique to ``n``."""
    pid, eid = f"lat-p{n}", f"lat-e{n}"

    def entry(resource: dict[str, Any]) -> dict[str, Any]:
        return {
            "resource": resource,
            "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
        }

    subject = {"reference": f"Patient/{pid}"}
    encounter = {"reference": f"Encounter/{eid}"}
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                entry(
                    {
                        "resourceType": "Patient",
                        "id": pid,
                        "gender": "male",
                        "birthDate": "1961-04-12",
                    }
                ),
                entry(
                    {
                        "resourceType": "Encounter",
                        "id": eid,
                        "status": "in-progress",
                        "class": {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                            "code": "EMER",
                        },
                        "subject": subject,
                        "period": {"start": f"{DAY}T10:00:00+08:00"},
                        "serviceProvider": {"reference": "Organization/emergency"},
                    }
                ),
                entry(
                    {
                        "resourceType": "Condition",
                        "id": f"lat-c{n}",
                        "code": {
                            "coding": [
                                {"system": "urn:oid:2.16.156.10011.2.3.3.11", "code": "I21.000x001"}
                            ]
                        },
                        "subject": subject,
                        "encounter": encounter,
                        "recordedDate": f"{DAY}T10:05:00+08:00",
                    }
                ),
                entry(
                    {
                        "resourceType": "Procedure",
                        "id": f"lat-pr{n}",
                        "status": "completed",
                        "code": {
                            "coding": [
                                {"system": "urn:oid:2.16.156.10011.2.3.3.12", "code": "00.6600"}
                            ]
                        },
                        "subject": subject,
                        "encounter": encounter,
                        "performedPeriod": {
                            "start": f"{DAY}T11:10:00+08:00",
                            "end": f"{DAY}T11:55:00+08:00",
                        },
                    }
                ),
            ],
        }
    )


def denominator(http: httpx.Client) -> int:
    r = http.get(f"/api/v1/indicators/PIT-2026-23/value?from={DAY}&to={DAY}")
    r.raise_for_status()
    return int(r.json()["denominator"])


def run(ctx: Context) -> Results:
    results = Results("latency")
    samples = ctx.size(30, 300)
    feed = data.sends(ctx.size(40, 400), ctx.size(2, 10), seed=17)
    background = data.unique_stream(feed, 10)
    with Database("sqlite", ctx.pg_admin_url) as db, Server(db.url) as server:
        measured = ctx.shared.get("max sqlite unique/10")
        if measured:
            max_rate = sorted(measured)[len(measured) // 2]
            source = "the ingest scenario"
        else:
            probe = post_all(
                server.url, server.key("LPROBE", "ingest"), background[:40], clients=ctx.clients
            )
            max_rate = probe.resources / probe.seconds
            source = "a short probe"
        bundle_rate = max_rate / 2 / 10
        for rep in range(ctx.repeats):
            stop = threading.Event()
            bg = threading.Thread(
                target=post_all,
                args=(server.url, server.key(f"LBG{rep}", "ingest"), background),
                kwargs={"clients": ctx.clients, "rate": bundle_rate, "stop": stop},
                daemon=True,
            )
            bg.start()
            latencies: list[float] = []
            with client(server.url, server.key("H0001")) as http:
                seen = denominator(http)
                for i in range(samples):
                    r = http.post("/fhir", content=stemi_bundle(rep * samples + i))
                    r.raise_for_status()
                    posted = time.perf_counter()
                    deadline = posted + 30
                    while denominator(http) <= seen:
                        if time.perf_counter() > deadline:
                            raise RuntimeError("the indicator did not move within 30 s")
                    latencies.append(time.perf_counter() - posted)
                    seen += 1
            stop.set()
            bg.join()
            results.add("event→indicator p50", "ms", 1000 * percentile(latencies, 50))
            results.add("event→indicator p99", "ms", 1000 * percentile(latencies, 99))
        results.add("background ingest", "res/s", max_rate / 2)
    results.notes.append(
        f"{samples} STEMI visits per run, each polled (back-to-back GETs of the value) until "
        f"counted; background: bundles of 10 at half of {max_rate:.0f} res/s, from {source}"
    )
    return results
