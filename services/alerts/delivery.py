"""Webhook delivery: a durable queue in the database, sent concurrently, retried.

The queue is the ``webhook_deliveries`` table. A sender *claims* due rows in a short
transaction (``SKIP LOCKED`` on PostgreSQL, so replicas never claim the same row),
writing an ``in_flight`` attempt and pushing ``next_attempt_at`` forward by a lease
(3 × ``webhook_timeout`` + 30 s). It sends outside any transaction, then records the
answer in a second transaction. A process that dies mid-attempt leaves the row due
again when the lease runs out; the next claim marks the old attempt ``interrupted``
and sends again (receivers dedupe on ``webhook-id``, which is the alert id, the same
on every attempt and for every subscription). Nothing acknowledged is lost.

Decisions:

* Standard Webhooks signing (``standardwebhooks.Webhook.sign``) over the exact stored
  body. ``webhook-timestamp`` is the real wall clock, because receivers reject old
  timestamps; scheduling (due times, backoff, dead-lettering) reads ``runtime.clock``,
  so tests move time by hand.
* 2xx is delivered. 410 Gone disables the subscription and dead-letters its pending
  deliveries (re-enable with PATCH, re-send with ``POST /deliveries/{id}/retry``).
  Redirects are not followed: a 3xx is a failed attempt, like any other answer.
* httpx's exception tree tells transient from permanent: timeouts, network errors and
  protocol garbage from the receiver (``TimeoutException``, ``NetworkError``,
  ``RemoteProtocolError``, ``ProxyError``) are retried; a URL httpx cannot send to
  (``UnsupportedProtocol``, ``InvalidURL``, ``LocalProtocolError``) is dead at once.
* Retry schedule: retry *n* waits 5 s × 3^(n−1), capped at 3 h, times a random jitter
  in [1, 1.5) — 5–7.5 s, 15–22.5 s, 45 s … — and never less than the receiver's
  ``Retry-After`` (capped at 6 h). Retries stop at ``webhook_max_age`` (26 h) after
  the delivery was queued: the last retry is clamped to that moment, so the schedule
  always reaches ≥ 24 h; if it fails too, the delivery is dead-lettered.
* The receiver's address is checked after DNS resolution and the socket goes to the
  checked address (``services/alerts/targets.py``); a refused address is permanent.
  The secret is opened (``shared/secretbox.py``) when the attempt is claimed; one that
  does not open (its key is not configured) fails the attempt, which is retried, so
  adding the key to ``QCPULSE_SECRET_KEY_PREVIOUS`` heals it. Neither the secret nor
  the signature is ever logged; :class:`Job` hides the secret from its ``repr``.
* Concurrency: a pool of ``webhook_concurrency`` senders; at most a quarter of them
  (at least one) may be busy with one subscription, so a receiver that hangs until
  the timeout never delays the others.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from services.alerts import repository
from services.alerts.models import (
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Subscription,
)
from services.alerts.service import DELIVERIES_TOPIC, disable_subscription, secret_context
from services.alerts.targets import Guard, GuardedTransport, Resolver, TargetRefusedError
from shared.db import is_postgres
from shared.metrics import WEBHOOK_ATTEMPTS
from shared.runtime import Runtime
from shared.secretbox import SecretKeyError, secret_box
from shared.settings import Settings

log = structlog.get_logger(__name__)

FIRST_RETRY = timedelta(seconds=5)
BACKOFF_FACTOR = 3
MAX_BACKOFF = timedelta(hours=3)
JITTER = 0.5
MAX_RETRY_AFTER = timedelta(hours=6)
USER_AGENT = "qcpulse-webhooks/0.1"
_ERROR_CHARS = 300
_RNG = random.SystemRandom()


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed attempt: everything needed to send it without the database."""

    delivery_id: str
    attempt_id: int
    subscription_id: str
    url: str
    #: The clear signing secret; None when it could not be opened (see ``problem``).
    secret: str | None = field(repr=False)
    webhook_id: str
    body: str
    #: Why this attempt cannot be sent (the secret does not open).
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Result:
    status_code: int | None
    latency_ms: float
    error: str | None = None
    #: Seconds the receiver asked us to wait (``Retry-After``).
    retry_after: float | None = None
    #: Sending again cannot help.
    permanent: bool = False

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def backoff(step: int, rng: random.Random = _RNG) -> timedelta:
    """The wait before retry number ``step`` (1-based)."""
    base = FIRST_RETRY.total_seconds() * BACKOFF_FACTOR ** (min(step, 20) - 1)
    base = min(base, MAX_BACKOFF.total_seconds())
    return timedelta(seconds=base * (1 + JITTER * rng.random()))


def lease(settings: Settings) -> timedelta:
    """How long a claimed attempt may take before another sender may try again."""
    return settings.webhook_timeout * 3 + timedelta(seconds=30)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def signed_headers(secret: str, webhook_id: str, body: str, at: datetime) -> dict[str, str]:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
        "content-type": "application/json",
    }


def make_client(settings: Settings, *, resolver: Resolver | None = None) -> httpx.Client:
    """The delivery client: no redirects, no proxies from the environment, and every
    connection through the address guard (``resolver`` is for tests)."""
    size = settings.webhook_concurrency
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    guard = Guard(allow_private=settings.webhook_allow_private, resolver=resolver)
    return httpx.Client(
        timeout=httpx.Timeout(settings.webhook_timeout.total_seconds()),
        follow_redirects=False,
        trust_env=False,
        transport=GuardedTransport(guard, limits=limits),
        headers={"user-agent": USER_AGENT},
    )


def _clip(text: str) -> str:
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"


def _describe(response: httpx.Response) -> str:
    if response.is_redirect:
        location = response.headers.get("location")
        return f"HTTP {response.status_code}: redirect to {location!r} not followed"
    snippet = b""
    for chunk in response.iter_bytes():
        snippet += chunk
        if len(snippet) >= 200:
            break
    text = snippet[:200].decode("utf-8", "replace").strip()
    return f"HTTP {response.status_code}" + (f": {text}" if text else "")


def send(client: httpx.Client, job: Job) -> Result:
    """One attempt. Never raises: every failure becomes a :class:`Result`."""
    if job.secret is None:
        return Result(None, 0.0, error=_clip(job.problem or "no signing secret"))
    # The wall clock, not runtime.clock: receivers reject timestamps more than 5 min off.
    at = datetime.fromtimestamp(int(time.time()), UTC)
    headers = signed_headers(job.secret, job.webhook_id, job.body, at)
    started = time.perf_counter()

    def elapsed() -> float:
        return round((time.perf_counter() - started) * 1000, 1)

    try:
        with client.stream("POST", job.url, content=job.body.encode(), headers=headers) as response:
            if response.is_success:
                return Result(response.status_code, elapsed())
            return Result(
                response.status_code,
                elapsed(),
                error=_clip(_describe(response)),
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
    except TargetRefusedError as exc:
        return Result(None, elapsed(), error=_clip(f"receiver refused: {exc}"), permanent=True)
    except httpx.TimeoutException as exc:
        return Result(None, elapsed(), error=_clip(f"timeout ({type(exc).__name__}): {exc}"))
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
        return Result(None, elapsed(), error=_clip(f"{type(exc).__name__}: {exc}"), permanent=True)
    except httpx.HTTPError as exc:  # NetworkError, RemoteProtocolError, ProxyError …
        return Result(None, elapsed(), error=_clip(f"{type(exc).__name__}: {exc}"))


def claim(
    runtime: Runtime,
    limit: int,
    in_flight: Mapping[str, int] | None = None,
    per_subscription: int | None = None,
) -> list[Job]:
    """Claim up to ``limit`` due deliveries, at most ``per_subscription`` in flight per
    subscription (counting ``in_flight``, what this process already sends)."""
    busy = dict(in_flight or {})
    cap = per_subscription or limit
    box = secret_box(runtime.settings)
    with runtime.read() as session:  # look before taking the write lock (SQLite)
        if not repository.has_due_deliveries(session, runtime.clock.now()):
            return []

    def work(session: Session) -> list[Job]:
        now = runtime.clock.now()
        lease_until = now + lease(runtime.settings)
        full = [s for s, n in busy.items() if n >= cap]
        taken: Counter[str] = Counter(busy)
        jobs: list[Job] = []
        for delivery, sub in repository.due_deliveries(session, now, limit * 4, full):
            if len(jobs) >= limit:
                break
            if taken[sub.id] >= cap:
                continue
            if delivery.attempt_count:
                for stale in repository.in_flight_attempts(session, delivery.id):
                    stale.outcome = AttemptOutcome.INTERRUPTED
                    stale.error = "the sender stopped during this attempt; sent again"
            if sub.deleted_at is not None or not sub.enabled:
                delivery.status = (
                    DeliveryStatus.CANCELLED if sub.deleted_at is not None else DeliveryStatus.DEAD
                )
                delivery.next_attempt_at, delivery.finished_at = None, now
                delivery.last_error = "subscription deleted or disabled"
                continue
            delivery.attempt_count += 1
            delivery.next_attempt_at = lease_until
            attempt = DeliveryAttempt(
                delivery_id=delivery.id,
                number=delivery.attempt_count,
                started_at=now,
                outcome=AttemptOutcome.IN_FLIGHT,
            )
            session.add(attempt)
            session.flush()
            taken[sub.id] += 1
            secret: str | None
            problem = None
            try:
                secret = box.open(sub.secret, secret_context(sub.id))
            except SecretKeyError as exc:
                secret, problem = None, f"the subscription's secret cannot be opened: {exc}"
            jobs.append(
                Job(
                    delivery.id,
                    attempt.id,
                    sub.id,
                    sub.url,
                    secret,
                    delivery.webhook_id,
                    delivery.body,
                    problem,
                )
            )
        return jobs

    return runtime.write_tx(work)


def record(runtime: Runtime, job: Job, result: Result) -> AttemptOutcome:
    """Write what the receiver answered, and what happens next."""

    def work(session: Session) -> AttemptOutcome:
        now = runtime.clock.now()
        delivery = session.get(Delivery, job.delivery_id, with_for_update=is_postgres(session))
        attempt = session.get(DeliveryAttempt, job.attempt_id)
        if delivery is None or attempt is None:
            return AttemptOutcome.FAILED
        outcome = AttemptOutcome.DELIVERED if result.delivered else AttemptOutcome.FAILED
        attempt.outcome = outcome
        attempt.status_code = result.status_code
        attempt.latency_ms = result.latency_ms
        attempt.error = result.error
        delivery.last_status_code = result.status_code
        delivery.last_error = result.error
        if delivery.status != DeliveryStatus.PENDING:
            return outcome  # cancelled, or delivered by a newer attempt, meanwhile
        if result.delivered:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.next_attempt_at, delivery.finished_at = None, now
        elif attempt.number != delivery.attempt_count:
            pass  # a newer attempt (after this one's lease ran out) decides what comes next
        elif result.status_code == 410:
            sub = session.get(Subscription, job.subscription_id)
            assert sub is not None
            disable_subscription(session, sub, "the receiver answered 410 Gone", now)
        elif result.permanent or now >= delivery.retry_until:
            delivery.status = DeliveryStatus.DEAD
            delivery.next_attempt_at, delivery.finished_at = None, now
        else:
            delivery.backoff_step += 1
            delay = backoff(delivery.backoff_step)
            if result.retry_after is not None:
                wanted = timedelta(seconds=result.retry_after)
                delay = max(delay, min(wanted, MAX_RETRY_AFTER))
            delivery.next_attempt_at = min(now + delay, delivery.retry_until)
            attempt.next_retry_at = delivery.next_attempt_at
        return outcome

    outcome = runtime.write_tx(work)
    WEBHOOK_ATTEMPTS.labels(outcome.value).inc()
    log.info(
        "webhook attempt",
        delivery=job.delivery_id,
        webhook_id=job.webhook_id,
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        outcome=outcome.value,
        error=result.error,
    )
    return outcome


def deliver_due_once(runtime: Runtime, *, client: httpx.Client | None = None) -> int:
    """Send every delivery due now (up to ``webhook_concurrency`` at once) and wait for
    the answers. Tests call this; the worker uses :class:`Dispatcher`, which never waits."""
    settings = runtime.settings
    jobs = claim(runtime, settings.webhook_concurrency)
    if not jobs:
        return 0
    own = client is None
    http = client or make_client(settings)

    def attempt(job: Job) -> AttemptOutcome:
        return record(runtime, job, send(http, job))

    try:
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="webhook") as pool:
            wait([pool.submit(attempt, job) for job in jobs])
    finally:
        if own:
            http.close()
    return len(jobs)


class Dispatcher:
    """The delivery loop's sender pool. :meth:`step` claims as many due deliveries as
    there are free senders and returns at once; each sender records its answer and wakes
    the loop."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.size = runtime.settings.webhook_concurrency
        self.per_subscription = max(1, self.size // 4)
        self.client = make_client(runtime.settings)
        self.pool = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="webhook")
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()

    def step(self) -> int:
        with self._lock:
            free = self.size - sum(self._in_flight.values())
            busy = dict(self._in_flight)
        if free <= 0:
            return 0
        jobs = claim(self.runtime, free, busy, self.per_subscription)
        for job in jobs:
            with self._lock:
                self._in_flight[job.subscription_id] += 1
            self.pool.submit(self._run, job)
        return len(jobs)

    def _run(self, job: Job) -> None:
        try:
            record(self.runtime, job, send(self.client, job))
        except Exception:  # the lease runs out and the delivery is sent again
            log.exception("recording a webhook attempt failed", delivery=job.delivery_id)
        finally:
            with self._lock:
                self._in_flight[job.subscription_id] -= 1
                if self._in_flight[job.subscription_id] <= 0:
                    del self._in_flight[job.subscription_id]
            self.runtime.notifier.notify({DELIVERIES_TOPIC})

    def in_flight(self) -> int:
        with self._lock:
            return sum(self._in_flight.values())

    def close(self) -> None:
        """Let attempts in flight finish (each is bounded by the timeout) and record."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()
