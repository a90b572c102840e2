"""A real qcpulse server for the browser tests (and scripts/console_weight.py): uvicorn
in a thread on a free loopback port, a SQLite file, the simulated hospital's last
months posted over HTTP as an integration engine would."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import SecretStr

from qcpulse.app import create_app, prepare
from qcpulse.loader import Poster, load
from qcpulse.synth import HospitalConfig, generate
from shared.auth import Role, create_key
from shared.clock import utcnow
from shared.models import Tenant
from shared.runtime import Runtime
from shared.settings import Settings

TENANT = "H0001"
ADMIN_KEY = "console-test-admin-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    runtime: Runtime
    admin_key: str
    reader_key: str
    ingest_key: str
    uvicorn: uvicorn.Server
    thread: threading.Thread

    def key(self, role: Role = Role.READER, **kwargs: object) -> str:
        with self.runtime.write() as session:
            _, secret = create_key(session, TENANT, role, **kwargs)  # type: ignore[arg-type]
        return secret

    def stop(self) -> None:
        self.uvicorn.should_exit = True
        self.thread.join(timeout=10)
        self.runtime.close()


def merged(bundles: Iterable[dict[str, Any]], size: int) -> Iterator[dict[str, Any]]:
    """Every ``size`` bundles as one transaction holding each resource's last entry: the
    same end state in far fewer requests (seeding 100 days one by one takes minutes)."""
    chunk: dict[str, dict[str, Any]] = {}
    count = 0
    for bundle in bundles:
        for entry in bundle["entry"]:
            url = entry["request"]["url"]
            chunk.pop(url, None)  # keep the last version, in the order it was sent
            chunk[url] = entry
        count += 1
        if count == size:
            yield {"resourceType": "Bundle", "type": "transaction", "entry": list(chunk.values())}
            chunk, count = {}, 0
    if chunk:
        yield {"resourceType": "Bundle", "type": "transaction", "entry": list(chunk.values())}


def start(db: Path, *, episodes: int = 400, days: int = 120, seed: int = 7) -> Server:
    settings = Settings(
        database_url=f"sqlite:///{db}",
        bootstrap_tenant=TENANT,
        bootstrap_admin_key=SecretStr(ADMIN_KEY),
    )
    runtime = Runtime.from_settings(settings)
    prepare(runtime)
    with runtime.write() as session:
        _, reader = create_key(session, TENANT, Role.READER, name="console test reader")
        _, ingest = create_key(session, TENANT, Role.INGEST, name="console test feed")
        # No grace after deadlines: the live-alert tests wait for a breach in seconds.
        tenant = session.get(Tenant, TENANT)
        assert tenant is not None
        tenant.alert_grace_seconds = 0
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime=runtime),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, name="console-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    now = utcnow()
    config = HospitalConfig.for_episodes(episodes, days, tenant=TENANT)
    sends = generate(config, start=now - timedelta(days=days), days=days, seed=seed)
    poster = Poster(url, ingest)
    try:
        load(poster, merged((s.bundle for s in sends if s.at <= now), 100), concurrency=2)
    finally:
        poster.close()
    return Server(url, runtime, ADMIN_KEY, reader, ingest, server, thread)


def wait_until_evaluated(server: Server, timeout: float = 60) -> None:
    """The workers evaluate posted episodes asynchronously: wait for the outbox to drain."""
    import sqlalchemy as sa

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with server.runtime.engine.connect() as conn:
            left = conn.execute(
                sa.text("SELECT count(*) FROM outbox WHERE processed_at IS NULL")
            ).scalar_one()
        if left == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("indicator evaluation did not finish")
