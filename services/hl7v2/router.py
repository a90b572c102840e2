"""HL7 v2 over HTTP, and the admin endpoints for sources and the message log. Thin:
parse, call the service or the repository, answer."""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy.orm import Session

from services.hl7v2 import parse, repository, service
from services.hl7v2.errors import V2Rejected
from services.hl7v2.models import HL7Message, HL7Source
from services.hl7v2.schemas import MessageOut, MessagePage, SourceCreate, SourceOut
from shared.auth import Principal
from shared.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from shared.http import get_runtime, require
from shared.openapi import body, problems

router = APIRouter()
api_router = APIRouter(prefix="/api/v1/hl7")

Admin = Annotated[Principal, Depends(require("admin"))]
Writer = Annotated[Principal, Depends(require("fhir:write"))]

ER7 = "x-application/hl7-v2+er7"
#: What engines send besides the registered type.
_ER7_TYPES = frozenset({ER7, "application/hl7-v2", "application/hl7-v2+er7", "text/plain"})


def _source_out(row: HL7Source) -> SourceOut:
    return SourceOut(
        id=row.id,
        facility=row.facility,
        application=row.application or None,
        networks=list(row.networks),
        created_at=row.created_at,
    )


@router.post(
    "/hl7v2",
    response_class=Response,
    responses={
        **body(200, ER7, "the message's ACK (AA, AE or AR), in the message's charset"),
        **problems(413, 415),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "one HL7 v2 message in ER7 (segments separated by CR)",
            "content": {media: {"schema": {"type": "string"}} for media in sorted(_ER7_TYPES)},
        }
    },
)
async def post_message(request: Request, principal: Writer) -> Response:
    """One ER7 message; the answer is its ACK, whatever its code."""
    runtime = get_runtime(request)
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in _ER7_TYPES:
        raise UnsupportedMediaTypeError(f"POST /hl7v2 takes {ER7}, not '{media or 'nothing'}'")
    limit = runtime.settings.mllp_max_message_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLargeError(f"message exceeds the limit of {limit} bytes")
    peer = request.client.host if request.client else None
    answer = await run_in_threadpool(
        service.receive,
        runtime,
        bytes(body),
        transport="http",
        peer=peer,
        tenant_id=principal.tenant_id,
    )
    return Response(answer.ack_bytes, media_type=f"{ER7}; charset={answer.codec}")


@api_router.post("/sources", status_code=201, responses=problems(409))
def create_source(body: SourceCreate, request: Request, principal: Admin) -> SourceOut:
    runtime = get_runtime(request)
    application = body.application or ""

    def work(session: Session) -> SourceOut:
        if repository.source_exists(session, body.facility, application):
            raise ConflictError(
                f"a source with facility '{body.facility}' and application "
                f"'{body.application}' is registered already"
            )
        row = HL7Source(
            id=secrets.token_hex(8),
            tenant_id=principal.tenant_id,
            facility=body.facility,
            application=application,
            networks=body.networks,
        )
        session.add(row)
        session.flush()
        return _source_out(row)

    return runtime.write_tx(work)


@api_router.get("/sources", responses=problems())
def list_sources(request: Request, principal: Admin) -> list[SourceOut]:
    with get_runtime(request).read() as session:
        return [_source_out(r) for r in repository.tenant_sources(session, principal.tenant_id)]


@api_router.delete(
    "/sources/{source_id}", status_code=204, response_class=Response, responses=problems(404)
)
def delete_source(source_id: str, request: Request, principal: Admin) -> Response:
    with get_runtime(request).write() as session:
        row = session.get(HL7Source, source_id)
        if row is None or row.tenant_id != principal.tenant_id:
            raise NotFoundError(f"no HL7 source '{source_id}'")
        session.delete(row)
    return Response(status_code=204)


def _message_out(row: HL7Message) -> MessageOut:
    try:
        codec = parse.codec_for(parse.read_envelope(row.raw).charset) or "utf-8"
    except V2Rejected:
        codec = "utf-8"
    return MessageOut(
        id=row.id,
        source_id=row.source_id,
        control_id=row.control_id,
        message_type=row.message_type,
        version=row.version,
        transport=row.transport,
        peer=row.peer,
        received_at=row.received_at,
        status=row.status,
        error=row.error,
        raw=row.raw.decode(codec, errors="replace"),
        ack=row.ack,
        written=list(row.written),
        stale=list(row.stale),
        replayed_at=row.replayed_at,
    )


@api_router.get("/messages", responses=problems(400))
def list_messages(
    request: Request,
    principal: Admin,
    status: Literal["AA", "AE", "AR"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> MessagePage:
    """The message log, newest first."""
    if cursor is not None and not cursor.isdigit():
        raise InvalidInputError(f"cursor '{cursor}' is not one this endpoint gave out")
    before = int(cursor) if cursor else None
    with get_runtime(request).read() as session:
        rows = repository.messages_page(session, principal.tenant_id, status, limit + 1, before)
        out = [_message_out(r) for r in rows[:limit]]
    next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
    return MessagePage(messages=out, next_cursor=next_cursor)
