"""Posting bundles to a running server, as an integration engine does.

Used by ``qcpulse load`` (bulk, concurrent), the demo (paced by a clock) and the
benchmarks. Bundles are posted as they are, retried on 5xx and connection errors
with a short backoff, because that is what engines do and ingest must tolerate it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from qcpulse.synth import Send


@dataclass
class LoadStats:
    bundles: int = 0
    resources: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def resources_per_second(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0


class Poster:
    """One HTTP client posting bundles with a key; thread-safe."""

    def __init__(self, base_url: str, key: str, *, timeout: float = 60.0, retries: int = 3) -> None:
        self.client = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/fhir+json"},
            timeout=timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self.retries = retries

    def post(self, bundle: dict[str, Any] | bytes) -> tuple[int, float]:
        body = bundle if isinstance(bundle, bytes) else orjson.dumps(bundle)
        started = time.perf_counter()
        for attempt in range(self.retries + 1):
            try:
                response = self.client.post("/fhir", content=body)
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
                time.sleep(0.2 * 2**attempt)
                continue
            if response.status_code < 500 or attempt == self.retries:
                return response.status_code, time.perf_counter() - started
            time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.client.close()


def entry_count(bundle: dict[str, Any]) -> int:
    return len(bundle.get("entry") or ())


def load(
    poster: Poster,
    bundles: Iterable[dict[str, Any]],
    *,
    concurrency: int = 4,
    on_progress: Callable[[int], None] | None = None,
) -> LoadStats:
    """Post every bundle with ``concurrency`` requests in flight; bundles of the same
    episode may overtake each other, as they do between real engine threads."""
    stats = LoadStats()
    lock = threading.Lock()
    started = time.perf_counter()

    def one(bundle: dict[str, Any]) -> None:
        status, latency = poster.post(bundle)
        with lock:
            stats.bundles += 1
            stats.latencies.append(latency)
            if status >= 400:
                stats.failed += 1
                if len(stats.errors) < 10:
                    stats.errors.append(f"HTTP {status}")
            else:
                stats.resources += entry_count(bundle)
            if on_progress:
                on_progress(stats.bundles)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        pending: set[Future[None]] = set()
        for bundle in bundles:
            if len(pending) >= concurrency * 2:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    f.result()
            pending.add(pool.submit(one, bundle))
        for f in pending:
            f.result()
    stats.seconds = time.perf_counter() - started
    return stats


def paced(sends: Iterable[Send], now: Callable[[], Any], stop: threading.Event) -> Iterator[Send]:
    """Yield each send once the clock reaches its time (the demo's real-time feed)."""
    for send in sends:
        while now() < send.at:
            if stop.wait(0.05):
                return
        if stop.is_set():
            return
        yield send
