"""Reading indicators: values, series with control limits, breakdowns, cases.

Every period rolls up from the day counters, so a year's value reads at most a few
hundred rows per department, never the cases.
"""

from __future__ import annotations

import base64
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

from services.indicators import manual
from services.indicators.definitions import IndicatorDefinition
from services.indicators.models import CaseRow, CounterRow, TargetRow
from services.indicators.profiles import ProfileSet
from shared.errors import InvalidInputError, UnprocessableError
from shared.models import Tenant

Granularity = Literal["day", "week", "month", "quarter", "year"]
Unit = Literal["percent", "per_100", "per_1000", "per_10000"]
SCALE: dict[str, int] = {"percent": 1, "per_100": 100, "per_1000": 1000, "per_10000": 10000}


@dataclass(frozen=True, slots=True)
class IndicatorShape:
    """What the arithmetic needs to know about an indicator."""

    code: str
    kind: Literal["proportion", "ratio", "manual"]
    unit: Unit
    direction: Literal["higher_is_better", "lower_is_better"]
    default_target: float | None
    #: Values entered by month (``kind: manual``), not counted from cases; ``kind`` is
    #: then the arithmetic, ``proportion`` or ``ratio`` (``manual.measure``).
    manual: bool = False


def shape_of(defn: IndicatorDefinition) -> IndicatorShape:
    """The arithmetic of a definition; a manual one's kind is its ``manual.measure``."""
    if defn.kind == "manual":
        return IndicatorShape(
            defn.code, manual.measure(defn), defn.unit, defn.direction, defn.target, manual=True
        )
    return IndicatorShape(defn.code, defn.kind, defn.unit, defn.direction, defn.target)


@dataclass(frozen=True, slots=True)
class Counts:
    numerator: int = 0
    denominator_only: int = 0
    excluded: int = 0
    pending: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.numerator + other.numerator,
            self.denominator_only + other.denominator_only,
            self.excluded + other.excluded,
            self.pending + other.pending,
        )


def denominator(shape: IndicatorShape, counts: Counts) -> int:
    """Proportions: cases in the numerator plus cases in the denominator only.
    Ratios: the denominator case set alone (discharges, for events per 100 discharges)."""
    if shape.kind == "ratio":
        return counts.denominator_only
    return counts.numerator + counts.denominator_only


def rate(shape: IndicatorShape, counts: Counts) -> float | None:
    den = denominator(shape, counts)
    if den == 0:
        return None
    return counts.numerator / den * SCALE[shape.unit]


def meets(shape: IndicatorShape, value: float | None, target: float | None) -> bool | None:
    if value is None or target is None:
        return None
    return value >= target if shape.direction == "higher_is_better" else value <= target


def check_range(start: date, end: date) -> None:
    if start > end:
        raise UnprocessableError(f"'from' ({start}) is after 'to' ({end})")
    if (end - start).days > 366 * 20:
        raise UnprocessableError("the range may span at most 20 years")


@dataclass(frozen=True, slots=True)
class Target:
    value: float | None
    #: Where it comes from: ``tenant`` (its own target), ``profile`` (a number of the
    #: tenant's profile), ``previous_year`` (the profile says last year's rate),
    #: ``definition``, or None when there is no target.
    source: Literal["tenant", "profile", "previous_year", "definition"] | None


def previous_year(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def resolve_target(
    session: Session,
    tenant_id: str,
    shape: IndicatorShape,
    *,
    profiles: ProfileSet | None = None,
    period: tuple[date, date] | None = None,
    departments: Sequence[str] | None = None,
) -> Target:
    """The tenant's own target, else its profile's entry, else the definition's. A
    ``previous_year`` entry is the indicator's rate over ``period`` one year earlier
    (for ``departments``); without a period, or without a rate last year, it falls
    back to the entry's ``target`` (None when it has none)."""
    row = session.get(TargetRow, (tenant_id, shape.code))
    if row is not None:
        return Target(row.target, "tenant")
    tenant = session.get(Tenant, tenant_id) if profiles is not None else None
    profile = profiles.get(tenant.target_profile) if profiles and tenant else None
    entry = profile.entries.get(shape.code) if profile is not None else None
    if entry is not None:
        if not entry.previous_year:
            return Target(entry.target, "profile")
        last: float | None = None
        if period is not None:
            start, end = previous_year(period[0]), previous_year(period[1])
            last = rate(shape, totals_for(session, tenant_id, shape, start, end, departments))
        if last is not None:
            return Target(last, "previous_year")
        return Target(entry.target, "profile" if entry.target is not None else None)
    if shape.default_target is not None:
        return Target(shape.default_target, "definition")
    return Target(None, None)


def target_for(
    session: Session,
    tenant_id: str,
    shape: IndicatorShape,
    *,
    profiles: ProfileSet | None = None,
    period: tuple[date, date] | None = None,
    departments: Sequence[str] | None = None,
) -> float | None:
    """The target in effect (see :func:`resolve_target`). Without ``profiles`` the
    tenant's profile is not consulted: the tenant's own target, else the definition's."""
    return resolve_target(
        session, tenant_id, shape, profiles=profiles, period=period, departments=departments
    ).value


_SUMS = (
    sa.func.coalesce(sa.func.sum(CounterRow.numerator), 0),
    sa.func.coalesce(sa.func.sum(CounterRow.denominator), 0),
    sa.func.coalesce(sa.func.sum(CounterRow.excluded), 0),
    sa.func.coalesce(sa.func.sum(CounterRow.pending), 0),
)


def _summed(
    session: Session,
    tenant_id: str,
    code: str,
    start: date,
    end: date,
    departments: Sequence[str] | None,
    *group_by: sa.ColumnElement[Any] | InstrumentedAttribute[Any],
) -> list[tuple[tuple[Any, ...], Counts]]:
    """Day counters of a range summed by the database, one row per ``group_by`` value:
    a year at a hospital of 50 departments is 18,000 counter rows, and carrying them
    into Python cost more than the rest of a request."""
    check_range(start, end)
    query = sa.select(*group_by, *_SUMS).where(
        CounterRow.tenant_id == tenant_id,
        CounterRow.indicator == code,
        CounterRow.day >= start,
        CounterRow.day <= end,
    )
    if departments is not None:
        query = query.where(CounterRow.department.in_(list(departments)))
    if group_by:
        query = query.group_by(*group_by)
    width = len(group_by)
    return [
        (tuple(row[:width]), Counts(*(int(v) for v in row[width:])))
        for row in session.execute(query)
    ]


def totals(
    session: Session,
    tenant_id: str,
    code: str,
    start: date,
    end: date,
    departments: Sequence[str] | None = None,
) -> Counts:
    """The day counters of a range summed by the database (one row back)."""
    [(_, total)] = _summed(session, tenant_id, code, start, end, departments)
    return total


def manual_counts(shape: IndicatorShape, entry: manual.Entry) -> Counts:
    """A manual value as counts: a proportion's denominator holds its numerator, a
    ratio's denominator is a set of its own (see :func:`denominator`)."""
    if shape.kind == "ratio":
        return Counts(entry.numerator, entry.denominator)
    return Counts(entry.numerator, entry.denominator - entry.numerator)


def _manual_months(
    session: Session,
    tenant_id: str,
    shape: IndicatorShape,
    start: date,
    end: date,
    departments: Sequence[str] | None,
) -> dict[date, Counts]:
    """Each month touching [start, end] with a value, pooled (``manual.pooled``)."""
    check_range(start, end)
    months = manual.monthly(session, tenant_id, shape.code, start, end, departments)
    return {
        month: manual_counts(shape, manual.pooled(by_department, departments))
        for month, by_department in months.items()
    }


def totals_for(
    session: Session,
    tenant_id: str,
    shape: IndicatorShape,
    start: date,
    end: date,
    departments: Sequence[str] | None = None,
) -> Counts:
    """:func:`totals`, or the sum of the months' values of a manual indicator."""
    if not shape.manual:
        return totals(session, tenant_id, shape.code, start, end, departments)
    total = Counts()
    for counts in _manual_months(session, tenant_id, shape, start, end, departments).values():
        total = total + counts
    return total


def value(
    session: Session,
    tenant_id: str,
    shape: IndicatorShape,
    start: date,
    end: date,
    departments: Sequence[str] | None = None,
    *,
    profiles: ProfileSet | None = None,
) -> dict[str, Any]:
    total = totals_for(session, tenant_id, shape, start, end, departments)
    return summarize(
        session,
        tenant_id,
        shape,
        total,
        profiles=profiles,
        period=(start, end),
        departments=departments,
    )


def summarize(
    session: Session,
    tenant_id: str,
    shape: IndicatorShape,
    total: Counts,
    *,
    profiles: ProfileSet | None = None,
    period: tuple[date, date] | None = None,
    departments: Sequence[str] | None = None,
) -> dict[str, Any]:
    target = target_for(
        session, tenant_id, shape, profiles=profiles, period=period, departments=departments
    )
    r = rate(shape, total)
    return {
        "numerator": total.numerator,
        "denominator": denominator(shape, total),
        "rate": r,
        "pending": total.pending,
        "excluded": total.excluded,
        "target": target,
        "meets_target": meets(shape, r, target),
    }


def period_start(day: date, granularity: Granularity) -> date:
    match granularity:
        case "day":
            return day
        case "week":
            return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
        case "month":
            return day.replace(day=1)
        case "quarter":
            return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
        case "year":
            return date(day.year, 1, 1)


def next_period(start: date, granularity: Granularity) -> date:
    match granularity:
        case "day":
            return start + timedelta(days=1)
        case "week":
            return start + timedelta(days=7)
        case "month":
            return date(start.year + start.month // 12, start.month % 12 + 1, 1)
        case "quarter":
            month = start.month + 3
            return date(start.year + (month - 1) // 12, (month - 1) % 12 + 1, 1)
        case "year":
            return date(start.year + 1, 1, 1)


def control_limits(
    shape: IndicatorShape, center: float | None, n: int
) -> tuple[float | None, float | None]:
    """3-sigma limits around ``center`` (in fraction units) for a point with ``n``
    denominator cases: a p-chart for proportions, a u-chart for ratios."""
    if center is None or n == 0:
        return None, None
    if shape.kind == "ratio":
        sigma = math.sqrt(center / n)
        return center + 3 * sigma, max(0.0, center - 3 * sigma)
    sigma = math.sqrt(center * (1 - center) / n)
    return min(1.0, center + 3 * sigma), max(0.0, center - 3 * sigma)


def series(
    session: Session,
    tenant_id: str,
    shape: IndicatorShape,
    granularity: Granularity,
    start: date,
    end: date,
    departments: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    buckets: dict[date, Counts] = defaultdict(Counts)
    if shape.manual:
        if granularity in ("day", "week"):
            raise InvalidInputError(
                f"'{shape.code}' is entered by month: use granularity month, quarter or year"
            )
        for month, counts in _manual_months(
            session, tenant_id, shape, start, end, departments
        ).items():
            bucket = period_start(month, granularity)
            buckets[bucket] = buckets[bucket] + counts
    else:
        # Summed per day, or per month when no bucket is shorter than a month.
        if granularity in ("day", "week"):
            keys: tuple[sa.ColumnElement[Any] | InstrumentedAttribute[Any], ...] = (CounterRow.day,)
        else:
            keys = (sa.extract("year", CounterRow.day), sa.extract("month", CounterRow.day))
        for key_values, counts in _summed(
            session, tenant_id, shape.code, start, end, departments, *keys
        ):
            if len(key_values) == 1:
                day = key_values[0]
            else:
                day = date(int(key_values[0]), int(key_values[1]), 1)
            bucket = period_start(day, granularity)
            buckets[bucket] = buckets[bucket] + counts
    total = Counts()
    for counts in buckets.values():
        total = total + counts
    scale = SCALE[shape.unit]
    total_den = denominator(shape, total)
    center = total.numerator / total_den if total_den else None
    points = []
    cursor = period_start(start, granularity)
    while cursor <= end:
        counts = buckets.get(cursor, Counts())
        n = denominator(shape, counts)
        ucl, lcl = control_limits(shape, center, n)
        points.append(
            {
                "period_start": cursor.isoformat(),
                "numerator": counts.numerator,
                "denominator": n,
                "rate": rate(shape, counts),
                "pending": counts.pending,
                "excluded": counts.excluded,
                "center": center * scale if center is not None else None,
                "ucl": ucl * scale if ucl is not None else None,
                "lcl": lcl * scale if lcl is not None else None,
            }
        )
        cursor = next_period(cursor, granularity)
    return points


def breakdown(
    session: Session,
    tenant_id: str,
    shape: IndicatorShape,
    start: date,
    end: date,
    departments: Sequence[str] | None = None,
) -> dict[str, Counts]:
    if shape.manual:
        # Department entries only: the whole-hospital entry is no department's.
        check_range(start, end)
        by_department: dict[str, Counts] = defaultdict(Counts)
        months = manual.monthly(session, tenant_id, shape.code, start, end, departments)
        for entries in months.values():
            for dept, entry in entries.items():
                if dept != manual.HOSPITAL:
                    by_department[dept] = by_department[dept] + manual_counts(shape, entry)
        return dict(sorted(by_department.items()))
    rows = _summed(session, tenant_id, shape.code, start, end, departments, CounterRow.department)
    return {dept: counts for (dept,), counts in sorted(rows, key=lambda row: row[0])}


# -- cases ------------------------------------------------------------------------


def _encode_cursor(row: CaseRow) -> str:
    raw = orjson.dumps(
        [row.period_date.isoformat() if row.period_date else "", row.encounter_id, row.key]
    )
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        period, encounter_id, key = orjson.loads(raw)
        return str(period), str(encounter_id), str(key)
    except (ValueError, TypeError) as exc:
        raise UnprocessableError("invalid cursor") from exc


def cases(
    session: Session,
    tenant_id: str,
    code: str,
    *,
    status: str | None,
    start: date | None,
    end: date | None,
    departments: Sequence[str] | None,
    limit: int,
    cursor: str | None,
    now: datetime,
) -> tuple[list[dict[str, Any]], str | None]:
    if start and end:
        check_range(start, end)
    period = sa.func.coalesce(CaseRow.period_date, sa.literal(date(1, 1, 1), sa.Date))
    query = sa.select(CaseRow).where(CaseRow.tenant_id == tenant_id, CaseRow.indicator == code)
    if status:
        query = query.where(CaseRow.status == status)
    if start:
        query = query.where(CaseRow.period_date >= start)
    if end:
        query = query.where(CaseRow.period_date <= end)
    if departments is not None:
        query = query.where(CaseRow.department.in_(list(departments)))
    if cursor:
        c_period, c_encounter, c_key = _decode_cursor(cursor)
        c_date = date.fromisoformat(c_period) if c_period else date(1, 1, 1)
        query = query.where(
            sa.tuple_(period, CaseRow.encounter_id, CaseRow.key)
            > sa.tuple_(sa.literal(c_date, sa.Date), sa.literal(c_encounter), sa.literal(c_key))
        )
    rows = session.scalars(
        query.order_by(period, CaseRow.encounter_id, CaseRow.key).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    out = []
    for row in rows:
        elapsed = None
        if row.clock_start is not None:
            stop = row.clock_stop or now
            elapsed = round((stop - row.clock_start).total_seconds() / 60, 1)
        out.append(
            {
                "episode": f"Encounter/{row.encounter_id}",
                "case": row.key,
                "department": row.department,
                "status": row.status,
                "clock_start": row.clock_start.isoformat() if row.clock_start else None,
                "clock_stop": row.clock_stop.isoformat() if row.clock_stop else None,
                "deadline": row.deadline.isoformat() if row.deadline else None,
                "elapsed_minutes": elapsed,
                "period_date": row.period_date.isoformat() if row.period_date else None,
                "patient": f"Patient/{row.patient_id}" if row.patient_id else None,
            }
        )
    return out, (_encode_cursor(rows[-1]) if more and rows else None)
