"""The same resources, one per ``PUT``, to fhirstarter's minimal in-memory example and
to qcpulse (SQLite, validation, versions, facts, outbox), same client, same concurrency."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench import data
from bench.context import Context
from bench.server import Database, Server, free_port, post_all
from bench.stats import Results, percentile

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qcpulse-bench"
VENV = CACHE / "fhirstarter-venv"
PEER_SERVER = Path(__file__).resolve().parent.parent / "peer_server.py"


def ensure_fhirstarter() -> Path:
    """fhirstarter's interpreter, installed into its own virtualenv once (it needs
    another FastAPI than qcpulse). Raises with the reason when that fails."""
    python = VENV / "bin" / "python"
    if python.exists():
        check = subprocess.run(
            [str(python), "-c", "import fhirstarter, uvicorn"], capture_output=True, timeout=60
        )
        if check.returncode == 0:
            return python
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(["python3", "-m", "venv", str(VENV)], check=True, capture_output=True)
    install = subprocess.run(
        [str(VENV / "bin" / "pip"), "install", "-q", "fhirstarter", "uvicorn"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if install.returncode != 0:
        raise RuntimeError(f"pip install fhirstarter failed: {install.stderr.strip()[-300:]}")
    return python


def run(ctx: Context) -> Results:
    results = Results("peer")
    feed = data.sends(ctx.size(15, 200), ctx.size(1, 3), seed=13)
    puts = data.single_puts(feed, limit=ctx.size(200, 2000))
    types = sorted({path.split("/")[2] for _, path, _, _ in puts})
    try:
        python = ensure_fhirstarter()
    except Exception as exc:
        results.skip(f"fhirstarter unavailable ({exc})")
        return results
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - outlives this block, closed below
    peer = subprocess.Popen(
        [str(python), str(PEER_SERVER), str(port), ",".join(types)],
        env={**os.environ, "FHIR_SEQUENCE": "R4B"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        peer_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and peer.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{peer_url}/metadata", timeout=1)
                break
            time.sleep(0.2)
        else:
            log.seek(0)
            results.skip(f"fhirstarter did not start: {log.read().decode()[-300:]}")
            return results
        peer_puts = [(m, path.removeprefix("/fhir"), body, n) for m, path, body, n in puts]
        with Database("sqlite", ctx.pg_admin_url) as db, Server(db.url) as server:
            for rep in range(ctx.repeats):
                ours = post_all(
                    server.url, server.key(f"P{rep}", "ingest"), puts, clients=ctx.clients
                )
                theirs = post_all(peer_url, "none", peer_puts, clients=ctx.clients)
                for label, load in (("qcpulse", ours), ("fhirstarter", theirs)):
                    if load.failed:
                        raise RuntimeError(f"peer {label}: {load.errors[:3]}")
                    results.add(f"{label} PUT/s", "req/s", load.requests / load.seconds)
                    results.add(f"{label} p50", "ms", 1000 * percentile(load.latencies, 50))
                    results.add(f"{label} p99", "ms", 1000 * percentile(load.latencies, 99))
                results.add(
                    "qcpulse ÷ fhirstarter",
                    "ratio",
                    (ours.requests / ours.seconds) / (theirs.requests / theirs.seconds),
                )
        results.notes.append(
            f"{len(puts)} resources of {len(types)} types, one PUT each, {ctx.clients} clients; "
            "qcpulse on SQLite, fhirstarter keeping validated resources in a dict"
        )
    finally:
        peer.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            peer.wait(timeout=10)
        if peer.poll() is None:
            peer.kill()
        log.close()
    return results
