"""A real webhook receiver on loopback, and helpers to subscribe it.

The receiver verifies every request with ``standardwebhooks.Webhook(secret).verify``
(the reference verifier, which also rejects timestamps more than 5 minutes off) and
records what it got. Its answers are scripted per request: a status code (with
headers), ``hang`` (answer after the client gave up), ``garbage`` (bytes that are not
HTTP) or ``redirect``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from standardwebhooks import Webhook, WebhookVerificationError

from services.alerts.models import AlertKind, Delivery, DeliveryAttempt
from services.alerts.service import NewAlert, new_id, raise_alert
from tests.conftest import TENANT


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    error: str | None
    at: float

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: ``hang``: sleep this long before answering; ``garbage``: send non-HTTP bytes.
    action: str | None = None
    seconds: float = 0.0


OK = Answer(200)


def status(code: int, **headers: str) -> Answer:
    return Answer(code, {k.replace("_", "-"): v for k, v in headers.items()})


def hang(seconds: float) -> Answer:
    return Answer(action="hang", seconds=seconds)


GARBAGE = Answer(action="garbage")
REDIRECT = Answer(302, {"Location": "http://127.0.0.1:9/elsewhere"})


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up (a timeout, a closed pool) is part of the tests


class Receiver:
    """One HTTP server; answers come from a script, then ``default``."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.received: list[Received] = []
        self.script: list[Answer] = []
        self.default = OK
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver._record(self.path, dict(self.headers.items()), body)
                answer = receiver._next()
                if answer.action == "garbage":
                    self.wfile.write(b"\x00\x01 this is not HTTP at all\r\n\r\n")
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if answer.action == "hang":
                    time.sleep(answer.seconds)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                reply = (
                    b""
                    if answer.status == 204
                    else (b'{"ok": true}' if answer.status < 300 else b"try later")
                )
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def answers(self, *answers: Answer) -> None:
        with self.lock:
            self.script.extend(answers)

    def _next(self) -> Answer:
        with self.lock:
            return self.script.pop(0) if self.script else self.default

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        headers = {k.lower(): v for k, v in headers.items()}
        verified, error = False, None
        try:
            assert self.secret is not None, "subscribe the receiver first"
            Webhook(self.secret).verify(body, headers)
            verified = True
        except (WebhookVerificationError, AssertionError) as exc:
            error = str(exc)
        with self.arrived:
            self.received.append(Received(path, headers, body, verified, error, time.time()))
            self.arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout=timeout)
            return list(self.received)

    def types(self) -> list[str]:
        return [r.json["type"] for r in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


@pytest.fixture
def new_receiver(receivers: list[Receiver]):
    def make() -> Receiver:
        r = Receiver()
        receivers.append(r)
        return r

    return make


@pytest.fixture
def receiver(new_receiver) -> Receiver:
    return new_receiver()


def subscribe(client, headers, receiver: Receiver, **fields: Any) -> dict[str, Any]:
    body = {
        "url": receiver.url,
        "events": ["*"],
        "indicators": ["*"],
        "departments": ["*"],
        "description": "on-call",
    } | fields
    r = client.post("/api/v1/subscriptions", json=body, headers=headers)
    assert r.status_code == 201, r.text
    out = r.json()
    receiver.secret = out["secret"]
    return out


def deliveries(runtime) -> list[Delivery]:
    with runtime.read() as session:
        return list(session.scalars(sa.select(Delivery).order_by(Delivery.created_at)).all())


def attempts(runtime, delivery_id: str) -> list[DeliveryAttempt]:
    with runtime.read() as session:
        return list(
            session.scalars(
                sa.select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id == delivery_id)
                .order_by(DeliveryAttempt.number, DeliveryAttempt.id)
            ).all()
        )


def raise_test_alert(
    runtime,
    *,
    key: str = "e1",
    department: str = "emergency",
    kind: AlertKind = AlertKind.CASE_BREACHED,
) -> str:
    """An alert raised directly, for delivery tests that need no indicator."""
    now = runtime.clock.now()
    alert_id = new_id("alr")
    body = {
        "type": kind.value,
        "timestamp": now.isoformat(),
        "data": {
            "alert_id": alert_id,
            "tenant": TENANT,
            "indicator": {"code": "PIT-2026-23", "name": {"zh": "测试", "en": "test"}},
            "department": department,
            "episode": f"Encounter/{key}",
            "case": None,
            "message": {"zh": "测试告警", "en": "test alert"},
        },
    }
    new = NewAlert(
        kind,
        "PIT-2026-23",
        department,
        dedup_key=f"test|{kind}|{key}",
        encounter_id=key,
        case_key=key,
    )
    with runtime.write() as session:
        raise_alert(session, TENANT, new, alert_id, body, settings=runtime.settings, now=now)
    return alert_id
