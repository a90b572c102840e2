"""Per-key request rate limits: a token bucket per API key id, in process memory.

Decisions:

* Each key id has a bucket of ``rate_limit_burst`` tokens (default: one minute's worth,
  ``rate_limit_per_minute``) refilled at ``rate_limit_per_minute / 60`` a second. Every
  authenticated request takes one token, whatever it then answers (a key that keeps
  asking for what it may not see is limited too); an empty bucket answers ``429`` with
  ``Retry-After``: the whole seconds until a token is back.
* In memory, per process: with several workers or replicas each has its own buckets,
  so a deployment of *n* API processes lets a key make up to *n* × the limit. That is
  the price of keeping the database out of the hot path (every request already reads
  its key; a shared counter would add a write to each one). The limit is a guard
  against a runaway client, not a quota.
* Requests without a valid key are not counted (there is no key to count them for):
  they answer 401 before the limiter runs.
* Time comes from the runtime's clock, so tests move it by hand.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: datetime


class RateLimiter:
    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        self.per_second = per_minute / 60.0
        self.capacity = float(burst if burst is not None else per_minute)
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    def take(self, key: str, now: datetime) -> float | None:
        """Take one token for ``key``. None when allowed; otherwise the seconds until
        a token is back."""
        if not self.enabled:
            return None
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self.capacity, now)
            elapsed = max(0.0, (now - bucket.at).total_seconds())
            bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.per_second)
            bucket.at = max(bucket.at, now)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return (1.0 - bucket.tokens) / self.per_second


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
