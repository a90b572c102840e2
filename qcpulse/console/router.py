"""The quality department's console: the page at ``/``, its static assets, the offline
``/docs`` and ``/redoc``, and two small reads the REST API lacks (who the key is, and
one episode's timeline). A region's key (质控中心, ``region-reader``) signs in too: the
session says so and the console opens the region's page (docs/CONSOLE.md).

Every asset ships in the package (``static/``): hospital intranets have no internet,
so nothing is fetched from a CDN. Assets are served gzip-compressed when the browser
accepts it, with an ETag, from an in-memory cache filled on first use.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

import services.ingest as ingest
from services.regions.models import Region
from shared.auth import REGION_ROLES, Principal
from shared.errors import NotFoundError
from shared.http import JSONResponse, get_runtime, require
from shared.models import Tenant
from shared.openapi import problems
from shared.runtime import Runtime

STATIC = Path(__file__).parent / "static"
ASSETS = "/console/static"

#: The page, its assets and the API docs are not API: only the two ``/console/api``
#: reads are in ``/openapi.json``.
router = APIRouter()

Reader = Annotated[Principal, Depends(require("api:read"))]


#: The session read is the one console route both kinds of key sign in with: a
#: hospital's (``api:read``) and a region's (``region:read``); an ingest key is refused.
SessionReader = Annotated[Principal, Depends(require("api:read", "region:read"))]

# Assets are immutable per release but not content-hashed in their names: revalidate.
_CACHE_CONTROL = "no-cache"
_COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml")


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str


@cache
def _asset(relative: str) -> _Asset | None:
    path = (STATIC / relative).resolve()
    if not path.is_relative_to(STATIC.resolve()) or not path.is_file():
        return None
    body = path.read_bytes()
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.suffix in (".js", ".mjs"):
        media_type = "text/javascript"
    compress = media_type.startswith(_COMPRESSIBLE) and len(body) > 1024
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return _Asset(body, gzip.compress(body, 6, mtime=0) if compress else None, media_type, etag)


def _serve(request: Request, relative: str) -> Response:
    asset = _asset(relative)
    if asset is None:
        raise NotFoundError(f"no console asset '{relative}'")
    headers = {"ETag": asset.etag, "Cache-Control": _CACHE_CONTROL, "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    media_type = asset.media_type
    if media_type.startswith("text/"):
        media_type += "; charset=utf-8"
    if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=media_type, headers=headers)
    return Response(asset.body, media_type=media_type, headers=headers)


@router.get("/", include_in_schema=False)
def index(request: Request) -> Response:
    return _serve(request, "index.html")


@router.get(ASSETS + "/{path:path}", include_in_schema=False)
def static(path: str, request: Request) -> Response:
    return _serve(request, path)


@router.get("/docs", include_in_schema=False)
def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="qcpulse — API",
        swagger_js_url=f"{ASSETS}/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon.svg",
    )


@router.get("/redoc", include_in_schema=False)
def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="qcpulse — API",
        redoc_js_url=f"{ASSETS}/vendor/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS}/favicon.svg",
        with_google_fonts=False,
    )


class DepartmentOut(BaseModel):
    code: str
    name: str | None


class RegionRefOut(BaseModel):
    """The region a region key reads (``GET /api/v1/regions/{id}`` has the rest)."""

    id: str
    name: str


class SessionOut(BaseModel):
    """A hospital's key (``kind: hospital``) or a region's (``kind: region``). For a
    region key ``tenant``/``tenant_name``/``timezone`` are the region's (its keys carry
    the region's id where a hospital's carry the tenant's), ``departments`` is null and
    ``department_list`` empty."""

    tenant: str
    tenant_name: str
    timezone: str
    role: str
    key_id: str
    departments: list[str] | None
    permissions: list[str]
    department_list: list[DepartmentOut]
    kind: Literal["hospital", "region"]
    region: RegionRefOut | None


class CodingOut(BaseModel):
    system: str | None
    code: str | None


class FactOut(BaseModel):
    resource: str
    kind: str
    status: str | None
    time: datetime | None
    end_time: datetime | None
    issued: datetime | None
    codes: list[CodingOut]
    value: Any = None
    unit: str | None


class TimelineOut(BaseModel):
    episode: str
    patient: str | None
    department: str | None
    department_name: str | None
    class_: str | None = Field(alias="class")
    status: str | None
    arrival: datetime | None
    discharge: datetime | None
    facts: list[FactOut]


# The two reads below belong to the console; they live under /console/api so that the
# public /api/v1 contract stays as documented. Both honour the key's department limit.


@router.get(
    "/console/api/session", tags=["console"], response_model=SessionOut, responses=problems(404)
)
def session_info(request: Request, principal: SessionReader) -> JSONResponse:
    """Who the key is: its role, its departments (null: all), its tenant's time zone,
    and the departments it may choose from; for a region's key (``kind: region``) its
    region."""
    runtime = get_runtime(request)
    if principal.role in REGION_ROLES:
        return JSONResponse(_region_session(runtime, principal))
    with runtime.read() as session:
        tenant = session.get(Tenant, principal.tenant_id)
        names = ingest.department_names(session, principal.tenant_id)
    codes = sorted(principal.departments) if principal.departments is not None else sorted(names)
    return JSONResponse(
        {
            "tenant": principal.tenant_id,
            "tenant_name": tenant.name if tenant else principal.tenant_id,
            "timezone": tenant.timezone if tenant else runtime.settings.default_timezone,
            "role": principal.role.value,
            "key_id": principal.key_id,
            "departments": sorted(principal.departments)
            if principal.departments is not None
            else None,
            "permissions": _permissions(principal),
            "department_list": [{"code": c, "name": names.get(c)} for c in codes],
            "kind": "hospital",
            "region": None,
        }
    )


def _permissions(principal: Principal) -> list[str]:
    return sorted(p for p in ("admin", "manual", "api:read", "region:read") if principal.may(p))


def _region_session(runtime: Runtime, principal: Principal) -> dict[str, Any]:
    with runtime.read() as session:
        region = session.get(Region, principal.tenant_id)
        if region is None:  # a key whose region is gone: as an unknown key's region
            raise NotFoundError(f"no region '{principal.tenant_id}'")
        name, timezone = region.name, region.timezone
    return {
        "tenant": principal.tenant_id,
        "tenant_name": name,
        "timezone": timezone,
        "role": principal.role.value,
        "key_id": principal.key_id,
        "departments": None,
        "permissions": _permissions(principal),
        "department_list": [],
        "kind": "region",
        "region": {"id": principal.tenant_id, "name": name},
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@router.get(
    "/console/api/timeline",
    tags=["console"],
    response_model=TimelineOut,
    responses=problems(404),
)
def timeline(
    request: Request,
    principal: Reader,
    episode: Annotated[str, Query(description="Encounter/{id} or the id", max_length=80)],
) -> JSONResponse:
    """One episode with its clinical facts in time order: what a case's clock saw."""
    encounter_id = episode.removeprefix("Encounter/")
    runtime = get_runtime(request)
    with runtime.read() as session:
        found, facts = ingest.load_episodes(session, principal.tenant_id, [encounter_id])[
            encounter_id
        ]
    # Another department's episode is answered as absent, as alerts are (docs/API.md §1).
    if found is None or (
        principal.departments is not None and found.department not in principal.departments
    ):
        raise NotFoundError(f"no episode Encounter/{encounter_id}")
    ordered = sorted(
        facts, key=lambda f: (f.time is None, f.time.timestamp() if f.time else 0, f.resource_id)
    )
    items: list[dict[str, Any]] = [
        {
            "resource": f"{fact.resource_type}/{fact.resource_id}",
            "kind": fact.kind.value,
            "status": fact.status,
            "time": _iso(fact.time),
            "end_time": _iso(fact.end_time),
            "issued": _iso(fact.issued),
            "codes": [{"system": c.system, "code": c.code} for c in fact.codes],
            "value": fact.value,
            "unit": fact.unit,
        }
        for fact in ordered
    ]
    return JSONResponse(
        {
            "episode": f"Encounter/{found.encounter_id}",
            "patient": f"Patient/{found.patient_id}" if found.patient_id else None,
            "department": found.department,
            "department_name": found.department_name,
            "class": found.class_code,
            "status": found.status,
            "arrival": _iso(found.arrival),
            "discharge": _iso(found.discharge),
            "facts": items,
        }
    )
