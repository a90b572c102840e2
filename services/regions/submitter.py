"""Federated submission, the hospital's side (docs/FEDERATION.md).

Every ``QCPULSE_REGION_SUBMIT_INTERVAL`` the submitter builds a summary MeasureReport
per reported indicator × month × department (and the hospital total) of the last
``QCPULSE_REGION_SUBMIT_MONTHS`` months, and posts those whose digest differs from the
one last accepted — a closed month changed by late data — together with the current
month's. What was sent is recorded only after the region answered 2xx, so a change is
never lost: a region that is offline or answers 5xx is retried with exponential
backoff and jitter, and the next success carries everything still unsent.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Mapped, Session, mapped_column

from services.indicators import catalogue_for, queries, reported_codes
from services.indicators.measure_report import measure_report
from services.regions.federation import MEMBER_SYSTEM, report_digest
from shared.db import Base, UTCDateTime
from shared.runtime import Runtime
from shared.settings import Settings

log = structlog.get_logger(__name__)

#: Reports per POST: well inside the region's ``QCPULSE_MAX_BUNDLE_ENTRIES``.
BATCH = 500
#: The first retry's delay; each next one doubles, up to ``region_submit_max_backoff``.
BACKOFF_BASE = timedelta(seconds=1)
#: ``department`` of the hospital total in the state table (its key has no NULL).
HOSPITAL = ""


class SubmissionStateRow(Base):
    """The digest of the last report of one figure the region accepted (2xx)."""

    __tablename__ = "region_submission_state"

    region_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    month: Mapped[str] = mapped_column(sa.String(7), primary_key=True)
    #: ``HOSPITAL`` (empty) for the whole hospital.
    department: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(64))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, slots=True)
class Target:
    """Where and as whom this instance submits (from the settings)."""

    url: str
    region_id: str
    key: str
    tenant_id: str
    member_id: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Target | None:
        if not (settings.region_url and settings.region_id and settings.region_submission_key):
            return None
        tenant = settings.region_tenant or settings.bootstrap_tenant
        if tenant is None:
            raise ValueError("QCPULSE_REGION_TENANT (or QCPULSE_BOOTSTRAP_TENANT) must be set")
        return cls(
            url=settings.region_url.rstrip("/"),
            region_id=settings.region_id,
            key=settings.region_submission_key.get_secret_value(),
            tenant_id=tenant,
            member_id=settings.region_member_id or tenant,
        )

    @property
    def endpoint(self) -> str:
        return f"{self.url}/api/v1/regions/{self.region_id}/submissions"


@dataclass(frozen=True, slots=True)
class Pending:
    code: str
    month: str
    department: str | None
    digest: str
    report: dict[str, Any]


class RegionUnavailable(Exception):
    """The region could not take the reports now (offline, timeout, 5xx, 429): retry."""


class RegionRefused(Exception):
    """The region refused the reports (4xx): retried at the next interval, not sooner."""


def months_back(today: date, count: int) -> list[date]:
    """The first days of this month and the ``count - 1`` before it, oldest first."""
    first = today.replace(day=1)
    out = [first]
    for _ in range(count - 1):
        first = (first - timedelta(days=1)).replace(day=1)
        out.append(first)
    return out[::-1]


def _month_end(first: date) -> date:
    return queries.next_period(first, "month") - timedelta(days=1)


def _has_data(counts: queries.Counts) -> bool:
    return bool(counts.numerator or counts.denominator_only or counts.excluded or counts.pending)


def _report(
    target: Target,
    defn: Any,
    shape: queries.IndicatorShape,
    first: date,
    tz: Any,
    counts: queries.Counts,
    department: str | None,
    now: datetime,
) -> dict[str, Any]:
    report = measure_report(
        defn,
        shape,
        target.tenant_id,
        first,
        _month_end(first),
        tz,
        counts,
        department=department,
        generated=now,
    )
    report["id"] = uuid.uuid4().hex
    report["reporter"] = {
        "identifier": {"system": MEMBER_SYSTEM, "value": target.member_id},
        "display": target.member_id,
    }
    return report


def pending_reports(
    runtime: Runtime, session: Session, target: Target, now: datetime
) -> list[Pending]:
    """The reports to send now: every figure with data (or sent before) whose digest is
    not the one last accepted, and all of the current month's."""
    tz = runtime.tenant_zone(session, target.tenant_id)
    today = now.astimezone(tz).date()
    months = months_back(today, runtime.settings.region_submit_months)
    labels = {m: f"{m.year:04d}-{m.month:02d}" for m in months}
    current = labels[months[-1]]
    sent: dict[tuple[str, str, str], str] = {
        (row.code, row.month, row.department): row.digest
        for row in session.scalars(
            sa.select(SubmissionStateRow).where(
                SubmissionStateRow.region_id == target.region_id,
                SubmissionStateRow.tenant_id == target.tenant_id,
                SubmissionStateRow.month.in_(list(labels.values())),
            )
        )
    }
    sent_codes = {code for code, _, _ in sent}
    catalogue = catalogue_for(runtime.settings.indicators_dir)
    out: list[Pending] = []
    for code in sorted(reported_codes(runtime, session, target.tenant_id)):
        defn = catalogue.get(code)
        if defn is None:
            continue
        shape = queries.shape_of(defn)
        window = queries.totals_for(session, target.tenant_id, shape, months[0], today)
        if not _has_data(window) and code not in sent_codes:
            continue  # one query for an indicator this hospital has no case of
        for first in months:
            month = labels[first]
            end = _month_end(first)
            figures: dict[str | None, queries.Counts] = {
                None: queries.totals_for(session, target.tenant_id, shape, first, end)
            }
            figures.update(queries.breakdown(session, target.tenant_id, shape, first, end))
            for (c, m, dept), _ in sent.items():
                if c == code and m == month and dept != HOSPITAL and dept not in figures:
                    figures[dept] = queries.Counts()  # a department whose cases moved away
            for department, counts in figures.items():
                state_key = (code, month, department if department is not None else HOSPITAL)
                last = sent.get(state_key)
                if last is None and not _has_data(counts):
                    continue
                report = _report(target, defn, shape, first, tz, counts, department, now)
                digest = report_digest(report)
                if digest != last or month == current:
                    out.append(Pending(code, month, department, digest, report))
    return out


def _bundle(batch: Sequence[Pending]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"urn:uuid:{uuid.UUID(p.report['id'])}", "resource": p.report}
            for p in batch
        ],
    }


def post(client: httpx.Client, target: Target, batch: Sequence[Pending]) -> str:
    """Post one batch; the region's diagnostics on 2xx, else the exception to act on."""
    try:
        response = client.post(
            target.endpoint,
            json=_bundle(batch),
            headers={
                "Authorization": f"Bearer {target.key}",
                "Content-Type": "application/fhir+json",
            },
        )
    except httpx.TransportError as exc:  # refused, reset, timed out: the region is away
        raise RegionUnavailable(f"{type(exc).__name__}: {exc}") from exc
    if response.is_success:
        return _diagnostics(response)
    if response.status_code >= 500 or response.status_code in (408, 429):
        raise RegionUnavailable(f"HTTP {response.status_code}: {_diagnostics(response)}")
    raise RegionRefused(f"HTTP {response.status_code}: {_diagnostics(response)}")


def _diagnostics(response: httpx.Response) -> str:
    try:
        issues = response.json().get("issue") or []
        return "; ".join(str(i.get("diagnostics", "")) for i in issues)[:500]
    except (ValueError, AttributeError):
        return response.text[:200]


def record(session: Session, target: Target, batch: Sequence[Pending], now: datetime) -> None:
    """What the region accepted: the digest of each report of the batch."""
    for p in batch:
        session.merge(
            SubmissionStateRow(
                region_id=target.region_id,
                tenant_id=target.tenant_id,
                code=p.code,
                month=p.month,
                department=p.department if p.department is not None else HOSPITAL,
                digest=p.digest,
                submitted_at=now,
            )
        )
    session.flush()


def _batches(items: Sequence[Pending]) -> Iterator[Sequence[Pending]]:
    for i in range(0, len(items), BATCH):
        yield items[i : i + BATCH]


def submit_once(runtime: Runtime, client: httpx.Client, target: Target) -> int:
    """One round: build, post, record. Returns the reports the region accepted (new
    or unchanged). RegionUnavailable stops the round (the rest waits for the retry);
    a refused batch is logged and the others still go."""
    now = runtime.clock.now()
    with runtime.read() as session:
        pending = pending_reports(runtime, session, target, now)
    done = 0
    refused: list[str] = []
    for batch in _batches(pending):
        try:
            answer = post(client, target, batch)
        except RegionRefused as exc:
            refused.append(str(exc))
            continue
        runtime.write_tx(partial(record, target=target, batch=batch, now=now))
        done += len(batch)
        log.info("region submission accepted", region=target.region_id, answer=answer)
    if refused:
        raise RegionRefused("; ".join(refused))
    return done


def backoff(attempt: int, cap: timedelta, rng: random.Random) -> float:
    """Seconds before retry ``attempt`` (1, 2, …): doubling from ``BACKOFF_BASE`` up to
    ``cap``, with half of it random so that hospitals cut off together do not all
    come back in the same second."""
    ceiling = min(cap.total_seconds(), BACKOFF_BASE.total_seconds() * 2 ** min(attempt - 1, 30))
    return float(ceiling / 2 + rng.uniform(0, ceiling / 2))


class SubmitterThread(threading.Thread):
    """Submits every interval; after a failure, retries with backoff until it succeeds."""

    def __init__(self, runtime: Runtime, target: Target, *, seed: int | None = None) -> None:
        super().__init__(name="region-submitter", daemon=True)
        self.runtime = runtime
        self.target = target
        self.rng = random.Random(seed)

    def run(self) -> None:
        settings = self.runtime.settings
        interval = settings.region_submit_interval.total_seconds()
        attempt = 0
        with httpx.Client(timeout=30.0) as client:
            while not self.runtime.stop.is_set():
                try:
                    submit_once(self.runtime, client, self.target)
                    attempt, wait = 0, interval
                except RegionUnavailable as exc:
                    attempt += 1
                    wait = backoff(attempt, settings.region_submit_max_backoff, self.rng)
                    log.warning(
                        "region unavailable; will retry",
                        region=self.target.region_id,
                        attempt=attempt,
                        retry_in=round(wait, 2),
                        error=str(exc),
                    )
                except RegionRefused as exc:
                    attempt, wait = 0, interval
                    log.error(
                        "region refused a submission", region=self.target.region_id, error=str(exc)
                    )
                except Exception:
                    attempt, wait = 0, interval
                    log.exception("region submission failed", region=self.target.region_id)
                self.runtime.stop.wait(wait)


def loops(runtime: Runtime) -> list[threading.Thread]:
    """The submitter, when this instance is configured to report to a region."""
    target = Target.from_settings(runtime.settings)
    return [SubmitterThread(runtime, target)] if target is not None else []
