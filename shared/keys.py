"""Key management endpoints (admin): create, list and revoke the tenant's keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, Field

from shared.auth import Principal, Role, create_key
from shared.errors import ConflictError, NotFoundError, UnprocessableError
from shared.http import JSONResponse, get_runtime, require
from shared.models import ApiKey
from shared.openapi import problems

router = APIRouter(prefix="/api/v1")

Admin = Annotated[Principal, Depends(require("admin"))]


class KeyCreate(BaseModel):
    role: Literal["ingest", "reader", "admin"]
    name: str = Field(default="", max_length=200)
    #: Departments a reader is limited to; omit for all. An empty list is refused:
    #: it would read as "no limit" to a careless client.
    departments: list[str] | None = Field(default=None, min_length=1)
    #: Permissions beyond the role's: ``["manual"]`` lets a reader enter manual values.
    permissions: list[Literal["manual"]] | None = None
    #: From this moment on the key answers 401; it must be in the future and carry a
    #: UTC offset. Omit for a key that never expires.
    expires_at: AwareDatetime | None = None


KeyRole = Literal["ingest", "reader", "admin"]


class KeyCreated(BaseModel):
    """The answer to ``POST /keys``: the only time ``key`` (the secret) is shown."""

    id: str
    key: str
    role: KeyRole
    tenant: str
    name: str
    departments: list[str] | None
    permissions: list[str]
    expires_at: datetime | None


class KeyOut(BaseModel):
    """A key as listed: never its secret nor its hash."""

    id: str
    role: KeyRole
    tenant: str
    name: str
    departments: list[str] | None
    permissions: list[str]
    created_at: datetime | None
    expires_at: datetime | None
    expired: bool
    revoked_at: datetime | None


class KeyList(BaseModel):
    keys: list[KeyOut]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def key_json(row: ApiKey, now: datetime) -> dict[str, Any]:
    """A key as listed: never its secret nor its hash."""
    return {
        "id": row.id,
        "role": row.role,
        "tenant": row.tenant_id,
        "name": row.name,
        "departments": row.departments,
        "permissions": row.permissions or [],
        "created_at": _iso(row.created_at),
        "expires_at": _iso(row.expires_at),
        "expired": row.expires_at is not None and now >= row.expires_at,
        "revoked_at": _iso(row.revoked_at),
    }


@router.post("/keys", status_code=201, response_model=KeyCreated, responses=problems())
def create(body: KeyCreate, request: Request, principal: Admin) -> JSONResponse:
    runtime = get_runtime(request)
    if body.permissions and body.role == "ingest":
        raise UnprocessableError("an ingest key cannot be granted 'manual'")
    now = runtime.clock.now()
    if body.expires_at is not None and body.expires_at <= now:
        raise UnprocessableError("expires_at: must be in the future")
    with runtime.write() as session:
        row, secret = create_key(
            session,
            principal.tenant_id,
            Role(body.role),
            name=body.name,
            departments=body.departments,
            permissions=list(body.permissions or ()),
            expires_at=body.expires_at.astimezone(UTC) if body.expires_at else None,
        )
    # The audit row (shared/audit.py) names the key and its limits, never its secret.
    request.state.audit_detail = {
        "id": row.id,
        "role": row.role,
        "departments": row.departments,
        "permissions": row.permissions or [],
        "expires_at": _iso(row.expires_at),
    }
    return JSONResponse(
        {
            "id": row.id,
            "key": secret,
            "role": row.role,
            "tenant": row.tenant_id,
            "name": row.name,
            "departments": row.departments,
            "permissions": row.permissions or [],
            "expires_at": _iso(row.expires_at),
        },
        status_code=201,
    )


@router.get("/keys", response_model=KeyList, responses=problems())
def list_keys(request: Request, principal: Admin) -> JSONResponse:
    """The tenant's keys, oldest first, revoked and expired ones included."""
    runtime = get_runtime(request)
    now = runtime.clock.now()
    with runtime.read() as session:
        rows = session.scalars(
            sa.select(ApiKey)
            .where(ApiKey.tenant_id == principal.tenant_id)
            .order_by(ApiKey.created_at, ApiKey.id)
        ).all()
        return JSONResponse({"keys": [key_json(row, now) for row in rows]})


@router.delete(
    "/keys/{key_id}",
    status_code=204,
    response_class=Response,
    responses=problems(404, 409),
)
def revoke(key_id: str, request: Request, principal: Admin) -> Response:
    """Revoke one of the tenant's keys: from the next request on it answers 401. Another
    tenant's key, or an unknown id, is answered 404; a key cannot revoke itself (409: it
    would lock its holder out mid-session, and a tenant out of its last admin key).
    Revoking a revoked key again changes nothing (204; ``revoked_at`` stays the first)."""
    runtime = get_runtime(request)
    if key_id == principal.key_id:
        raise ConflictError("a key cannot revoke itself: use another admin key")
    with runtime.write() as session:
        row = session.get(ApiKey, key_id)
        if row is None or row.tenant_id != principal.tenant_id:
            raise NotFoundError(f"no key '{key_id}'")
        if row.revoked_at is None:
            row.revoked_at = runtime.clock.now()
        request.state.audit_detail = {"id": row.id, "role": row.role}
    return Response(status_code=204)
