"""``qcpulse demo``: the embedded server, a simulated hospital, and a webhook sink.

The hospital runs in compressed time: the server's clinical clock is a
:class:`~shared.clock.ScaledClock` that runs ``speed`` times faster than the wall
clock, so deadlines fall due (and alerts fire) in seconds rather than hours. The
simulated day starts at 14:00 Shanghai time today, whatever the hour where the demo
runs (a hospital at 4 a.m. is too quiet to show anything), and the hours before it
are sent at once as a backlog, as an integration engine does after an outage, so
indicators have data and overdue cases raise alerts within the first seconds.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import uvicorn
from hl7.client import MLLPClient
from pydantic import SecretStr
from standardwebhooks import Webhook

from qcpulse.app import create_app, prepare
from qcpulse.loader import Poster, load, paced
from qcpulse.synth import HospitalConfig, Send, generate
from qcpulse.synth.v2 import render_bundle
from shared.auth import Role, create_key
from shared.clock import ScaledClock, utcnow
from shared.logging import configure_logging
from shared.runtime import Runtime
from shared.settings import Settings


@dataclass
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    speed: float = 60.0
    hospital_size: str = "medium"
    seed: int = 2026
    backfill_hours: float = 8.0
    db: Path | None = None
    quiet: bool = False
    #: The HL7 v2 listener; every other bundle of the feed is sent through it as v2.
    mllp_port: int = 2575


class Sink:
    """A webhook receiver on loopback that checks signatures and prints each alert."""

    def __init__(self, quiet: bool = False) -> None:
        self.secret: str | None = None
        self.received: list[dict[str, Any]] = []
        self.rejected = 0
        self.quiet = quiet
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    if sink.secret is None:
                        raise ValueError("no secret yet")
                    payload = Webhook(sink.secret).verify(body, dict(self.headers.items()))
                except Exception:
                    sink.rejected += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                sink.received.append(payload)
                sink.show(payload)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="demo-sink", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()

    def show(self, payload: dict[str, Any]) -> None:
        if self.quiet:
            return
        data = payload.get("data") or {}
        message = data.get("message") or {}
        kind = payload.get("type", "?")
        print(f"  ⚑ {kind:<15} {message.get('zh', '')}", flush=True)
        if message.get("en"):
            print(f"    {'':<15} {message['en']}", flush=True)


def split_backlog(sends: Iterator[Send], now: datetime) -> tuple[list[Send], Iterator[Send]]:
    """The sends already due (sent at once, concurrently), and the rest (paced)."""
    backlog: list[Send] = []
    for send in sends:
        if send.at > now:
            return backlog, itertools.chain([send], sends)
        backlog.append(send)
    return backlog, iter(())


V2_FACILITY = "DEMO-HIS"


class V2Feed:
    """Part of the simulated hospital speaks HL7 v2: its bundles are rendered as v2
    messages and sent over one MLLP connection, waiting for each ACK, as an
    integration engine does; what v2 cannot carry is posted as FHIR after them."""

    def __init__(self, port: int, poster: Poster) -> None:
        self.client = MLLPClient("127.0.0.1", port)
        self.poster = poster
        self.sent = 0
        self.refused = 0

    def send(self, send: Send) -> None:
        rendered = render_bundle(
            send.bundle,
            facility=V2_FACILITY,
            control_prefix=f"demo{self.sent}",
            message_time=send.at,
        )
        self.sent += 1
        for raw in rendered.messages:
            if b"MSA|AA|" not in self.client.send_message(raw):
                self.refused += 1
        if rendered.rest:
            rest = {"resourceType": "Bundle", "type": "transaction", "entry": rendered.rest}
            self.poster.post(orjson.dumps(rest))

    def close(self) -> None:
        self.client.close()


def _keys(runtime: Runtime, tenant: str) -> tuple[str, str]:
    with runtime.write() as session:
        _, ingest_key = create_key(session, tenant, Role.INGEST, name="demo integration engine")
        _, reader_key = create_key(session, tenant, Role.READER, name="demo 质控科")
    return ingest_key, reader_key


def _banner(
    url: str, tenant: str, reader_key: str, options: DemoOptions, db: Path, mllp_port: int
) -> str:
    auth = f"-H 'Authorization: Bearer {reader_key}'"
    pace = f"{options.hospital_size}, at {options.speed:g}× real time"
    return f"""
qcpulse demo — a simulated hospital ({tenant}), {pace}
  console     {url}/   (sign in with the reader key below)
  server      {url}   (SQLite: {db})
  reader key  {reader_key}
  HL7 v2      MLLP on 127.0.0.1:{mllp_port} (source {V2_FACILITY}: half the feed arrives as v2)

Try:
  curl -s {auth} {url}/api/v1/indicators
  curl -s {auth} '{url}/api/v1/indicators/PIT-2026-31/breakdown'
  curl -s {auth} '{url}/api/v1/alerts?status=open'
  mllp_send --loose --port {mllp_port} --file examples/stemi-visit.hl7 127.0.0.1

Clinical times run {options.speed:g}× faster than the wall clock. Alerts appear below. Ctrl-C stops.
"""


def run(options: DemoOptions) -> int:
    env = Settings()
    if "QCPULSE_LOG_LEVEL" not in os.environ:
        # The demo prints alerts itself; routine delivery logs would drown them.
        logging.getLogger().setLevel(logging.WARNING)
        configure_logging("WARNING")
    tenant = env.bootstrap_tenant or "H0001"
    admin_key = (
        env.bootstrap_admin_key.get_secret_value()
        if env.bootstrap_admin_key
        else secrets.token_urlsafe(24)
    )
    db = options.db or Path(tempfile.mkdtemp(prefix="qcpulse-demo-")) / "qcpulse.db"
    settings = env.model_copy(
        update={
            "database_url": f"sqlite:///{db}",
            "bootstrap_tenant": tenant,
            "bootstrap_admin_key": SecretStr(admin_key),
            "mllp_port": options.mllp_port,
        }
    )
    shanghai = ZoneInfo("Asia/Shanghai")
    afternoon = datetime.combine(utcnow().astimezone(shanghai).date(), time(14), tzinfo=shanghai)
    clock = ScaledClock(afternoon, options.speed)
    runtime = Runtime.from_settings(settings, clock=clock)
    prepare(runtime)
    ingest_key, reader_key = _keys(runtime, tenant)

    sink = Sink(quiet=options.quiet)
    sink.start()
    app = create_app(runtime=runtime)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=options.host, port=options.port, log_level="warning", access_log=False
        )
    )
    url = f"http://{options.host}:{options.port}"
    feed_stop = threading.Event()

    def feed() -> None:
        while not server.started:
            if feed_stop.wait(0.05):
                return
        admin = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30
        )
        response = admin.post(
            "/api/v1/subscriptions",
            json={
                "url": sink.url,
                "events": ["*"],
                "indicators": ["*"],
                "departments": ["*"],
                "description": "demo sink (built in)",
            },
        )
        response.raise_for_status()
        sink.secret = response.json()["secret"]
        for facility in (V2_FACILITY, "SHXH"):  # the demo feed; the README's example file
            admin.post("/api/v1/hl7/sources", json={"facility": facility}).raise_for_status()
        admin.close()
        mllp_port = app.state.mllp.port
        print(_banner(url, tenant, reader_key, options, db, mllp_port), flush=True)
        config = HospitalConfig.from_size(options.hospital_size, tenant=tenant)  # type: ignore[arg-type]
        start = clock.now() - timedelta(hours=options.backfill_hours)
        sends = generate(config, start=start, days=365, seed=options.seed)
        poster = Poster(url, ingest_key)
        v2 = V2Feed(mllp_port, poster)
        try:
            backlog, sends = split_backlog(sends, clock.now())
            load(poster, (send.bundle for send in backlog), concurrency=4)
            for n, send in enumerate(paced(sends, clock.now, feed_stop)):
                if n % 2:
                    v2.send(send)
                else:
                    poster.post(orjson.dumps(send.bundle))
        except (httpx.HTTPError, OSError) as exc:
            if not feed_stop.is_set():
                print(f"demo feed stopped: {exc}", file=sys.stderr)
        finally:
            poster.close()
            v2.close()

    feeder = threading.Thread(target=feed, name="demo-feed", daemon=True)
    feeder.start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # uvicorn has already shut down gracefully; Ctrl-C is how the demo stops
    finally:
        feed_stop.set()
        feeder.join(timeout=5)
        sink.stop()
        runtime.close()
        print(f"\ndemo stopped: {len(sink.received)} alert(s) received; data kept in {db}")
    return 0
