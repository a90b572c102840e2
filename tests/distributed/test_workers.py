"""``qcpulse serve --workers 2``: two API processes on one database, the background
work in exactly one of them, handed over when that one is killed with ``kill -9``,
and concurrent writers of the same resources that neither deadlock nor double-count.

Real processes (uvicorn's supervisor and its workers) on the test run's database
kind: a SQLite file, or a scratch database on the PostgreSQL of
``QCPULSE_TEST_DATABASE_URL``."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import sqlalchemy as sa

from bench.server import ADMIN_KEY, Database, Server
from shared.db import create_engine_for
from tests.fhir_factories import condition, encounter, patient, procedure, transaction

ROLE_LOCK = "background-all"


@pytest.fixture
def database(engine) -> Iterator[str]:
    if engine.dialect.name == "postgresql":
        admin = engine.url.set(drivername="postgresql", database="postgres").render_as_string(
            hide_password=False
        )
        with Database("postgresql", admin) as db:
            yield db.url
    else:
        with Database("sqlite", "") as db:
            yield db.url


@pytest.fixture
def server(database) -> Iterator[Server]:
    env = {"QCPULSE_ELECTION_INTERVAL": "PT0.2S", "QCPULSE_TIMER_INTERVAL": "PT0.2S"}
    with Server(database, env=env, workers=2) as srv:
        yield srv


def _is_api_worker(p: psutil.Process) -> bool:
    """A live child that is not the resource tracker; a killed worker not yet reaped is not."""
    try:
        return "multiprocessing.resource_tracker" not in " ".join(p.cmdline())
    except (psutil.ZombieProcess, psutil.NoSuchProcess):
        return False


def _workers(srv: Server) -> list[psutil.Process]:
    """The supervisor's API processes (uvicorn also starts a resource tracker)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [p for p in psutil.Process(srv.pid).children() if _is_api_worker(p)]
        if len(found) >= 2:
            return found
        time.sleep(0.1)
    raise AssertionError("uvicorn did not start two workers")


def _holders(srv: Server, workers: list[psutil.Process]) -> list[int]:
    """Pids of the workers that hold the background election."""
    url = srv.database_url
    if url.startswith("sqlite"):
        path = Path(f"{url.removeprefix('sqlite:///')}.{ROLE_LOCK}.lock")
        text = path.read_text().strip() if path.exists() else ""
        return [p.pid for p in workers if text == str(p.pid)]
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            ports = set(
                conn.scalars(
                    sa.text(
                        "SELECT a.client_port FROM pg_locks l "
                        "JOIN pg_stat_activity a ON a.pid = l.pid "
                        "WHERE l.locktype = 'advisory' AND l.granted "
                        "AND a.datname = current_database()"
                    )
                )
            )
    finally:
        engine.dispose()
    holders = []
    for proc in workers:
        try:
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:  # gone (a killed worker is a zombie until reaped)
            continue
        if any(c.laddr.port in ports for c in conns):
            holders.append(proc.pid)
    return holders


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_holder(srv: Server, workers: list[psutil.Process], timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holders = _holders(srv, [p for p in workers if _alive(p)])
        if len(holders) == 1:
            return holders[0]
        assert len(holders) <= 1, f"two processes run the background work: {holders}"
        time.sleep(0.1)
    raise AssertionError("no process was elected")


def _pending_events(url: str) -> int:
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.scalar(sa.text("SELECT count(*) FROM outbox WHERE processed_at IS NULL")) or 0
            )
    finally:
        engine.dispose()


def _wait_drained(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pending_events(url) == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{_pending_events(url)} events were never processed")


def _visit(n: int) -> dict:
    pid, eid = f"p{n}", f"e{n}"
    return transaction(
        patient(pid),
        encounter(eid, pid=pid),
        condition(f"c{n}", eid=eid, pid=pid),
        procedure(f"pr{n}", eid=eid, pid=pid),
    )


def _client(srv: Server) -> httpx.Client:
    return httpx.Client(
        base_url=srv.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60
    )


def _verify(url: str) -> None:
    from services.indicators import verify
    from shared.runtime import Runtime
    from shared.settings import Settings

    runtime = Runtime.from_settings(Settings(database_url=url))
    try:
        report = verify(runtime)
    finally:
        runtime.close()
    assert report.ok, report.differences[:5]


def test_one_process_runs_the_background_work_and_hands_it_over(server):
    workers = _workers(server)
    holder = _wait_holder(server, workers)
    with _client(server) as http:
        assert http.post("/fhir", json=_visit(1)).status_code == 200
        _wait_drained(server.database_url)

        os.kill(holder, signal.SIGKILL)  # the elected process dies mid-flight
        survivors = [p for p in workers if p.pid != holder]
        # The survivor (or a worker uvicorn starts in the dead one's place) takes over.
        for n in range(2, 6):
            deadline = time.monotonic() + 30
            while True:
                try:
                    r = http.post("/fhir", json=_visit(n))
                    break
                except httpx.TransportError:  # the killed worker's half-open connection
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            assert r.status_code == 200, r.text
        alive = {p.pid: p for p in [*survivors, *_workers(server)]}
        new_holder = _wait_holder(server, list(alive.values()))
        assert new_holder != holder
        _wait_drained(server.database_url)
    _verify(server.database_url)


def test_concurrent_writers_of_the_same_resources(server):
    """Four clients post the same episodes, overlapping, through two processes: each
    resource is stored once (one version), no request fails or deadlocks, and the
    counters equal a recomputation."""
    _workers(server)
    bundles = [_visit(n % 5) for n in range(20)]
    errors: list[str] = []

    def send(offset: int) -> None:
        with _client(server) as http:
            for bundle in bundles[offset:] + bundles[:offset]:
                r = http.post("/fhir", json=bundle)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=send, args=(i * 3,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    engine = create_engine_for(server.database_url)
    try:
        with engine.connect() as conn:
            versions = dict(
                conn.execute(
                    sa.text(
                        "SELECT type || '/' || id, count(*) FROM fhir_resource_versions "
                        "GROUP BY type, id"
                    )
                ).all()
            )
    finally:
        engine.dispose()
    expected = {
        f"{t}/{i}{n}": 1
        for n in range(5)
        for t, i in (("Patient", "p"), ("Encounter", "e"), ("Condition", "c"), ("Procedure", "pr"))
    }
    assert versions == expected
    _wait_drained(server.database_url)
    _verify(server.database_url)
