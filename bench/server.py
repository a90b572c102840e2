"""A real ``qcpulse serve`` subprocess on loopback with a fresh database, and the
HTTP clients that drive it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil

from shared.secretbox import new_key as new_secret_key

ADMIN_KEY = "bench-admin-secret-0123456789"
TENANT = "H0001"
#: Seconds a start may take: imports, migrations and a first connection on a loaded CI
#: machine (a start that never answers shows its log in the error).
READY_TIMEOUT = 120
#: ``python -m bench --profile DIR``: every server started is recorded by py-spy into
#: DIR (``bench/profile.py`` summarises the recordings).
PROFILE_DIR: str | None = None
_profiled = 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def postgres_version(admin_url: str) -> str | None:
    try:
        import psycopg

        with psycopg.connect(admin_url, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else None
    except Exception:
        return None


class Database:
    """A fresh database: a SQLite file in a temporary directory, or a scratch
    PostgreSQL database (``qcpulse_bench_<pid>_<n>``) dropped afterwards."""

    _counter = 0

    def __init__(self, kind: str, pg_admin_url: str) -> None:
        self.kind = kind
        self.pg_admin_url = pg_admin_url
        self._tmp: str | None = None
        self._pg_name: str | None = None
        self.url = ""

    def __enter__(self) -> Database:
        if self.kind == "sqlite":
            self._tmp = tempfile.mkdtemp(prefix="qcpulse-bench-")
            self.url = f"sqlite:///{self._tmp}/bench.db"
        else:
            import psycopg

            Database._counter += 1
            self._pg_name = f"qcpulse_bench_{os.getpid()}_{Database._counter}"
            with psycopg.connect(self.pg_admin_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self._pg_name}"')
                conn.execute(f'CREATE DATABASE "{self._pg_name}"')
            self.url = _with_database(self.pg_admin_url, self._pg_name)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
        if self._pg_name:
            import psycopg

            with psycopg.connect(self.pg_admin_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self._pg_name}" WITH (FORCE)')


@dataclass
class Server:
    """``qcpulse serve`` as a subprocess; ``url`` once started."""

    database_url: str
    env: dict[str, str] = field(default_factory=dict)
    role: str = "all"
    #: ``serve --workers``: API processes (their CPU and memory are summed).
    workers: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    _keys: dict[str, str] = field(default_factory=dict)
    _py_spy: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> Server:
        env = {
            **os.environ,
            "QCPULSE_DATABASE_URL": self.database_url,
            "QCPULSE_BOOTSTRAP_TENANT": TENANT,
            "QCPULSE_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
            "QCPULSE_LOG_LEVEL": "WARNING",
            # serve needs a key for webhook secrets; a throwaway one per run.
            "QCPULSE_SECRET_KEY": new_secret_key(),
            # Benchmarks measure throughput: no per-key rate limit in the way.
            "QCPULSE_RATE_LIMIT_PER_MINUTE": "0",
            **self.env,
        }
        code = "from qcpulse.cli import main; raise SystemExit(main())"
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                "serve",
                "--port",
                str(self.port),
                "--role",
                self.role,
                "--workers",
                str(self.workers),
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"qcpulse serve exited: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    self._record()
                    return self
            time.sleep(0.1)
        tail = self.log_tail()
        self.__exit__()
        raise RuntimeError(f"qcpulse serve did not become ready in {READY_TIMEOUT} s: {tail}")

    def _record(self) -> None:
        """Attach py-spy (sampling at 50 Hz without pausing the process, every thread,
        the worker processes too) until the server exits."""
        global _profiled
        if PROFILE_DIR is None:
            return
        py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
        _profiled += 1
        database = "postgresql" if self.database_url.startswith("postgresql") else "sqlite"
        name = f"{_profiled:02d}-{database}-{self.role}-w{self.workers}-{self.pid}.txt"
        output = os.path.join(PROFILE_DIR, name)
        options = ["--subprocesses", "--nonblocking", "--threads", "--rate", "50"]
        self._py_spy = subprocess.Popen(
            [py_spy, "record", "--pid", str(self.pid), *options, "--format", "raw", "-o", output],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def log_tail(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._py_spy is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._py_spy.wait(timeout=30)  # it writes its file when the server exits
        self._log.close()

    def key(self, tenant: str, role: str = "admin") -> str:
        """A key for ``tenant`` (created with the tenant when absent), made through the
        product's own key code against the server's database."""
        if tenant == TENANT and role == "admin":
            return ADMIN_KEY
        cache_key = f"{tenant}:{role}"
        if cache_key not in self._keys:
            from shared.auth import Role, create_key, ensure_tenant
            from shared.db import create_engine_for, make_session_factory, transaction

            engine = create_engine_for(self.database_url)
            try:
                with transaction(make_session_factory(engine)) as session:
                    ensure_tenant(session, tenant, timezone="Asia/Shanghai")
                    _, secret = create_key(session, tenant, Role(role), name="bench")
            finally:
                engine.dispose()
            self._keys[cache_key] = secret
        return self._keys[cache_key]

    def _processes(self) -> list[psutil.Process]:
        parent = psutil.Process(self.pid)
        return [parent, *parent.children(recursive=True)]

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self._processes():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def rss(self) -> int:
        total = 0
        for process in self._processes():
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total


class Cluster:
    """The distributed mode on one machine: ``ingest`` API processes (clients are
    spread over them), one ``indicators`` and one ``alerts`` process, on PostgreSQL,
    with events through NATS JetStream under a prefix of its own (deleted after)."""

    def __init__(self, database_url: str, *, ingest_processes: int = 2) -> None:
        self.prefix = f"QCB{os.getpid()}{time.monotonic_ns() % 10**6}"
        env = {"QCPULSE_BUS": "nats", "QCPULSE_NATS_PREFIX": self.prefix}
        # The first process migrates and bootstraps; the others start after it.
        roles = ["ingest"] * ingest_processes + ["indicators", "alerts"]
        self.members = [Server(database_url, env=env, role=role) for role in roles]
        self.ingest = self.members[:ingest_processes]

    @property
    def urls(self) -> list[str]:
        return [m.url for m in self.ingest]

    def key(self, tenant: str, role: str = "admin") -> str:
        return self.members[0].key(tenant, role)

    def cpu_seconds(self) -> float:
        return sum(m.cpu_seconds() for m in self.members)

    def __enter__(self) -> Cluster:
        started: list[Server] = []
        try:
            for member in self.members:
                started.append(member.__enter__())
        except BaseException:
            for member in reversed(started):
                member.__exit__()
            with contextlib.suppress(Exception):
                asyncio.run(_delete_streams(os.environ.get("QCPULSE_NATS_URL"), self.prefix))
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for member in reversed(self.members):
            member.__exit__()
        with contextlib.suppress(Exception):
            asyncio.run(_delete_streams(os.environ.get("QCPULSE_NATS_URL"), self.prefix))


async def _delete_streams(url: str | None, prefix: str) -> None:
    import nats

    nc = await nats.connect(url or "nats://127.0.0.1:4222", connect_timeout=3)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(f"{prefix}_"):
                await js.delete_stream(info.config.name)
    finally:
        await nc.close()


class Measured(Protocol):
    def cpu_seconds(self) -> float: ...


def client(base_url: str, key: str, *, timeout: float = 120.0) -> httpx.Client:
    return httpx.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/fhir+json"},
        timeout=timeout,
    )


@dataclass
class Load:
    """What posting a list of requests found."""

    requests: int = 0
    resources: int = 0
    failed: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


Request = tuple[str, str, bytes, int]  # method, path, body, resources it carries


def post_all(
    base_url: str | list[str],
    key: str,
    requests: list[Request],
    *,
    clients: int,
    server: Measured | None = None,
    rate: float | None = None,
    stop: threading.Event | None = None,
) -> Load:
    """Send every request from ``clients`` concurrent clients (each its own connection;
    with several base URLs, client ``i`` talks to URL ``i mod n``), optionally paced to
    ``rate`` requests per second in total."""
    urls = [base_url] if isinstance(base_url, str) else base_url
    load = Load()
    lock = threading.Lock()
    cursor = iter(range(len(requests)))
    started = time.perf_counter()

    def worker(slot: int) -> None:
        with client(urls[slot % len(urls)], key) as http:
            while True:
                if stop is not None and stop.is_set():
                    return
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                if rate:
                    due = started + index / rate
                    if (wait := due - time.perf_counter()) > 0:
                        time.sleep(wait)
                method, path, body, n = requests[index]
                t0 = time.perf_counter()
                try:
                    response = http.request(method, path, content=body)
                    status = response.status_code
                except httpx.HTTPError as exc:
                    status, response = 599, None
                    with lock:
                        load.errors.append(repr(exc))
                elapsed = time.perf_counter() - t0
                with lock:
                    load.requests += 1
                    load.latencies.append(elapsed)
                    if status >= 400:
                        load.failed += 1
                        if response is not None and len(load.errors) < 5:
                            load.errors.append(f"HTTP {status}: {response.text[:300]}")
                    else:
                        load.resources += n

    cpu0 = server.cpu_seconds() if server else 0.0
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    load.seconds = time.perf_counter() - started
    load.cpu_seconds = (server.cpu_seconds() - cpu0) if server else 0.0
    return load


@contextlib.contextmanager
def rss_sampler(server: Server, interval: float = 0.02) -> Iterator[dict[str, Any]]:
    """Sample the server's RSS in a thread; ``peak`` in bytes when the block ends."""
    out: dict[str, Any] = {"peak": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                out["peak"] = max(out["peak"], server.rss())
            done.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        done.set()
        thread.join()
