"""The audit log (docs/API.md §1, "Audit log"): who read patient-level data, and who
changed keys, subscriptions and settings, one row per request.

The routes audited are listed in ``AUDITED`` by method and path template; a middleware
(:func:`audit_middleware`) writes the row after the handler answered, in its own short
write transaction (reads run in read sessions, which must not write). A read is
recorded whatever it answered (a 404 or 403 is a refused attempt, with its status in
``detail``); a change only when it succeeded (2xx). If the row cannot be written the
caller gets a 500 instead of the data: nothing patient-level leaves unaudited.

A handler may add to the row's ``detail`` by setting ``request.state.audit_detail``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
import structlog
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel
from starlette.concurrency import run_in_threadpool

from shared.auth import Principal
from shared.errors import InternalError, InvalidInputError
from shared.http import JSONResponse, get_runtime, render_error, require
from shared.models import AuditEntry
from shared.openapi import problems

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/v1")

Admin = Annotated[Principal, Depends(require("admin"))]

#: (method, route path) → action. Reads of patient-level data, then changes.
AUDITED: dict[tuple[str, str], str] = {
    ("GET", "/fhir/{rtype}/{rid}"): "read",
    ("GET", "/fhir/{rtype}/{rid}/_history"): "read",
    ("GET", "/fhir/{rtype}/{rid}/_history/{vid}"): "read",
    ("GET", "/api/v1/indicators/{code}/cases"): "read",
    # reportType=subject-list lists patients and episodes (docs/MEASURES.md).
    ("GET", "/fhir/Measure/{code}/$evaluate-measure"): "read",
    ("POST", "/fhir/Measure/{code}/$evaluate-measure"): "read",
    ("GET", "/fhir/Measure/$evaluate-measure"): "read",
    ("POST", "/fhir/Measure/$evaluate-measure"): "read",
    ("GET", "/api/v1/data-quality"): "read",
    ("GET", "/console/api/timeline"): "read",
    ("POST", "/api/v1/keys"): "create",
    ("DELETE", "/api/v1/keys/{key_id}"): "delete",
    ("POST", "/api/v1/subscriptions"): "create",
    ("PATCH", "/api/v1/subscriptions/{sub_id}"): "update",
    ("DELETE", "/api/v1/subscriptions/{sub_id}"): "delete",
    ("POST", "/api/v1/subscriptions/{sub_id}/test"): "test",
    ("POST", "/api/v1/hl7/sources"): "create",
    ("DELETE", "/api/v1/hl7/sources/{source_id}"): "delete",
    ("PUT", "/api/v1/indicators/{code}/manual/{month}"): "update",
    ("PUT", "/api/v1/indicators/{code}/target"): "update",
    ("PUT", "/api/v1/code-maps/{system:path}"): "update",
    ("PUT", "/api/v1/tenant"): "update",
}
ACTIONS = sorted(set(AUDITED.values()))


async def _with_body(response: Response) -> tuple[Response, bytes]:
    """The response's body, and a response that still sends it."""
    body = b""
    iterator = getattr(response, "body_iterator", None)
    if iterator is None:
        return response, bytes(response.body)
    async for chunk in iterator:
        body += chunk if isinstance(chunk, bytes) else chunk.encode()
    rebuilt = Response(
        body,
        status_code=response.status_code,
        headers=dict(response.headers),
        media_type=response.media_type,
    )
    return rebuilt, body


def _created_id(body: bytes) -> Any:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed.get("id") if isinstance(parsed, dict) else None


async def audit_middleware(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    route = request.scope.get("route")
    action = AUDITED.get((request.method, getattr(route, "path", "")))
    principal: Principal | None = getattr(request.state, "principal", None)
    if action is None or principal is None:
        return response
    status = response.status_code
    if status >= 500 or (action != "read" and status >= 300):
        return response
    detail: dict[str, Any] = {"status": status}
    if request.query_params:
        detail["query"] = dict(request.query_params)
    detail.update(getattr(request.state, "audit_detail", None) or {})
    if action == "create" and "id" not in detail:
        response, body = await _with_body(response)
        created = _created_id(body)
        if created is not None:
            detail["id"] = created
    runtime = get_runtime(request)
    entry = {
        "tenant_id": principal.tenant_id,
        "at": runtime.clock.now(),
        "key_id": principal.key_id,
        "role": principal.role.value,
        "action": action,
        "resource": f"{request.method} {request.url.path}"[:400],
        "detail": detail,
        "client": request.client.host[:64] if request.client else None,
    }

    def write() -> None:
        with runtime.write() as session:
            session.execute(sa.insert(AuditEntry), [entry])

    try:
        await run_in_threadpool(write)
    except Exception as exc:
        # Fail closed: an unaudited read of patient data is not answered.
        log.error("audit entry not written", path=request.url.path, exc_info=exc)
        return render_error(request, InternalError("the request could not be audited"))
    return response


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    #: The id of the key that made the request, never its secret.
    key: str
    role: str
    action: str
    resource: str
    detail: dict[str, Any]
    client: str | None


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: str | None


def entry_json(row: AuditEntry) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at.isoformat(),
        "key": row.key_id,
        "role": row.role,
        "action": row.action,
        "resource": row.resource,
        "detail": row.detail,
        "client": row.client,
    }


@router.get("/audit", response_model=AuditPage, responses=problems(400))
def list_audit(
    request: Request,
    principal: Admin,
    start: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    key: Annotated[str | None, Query(max_length=32)] = None,
    action: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
) -> JSONResponse:
    """The tenant's audit entries, newest first; ``from`` inclusive, ``to`` exclusive;
    ``next_cursor`` continues (keyset on the entry id)."""
    if action is not None and action not in ACTIONS:
        raise InvalidInputError(f"action must be one of {', '.join(ACTIONS)}")
    stmt = sa.select(AuditEntry).where(AuditEntry.tenant_id == principal.tenant_id)
    if cursor is not None:
        if not cursor.isdigit():
            raise InvalidInputError("invalid cursor")
        stmt = stmt.where(AuditEntry.id < int(cursor))
    if start is not None:
        stmt = stmt.where(AuditEntry.at >= start)
    if end is not None:
        stmt = stmt.where(AuditEntry.at < end)
    if key is not None:
        stmt = stmt.where(AuditEntry.key_id == key)
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    with get_runtime(request).read() as session:
        rows = list(session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        entries = [entry_json(row) for row in rows]
    next_cursor = str(rows[-1].id) if more and rows else None
    return JSONResponse({"entries": entries, "next_cursor": next_cursor})
