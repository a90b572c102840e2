"""HL7 v2 over MLLP beside FHIR Bundles of the same content, in the same run.

Each STEMI visit is two v2 messages — an ADT^A04 with the diagnosis and an ADT^A08
with the PCI — and, as the baseline, the two FHIR transaction Bundles those messages
map to (the adapter's own mapping produces them, so both paths write exactly the
same resources). Four MLLP connections send their share back to back, each waiting
for its ACK, as an integration engine does; four HTTP clients post the Bundles.
Figures: messages/s, ACK latency p50/p99, and the ratio of v2 messages/s to FHIR
Bundles/s.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

import httpx
import orjson
from hl7.client import MLLPClient

from bench.context import Context
from bench.server import Database, Server, free_port
from bench.stats import Results, percentile
from services.hl7v2.mapping import to_transaction
from services.hl7v2.parse import parse_message, read_envelope

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _msh(kind: str, control_id: str, time_: str) -> str:
    return (
        f"MSH|^~\\&|HIS|BENCH|QCPULSE|QCPULSE|{time_}||{kind}|{control_id}|P|2.5||||||UNICODE UTF-8"
    )


def visit_messages(n: int) -> list[bytes]:
    """One STEMI visit as ADT^A04 (+ DG1) and ADT^A08 (+ PR1); ids unique to ``n``."""
    pid = f"PID|1||BP{n}^^^BENCH^MR||王^建国||19610412|M"
    pv1 = "PV1|1|E||||||||emergency^急诊科|||||||||" + f"BV{n}" + "|" * 25 + "20260302100000"
    a04 = [
        _msh("ADT^A04^ADT_A01", f"a{n}", "20260302100500"),
        "EVN|A04|20260302100500",
        pid,
        pv1,
        "DG1|1||I21.000x001^急性前壁ST段抬高型心肌梗死^2.16.156.10011.2.3.3.11||20260302084000|F"
        + "|" * 14
        + f"BC{n}",
    ]
    a08 = [
        _msh("ADT^A08^ADT_A01", f"b{n}", "20260302120000"),
        "EVN|A08|20260302120000",
        pid,
        pv1,
        "PR1|1||00.6600^PTCA^2.16.156.10011.2.3.3.12||20260302111000||45" + "|" * 12 + f"BPR{n}",
    ]
    return [("\r".join(m) + "\r").encode() for m in (a04, a08)]


def as_bundle(raw: bytes) -> bytes:
    """The FHIR transaction the adapter makes of a message."""
    env = read_envelope(raw)
    mapped = to_transaction(parse_message(raw, env), SHANGHAI)
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": mapped.entries})


def _mllp_worker(
    messages: list[bytes], port: int, latencies: list[float], errors: list[str]
) -> None:
    """One engine's connection: python-hl7's MLLP client, waiting for each ACK."""
    with MLLPClient("127.0.0.1", port) as client:
        for raw in messages:
            started = time.perf_counter()
            answer = client.send_message(raw)
            latencies.append(time.perf_counter() - started)
            if b"MSA|AA|" not in answer:
                errors.append(answer.decode(errors="replace")[:300])


def _http_worker(bundles: list[bytes], url: str, key: str, errors: list[str]) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/fhir+json"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        for body in bundles:
            r = http.post("/fhir", content=body)
            if r.status_code != 200:
                errors.append(r.text[:300])


def _parallel(target: Callable[..., None], shares: list[list[bytes]], *args: object) -> float:
    """Run ``target(share, *args)`` on one thread per share; the wall time of all."""
    threads = [threading.Thread(target=target, args=(share, *args)) for share in shares]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def _wait_for_port(port: int, server: Server) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no MLLP listener: {server.log_tail()}") from None
            time.sleep(0.1)


def run(ctx: Context) -> Results:
    results = Results("hl7")
    visits = ctx.size(100, 1500)
    clients = ctx.clients
    for kind in ctx.databases:
        for rep in range(ctx.repeats):
            mllp_port = free_port()
            with (
                Database(kind, ctx.pg_admin_url) as db,
                Server(db.url, env={"QCPULSE_MLLP_PORT": str(mllp_port)}) as server,
            ):
                _wait_for_port(mllp_port, server)
                admin = server.key("HV2")
                r = httpx.post(
                    f"{server.url}/api/v1/hl7/sources",
                    json={"facility": "BENCH"},
                    headers={"Authorization": f"Bearer {admin}"},
                )
                r.raise_for_status()
                # Per connection, a visit's A04 goes before its A08, as one engine sends.
                shares: list[list[bytes]] = [[] for _ in range(clients)]
                for n in range(visits):
                    shares[n % clients].extend(visit_messages(rep * visits + n))
                bundles = [[as_bundle(m) for m in share] for share in shares]
                total = sum(len(s) for s in shares)

                latencies: list[float] = []
                errors: list[str] = []
                v2_seconds = _parallel(_mllp_worker, shares, mllp_port, latencies, errors)
                fhir_errors: list[str] = []
                fhir_seconds = _parallel(
                    _http_worker, bundles, server.url, server.key("HFHIR", "ingest"), fhir_errors
                )
                if errors or fhir_errors:
                    raise RuntimeError(f"not all accepted: {(errors + fhir_errors)[:2]}")
            v2_rate, fhir_rate = total / v2_seconds, total / fhir_seconds
            results.add(f"{kind} v2 over MLLP", "msg/s", v2_rate)
            results.add(f"{kind} ACK latency p50", "ms", 1000 * percentile(latencies, 50))
            results.add(f"{kind} ACK latency p99", "ms", 1000 * percentile(latencies, 99))
            results.add(f"{kind} FHIR Bundles (same content)", "bundle/s", fhir_rate)
            results.add(f"{kind} ratio v2 / FHIR", "×", v2_rate / fhir_rate)
    results.notes.append(
        f"{visits} STEMI visits = {2 * visits} messages (3 resources each) per run, "
        f"{clients} MLLP connections, then the same content as {2 * visits} FHIR Bundles "
        f"from {clients} HTTP clients, on the same fresh server"
    )
    return results
