"""A region's figures: its members' monthly counts, league tables and series.

A member's counts come from one of two places. A member that is a tenant of this
instance (``tenant_id`` set) is read from that tenant's own day counters (or manual
entries), summed by month exactly as its ``/api/v1/indicators/{code}/value`` sums them;
a federated member's come from what it submitted (``federation.submitted_counts``).
A month a member has nothing for is absent, never zero: a hospital that did not report
is shown as not reported.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from fractions import Fraction
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.indicators import Catalogue, catalogue_for, profiles_for
from services.indicators import manual as manual_values
from services.indicators.models import CounterRow
from services.indicators.profiles import ProfileSet
from services.indicators.queries import (
    SCALE,
    Counts,
    IndicatorShape,
    denominator,
    manual_counts,
    meets,
    shape_of,
)
from services.regions import stats
from services.regions.models import Region, RegionMember
from services.regions.service import get_region, members
from shared.errors import NotFoundError, UnprocessableError

#: (month ``YYYY-MM``, department or None for the whole hospital) → (numerator, denominator)
MemberCounts = dict[tuple[str, str | None], tuple[int, int]]
SubmittedCounts = Callable[[Session, str, str, str, list[str]], MemberCounts]

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
#: The longest period a league table or series spans.
MAX_MONTHS = 120

TargetSource = Literal["profile", "previous_year", "definition"]
Assessment = Literal["better", "worse"]


# -- months ---------------------------------------------------------------------------


def parse_month(text: str) -> date:
    m = _MONTH.match(text)
    if m is None or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1900:
        raise UnprocessableError(f"invalid month '{text}' (write YYYY-MM, e.g. 2026-03)")
    return date(int(m.group(1)), int(m.group(2)), 1)


def month_text(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def add_months(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def months_between(start: str, end: str) -> list[str]:
    first, last = parse_month(start), parse_month(end)
    if first > last:
        raise UnprocessableError(f"'from' ({start}) is after 'to' ({end})")
    count = (last.year - first.year) * 12 + last.month - first.month + 1
    if count > MAX_MONTHS:
        raise UnprocessableError(f"a period may span at most {MAX_MONTHS} months")
    return [month_text(add_months(first, i)) for i in range(count)]


def year_earlier(month: str) -> str:
    return month_text(add_months(parse_month(month), -12))


def _month_end(month: date) -> date:
    return date.fromordinal(add_months(month, 1).toordinal() - 1)


# -- counts ---------------------------------------------------------------------------


def shape_for(catalogue: Catalogue, code: str) -> IndicatorShape:
    defn = catalogue.get(code)
    if defn is None:
        raise NotFoundError(f"no indicator '{code}'")
    return shape_of(defn)


def local_counts(
    session: Session, tenant_id: str, shape: IndicatorShape, months: Sequence[str]
) -> MemberCounts:
    """A tenant's counts by month and department, and the hospital's (department None):
    the sums ``queries.totals_for`` makes for a month's ``/value``."""
    wanted = set(months)
    if not wanted:
        return {}
    firsts = sorted(parse_month(m) for m in wanted)
    start, end = firsts[0], _month_end(firsts[-1])
    out: dict[tuple[str, str | None], Counts] = {}
    if shape.manual:
        by_month = manual_values.monthly(session, tenant_id, shape.code, start, end, None)
        for first, entries in by_month.items():
            month = month_text(first)
            if month not in wanted or not entries:
                continue
            out[(month, None)] = manual_counts(shape, manual_values.pooled(entries, None))
            for dept, entry in entries.items():
                if dept != manual_values.HOSPITAL:
                    out[(month, dept)] = manual_counts(shape, entry)
    else:
        year = sa.extract("year", CounterRow.day)
        month_of = sa.extract("month", CounterRow.day)
        query = (
            sa.select(
                year,
                month_of,
                CounterRow.department,
                sa.func.sum(CounterRow.numerator),
                sa.func.sum(CounterRow.denominator),
                sa.func.sum(CounterRow.excluded),
                sa.func.sum(CounterRow.pending),
            )
            .where(
                CounterRow.tenant_id == tenant_id,
                CounterRow.indicator == shape.code,
                CounterRow.day >= start,
                CounterRow.day <= end,
            )
            .group_by(year, month_of, CounterRow.department)
        )
        for y, m, dept, *sums in session.execute(query):
            month = f"{int(y):04d}-{int(m):02d}"
            if month not in wanted:
                continue
            counts = Counts(*(int(v or 0) for v in sums))
            out[(month, dept)] = counts
            out[(month, None)] = out.get((month, None), Counts()) + counts
    return {key: (c.numerator, denominator(shape, c)) for key, c in out.items()}


def _submitted_counts() -> SubmittedCounts | None:
    """Helper F's ``federation.submitted_counts``, or None while the module is absent."""
    try:
        module = importlib.import_module("services.regions.federation")
    except ModuleNotFoundError as exc:
        if exc.name != "services.regions.federation":
            raise
        return None
    found: SubmittedCounts | None = getattr(module, "submitted_counts", None)
    return found


def member_counts(
    session: Session,
    region_id: str,
    code: str,
    months: list[str],
    *,
    catalogue: Catalogue | None = None,
) -> dict[str, MemberCounts]:
    """Each member's counts of ``code`` for ``months``; a member with nothing for a
    month has no key for it (a member with nothing at all is left out)."""
    shape = shape_for(catalogue or catalogue_for(None), code)
    submitted = _submitted_counts()
    out: dict[str, MemberCounts] = {}
    for member in members(session, region_id):
        if member.tenant_id is not None:
            counts = local_counts(session, member.tenant_id, shape, months)
        elif submitted is not None:
            counts = submitted(session, region_id, member.member_id, code, months)
        else:
            counts = {}
        if counts:
            out[member.member_id] = counts
    return out


# -- targets --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegionTarget:
    value: float | None
    source: TargetSource | None


def region_target(
    session: Session,
    region: Region,
    shape: IndicatorShape,
    months: list[str],
    *,
    profiles: ProfileSet,
    catalogue: Catalogue,
) -> RegionTarget:
    """The region's profile entry, else the definition's target. A ``previous_year``
    entry is the region's pooled rate over the same months a year earlier (members that
    reported then), falling back to the entry's number."""
    profile = profiles.get(region.target_profile)
    entry = profile.entries.get(shape.code) if profile is not None else None
    if entry is not None:
        if not entry.previous_year:
            return RegionTarget(entry.target, "profile")
        earlier = [year_earlier(m) for m in months]
        counts = member_counts(session, region.id, shape.code, earlier, catalogue=catalogue)
        num = den = 0
        for by_key in counts.values():
            for month in earlier:
                if (month, None) in by_key:
                    n, d = by_key[(month, None)]
                    num, den = num + n, den + d
        if den > 0:
            return RegionTarget(num / den * SCALE[shape.unit], "previous_year")
        return RegionTarget(entry.target, "profile" if entry.target is not None else None)
    if shape.default_target is not None:
        return RegionTarget(shape.default_target, "definition")
    return RegionTarget(None, None)


# -- league tables --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeagueRow:
    member_id: str
    name: str
    #: A tenant of this instance (True) or a hospital that submits its figures.
    local: bool
    #: Has figures for at least one month of the period; else every number is None.
    reported: bool
    months_reported: list[str]
    months_missing: list[str]
    numerator: int | None
    denominator: int | None
    #: In the indicator's unit (a fraction for ``percent``); None without a denominator.
    rate: float | None
    ci_low: float | None
    ci_high: float | None
    meets_target: bool | None
    #: Position on the funnel around ``p0`` at this member's volume.
    funnel: stats.Position | None
    #: ``better`` or ``worse`` than the target when outside the 95 % limits.
    assessment: Assessment | None
    limits: stats.Funnel | None
    #: 1 = best, among members with a rate; equal rates share a rank (1, 2, 2, 4).
    rank: int | None


@dataclass(frozen=True, slots=True)
class LeagueTable:
    region_id: str
    code: str
    kind: Literal["proportion", "ratio"]
    unit: str
    direction: Literal["higher_is_better", "lower_is_better"]
    period_start: str
    period_end: str
    months: list[str]
    rows: list[LeagueRow]
    pooled_numerator: int
    pooled_denominator: int
    pooled_rate: float | None
    target: float | None
    target_source: TargetSource | None
    #: The funnels' centre, in the indicator's unit: the target when there is one,
    #: else the pooled rate.
    center: float | None
    center_source: Literal["target", "pooled"] | None
    #: Funnel limits at volumes spanning the members', for drawing the funnel.
    curve: list[dict[str, float]] = field(default_factory=list)


def _assessment(shape: IndicatorShape, position: stats.Position) -> Assessment | None:
    if position == "inside":
        return None
    high = position.startswith("above")
    return "better" if high == (shape.direction == "higher_is_better") else "worse"


def _ranks(shape: IndicatorShape, rates: dict[str, Fraction]) -> dict[str, int]:
    """Competition ranking, best first; exact fractions, so equal rates tie exactly."""
    best_first = sorted(
        rates.items(), key=lambda kv: -kv[1] if shape.direction == "higher_is_better" else kv[1]
    )
    ranks: dict[str, int] = {}
    previous: Fraction | None = None
    rank = 0
    for position, (member_id, value) in enumerate(best_first, start=1):
        if value != previous:
            rank, previous = position, value
        ranks[member_id] = rank
    return ranks


def _volumes(largest: int) -> list[int]:
    """About 30 volumes from 1 to ``largest``, evenly spaced on a log scale."""
    if largest < 1:
        return []
    steps = 30
    found = {max(1, round(largest ** (i / steps))) for i in range(steps + 1)}
    return sorted(found | {largest})


def league_table(
    session: Session,
    region_id: str,
    code: str,
    period_start: str,
    period_end: str,
    *,
    catalogue: Catalogue | None = None,
    profiles: ProfileSet | None = None,
) -> LeagueTable:
    catalogue = catalogue or catalogue_for(None)
    profiles = profiles or profiles_for(catalogue)
    region = get_region(session, region_id)
    shape = shape_for(catalogue, code)
    months = months_between(period_start, period_end)
    counts = member_counts(session, region_id, code, months, catalogue=catalogue)
    target = region_target(session, region, shape, months, profiles=profiles, catalogue=catalogue)
    scale = SCALE[shape.unit]
    kind: Literal["proportion", "ratio"] = "ratio" if shape.kind == "ratio" else "proportion"

    totals: dict[str, tuple[int, int, list[str]]] = {}
    for member_id, by_key in counts.items():
        present = [m for m in months if (m, None) in by_key]
        if present:
            num = sum(by_key[(m, None)][0] for m in present)
            den = sum(by_key[(m, None)][1] for m in present)
            totals[member_id] = (num, den, present)
    pooled_num = sum(t[0] for t in totals.values())
    pooled_den = sum(t[1] for t in totals.values())
    if target.value is not None:
        p0: float | None = target.value / scale
        center_source: Literal["target", "pooled"] | None = "target"
    elif pooled_den > 0:
        p0, center_source = pooled_num / pooled_den, "pooled"
    else:
        p0, center_source = None, None

    rates = {
        member_id: Fraction(num, den) for member_id, (num, den, _) in totals.items() if den > 0
    }
    ranks = _ranks(shape, rates)
    rows: list[LeagueRow] = []
    for member in members(session, region_id):
        rows.append(_row(member, totals.get(member.member_id), months, kind, shape, p0, target))
    rows = [replace(row, rank=ranks.get(row.member_id)) for row in rows]
    rows.sort(key=lambda r: (r.rank is None, r.rank or 0, r.member_id))
    curve = []
    if p0 is not None:
        for n in _volumes(max((t[1] for t in totals.values()), default=0)):
            f = stats.funnel(kind, n, p0)
            curve.append(
                {
                    "denominator": n,
                    "lower_998": f.lower_998 * scale,
                    "lower_95": f.lower_95 * scale,
                    "upper_95": f.upper_95 * scale,
                    "upper_998": f.upper_998 * scale,
                }
            )
    return LeagueTable(
        region_id=region_id,
        code=code,
        kind=kind,
        unit=shape.unit,
        direction=shape.direction,
        period_start=months[0],
        period_end=months[-1],
        months=months,
        rows=rows,
        pooled_numerator=pooled_num,
        pooled_denominator=pooled_den,
        pooled_rate=pooled_num / pooled_den * scale if pooled_den else None,
        target=target.value,
        target_source=target.source,
        center=p0 * scale if p0 is not None else None,
        center_source=center_source,
        curve=curve,
    )


def _row(
    member: RegionMember,
    total: tuple[int, int, list[str]] | None,
    months: list[str],
    kind: Literal["proportion", "ratio"],
    shape: IndicatorShape,
    p0: float | None,
    target: RegionTarget,
) -> LeagueRow:
    local = member.tenant_id is not None
    if total is None:
        return LeagueRow(
            member.member_id, member.name, local, False, [], list(months),
            None, None, None, None, None, None, None, None, None, None,
        )  # fmt: skip
    num, den, present = total
    missing = [m for m in months if m not in present]
    scale = SCALE[shape.unit]
    rate = ci_low = ci_high = None
    position: stats.Position | None = None
    limits = None
    if den > 0:
        rate = num / den * scale
        if kind == "ratio" or num <= den:
            low, high = stats.interval(kind, num, den)
            ci_low, ci_high = low * scale, high * scale
        if p0 is not None:
            limits = stats.funnel(kind, den, p0)
            position = limits.position(num / den)
    return LeagueRow(
        member_id=member.member_id,
        name=member.name,
        local=local,
        reported=True,
        months_reported=present,
        months_missing=missing,
        numerator=num,
        denominator=den,
        rate=rate,
        ci_low=ci_low,
        ci_high=ci_high,
        meets_target=meets(shape, rate, target.value),
        funnel=position,
        assessment=_assessment(shape, position) if position is not None else None,
        limits=limits,
        rank=None,
    )


def league_json(table: LeagueTable) -> dict[str, Any]:
    scale = SCALE[table.unit]

    def limits(row: LeagueRow) -> dict[str, float] | None:
        if row.limits is None:
            return None
        f = row.limits
        return {
            "lower_998": f.lower_998 * scale,
            "lower_95": f.lower_95 * scale,
            "upper_95": f.upper_95 * scale,
            "upper_998": f.upper_998 * scale,
        }

    return {
        "region": table.region_id,
        "code": table.code,
        "kind": table.kind,
        "unit": table.unit,
        "direction": table.direction,
        "from": table.period_start,
        "to": table.period_end,
        "months": table.months,
        "pooled": {
            "numerator": table.pooled_numerator,
            "denominator": table.pooled_denominator,
            "rate": table.pooled_rate,
        },
        "target": table.target,
        "target_source": table.target_source,
        "center": table.center,
        "center_source": table.center_source,
        "members": [
            {
                "member": row.member_id,
                "name": row.name,
                "local": row.local,
                "reported": row.reported,
                "months_reported": row.months_reported,
                "months_missing": row.months_missing,
                "numerator": row.numerator,
                "denominator": row.denominator,
                "rate": row.rate,
                "ci95": [row.ci_low, row.ci_high] if row.ci_low is not None else None,
                "meets_target": row.meets_target,
                "funnel": row.funnel,
                "assessment": row.assessment,
                "limits": limits(row),
                "rank": row.rank,
            }
            for row in table.rows
        ],
        "funnel_curve": table.curve,
    }


LEAGUE_CSV_COLUMNS = (
    "rank", "member", "name", "reported", "numerator", "denominator", "rate",
    "ci95_low", "ci95_high", "funnel", "assessment", "meets_target", "months_missing",
)  # fmt: skip


def league_csv_rows(table: LeagueTable) -> list[dict[str, Any]]:
    return [
        {
            "rank": row.rank if row.rank is not None else "",
            "member": row.member_id,
            "name": row.name,
            "reported": "yes" if row.reported else "no",
            "numerator": _blank(row.numerator),
            "denominator": _blank(row.denominator),
            "rate": _blank(row.rate),
            "ci95_low": _blank(row.ci_low),
            "ci95_high": _blank(row.ci_high),
            "funnel": row.funnel or "",
            "assessment": row.assessment or "",
            "meets_target": _blank(row.meets_target),
            "months_missing": " ".join(row.months_missing),
        }
        for row in table.rows
    ]


def _blank(value: object) -> object:
    return "" if value is None else value


# -- series ---------------------------------------------------------------------------


def _point(counts: MemberCounts, month: str, scale: int) -> dict[str, Any]:
    if (month, None) not in counts:
        return {"month": month, "reported": False, "numerator": None, "denominator": None,
                "rate": None}  # fmt: skip
    num, den = counts[(month, None)]
    return {
        "month": month,
        "reported": True,
        "numerator": num,
        "denominator": den,
        "rate": num / den * scale if den else None,
    }


def series(
    session: Session,
    region_id: str,
    code: str,
    period_start: str,
    period_end: str,
    *,
    catalogue: Catalogue | None = None,
) -> dict[str, Any]:
    """The region's pooled monthly series and each member's, each month beside the same
    month a year earlier (``previous_year``). A pooled month sums the members that
    reported it, and says how many did."""
    catalogue = catalogue or catalogue_for(None)
    get_region(session, region_id)
    shape = shape_for(catalogue, code)
    scale = SCALE[shape.unit]
    months = months_between(period_start, period_end)
    earlier = {m: year_earlier(m) for m in months}
    wanted = sorted(set(months) | set(earlier.values()))
    counts = member_counts(session, region_id, code, wanted, catalogue=catalogue)
    region_members = members(session, region_id)

    def pooled(month: str) -> dict[str, Any]:
        present = [c[(month, None)] for c in counts.values() if (month, None) in c]
        num, den = sum(p[0] for p in present), sum(p[1] for p in present)
        return {
            "month": month,
            "members_reported": len(present),
            "members": len(region_members),
            "numerator": num if present else None,
            "denominator": den if present else None,
            "rate": num / den * scale if den else None,
        }

    return {
        "region": region_id,
        "code": code,
        "unit": shape.unit,
        "direction": shape.direction,
        "from": months[0],
        "to": months[-1],
        "pooled": [{**pooled(m), "previous_year": pooled(earlier[m])} for m in months],
        "by_member": [
            {
                "member": member.member_id,
                "name": member.name,
                "points": [
                    {
                        **_point(counts.get(member.member_id, {}), m, scale),
                        "previous_year": _point(
                            counts.get(member.member_id, {}), earlier[m], scale
                        ),
                    }
                    for m in months
                ],
            }
            for member in region_members
        ],
    }
