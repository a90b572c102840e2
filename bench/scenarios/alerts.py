"""From a case's deadline to its signed ``case.breached`` webhook arriving at a loopback
receiver, with many other cases pending. Cases are radiology critical values
(PIT-2026-31): an imaging Observation, interpretation AA, no Communication, breached
10 minutes after ``issued``. Measured cases are issued 9 min 50 s – 9 min 56 s before
they are posted, so their deadlines fall a few seconds later on the server's clock
(the system clock)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from bench.context import Context
from bench.server import Database, Server, client, free_port
from bench.stats import Results, percentile


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
    }


def critical_case(tag: str, issued: datetime) -> list[dict[str, Any]]:
    pid, eid = f"al-p{tag}", f"al-e{tag}"
    return [
        _entry(
            {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1970-01-01"}
        ),
        _entry(
            {
                "resourceType": "Encounter",
                "id": eid,
                "status": "in-progress",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "IMP",
                },
                "subject": {"reference": f"Patient/{pid}"},
                "period": {"start": (issued - timedelta(hours=2)).isoformat()},
                "serviceProvider": {"reference": "Organization/radiology"},
            }
        ),
        _entry(
            {
                "resourceType": "Observation",
                "id": f"al-o{tag}",
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "imaging",
                            }
                        ]
                    }
                ],
                "code": {"text": "CT head"},
                "subject": {"reference": f"Patient/{pid}"},
                "encounter": {"reference": f"Encounter/{eid}"},
                "effectiveDateTime": issued.isoformat(),
                "issued": issued.isoformat(),
                "interpretation": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                "code": "AA",
                            }
                        ]
                    }
                ],
            }
        ),
    ]


def bundle(entries: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


class Receiver:
    """A loopback webhook receiver that checks Standard Webhooks signatures and records
    when each ``case.breached`` arrived, by episode."""

    def __init__(self) -> None:
        self.secret = b""
        self.arrivals: dict[str, float] = {}
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.time()
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(204)
                self.end_headers()
                receiver.record(arrived, dict(self.headers), body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def record(self, arrived: float, headers: dict[str, str], body: bytes) -> None:
        h = {k.lower(): v for k, v in headers.items()}
        signed = f"{h.get('webhook-id')}.{h.get('webhook-timestamp')}.".encode() + body
        expected = base64.b64encode(hmac.new(self.secret, signed, hashlib.sha256).digest()).decode()
        ok = any(
            sig.split(",", 1)[-1] == expected for sig in h.get("webhook-signature", "").split()
        )
        doc = orjson.loads(body)
        with self.lock:
            if not ok:
                self.bad_signatures += 1
                return
            if doc.get("type") == "case.breached":
                episode = (doc.get("data") or {}).get("episode") or ""
                self.arrivals.setdefault(episode.removeprefix("Encounter/"), arrived)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run(ctx: Context) -> Results:
    results = Results("alerts")
    pending = ctx.size(200, 1000)
    measured = ctx.size(15, 100)
    lead = ctx.size(2, 4)  # seconds from posting to the first deadline
    receiver = Receiver()
    try:
        with (
            Database("sqlite", ctx.pg_admin_url) as db,
            Server(db.url) as server,
            client(server.url, server.key("H0001")) as http,
        ):
            # This scenario measures the timer and the delivery, not the breach grace.
            http.put(
                "/api/v1/tenant",
                content=orjson.dumps({"alert_grace": 0}),
                headers={"Content-Type": "application/json"},
            ).raise_for_status()
            r = http.post(
                "/api/v1/subscriptions",
                content=orjson.dumps(
                    {
                        "url": receiver.url,
                        "events": ["*"],
                        "indicators": ["*"],
                        "departments": ["*"],
                        "description": "bench",
                    }
                ),
                headers={"Content-Type": "application/json"},
            )
            r.raise_for_status()
            secret = r.json()["secret"]
            receiver.secret = base64.b64decode(secret.removeprefix("whsec_"))
            now = datetime.now(UTC)
            background = [critical_case(f"bg{i}", now) for i in range(pending)]
            for i in range(0, pending, 25):
                entries = [e for case in background[i : i + 25] for e in case]
                http.post("/fhir", content=bundle(entries)).raise_for_status()
            for rep in range(ctx.repeats):
                deadlines: dict[str, float] = {}
                for i in range(measured):
                    tag = f"m{rep}-{i}"
                    issued = (
                        datetime.now(UTC)
                        - timedelta(minutes=10)
                        + timedelta(seconds=lead + 3 * i / measured)
                    )
                    http.post(
                        "/fhir", content=bundle(critical_case(tag, issued))
                    ).raise_for_status()
                    deadlines[f"al-e{tag}"] = (issued + timedelta(minutes=10)).timestamp()
                wait_until = max(deadlines.values()) + 30
                while time.time() < wait_until:
                    with receiver.lock:
                        if all(e in receiver.arrivals for e in deadlines):
                            break
                    time.sleep(0.1)
                with receiver.lock:
                    late = [
                        receiver.arrivals[e] - d
                        for e, d in deadlines.items()
                        if e in receiver.arrivals
                    ]
                missing = len(deadlines) - len(late)
                if missing:
                    raise RuntimeError(f"{missing} breach webhook(s) never arrived")
                results.add("deadline→webhook p50", "ms", 1000 * percentile(late, 50))
                results.add("deadline→webhook p99", "ms", 1000 * percentile(late, 99))
        if receiver.bad_signatures:
            raise RuntimeError(f"{receiver.bad_signatures} webhook(s) with a bad signature")
    finally:
        receiver.close()
    results.notes.append(
        f"{pending} other cases pending (deadline 10 min away), {measured} measured per run; "
        "signatures verified (Standard Webhooks, HMAC-SHA256)"
    )
    return results
