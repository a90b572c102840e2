"""The quality department's read API (reader role), targets and code maps (admin)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

import services.ingest as ingest
from services.indicators import manual, queries
from services.indicators.definitions import IndicatorDefinition
from services.indicators.measure_report import measure_report
from services.indicators.models import CodeMapRow, TargetRow
from services.indicators.profiles import ProfileSet, profile_json, profiles_for
from services.indicators.schemas import (
    Breakdown,
    CasePage,
    CodeMapEntry,
    CodeMapSaved,
    IndicatorDetail,
    IndicatorSummary,
    IndicatorValue,
    ManualList,
    ManualValue,
    Series,
    TargetOut,
    TargetProfile,
    TenantOut,
)
from services.indicators.valuesets import CodeMap
from services.indicators.worker import catalogue_for
from shared.auth import Principal
from shared.bus import Topic, emit
from shared.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    UnprocessableError,
)
from shared.http import FHIRResponse, JSONResponse, get_runtime, require
from shared.models import Tenant
from shared.openapi import FHIRResource, csv_alternative, problems
from shared.runtime import Runtime

router = APIRouter(prefix="/api/v1")

Reader = Annotated[Principal, Depends(require("api:read"))]
Admin = Annotated[Principal, Depends(require("admin"))]
#: Admins, and readers granted ``manual`` (``shared.auth.GRANTABLE``).
ManualEditor = Annotated[Principal, Depends(require("manual"))]
#: The catalogue years a tenant may report; a tenant that chose none reports the first.
CATALOGUE_YEARS = ("2026", "2025")
Format = Literal["json", "csv"]
#: Rows in one CSV export of cases; beyond it the ``X-Next-Cursor`` header continues.
CSV_EXPORT_LIMIT = 100_000


def definition(runtime: Runtime, code: str) -> IndicatorDefinition:
    found = catalogue_for(runtime.settings.indicators_dir).get(code)
    if found is None:
        raise NotFoundError(f"no indicator '{code}'")
    return found


def shape(defn: IndicatorDefinition) -> queries.IndicatorShape:
    return queries.shape_of(defn)


def profiles(runtime: Runtime) -> ProfileSet:
    return profiles_for(catalogue_for(runtime.settings.indicators_dir))


def summary(defn: IndicatorDefinition, target: queries.Target) -> dict[str, Any]:
    out: dict[str, Any] = {
        "code": defn.code,
        "name": {"zh": defn.name.zh, "en": defn.name.en},
        "description": defn.description,
        "direction": defn.direction,
        "unit": defn.unit,
        "kind": defn.kind,
        "catalogue": defn.effective_catalogue,
        "group": defn.effective_group,
        "target": target.value,
        "target_source": target.source,
        "source": defn.source,
        "formula_source": defn.formula_source,
        "supersedes": list(defn.supersedes),
        "version": defn.version,
    }
    if defn.window_minutes is not None:
        out["window_minutes"] = defn.window_minutes
    return out


def local_today(runtime: Runtime, session: sa.orm.Session, tenant_id: str) -> date:
    return runtime.clock.now().astimezone(runtime.tenant_zone(session, tenant_id)).date()


def date_range(
    runtime: Runtime, session: sa.orm.Session, tenant_id: str, start: date | None, end: date | None
) -> tuple[date, date]:
    """Defaults: from the first of this month to today, in the tenant's time zone."""
    today = local_today(runtime, session, tenant_id)
    end = end or today
    start = start or end.replace(day=1)
    queries.check_range(start, end)
    return start, end


def allowed_departments(principal: Principal, department: str | None) -> Sequence[str] | None:
    """A reader limited to departments sees only those."""
    if department is not None:
        if principal.departments is not None and department not in principal.departments:
            raise ForbiddenError(f"this key may not read department '{department}'")
        return [department]
    return sorted(principal.departments) if principal.departments is not None else None


def csv_response(rows: list[dict[str, Any]], filename: str) -> Response:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return Response(
        "\ufeff" + buffer.getvalue(),  # a BOM so that Excel reads the Chinese names right
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


From = Annotated[date | None, Query(alias="from", description="local date, inclusive")]
To = Annotated[date | None, Query(alias="to", description="local date, inclusive")]


def year_to_date(runtime: Runtime, session: sa.orm.Session, tenant_id: str) -> tuple[date, date]:
    """The period a summary's ``previous_year`` target compares: this year so far."""
    today = local_today(runtime, session, tenant_id)
    return today.replace(month=1, day=1), today


def tenant_catalogue(session: sa.orm.Session, tenant_id: str) -> str:
    tenant = session.get(Tenant, tenant_id)
    return (tenant.catalogue if tenant else None) or CATALOGUE_YEARS[0]


@router.get("/indicators", response_model=list[IndicatorSummary], responses=problems())
def list_indicators(
    request: Request,
    principal: Reader,
    catalogue: Annotated[
        Literal["2025", "2026", "all"] | None,
        Query(description="a catalogue year, or all; default the tenant's year"),
    ] = None,
) -> JSONResponse:
    """The tenant's catalogue year (and definitions of no year), or ``?catalogue=``."""
    runtime = get_runtime(request)
    loaded = catalogue_for(runtime.settings.indicators_dir)
    definitions = loaded.definitions()
    known = profiles(runtime)
    with runtime.read() as session:
        year = catalogue or tenant_catalogue(session, principal.tenant_id)
        reported = loaded.reported(year)
        period = year_to_date(runtime, session, principal.tenant_id)
        return JSONResponse(
            [
                summary(
                    d,
                    queries.resolve_target(
                        session,
                        principal.tenant_id,
                        shape(d),
                        profiles=known,
                        period=period,
                        departments=allowed_departments(principal, None),
                    ),
                )
                for d in definitions
                if d.code in reported
            ]
        )


@router.get("/indicators/{code}", response_model=IndicatorDetail, responses=problems(404))
def get_indicator(code: str, request: Request, principal: Reader) -> JSONResponse:
    runtime = get_runtime(request)
    defn = definition(runtime, code)
    with runtime.read() as session:
        target = queries.resolve_target(
            session,
            principal.tenant_id,
            shape(defn),
            profiles=profiles(runtime),
            period=year_to_date(runtime, session, principal.tenant_id),
            departments=allowed_departments(principal, None),
        )
    return JSONResponse(
        {**summary(defn, target), "definition": defn.model_dump(mode="json", exclude_none=True)}
    )


@router.get("/indicators/{code}/value", response_model=IndicatorValue, responses=problems(404))
def get_value(
    code: str,
    request: Request,
    principal: Reader,
    start: From = None,
    end: To = None,
    department: str | None = None,
) -> JSONResponse:
    runtime = get_runtime(request)
    defn = definition(runtime, code)
    with runtime.read() as session:
        start, end = date_range(runtime, session, principal.tenant_id, start, end)
        result = queries.value(
            session,
            principal.tenant_id,
            shape(defn),
            start,
            end,
            allowed_departments(principal, department),
            profiles=profiles(runtime),
        )
    return JSONResponse(
        {
            "code": code,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "department": department,
            **result,
        }
    )


@router.get(
    "/indicators/{code}/series",
    response_model=Series,
    responses={**csv_alternative(), **problems(400, 404)},
)
def get_series(
    code: str,
    request: Request,
    principal: Reader,
    granularity: Literal["day", "week", "month", "quarter", "year"] = "month",
    start: From = None,
    end: To = None,
    department: str | None = None,
    format: Format = "json",
) -> Response:
    runtime = get_runtime(request)
    defn = definition(runtime, code)
    with runtime.read() as session:
        if start is None and end is None:
            end = local_today(runtime, session, principal.tenant_id)
            start = queries.period_start(end - timedelta(days=365), granularity)
        start, end = date_range(runtime, session, principal.tenant_id, start, end)
        points = queries.series(
            session,
            principal.tenant_id,
            shape(defn),
            granularity,
            start,
            end,
            allowed_departments(principal, department),
        )
    if format == "csv":
        return csv_response(points, f"{code}-series-{granularity}.csv")
    return JSONResponse(
        {
            "code": code,
            "granularity": granularity,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "department": department,
            "unit": defn.unit,
            "points": points,
        }
    )


@router.get(
    "/indicators/{code}/breakdown",
    response_model=Breakdown,
    responses={**csv_alternative(), **problems(404)},
)
def get_breakdown(
    code: str,
    request: Request,
    principal: Reader,
    by: Literal["department"] = "department",
    start: From = None,
    end: To = None,
    format: Format = "json",
) -> Response:
    runtime = get_runtime(request)
    defn = definition(runtime, code)
    with runtime.read() as session:
        start, end = date_range(runtime, session, principal.tenant_id, start, end)
        by_department = queries.breakdown(
            session,
            principal.tenant_id,
            shape(defn),
            start,
            end,
            allowed_departments(principal, None),
        )
        names = ingest.department_names(session, principal.tenant_id)
        known = profiles(runtime)
        rows = [
            {
                "department": dept,
                "department_name": names.get(dept),
                **queries.summarize(
                    session,
                    principal.tenant_id,
                    shape(defn),
                    counts,
                    profiles=known,
                    period=(start, end),
                    departments=[dept],
                ),
            }
            for dept, counts in by_department.items()
        ]
    if format == "csv":
        return csv_response(rows, f"{code}-breakdown.csv")
    return JSONResponse(
        {"code": code, "by": by, "from": start.isoformat(), "to": end.isoformat(), "rows": rows}
    )


@router.get(
    "/indicators/{code}/cases",
    response_model=CasePage,
    responses={**csv_alternative(), **problems(404)},
)
def get_cases(
    code: str,
    request: Request,
    principal: Reader,
    status: Literal["pending", "numerator", "denominator", "excluded"] | None = None,
    start: From = None,
    end: To = None,
    department: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: str | None = None,
    format: Format = "json",
) -> Response:
    """JSON pages of ``limit`` (default 100) cases; CSV is a whole export unless a
    ``limit`` is given (up to ``CSV_EXPORT_LIMIT`` rows). A manual indicator has no
    cases: an empty list."""
    runtime = get_runtime(request)
    defn = definition(runtime, code)
    if limit is None:
        limit = CSV_EXPORT_LIMIT if format == "csv" else 100
    if start and end:
        queries.check_range(start, end)
    if defn.kind == "manual":
        allowed_departments(principal, department)
        if format == "csv":
            return csv_response([], f"{code}-cases.csv")
        return JSONResponse({"code": code, "cases": [], "next_cursor": None})
    with runtime.read() as session:
        rows, next_cursor = queries.cases(
            session,
            principal.tenant_id,
            code,
            status=status,
            start=start,
            end=end,
            departments=allowed_departments(principal, department),
            limit=limit,
            cursor=cursor,
            now=runtime.clock.now(),
        )
    if format == "csv":
        response = csv_response(rows, f"{code}-cases.csv")
        if next_cursor:
            response.headers["X-Next-Cursor"] = next_cursor
        return response
    return JSONResponse({"code": code, "cases": rows, "next_cursor": next_cursor})


@router.get(
    "/indicators/{code}/measure-report",
    response_class=FHIRResponse,
    response_model=FHIRResource,
    responses=problems(404),
    summary="The period as a FHIR MeasureReport",
)
def get_measure_report(
    code: str,
    request: Request,
    principal: Reader,
    start: From = None,
    end: To = None,
    department: str | None = None,
) -> Response:
    runtime = get_runtime(request)
    defn = definition(runtime, code)
    with runtime.read() as session:
        start, end = date_range(runtime, session, principal.tenant_id, start, end)
        total = queries.totals_for(
            session,
            principal.tenant_id,
            shape(defn),
            start,
            end,
            allowed_departments(principal, department),
        )
        tz = runtime.tenant_zone(session, principal.tenant_id)
    report = measure_report(
        defn,
        shape(defn),
        principal.tenant_id,
        start,
        end,
        tz,
        total,
        department=department,
        generated=runtime.clock.now(),
    )
    return FHIRResponse(report)


class TargetBody(BaseModel):
    target: float = Field(ge=0)


@router.put("/indicators/{code}/target", response_model=TargetOut, responses=problems(404))
def put_target(code: str, body: TargetBody, request: Request, principal: Admin) -> JSONResponse:
    runtime = get_runtime(request)
    defn = definition(runtime, code)
    if defn.unit == "percent" and body.target > 1:
        raise UnprocessableError("a percent target is a fraction between 0 and 1 (0.85 for 85 %)")
    with runtime.write() as session:
        row = session.get(TargetRow, (principal.tenant_id, code))
        now = runtime.clock.now()
        if row is None:
            session.add(
                TargetRow(
                    tenant_id=principal.tenant_id,
                    indicator=code,
                    target=body.target,
                    updated_at=now,
                )
            )
        else:
            row.target, row.updated_at = body.target, now
    return JSONResponse({"code": code, "target": body.target})


class Mapping(BaseModel):
    code: str = Field(min_length=1, max_length=100)
    target_system: str = Field(min_length=1, max_length=200)
    target_code: str = Field(min_length=1, max_length=100)


class CodeMapBody(BaseModel):
    mappings: list[Mapping] = Field(max_length=100_000)


# 404: a system with a line break matches no route (Starlette's path pattern stops there).
@router.put("/code-maps/{system:path}", response_model=CodeMapSaved, responses=problems(404))
def put_code_map(
    system: str, body: CodeMapBody, request: Request, principal: Admin
) -> JSONResponse:
    """Replace the tenant's mappings for one local code system, then re-evaluate every
    episode of the tenant so that counters follow the new mapping."""
    runtime = get_runtime(request)
    try:
        normalised = CodeMap(
            (system, m.code, (m.target_system, m.target_code)) for m in body.mappings
        )
    except ValueError as exc:
        raise UnprocessableError(str(exc)) from exc
    del normalised
    with runtime.write() as session:
        session.execute(
            sa.delete(CodeMapRow).where(
                CodeMapRow.tenant_id == principal.tenant_id, CodeMapRow.source_system == system
            )
        )
        seen: set[tuple[str, str, str]] = set()
        for m in body.mappings:
            ident = (m.code, m.target_system, m.target_code)
            if ident in seen:
                continue
            seen.add(ident)
            session.add(
                CodeMapRow(
                    tenant_id=principal.tenant_id,
                    source_system=system,
                    source_code=m.code,
                    target_system=m.target_system,
                    target_code=m.target_code,
                )
            )
        episodes = ingest.episode_ids(session, principal.tenant_id)
        for encounter_id in episodes:
            emit(
                session,
                principal.tenant_id,
                Topic.EPISODE_CHANGED,
                encounter_id,
                {"encounter_id": encounter_id},
            )
    return JSONResponse(
        {"system": system, "mappings": len(seen), "episodes_reevaluated": len(episodes)}
    )


@router.get("/code-maps", response_model=list[CodeMapEntry], responses=problems())
def get_code_maps(request: Request, principal: Reader) -> JSONResponse:
    runtime = get_runtime(request)
    with runtime.read() as session:
        rows = session.scalars(
            sa.select(CodeMapRow)
            .where(CodeMapRow.tenant_id == principal.tenant_id)
            .order_by(CodeMapRow.source_system, CodeMapRow.source_code)
        ).all()
    return JSONResponse(
        [
            {
                "system": r.source_system,
                "code": r.source_code,
                "target_system": r.target_system,
                "target_code": r.target_code,
            }
            for r in rows
        ]
    )


# -- manual indicators ---------------------------------------------------------------


class ManualBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    numerator: int
    denominator: int
    #: A department code, or null for the whole hospital.
    department: str | None = Field(default=None, max_length=64)
    note: str = Field(default="", max_length=2000)


@router.put(
    "/indicators/{code}/manual/{month}",
    response_model=ManualValue,
    responses=problems(404, 409),
)
def put_manual(
    code: str, month: str, body: ManualBody, request: Request, principal: ManualEditor
) -> JSONResponse:
    """Enter (or correct) one month's numerator and denominator; audited."""
    runtime = get_runtime(request)
    defn = definition(runtime, code)
    first_day = manual.parse_month(month)
    manual.check_entry(defn, body.numerator, body.denominator)
    department = manual.check_department(principal, body.department)
    now = runtime.clock.now()

    def work(session: sa.orm.Session) -> dict[str, Any]:
        row = manual.put_value(
            session,
            principal,
            defn,
            first_day,
            department,
            body.numerator,
            body.denominator,
            body.note,
            now,
        )
        return manual.value_json(row)

    return JSONResponse(runtime.write_tx(work))


@router.get("/indicators/{code}/manual", response_model=ManualList, responses=problems(404, 409))
def list_manual(
    code: str,
    request: Request,
    principal: Reader,
    start: Annotated[str | None, Query(alias="from", description="first month, YYYY-MM")] = None,
    end: Annotated[str | None, Query(alias="to", description="last month, YYYY-MM")] = None,
) -> JSONResponse:
    """The entries of a manual indicator by month and department, with their audit
    trails. A department-limited key sees its departments' entries only."""
    runtime = get_runtime(request)
    defn = definition(runtime, code)
    if defn.kind != "manual":
        raise ConflictError(f"indicator '{code}' is computed from events, not entered")
    first = manual.parse_month(start) if start else None
    last = manual.parse_month(end) if end else None
    departments = sorted(principal.departments) if principal.departments is not None else None
    with runtime.read() as session:
        entries = manual.list_values(session, principal.tenant_id, code, departments, first, last)
    return JSONResponse({"code": code, "entries": entries})


# -- target profiles and the tenant's settings ---------------------------------------


@router.get("/target-profiles", response_model=list[TargetProfile], responses=problems())
def list_target_profiles(request: Request, principal: Reader) -> JSONResponse:
    known = profiles(get_runtime(request))
    return JSONResponse([profile_json(p) for p in known.profiles.values()])


def tenant_json(tenant: Tenant) -> dict[str, Any]:
    return {
        "id": tenant.id,
        "name": tenant.name,
        "timezone": tenant.timezone,
        "target_profile": tenant.target_profile,
        "catalogue": tenant.catalogue or CATALOGUE_YEARS[0],
        "alert_grace": (
            None if tenant.alert_grace_seconds is None else f"PT{tenant.alert_grace_seconds}S"
        ),
    }


@router.get("/tenant", response_model=TenantOut, responses=problems(404))
def get_tenant(request: Request, principal: Reader) -> JSONResponse:
    runtime = get_runtime(request)
    with runtime.read() as session:
        tenant = session.get(Tenant, principal.tenant_id)
        if tenant is None:
            raise NotFoundError(f"no tenant '{principal.tenant_id}'")
        return JSONResponse(tenant_json(tenant))


class TenantBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: A profile name (``GET /target-profiles``), or null for the national defaults.
    target_profile: str | None = None
    catalogue: Literal["2025", "2026"] | None = None
    #: How long after a deadline ``case.breached`` waits (ISO 8601 duration, or
    #: seconds); null: the deployment's ``QCPULSE_ALERT_GRACE``.
    alert_grace: timedelta | None = Field(default=None, ge=timedelta(0), le=timedelta(hours=24))


@router.put("/tenant", response_model=TenantOut, responses=problems(400, 404))
def put_tenant(body: TenantBody, request: Request, principal: Admin) -> JSONResponse:
    """Change the fields given; ``target_profile: null`` returns to the defaults."""
    runtime = get_runtime(request)
    given = body.model_fields_set
    wanted = body.target_profile if "target_profile" in given else None
    if wanted is not None and wanted not in profiles(runtime):
        raise InvalidInputError(f"unknown target profile '{wanted}'")
    with runtime.write() as session:
        tenant = session.get(Tenant, principal.tenant_id)
        if tenant is None:
            raise NotFoundError(f"no tenant '{principal.tenant_id}'")
        if "target_profile" in given:
            tenant.target_profile = body.target_profile
        if "catalogue" in given and body.catalogue is not None:
            tenant.catalogue = body.catalogue
        if "alert_grace" in given:
            grace = body.alert_grace
            tenant.alert_grace_seconds = None if grace is None else int(grace.total_seconds())
        return JSONResponse(tenant_json(tenant))
