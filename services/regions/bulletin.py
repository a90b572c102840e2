"""The monthly quality bulletin (质量安全月刊) of a hospital or a region, as data.

The Tianjin plan asks for a monthly bulletin; this module builds its content once, and
``xlsx.py`` and ``pdf.py`` only lay it out. Every number is read through the same
functions as the indicator API, so the bulletin of a month holds the numbers of
``GET /api/v1/indicators/{code}/value`` (and ``/series``, ``/breakdown``) for that
month — never a second way of counting:

- the indicator table: ``queries.value`` over the month, with the target it resolved;
- trends: ``queries.series`` by month over the twelve months ending with the bulletin's
  (its center line and 3-sigma limits), and over the twelve months a year earlier for
  year on year;
- SPC signals: the points of that series outside their limits (the console's rule);
- departments most off target: ``queries.breakdown`` + ``queries.summarize`` (the
  breakdown endpoint), departments that missed, largest shortfall first;
- a region's league positions: ``services.regions.league.league_table``.

A bulletin holds aggregates only: no patient, case or episode.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

import services.ingest as ingest
from services.indicators import (
    IndicatorDefinition,
    catalogue_for,
    profiles_for,
    queries,
    reported_codes,
)
from services.regions import league, service
from shared.errors import NotFoundError, UnprocessableError
from shared.models import Tenant
from shared.runtime import Runtime

Scope = Literal["hospital", "region"]
Side = Literal["above", "below"]

#: Months in a trend, the bulletin's month included (as ``rates.BASELINE_MONTHS``).
TREND_MONTHS = 12
#: Departments listed per indicator in "most off target".
DEPARTMENTS_PER_INDICATOR = 5
#: The catalogue year of a region's bulletin (a region has no year of its own; the
#: default a tenant that chose none reports, ``services.indicators.worker``).
REGION_CATALOGUE = "2026"

_MONTH = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True, slots=True)
class IndicatorLine:
    """One indicator's month against its target (the ``/value`` numbers)."""

    code: str
    name_zh: str
    name_en: str
    group: str
    unit: str
    direction: str
    numerator: int
    denominator: int
    rate: float | None
    target: float | None
    target_source: str | None
    meets_target: bool | None
    #: Cases not yet decided, and excluded (a hospital's; None in a region's bulletin:
    #: members report numerators and denominators only).
    pending: int | None
    excluded: int | None
    #: The month before, and the same month a year earlier (year on year).
    previous_month_rate: float | None
    year_ago_rate: float | None
    #: This month's point outside its control limits, and on which side.
    signal: Side | None


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One month of an indicator's twelve-month p-chart (or u-chart), with the same
    month a year earlier."""

    code: str
    month: str
    numerator: int
    denominator: int
    rate: float | None
    center: float | None
    ucl: float | None
    lcl: float | None
    signal: Side | None
    year_ago_numerator: int
    year_ago_denominator: int
    year_ago_rate: float | None


@dataclass(frozen=True, slots=True)
class SpcSignal:
    """A trend point outside its 3-sigma limits; ``favourable`` when on the good side
    (above for higher-is-better)."""

    code: str
    month: str
    rate: float
    center: float | None
    ucl: float
    lcl: float
    side: Side
    favourable: bool


@dataclass(frozen=True, slots=True)
class DepartmentGap:
    """A department (or, in a region's bulletin, a member) that missed a target."""

    code: str
    department: str
    department_name: str | None
    numerator: int
    denominator: int
    rate: float
    target: float
    #: How far on the wrong side of the target, in the indicator's unit (> 0).
    shortfall: float
    #: Fewer cases than the indicator's ``min_cases``: read with care.
    few_cases: bool


@dataclass(frozen=True, slots=True)
class LeaguePosition:
    """One member of a region in one indicator's league table for the month."""

    code: str
    member_id: str
    member_name: str
    reported: bool
    numerator: int | None
    denominator: int | None
    rate: float | None
    low: float | None
    high: float | None
    funnel: str | None
    meets_target: bool | None
    rank: int | None


@dataclass(frozen=True, slots=True)
class Bulletin:
    scope: Scope
    subject_id: str
    subject_name: str
    month: str
    period_from: date
    period_to: date
    timezone: str
    generated_at: datetime
    #: False while the month is still running (a provisional bulletin).
    complete: bool
    #: The departments a department-limited key covers; None: the whole hospital.
    departments: list[str] | None
    indicators: list[IndicatorLine]
    trends: list[TrendPoint]
    signals: list[SpcSignal]
    departments_off_target: list[DepartmentGap]
    league: list[LeaguePosition] = field(default_factory=list)

    @property
    def title_zh(self) -> str:
        year, month = self.month.split("-")
        return f"{self.subject_name} 医疗质量安全月刊 {year}年{int(month)}月"

    @property
    def title_en(self) -> str:
        return f"{self.subject_name} monthly quality and safety bulletin, {self.month}"

    def names(self) -> dict[str, tuple[str, str]]:
        """Indicator code → (Chinese name, English name)."""
        return {i.code: (i.name_zh, i.name_en) for i in self.indicators}

    def units(self) -> dict[str, str]:
        return {i.code: i.unit for i in self.indicators}

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["period_from"] = self.period_from.isoformat()
        out["period_to"] = self.period_to.isoformat()
        out["generated_at"] = self.generated_at.isoformat()
        out["title"] = {"zh": self.title_zh, "en": self.title_en}
        if self.scope == "hospital":
            del out["league"]
        return out


# -- months ---------------------------------------------------------------------------


def parse_month(text: str) -> date:
    """``2026-03`` → 2026-03-01; anything else is a 422."""
    found = _MONTH.fullmatch(text)
    if found is None or not 1 <= int(found[2]) <= 12 or int(found[1]) < 1900:
        raise UnprocessableError(f"invalid month '{text}' (write YYYY-MM, e.g. 2026-03)")
    return date(int(found[1]), int(found[2]), 1)


def add_months(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def month_end(month: date) -> date:
    return add_months(month, 1) - timedelta(days=1)


def check_month(month: date, today: date) -> None:
    """A month that has not begun has no bulletin yet, a 404 (the current month has a
    provisional one)."""
    if month > today:
        raise NotFoundError(
            f"month {month:%Y-%m} has not begun (today is {today.isoformat()} locally)"
        )


def side_of(rate: float | None, ucl: float | None, lcl: float | None) -> Side | None:
    """Outside the limits, as the console marks a point (a hair of tolerance for floats)."""
    if rate is None or ucl is None or lcl is None:
        return None
    if rate > ucl + 1e-9:
        return "above"
    if rate < lcl - 1e-9:
        return "below"
    return None


def shortfall(direction: str, rate: float | None, target: float | None) -> float | None:
    """How far ``rate`` misses ``target`` on the wrong side (None when it does not)."""
    if rate is None or target is None:
        return None
    gap = target - rate if direction == "higher_is_better" else rate - target
    return gap if gap > 1e-12 else None


def signals_of(points: Sequence[TrendPoint], direction: str) -> list[SpcSignal]:
    out = []
    for p in points:
        if p.signal is None or p.rate is None or p.ucl is None or p.lcl is None:
            continue
        good = "above" if direction == "higher_is_better" else "below"
        out.append(
            SpcSignal(p.code, p.month, p.rate, p.center, p.ucl, p.lcl, p.signal, p.signal == good)
        )
    return out


# -- a hospital ------------------------------------------------------------------------


def _trend(
    session: Session,
    tenant_id: str,
    shape: queries.IndicatorShape,
    month: date,
    departments: Sequence[str] | None,
) -> list[TrendPoint]:
    first = add_months(month, 1 - TREND_MONTHS)
    last = month_end(month)
    current = queries.series(session, tenant_id, shape, "month", first, last, departments)
    earlier = queries.series(
        session,
        tenant_id,
        shape,
        "month",
        add_months(first, -12),
        month_end(add_months(month, -12)),
        departments,
    )
    points = []
    for now_point, then_point in zip(current, earlier, strict=True):
        points.append(
            TrendPoint(
                code=shape.code,
                month=now_point["period_start"][:7],
                numerator=now_point["numerator"],
                denominator=now_point["denominator"],
                rate=now_point["rate"],
                center=now_point["center"],
                ucl=now_point["ucl"],
                lcl=now_point["lcl"],
                signal=side_of(now_point["rate"], now_point["ucl"], now_point["lcl"]),
                year_ago_numerator=then_point["numerator"],
                year_ago_denominator=then_point["denominator"],
                year_ago_rate=then_point["rate"],
            )
        )
    return points


def _departments_off_target(
    session: Session,
    tenant_id: str,
    defn: IndicatorDefinition,
    shape: queries.IndicatorShape,
    period: tuple[date, date],
    departments: Sequence[str] | None,
    names: dict[str, str],
    profiles: Any,  # a ProfileSet (services.indicators.profiles_for)
) -> list[DepartmentGap]:
    """As ``GET /indicators/{code}/breakdown``: each department's counts summarised
    against the target in effect for it."""
    start, end = period
    gaps = []
    for dept, counts in queries.breakdown(
        session, tenant_id, shape, start, end, departments
    ).items():
        row = queries.summarize(
            session, tenant_id, shape, counts, profiles=profiles, period=period, departments=[dept]
        )
        gap = shortfall(defn.direction, row["rate"], row["target"])
        if row["meets_target"] is not False or gap is None:
            continue
        gaps.append(
            DepartmentGap(
                code=defn.code,
                department=dept,
                department_name=names.get(dept),
                numerator=row["numerator"],
                denominator=row["denominator"],
                rate=row["rate"],
                target=row["target"],
                shortfall=gap,
                few_cases=row["denominator"] < defn.min_cases,
            )
        )
    # Departments with enough cases first: a department of three cases misses by chance.
    gaps.sort(key=lambda g: (g.few_cases, -g.shortfall, g.department))
    return gaps[:DEPARTMENTS_PER_INDICATOR]


def hospital_bulletin(
    session: Session,
    tenant_id: str,
    month: str,
    *,
    runtime: Runtime,
    departments: Sequence[str] | None = None,
) -> Bulletin:
    """The bulletin of ``month`` (``YYYY-MM``) for one tenant, over the indicators of
    its catalogue year; ``departments`` limits it as a department-limited key is."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFoundError(f"no tenant '{tenant_id}'")
    first = parse_month(month)
    zone = ZoneInfo(tenant.timezone)
    now = runtime.clock.now()
    today = now.astimezone(zone).date()
    check_month(first, today)
    last = month_end(first)
    catalogue = catalogue_for(runtime.settings.indicators_dir)
    profiles = profiles_for(catalogue)
    reported = reported_codes(runtime, session, tenant_id)
    names = ingest.department_names(session, tenant_id)
    scope = list(departments) if departments is not None else None

    lines: list[IndicatorLine] = []
    trends: list[TrendPoint] = []
    signals: list[SpcSignal] = []
    gaps: list[DepartmentGap] = []
    for defn in catalogue.definitions():
        if defn.code not in reported:
            continue
        shape = queries.shape_of(defn)
        value = queries.value(session, tenant_id, shape, first, last, scope, profiles=profiles)
        target = queries.resolve_target(
            session, tenant_id, shape, profiles=profiles, period=(first, last), departments=scope
        )
        points = _trend(session, tenant_id, shape, first, scope)
        this, before = points[-1], points[-2]
        lines.append(
            IndicatorLine(
                code=defn.code,
                name_zh=defn.name.zh,
                name_en=defn.name.en,
                group=defn.effective_group,
                unit=defn.unit,
                direction=defn.direction,
                numerator=value["numerator"],
                denominator=value["denominator"],
                rate=value["rate"],
                target=value["target"],
                target_source=target.source,
                meets_target=value["meets_target"],
                pending=value["pending"],
                excluded=value["excluded"],
                previous_month_rate=before.rate,
                year_ago_rate=this.year_ago_rate,
                signal=this.signal,
            )
        )
        trends.extend(points)
        signals.extend(signals_of(points, defn.direction))
        if value["denominator"] > 0 and value["target"] is not None:
            gaps.extend(
                _departments_off_target(
                    session, tenant_id, defn, shape, (first, last), scope, names, profiles
                )
            )
    return Bulletin(
        scope="hospital",
        subject_id=tenant_id,
        subject_name=tenant.name,
        month=f"{first:%Y-%m}",
        period_from=first,
        period_to=last,
        timezone=tenant.timezone,
        generated_at=now,
        complete=last < today,
        departments=scope,
        indicators=lines,
        trends=trends,
        signals=signals,
        departments_off_target=gaps,
    )


# -- a region --------------------------------------------------------------------------


def _pooled(counts: dict[str, Any], month: str) -> tuple[int, int] | None:
    """The members' hospital totals of ``month`` summed; None when no member reported."""
    present = [by_key[(month, None)] for by_key in counts.values() if (month, None) in by_key]
    if not present:
        return None
    return sum(n for n, _ in present), sum(d for _, d in present)


def _region_trend(
    shape: queries.IndicatorShape, counts: dict[str, Any], month: date
) -> list[TrendPoint]:
    """The region's pooled monthly p-chart (u-chart), with the limits of
    ``queries.series``: the center over the twelve months, 3 sigma at each month's volume."""
    months = [add_months(month, i - TREND_MONTHS + 1) for i in range(TREND_MONTHS)]
    pooled = [_pooled(counts, f"{m:%Y-%m}") or (0, 0) for m in months]
    earlier = [_pooled(counts, f"{add_months(m, -12):%Y-%m}") or (0, 0) for m in months]
    total_num = sum(n for n, _ in pooled)
    total_den = sum(d for _, d in pooled)
    center = total_num / total_den if total_den else None
    scale = queries.SCALE[shape.unit]

    def scaled(value: float | None) -> float | None:
        return value * scale if value is not None else None

    points = []
    for m, (num, den), (year_num, year_den) in zip(months, pooled, earlier, strict=True):
        ucl, lcl = queries.control_limits(shape, center, den)
        rate = num / den * scale if den else None
        points.append(
            TrendPoint(
                code=shape.code,
                month=f"{m:%Y-%m}",
                numerator=num,
                denominator=den,
                rate=rate,
                center=scaled(center),
                ucl=scaled(ucl),
                lcl=scaled(lcl),
                signal=side_of(rate, scaled(ucl), scaled(lcl)),
                year_ago_numerator=year_num,
                year_ago_denominator=year_den,
                year_ago_rate=year_num / year_den * scale if year_den else None,
            )
        )
    return points


def region_bulletin(
    session: Session,
    region_id: str,
    month: str,
    *,
    runtime: Runtime,
) -> Bulletin:
    """The bulletin of ``month`` for a region: its members pooled (those that reported),
    the league table of each indicator, and the members that missed the region's target."""
    region = service.get_region(session, region_id)
    first = parse_month(month)
    now = runtime.clock.now()
    today = service.region_today(region, now)
    check_month(first, today)
    last = month_end(first)
    text = f"{first:%Y-%m}"
    catalogue = catalogue_for(runtime.settings.indicators_dir)
    profiles = profiles_for(catalogue)
    reported = catalogue.reported(REGION_CATALOGUE)
    months = [
        f"{add_months(first, i):%Y-%m}" for i in range(1 - TREND_MONTHS - 12, 1)
    ]  # the trend's twelve months and the twelve a year before them

    lines: list[IndicatorLine] = []
    trends: list[TrendPoint] = []
    signals: list[SpcSignal] = []
    gaps: list[DepartmentGap] = []
    positions: list[LeaguePosition] = []
    for defn in catalogue.definitions():
        if defn.code not in reported:
            continue
        shape = queries.shape_of(defn)
        counts = league.member_counts(session, region_id, defn.code, months, catalogue=catalogue)
        table = league.league_table(
            session, region_id, defn.code, text, text, catalogue=catalogue, profiles=profiles
        )
        points = _region_trend(shape, counts, first)
        this, before = points[-1], points[-2]
        lines.append(
            IndicatorLine(
                code=defn.code,
                name_zh=defn.name.zh,
                name_en=defn.name.en,
                group=defn.effective_group,
                unit=defn.unit,
                direction=defn.direction,
                numerator=table.pooled_numerator,
                denominator=table.pooled_denominator,
                rate=table.pooled_rate,
                target=table.target,
                target_source=table.target_source,
                meets_target=queries.meets(shape, table.pooled_rate, table.target),
                pending=None,
                excluded=None,
                previous_month_rate=before.rate,
                year_ago_rate=this.year_ago_rate,
                signal=this.signal,
            )
        )
        trends.extend(points)
        signals.extend(signals_of(points, defn.direction))
        member_gaps = []
        for row in table.rows:
            positions.append(
                LeaguePosition(
                    code=defn.code,
                    member_id=row.member_id,
                    member_name=row.name,
                    reported=row.reported,
                    numerator=row.numerator,
                    denominator=row.denominator,
                    rate=row.rate,
                    low=row.ci_low,
                    high=row.ci_high,
                    funnel=row.funnel,
                    meets_target=row.meets_target,
                    rank=row.rank,
                )
            )
            gap = shortfall(defn.direction, row.rate, table.target)
            if (
                row.meets_target is False
                and gap is not None
                and row.rate is not None
                and table.target is not None
            ):
                member_gaps.append(
                    DepartmentGap(
                        code=defn.code,
                        department=row.member_id,
                        department_name=row.name,
                        numerator=row.numerator or 0,
                        denominator=row.denominator or 0,
                        rate=row.rate,
                        target=table.target,
                        shortfall=gap,
                        few_cases=(row.denominator or 0) < defn.min_cases,
                    )
                )
        member_gaps.sort(key=lambda g: (g.few_cases, -g.shortfall, g.department))
        gaps.extend(member_gaps[:DEPARTMENTS_PER_INDICATOR])
    return Bulletin(
        scope="region",
        subject_id=region_id,
        subject_name=region.name,
        month=text,
        period_from=first,
        period_to=last,
        timezone=region.timezone,
        generated_at=now,
        complete=last < today,
        departments=None,
        indicators=lines,
        trends=trends,
        signals=signals,
        departments_off_target=gaps,
        league=positions,
    )
