"""The monthly bulletin's routes: a hospital's (its reader and admin keys) and a
region's (its region-reader keys), each as JSON, XLSX and PDF.

A bulletin holds aggregates only, so a reader key reads its own hospital's; a
department-limited key gets the bulletin of its departments. The file routes are
declared before the JSON route: ``{month}`` would also match ``2026-03.pdf``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel

from services.regions import pdf, service, xlsx
from services.regions.bulletin import (
    Bulletin,
    DepartmentGap,
    IndicatorLine,
    LeaguePosition,
    SpcSignal,
    TrendPoint,
    hospital_bulletin,
    region_bulletin,
)
from shared.auth import Principal
from shared.http import JSONResponse, get_runtime, require
from shared.openapi import body, problems

router = APIRouter(prefix="/api/v1")

Reader = Annotated[Principal, Depends(require("api:read"))]
RegionReader = Annotated[Principal, Depends(require("region:read"))]
#: ``YYYY-MM`` from 1900-01; a month that has not begun is a 404 (no bulletin yet).
Month = Annotated[
    str, Path(pattern=r"^(19|[2-9][0-9])[0-9]{2}-(0[1-9]|1[0-2])$", examples=["2026-03"])
]


class Title(BaseModel):
    zh: str
    en: str


class BulletinOut(BaseModel):
    """``Bulletin.to_json``: a hospital's has no ``league``."""

    scope: Literal["hospital", "region"]
    subject_id: str
    subject_name: str
    month: str
    period_from: date
    period_to: date
    timezone: str
    generated_at: datetime
    complete: bool
    departments: list[str] | None
    indicators: list[IndicatorLine]
    trends: list[TrendPoint]
    signals: list[SpcSignal]
    departments_off_target: list[DepartmentGap]
    league: list[LeaguePosition] | None = None
    title: Title


def _files(media_type: str, what: str) -> dict[int | str, dict[str, Any]]:
    return {
        **body(200, media_type, what, schema={"type": "string", "format": "binary"}),
        **problems(404, 503),
    }


XLSX = _files(xlsx.MEDIA_TYPE, "the bulletin as an Excel workbook")
PDF = _files(pdf.MEDIA_TYPE, "the bulletin as a PDF (Chinese, font embedded)")


def _hospital(request: Request, principal: Principal, month: str) -> Bulletin:
    runtime = get_runtime(request)
    departments = sorted(principal.departments) if principal.departments is not None else None
    with runtime.read() as session:
        return hospital_bulletin(
            session, principal.tenant_id, month, runtime=runtime, departments=departments
        )


def _region(request: Request, principal: Principal, region: str, month: str) -> Bulletin:
    runtime = get_runtime(request)
    with runtime.read() as session:
        service.region_of(session, principal, region)
        return region_bulletin(session, region, month, runtime=runtime)


def _file(
    bulletin: Bulletin, render: Callable[[Bulletin], bytes], media_type: str, ext: str
) -> Response:
    name = f"qcpulse-bulletin-{bulletin.subject_id}-{bulletin.month}.{ext}"
    return Response(
        render(bulletin),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/bulletins/{month}.xlsx", response_class=Response, responses=XLSX)
def get_hospital_bulletin_xlsx(month: Month, request: Request, principal: Reader) -> Response:
    """The hospital's bulletin of ``month`` (YYYY-MM) as an Excel workbook."""
    return _file(_hospital(request, principal, month), xlsx.render, xlsx.MEDIA_TYPE, "xlsx")


@router.get("/bulletins/{month}.pdf", response_class=Response, responses=PDF)
def get_hospital_bulletin_pdf(month: Month, request: Request, principal: Reader) -> Response:
    """The hospital's bulletin of ``month`` (YYYY-MM) as a PDF in Chinese."""
    return _file(_hospital(request, principal, month), pdf.render, pdf.MEDIA_TYPE, "pdf")


@router.get("/bulletins/{month}", response_model=BulletinOut, responses=problems(404))
def get_hospital_bulletin(month: Month, request: Request, principal: Reader) -> JSONResponse:
    """The hospital's bulletin of ``month`` (YYYY-MM): the indicator table against
    targets, twelve-month trends with year on year, SPC signals, departments most off
    target. The current month is provisional (``complete: false``)."""
    return JSONResponse(_hospital(request, principal, month).to_json())


@router.get("/regions/{region}/bulletins/{month}.xlsx", response_class=Response, responses=XLSX)
def get_region_bulletin_xlsx(
    region: str, month: Month, request: Request, principal: RegionReader
) -> Response:
    return _file(_region(request, principal, region, month), xlsx.render, xlsx.MEDIA_TYPE, "xlsx")


@router.get("/regions/{region}/bulletins/{month}.pdf", response_class=Response, responses=PDF)
def get_region_bulletin_pdf(
    region: str, month: Month, request: Request, principal: RegionReader
) -> Response:
    return _file(_region(request, principal, region, month), pdf.render, pdf.MEDIA_TYPE, "pdf")


@router.get(
    "/regions/{region}/bulletins/{month}", response_model=BulletinOut, responses=problems(404)
)
def get_region_bulletin(
    region: str, month: Month, request: Request, principal: RegionReader
) -> JSONResponse:
    """The region's bulletin of ``month``: its members pooled, league positions, and
    the members most off the region's target."""
    return JSONResponse(_region(request, principal, region, month).to_json())
