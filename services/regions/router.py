"""The region's read API (``region-reader`` keys): members, catalogue, league tables
and series of its own region, aggregates only (docs/REGIONS.md)."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from services.indicators import Catalogue, IndicatorDefinition, catalogue_for, profiles_for
from services.indicators.manual import ManualValueRow
from services.indicators.models import CounterRow
from services.regions import league
from services.regions.models import Region, RegionMember
from services.regions.service import members, region_of, region_today
from shared.auth import Principal
from shared.http import JSONResponse, get_runtime, require
from shared.openapi import CSV, body, problems
from shared.runtime import Runtime

router = APIRouter(prefix="/api/v1/regions")

RegionReader = Annotated[Principal, Depends(require("region:read"))]
#: The catalogue a region reports unless asked for another (the tenants' default).
DEFAULT_CATALOGUE = "2026"
#: How many months a series spans by default, ending with the last closed month.
SERIES_MONTHS = 12

#: ``YYYY-MM`` from 1900-01 (``league.parse_month``).
MONTH_PATTERN = r"^(19|[2-9][0-9])[0-9]{2}-(0[1-9]|1[0-2])$"

FromMonth = Annotated[
    str | None,
    Query(alias="from", pattern=MONTH_PATTERN, description="first month, YYYY-MM; default: to"),
]
ToMonth = Annotated[
    str | None,
    Query(
        alias="to",
        pattern=MONTH_PATTERN,
        description="last month, YYYY-MM; default: from, else last month",
    ),
]


# -- response models: what the routes' dicts are (league.league_json, league.series) ----


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class RegionBase(_Open):
    id: str
    name: str
    timezone: str
    target_profile: str | None


class MemberReported(_Open):
    member: str
    name: str
    #: A tenant of this instance (True) or a hospital that submits its figures.
    local: bool
    reported: bool


class RegionOut(RegionBase):
    month: str
    members: list[MemberReported]


class Names(_Open):
    zh: str
    en: str


class RegionIndicator(_Open):
    code: str
    name: Names
    direction: Literal["higher_is_better", "lower_is_better"]
    unit: str
    kind: str
    catalogue: str | None
    group: str | None
    target: float | None
    target_source: str | None


class RegionIndicators(RegionBase):
    catalogue: str
    indicators: list[RegionIndicator]


class Pooled(_Open):
    numerator: int
    denominator: int
    rate: float | None


class FunnelLimits(_Open):
    lower_998: float
    lower_95: float
    upper_95: float
    upper_998: float


class LeagueMember(_Open):
    member: str
    name: str
    local: bool
    reported: bool
    months_reported: list[str]
    months_missing: list[str]
    numerator: int | None
    denominator: int | None
    rate: float | None
    ci95: list[float] | None
    meets_target: bool | None
    funnel: str | None
    assessment: Literal["better", "worse"] | None
    limits: FunnelLimits | None
    rank: int | None


class LeagueOut(_Open):
    region: str
    code: str
    kind: str
    unit: str
    direction: Literal["higher_is_better", "lower_is_better"]
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    months: list[str]
    pooled: Pooled
    target: float | None
    target_source: str | None
    center: float | None
    center_source: Literal["target", "pooled"] | None
    members: list[LeagueMember]
    funnel_curve: list[dict[str, float]]


class MonthFigures(_Open):
    month: str
    numerator: int | None
    denominator: int | None
    rate: float | None


class PooledMonth(MonthFigures):
    members_reported: int
    members: int


class PooledPoint(PooledMonth):
    previous_year: PooledMonth


class MemberMonth(MonthFigures):
    reported: bool


class MemberPoint(MemberMonth):
    previous_year: MemberMonth


class MemberSeries(_Open):
    member: str
    name: str
    points: list[MemberPoint]


class SeriesOut(_Open):
    region: str
    code: str
    unit: str
    direction: Literal["higher_is_better", "lower_is_better"]
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    pooled: list[PooledPoint]
    by_member: list[MemberSeries]


def _catalogue(runtime: Runtime) -> Catalogue:
    return catalogue_for(runtime.settings.indicators_dir)


def _last_month(runtime: Runtime, region: Region) -> str:
    """The last closed month in the region's time zone."""
    today = region_today(region, runtime.clock.now())
    return league.month_text(league.add_months(today.replace(day=1), -1))


def _period(
    runtime: Runtime, region: Region, start: str | None, end: str | None, span: int = 1
) -> tuple[str, str]:
    """``span`` months from ``from``, or ending at ``to``; neither given: ending with the
    last closed month."""
    if end is None:
        end = _shift(start, span - 1) if start else _last_month(runtime, region)
    return start or _shift(end, 1 - span), end


def _shift(month: str, n: int) -> str:
    return league.month_text(league.add_months(league.parse_month(month), n))


def _reported_month(
    session: Session, member: RegionMember, month: str, codes: frozenset[str]
) -> bool:
    """Whether the member has figures of any of ``codes`` for ``month``."""
    first = league.parse_month(month)
    last = league.add_months(first, 1)
    if member.tenant_id is not None:
        counters = sa.select(CounterRow.day).where(
            CounterRow.tenant_id == member.tenant_id,
            CounterRow.indicator.in_(sorted(codes)),
            CounterRow.day >= first,
            CounterRow.day < last,
        )
        entries = sa.select(ManualValueRow.month).where(
            ManualValueRow.tenant_id == member.tenant_id,
            ManualValueRow.indicator.in_(sorted(codes)),
            ManualValueRow.month == first,
        )
        return (
            session.execute(counters.limit(1)).first() is not None
            or session.execute(entries.limit(1)).first() is not None
        )
    submitted = league._submitted_counts()
    if submitted is None:
        return False
    return any(
        (month, None) in submitted(session, member.region_id, member.member_id, code, [month])
        for code in sorted(codes)
    )


def region_json(region: Region) -> dict[str, Any]:
    return {
        "id": region.id,
        "name": region.name,
        "timezone": region.timezone,
        "target_profile": region.target_profile,
    }


@router.get("/{region_id}", response_model=RegionOut, responses=problems(404))
def get_region(
    region_id: str,
    request: Request,
    principal: RegionReader,
    month: Annotated[
        str | None, Query(pattern=MONTH_PATTERN, description="YYYY-MM; default last month")
    ] = None,
) -> JSONResponse:
    """The region, its members, and which of them reported ``month``."""
    runtime = get_runtime(request)
    codes = _catalogue(runtime).reported(DEFAULT_CATALOGUE)
    with runtime.read() as session:
        region = region_of(session, principal, region_id)
        month = month or _last_month(runtime, region)
        league.parse_month(month)
        return JSONResponse(
            {
                **region_json(region),
                "month": month,
                "members": [
                    {
                        "member": m.member_id,
                        "name": m.name,
                        "local": m.tenant_id is not None,
                        "reported": _reported_month(session, m, month, codes),
                    }
                    for m in members(session, region_id)
                ],
            }
        )


def _summary(defn: IndicatorDefinition, target: league.RegionTarget) -> dict[str, Any]:
    return {
        "code": defn.code,
        "name": {"zh": defn.name.zh, "en": defn.name.en},
        "direction": defn.direction,
        "unit": defn.unit,
        "kind": defn.kind,
        "catalogue": defn.effective_catalogue,
        "group": defn.effective_group,
        "target": target.value,
        "target_source": target.source,
    }


@router.get("/{region_id}/indicators", response_model=RegionIndicators, responses=problems(404))
def list_indicators(
    region_id: str,
    request: Request,
    principal: RegionReader,
    catalogue: Annotated[
        Literal["2025", "2026", "all"] | None,
        Query(description="a catalogue year, or all; default 2026"),
    ] = None,
) -> JSONResponse:
    """The catalogue the region compares, each indicator with the region's target (its
    target profile's entry, else the definition's; a ``previous_year`` entry over this
    year so far)."""
    runtime = get_runtime(request)
    loaded = _catalogue(runtime)
    known = profiles_for(loaded)
    reported = loaded.reported(catalogue or DEFAULT_CATALOGUE)
    with runtime.read() as session:
        region = region_of(session, principal, region_id)
        last = _last_month(runtime, region)
        year_so_far = league.months_between(f"{last[:4]}-01", last)
        out = []
        for defn in loaded.definitions():
            if defn.code not in reported:
                continue
            target = league.region_target(
                session,
                region,
                league.shape_for(loaded, defn.code),
                year_so_far,
                profiles=known,
                catalogue=loaded,
            )
            out.append(_summary(defn, target))
        return JSONResponse(
            {**region_json(region), "catalogue": catalogue or DEFAULT_CATALOGUE, "indicators": out}
        )


def _league(
    runtime: Runtime,
    principal: Principal,
    region_id: str,
    code: str,
    start: str | None,
    end: str | None,
) -> league.LeagueTable:
    loaded = _catalogue(runtime)
    with runtime.read() as session:
        region = region_of(session, principal, region_id)
        start, end = _period(runtime, region, start, end)
        return league.league_table(
            session, region_id, code, start, end, catalogue=loaded, profiles=profiles_for(loaded)
        )


@router.get(
    "/{region_id}/indicators/{code}/league", response_model=LeagueOut, responses=problems(404)
)
def get_league(
    region_id: str,
    code: str,
    request: Request,
    principal: RegionReader,
    start: FromMonth = None,
    end: ToMonth = None,
) -> JSONResponse:
    """Members ranked by their rate over the months, with Wilson 95 % intervals and
    their funnel position; members without figures shown as not reported."""
    table = _league(get_runtime(request), principal, region_id, code, start, end)
    return JSONResponse(league.league_json(table))


@router.get(
    "/{region_id}/indicators/{code}/league.csv",
    response_class=Response,
    responses={
        **body(200, CSV, "the league table as CSV (UTF-8 with a BOM)"),
        **problems(404),
    },
)
def get_league_csv(
    region_id: str,
    code: str,
    request: Request,
    principal: RegionReader,
    start: FromMonth = None,
    end: ToMonth = None,
) -> Response:
    table = _league(get_runtime(request), principal, region_id, code, start, end)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(league.LEAGUE_CSV_COLUMNS))
    writer.writeheader()
    writer.writerows(league.league_csv_rows(table))
    filename = f"{region_id}-{code}-{table.period_start}-{table.period_end}-league.csv"
    return Response(
        "\ufeff" + buffer.getvalue(),  # a BOM so that Excel reads the Chinese names right
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/{region_id}/indicators/{code}/series", response_model=SeriesOut, responses=problems(404)
)
def get_series(
    region_id: str,
    code: str,
    request: Request,
    principal: RegionReader,
    start: Annotated[
        str | None,
        Query(
            alias="from",
            pattern=MONTH_PATTERN,
            description="first month, YYYY-MM; default: 11 months before to",
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            alias="to",
            pattern=MONTH_PATTERN,
            description="last month, YYYY-MM; default: 11 after from, else last month",
        ),
    ] = None,
) -> JSONResponse:
    """The pooled monthly series and each member's, beside the same months a year
    earlier; default the twelve months ending last month."""
    runtime = get_runtime(request)
    loaded = _catalogue(runtime)
    with runtime.read() as session:
        region = region_of(session, principal, region_id)
        start, end = _period(runtime, region, start, end, SERIES_MONTHS)
        return JSONResponse(league.series(session, region_id, code, start, end, catalogue=loaded))
