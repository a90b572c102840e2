"""Alert rules: case clocks (at risk, breached, resolved) and department rates.

The indicator service announces every case that appears, changes or disappears
(``cases.changed``). These rules keep their own copy of the clock cases that matter
(``alert_watched_cases``) and decide from the *wall clock* (``runtime.clock``), not
from new data: a STEMI case stays ``pending`` past its deadline until PCI is
documented or the episode closes, so "breached" cannot wait for a status change.

Case alerts — decisions:

* ``case.at_risk`` when a pending case reaches ``at_risk_at`` before its deadline;
  ``case.breached`` when a pending case reaches its deadline, or a case becomes
  ``denominator`` after its deadline (the stop came late, or never). A breach resolves
  the case's at-risk alert (``escalated``). When the timer first sees a case already
  past its deadline, only the breach fires: an at-risk page after the deadline is noise.
* ``case.resolved`` when a case that raised at-risk or breached becomes ``numerator``
  (late documentation or a correction shows it met its target). It is born
  ``resolved`` and resolves the case's other alerts (``met``).
* Each fires at most once per case and kind, whatever the later corrections: the
  watched row remembers which alerts it raised, and a unique key on the alert makes a
  second one impossible even from concurrent writers.
* A case that disappears (retracted data; a STEMI episode that closed without PCI)
  or becomes ``excluded`` resolves its open alerts **silently** (``retracted`` /
  ``excluded``, no webhook): it did not meet its target, so ``case.resolved`` would be
  a false "all clear", and a retraction is a data correction rather than clinical news.
* A case first seen more than 24 h after its deadline raises nothing: that is a
  backfill of old data, not news. Cases seen before their deadline always fire, however
  long the service was down: a deadline that passed during downtime fires at start.
* Watched rows are kept while the case is pending, and for ever once they raised an
  alert; others are dropped.

Rate alerts — decisions:

* Checked for the tenant's *current* month (tenant-local, by ``runtime.clock``) for each
  (indicator, department) whose cases changed; changes to past months raise nothing.
* Deviating when the month has at least ``min_cases`` cases and the rate is on the
  wrong side of the target, or its p-chart point is outside the 3-sigma limits. The
  SPC arm needs ``min_cases`` too: with a handful of cases one miss falls below the
  lower limit of any good unit, and on-call staff would learn to ignore the page.
* ``rate.deviation`` on the first move into deviation in a month, ``rate.recovered``
  (born resolved; it resolves the deviation alert) on the first move back. At most
  one of each per tenant, indicator, department and month: a rate that flaps
  around its target does not page twice. The state row is created on the first
  deviation; months that never deviate leave no row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, assert_never

import structlog
from sqlalchemy.orm import Session

import services.ingest as ingest
from services.alerts import repository
from services.alerts.messages import CaseFacts, Subject, case_body, rate_body
from services.alerts.models import AlertKind, RateReason, RateState, Resolution, WatchedCase
from services.alerts.repository import WatchKey
from services.alerts.service import NewAlert, new_id, raise_alert, resolve_alerts
from services.indicators import (
    RateStatus,
    catalogue_for,
    month_status,
    profiles_for,
    reported_codes,
)
from shared.clinical import CaseStatus
from shared.models import OutboxEvent, Tenant
from shared.runtime import Runtime

log = structlog.get_logger(__name__)

#: A case first seen this long after its deadline is a backfill: no case alert.
STALE_AFTER = timedelta(hours=24)
#: Watched cases re-decided per timer transaction.
TIMER_BATCH = 500


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of a ``cases.changed`` payload (``CaseChange.to_json``)."""

    indicator: str
    encounter_id: str
    key: str
    status: CaseStatus | None
    department: str | None
    period_date: date | None
    clock_start: datetime | None
    clock_stop: datetime | None
    deadline: datetime | None
    at_risk_at: datetime | None
    #: The change's place in the order of changes: its outbox row id. None: unknown.
    order: int | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any], order: int | None = None) -> Change:
        def when(name: str) -> datetime | None:
            value = raw.get(name)
            return datetime.fromisoformat(value) if value else None

        status = raw.get("status")
        period = raw.get("period_date")
        return cls(
            indicator=str(raw["indicator"]),
            encounter_id=str(raw["encounter_id"]),
            key=str(raw["key"]),
            status=CaseStatus(status) if status else None,
            department=raw.get("department"),
            period_date=date.fromisoformat(period) if period else None,
            clock_start=when("clock_start"),
            clock_stop=when("clock_stop"),
            deadline=when("deadline"),
            at_risk_at=when("at_risk_at"),
            order=order,
        )


def deviation_reasons(status: RateStatus) -> list[RateReason]:
    """Why a department's month deviates; empty when it does not."""
    if not status.enough_cases:
        return []
    reasons = []
    if status.meets_target is False:
        reasons.append(RateReason.TARGET)
    if status.outside_limits:
        above = status.rate is not None and status.ucl is not None and status.rate > status.ucl
        reasons.append(RateReason.ABOVE_UCL if above else RateReason.BELOW_LCL)
    return reasons


class Rules:
    """The rules over one transaction, at one reading of the clock."""

    def __init__(self, session: Session, runtime: Runtime, now: datetime) -> None:
        self.session = session
        self.runtime = runtime
        self.now = now
        self.catalogue = catalogue_for(runtime.settings.indicators_dir)
        self.profiles = profiles_for(self.catalogue)
        self._department_names: dict[str, dict[str, str]] = {}
        self._reported: dict[str, frozenset[str]] = {}
        self._tenant_grace: dict[str, timedelta] = {}
        #: Changes ignored because the case already applied a newer one.
        self.ignored = 0

    def reports(self, tenant_id: str, indicator: str) -> bool:
        """Alerts only for the indicators of the tenant's catalogue year: a 2026 tenant
        hears nothing from the 2025 definitions evaluated beside them."""
        codes = self._reported.get(tenant_id)
        if codes is None:
            codes = self._reported[tenant_id] = reported_codes(
                self.runtime, self.session, tenant_id
            )
        return indicator in codes

    # -- shared ---------------------------------------------------------------------

    def subject(
        self, tenant_id: str, indicator: str, department: str, encounter_id: str | None = None
    ) -> Subject:
        return Subject.of(
            tenant_id,
            indicator,
            self.catalogue.get(indicator),
            department,
            self._department_name(tenant_id, department, encounter_id),
            self.runtime.tenant_zone(self.session, tenant_id),
        )

    def _department_name(
        self, tenant_id: str, department: str, encounter_id: str | None
    ) -> str | None:
        """The label the hospital sends with the department code. A case alert reads it
        from its episode (two indexed queries, on the timer's path); a rate alert, rare,
        from the tenant's department list."""
        if encounter_id is not None:
            episode, _ = ingest.load_episodes(self.session, tenant_id, [encounter_id])[encounter_id]
            if episode is not None and episode.department == department:
                return episode.department_name
        names = self._department_names.get(tenant_id)
        if names is None:
            names = self._department_names[tenant_id] = ingest.department_names(
                self.session, tenant_id
            )
        return names.get(department)

    def local_month(self, tenant_id: str) -> date:
        zone = self.runtime.tenant_zone(self.session, tenant_id)
        return self.now.astimezone(zone).date().replace(day=1)

    def grace(self, tenant_id: str, indicator: str) -> timedelta:
        """How long after the deadline ``case.breached`` waits: the indicator's
        ``alert_grace``, else the tenant's, else ``QCPULSE_ALERT_GRACE``."""
        defn = self.catalogue.get(indicator)
        if defn is not None and defn.alert_grace is not None:
            return defn.alert_grace
        grace = self._tenant_grace.get(tenant_id)
        if grace is None:
            tenant = self.session.get(Tenant, tenant_id)
            seconds = tenant.alert_grace_seconds if tenant is not None else None
            grace = self._tenant_grace[tenant_id] = (
                self.runtime.settings.alert_grace if seconds is None else timedelta(seconds=seconds)
            )
        return grace

    def _breach_due(self, row: WatchedCase) -> datetime:
        """When ``case.breached`` may go out: ``grace`` after the deadline, or after the
        case was first seen when its data came later than its deadline (a backlog)."""
        since = max(row.deadline, row.first_seen_at or row.deadline)
        return since + self.grace(row.tenant_id, row.indicator)

    # -- case alerts ----------------------------------------------------------------

    def on_change(self, tenant_id: str, c: Change, watched: dict[WatchKey, WatchedCase]) -> None:
        """Apply one change. ``watched``: the tenant's watched cases loaded for this batch,
        kept current here (rows added, rows dropped)."""
        ident = (c.indicator, c.encounter_id, c.key)
        row = watched.get(ident)
        if (
            row is not None
            and c.order is not None
            and row.applied_order is not None
            and c.order < row.applied_order
        ):
            # Older than what the case applied: a redelivery, or two events that
            # overtook each other. Applying it would put the case back in the past.
            self.ignored += 1
            log.info(
                "older case change ignored",
                tenant=tenant_id,
                indicator=c.indicator,
                order=c.order,
                applied=row.applied_order,
            )
            return
        if c.status is None or c.deadline is None:
            if row is not None:
                row.status, row.check_at, row.updated_at = None, None, self.now
                row.applied_order = c.order if c.order is not None else row.applied_order
                self._resolve(row, Resolution.RETRACTED)
                self._forget_if_quiet(row, watched)
            return
        if row is None:
            # Every clock case is watched, even one first seen settled: the row
            # remembers the order applied, so that an older change arriving later (the
            # pending state from before) is known to be older.
            if c.deadline <= self.now - STALE_AFTER:
                return
            row = watched[ident] = WatchedCase(
                tenant_id=tenant_id,
                indicator=c.indicator,
                encounter_id=c.encounter_id,
                key=c.key,
                deadline=c.deadline,
                department=c.department or "",
                updated_at=self.now,
                first_seen_at=self.now,
            )
            self.session.add(row)
        row.department = c.department or row.department
        row.status = c.status.value
        row.clock_start, row.clock_stop = c.clock_start, c.clock_stop
        row.deadline, row.at_risk_at = c.deadline, c.at_risk_at
        row.updated_at = self.now
        if c.order is not None:
            row.applied_order = c.order
        match c.status:
            case CaseStatus.PENDING:
                self.decide(row)
            case CaseStatus.DENOMINATOR:
                self.decide_denominator(row)
            case CaseStatus.NUMERATOR:
                row.check_at = None
                alerted = row.at_risk_alert_id or row.breached_alert_id
                if alerted and row.resolved_alert_id is None:
                    row.resolved_alert_id = self._raise_case(AlertKind.CASE_RESOLVED, row)
                self._resolve(row, Resolution.MET)
            case CaseStatus.EXCLUDED:
                row.check_at = None
                self._resolve(row, Resolution.EXCLUDED)
            case _:
                assert_never(c.status)
        self._forget_if_quiet(row, watched)

    def decide(self, row: WatchedCase) -> None:
        """A pending case at ``now``: fire what is due, and say when to look again.
        The breach waits ``grace`` after the deadline: documentation on its way may
        still show the target met."""
        due = self._breach_due(row)
        if self.now >= due:
            self._breach(row)
            row.check_at = None
        elif row.at_risk_at is not None and self.now >= row.at_risk_at:
            first_look = row.at_risk_alert_id is None and row.breached_alert_id is None
            if first_look and self.now < row.deadline:
                row.at_risk_alert_id = self._raise_case(AlertKind.CASE_AT_RISK, row)
            row.check_at = due
        elif row.at_risk_at is not None and row.at_risk_alert_id is None:
            row.check_at = row.at_risk_at
        else:
            row.check_at = due

    def decide_denominator(self, row: WatchedCase) -> None:
        """A case that did not meet its target: a stop documented after the deadline
        is a breach now; a case decided by its deadline (no stop yet) waits the grace."""
        stopped_late = row.clock_stop is not None and row.clock_stop > row.deadline
        due = self._breach_due(row)
        if stopped_late or self.now >= due:
            self._breach(row)
            row.check_at = None
        elif self.now >= row.deadline:
            row.check_at = due
        else:
            row.check_at = None

    def tick(self, row: WatchedCase) -> None:
        """The timer's look at a watched case whose ``check_at`` came."""
        match row.status:
            case CaseStatus.PENDING:
                self.decide(row)
            case CaseStatus.DENOMINATOR:
                self.decide_denominator(row)
            case _:
                row.check_at = None
        self._forget_if_quiet(row, None)

    def _breach(self, row: WatchedCase) -> None:
        if row.breached_alert_id is None:
            row.breached_alert_id = self._raise_case(AlertKind.CASE_BREACHED, row)
            resolve_alerts(self.session, [row.at_risk_alert_id], Resolution.ESCALATED, self.now)

    def _resolve(self, row: WatchedCase, resolution: Resolution) -> None:
        resolve_alerts(
            self.session, [row.at_risk_alert_id, row.breached_alert_id], resolution, self.now
        )

    def _forget_if_quiet(
        self, row: WatchedCase, watched: dict[WatchKey, WatchedCase] | None
    ) -> None:
        """Drop a settled case that raised nothing, but not before ``STALE_AFTER`` past
        its deadline: until then the row remembers the order it applied, so that an
        older change arriving late cannot recreate it (after that, the backfill rule
        ignores such a change anyway)."""
        if row.status == CaseStatus.PENDING or row.check_at is not None:
            return
        if row.at_risk_alert_id or row.breached_alert_id or row.resolved_alert_id:
            return
        forget_at = row.deadline + STALE_AFTER
        if self.now < forget_at:
            row.check_at = forget_at
            return
        if watched is not None:
            watched.pop((row.indicator, row.encounter_id, row.key), None)
        if row in self.session.new:
            self.session.expunge(row)  # added in this batch, never written
        else:
            self.session.delete(row)

    def _raise_case(self, kind: AlertKind, row: WatchedCase) -> str:
        alert_id = new_id("alr")
        case = CaseFacts(
            encounter_id=row.encounter_id,
            key=row.key,
            status=row.status,
            clock_start=row.clock_start,
            clock_stop=row.clock_stop,
            deadline=row.deadline,
            at_risk_at=row.at_risk_at,
        )
        subject = self.subject(row.tenant_id, row.indicator, row.department, row.encounter_id)
        new = NewAlert(
            kind=kind,
            indicator=row.indicator,
            department=row.department,
            dedup_key=f"{kind.value}|{row.indicator}|{row.encounter_id}|{row.key}",
            encounter_id=row.encounter_id,
            case_key=row.key,
            notice=kind == AlertKind.CASE_RESOLVED,
        )
        raise_alert(
            self.session,
            row.tenant_id,
            new,
            alert_id,
            case_body(kind, alert_id, subject, case, self.now),
            settings=self.runtime.settings,
            now=self.now,
        )
        return alert_id

    # -- rate alerts ----------------------------------------------------------------

    def check_rate(self, tenant_id: str, indicator: str, department: str, month: date) -> None:
        defn = self.catalogue.get(indicator)
        if defn is None:
            return
        status = month_status(
            self.session, tenant_id, defn, department, month, profiles=self.profiles
        )
        reasons = deviation_reasons(status)
        deviating = bool(reasons)
        state = repository.rate_state(self.session, tenant_id, indicator, department, month)
        if state is None:
            if not deviating:
                return
            state = RateState(
                tenant_id=tenant_id,
                indicator=indicator,
                department=department,
                month=month,
                deviating=False,
                reasons=[],
                last={},
                checked_at=self.now,
            )
            self.session.add(state)
            self.session.flush()
        if deviating and not state.deviating and state.deviation_alert_id is None:
            state.deviation_alert_id = self._raise_rate(
                AlertKind.RATE_DEVIATION, state, status, reasons
            )
        elif (
            not deviating
            and state.deviating
            and state.deviation_alert_id is not None
            and state.recovered_alert_id is None
        ):
            state.recovered_alert_id = self._raise_rate(
                AlertKind.RATE_RECOVERED, state, status, reasons
            )
            resolve_alerts(self.session, [state.deviation_alert_id], Resolution.RECOVERED, self.now)
        state.deviating = deviating
        state.reasons = [r.value for r in reasons]
        state.last = status.to_json()
        state.checked_at = self.now

    def _raise_rate(
        self, kind: AlertKind, state: RateState, status: RateStatus, reasons: list[RateReason]
    ) -> str:
        alert_id = new_id("alr")
        subject = self.subject(state.tenant_id, state.indicator, state.department)
        new = NewAlert(
            kind=kind,
            indicator=state.indicator,
            department=state.department,
            dedup_key=f"{kind.value}|{state.indicator}|{state.department}|{state.month}",
            month=state.month,
            notice=kind == AlertKind.RATE_RECOVERED,
        )
        raise_alert(
            self.session,
            state.tenant_id,
            new,
            alert_id,
            rate_body(kind, alert_id, subject, status, reasons, self.now),
            settings=self.runtime.settings,
            now=self.now,
        )
        return alert_id


def process(session: Session, runtime: Runtime, events: Sequence[OutboxEvent]) -> None:
    """Apply a batch of ``cases.changed`` events: case rules for each change, then one
    rate check per (tenant, indicator, department) of the current month touched."""
    rules = Rules(session, runtime, runtime.clock.now())
    touched: set[tuple[str, str, str]] = set()
    # One view of the watched cases per tenant for the whole batch: two events about
    # the same case in one batch must see the row the first one added (not yet flushed).
    watched: dict[str, dict[WatchKey, WatchedCase]] = {}
    loaded: dict[str, set[str]] = {}
    for event in events:
        month = rules.local_month(event.tenant_id)
        changes = [Change.parse(raw, event.id) for raw in event.payload.get("changes", ())]
        seen = loaded.setdefault(event.tenant_id, set())
        fresh = {c.encounter_id for c in changes} - seen
        view = watched.setdefault(event.tenant_id, {})
        view.update(repository.watched_cases_of(session, event.tenant_id, fresh))
        seen |= fresh
        for change in changes:
            if not rules.reports(event.tenant_id, change.indicator):
                continue
            rules.on_change(event.tenant_id, change, view)
            if (
                change.department is not None
                and change.period_date is not None
                and change.period_date.replace(day=1) == month
            ):
                touched.add((event.tenant_id, change.indicator, change.department))
    for tenant_id, indicator, department in sorted(touched):
        rules.check_rate(tenant_id, indicator, department, rules.local_month(tenant_id))


def decide_due(session: Session, runtime: Runtime, now: datetime) -> int:
    """The timer's work: re-decide watched cases whose at-risk time or deadline came."""
    rows = repository.due_watched_cases(session, now, TIMER_BATCH)
    rules = Rules(session, runtime, now)
    for row in rows:
        rules.tick(row)
    return len(rows)
