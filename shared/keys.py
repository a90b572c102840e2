"""Key management endpoints (admin)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from shared.auth import Principal, Role, create_key
from shared.http import JSONResponse, get_runtime, require

router = APIRouter(prefix="/api/v1")

Admin = Annotated[Principal, Depends(require("admin"))]


class KeyCreate(BaseModel):
    role: Literal["ingest", "reader", "admin"]
    name: str = Field(default="", max_length=200)
    #: Departments a reader is limited to; omit for all. An empty list is refused:
    #: it would read as "no limit" to a careless client.
    departments: list[str] | None = Field(default=None, min_length=1)


@router.post("/keys", status_code=201)
def create(body: KeyCreate, request: Request, principal: Admin) -> JSONResponse:
    runtime = get_runtime(request)
    with runtime.write() as session:
        row, secret = create_key(
            session,
            principal.tenant_id,
            Role(body.role),
            name=body.name,
            departments=body.departments,
        )
    return JSONResponse(
        {
            "id": row.id,
            "key": secret,
            "role": row.role,
            "tenant": row.tenant_id,
            "name": row.name,
            "departments": row.departments,
        },
        status_code=201,
    )
