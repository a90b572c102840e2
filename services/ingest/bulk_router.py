"""``$import`` endpoints (FHIR Bulk Data style kick-off, status, cancel). Thin: the
body is stored by :class:`services.ingest.bulk.BodyWriter` before the 202; a worker
applies it (docs/IMPORT.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from services.ingest import bulk
from shared.auth import Principal
from shared.errors import Issue, PayloadTooLargeError, UnsupportedMediaTypeError
from shared.http import FHIRResponse, JSONResponse, get_runtime, require
from shared.openapi import OperationOutcome, outcomes

router = APIRouter()

Writer = Annotated[Principal, Depends(require("fhir:write"))]

#: ``application/fhir+ndjson`` is the Bulk Data type; the generic ndjson names too.
NDJSON_TYPES = frozenset({"application/fhir+ndjson", "application/ndjson", "application/x-ndjson"})
#: Bytes handed to the store at a time (one thread-pool hop each).
_STORE_BYTES = 1024 * 1024


class ImportLineError(BaseModel):
    """One line the job could not apply: its number and why."""

    model_config = ConfigDict(extra="allow")

    line: int
    outcome: dict[str, Any]


class ImportStatus(BaseModel):
    """``JobStatus.summary``: the job's counts, and its errors once it is done."""

    model_config = ConfigDict(extra="allow")

    job: str
    #: ``queued``, ``running`` or ``completed``.
    status: str
    lines: int
    total_lines: int
    applied: int
    unchanged: int
    failed: int
    errors: list[ImportLineError]
    created_at: datetime
    finished_at: datetime | None


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


#: The kick-off's body: ndjson, one FHIR resource a line (optionally gzipped, with
#: ``Content-Encoding: gzip``); at least one line that is not blank.
_NDJSON_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "FHIR resources as ndjson, one a line (gzip with Content-Encoding)",
        "content": {
            media: {"schema": {"type": "string", "pattern": r"\S"}}
            for media in sorted(NDJSON_TYPES)
        },
    }
}


def _information(text: str) -> dict[str, object]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": text}],
    }


def _status_url(job_id: str) -> str:
    return f"/fhir/$import-status/{job_id}"


def _check_media(request: Request) -> bool:
    """Whether the body is gzipped; a body of another type is refused before any job."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in NDJSON_TYPES:
        detail = f"$import takes application/fhir+ndjson, not '{media or 'no Content-Type'}'"
        raise UnsupportedMediaTypeError(
            detail, issues=[Issue("not-supported", detail, ("Content-Type",))]
        )
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        detail = f"Content-Encoding '{encoding}' is not supported (gzip or none)"
        raise UnsupportedMediaTypeError(
            detail, issues=[Issue("not-supported", detail, ("Content-Encoding",))]
        )
    return encoding != "identity"


@router.post(
    "/fhir/$import",
    status_code=202,
    response_class=FHIRResponse,
    response_model=OperationOutcome,
    responses={
        202: {
            "description": "Accepted: the job is queued; its status is at Content-Location",
            "headers": {"Content-Location": _header("the job's status URL")},
        },
        **outcomes(400, 413, 415),
    },
    openapi_extra=_NDJSON_BODY,
)
async def kick_off(request: Request, principal: Writer) -> Response:
    runtime = get_runtime(request)
    gzipped = _check_media(request)
    limit = runtime.settings.max_import_bytes
    declared = request.headers.get("content-length")
    if not gzipped and declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(
            f"body of {declared} bytes exceeds the import limit of {limit} bytes"
        )
    writer = bulk.BodyWriter(runtime, principal.tenant_id, "http", gzipped=gzipped)
    await run_in_threadpool(writer.open)
    try:
        pending = bytearray()
        async for piece in request.stream():
            pending += piece
            if len(pending) >= _STORE_BYTES:
                await run_in_threadpool(writer.write, bytes(pending))
                pending.clear()
        if pending:
            await run_in_threadpool(writer.write, bytes(pending))
        lines = await run_in_threadpool(writer.finish)
    except BaseException:
        # No job without its whole body: a bad gzip, an oversized body or a client
        # that went away leaves nothing behind.
        await run_in_threadpool(writer.abort)
        raise
    return FHIRResponse(
        _information(f"import job {writer.job_id} accepted: {lines} line(s)"),
        status_code=202,
        headers={"Content-Location": _status_url(writer.job_id)},
    )


@router.get(
    "/fhir/$import-status/{job_id}",
    response_model=ImportStatus,
    responses={
        200: {
            "description": "The job is done: its summary and a page of its errors",
            "headers": {"Link": _header('the next page of errors (rel="next"), if any')},
        },
        202: {
            "description": "The job is queued or running",
            "model": ImportStatus,
            "headers": {
                "X-Progress": _header("lines applied so far"),
                "Retry-After": _header("seconds to wait before asking again"),
            },
        },
        **outcomes(404),
    },
)
def import_status(
    job_id: str,
    request: Request,
    principal: Writer,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=bulk.MAX_ERROR_PAGE)] = 1000,
) -> Response:
    """202 with ``X-Progress`` while the job runs; 200 with its summary when done
    (errors in line order, ``limit`` per page after line ``after``)."""
    runtime = get_runtime(request)
    with runtime.read() as session:
        status = bulk.job_status(session, principal.tenant_id, job_id)
        errors = bulk.job_errors(session, job_id, after=after, limit=limit) if status.done else []
    if not status.done:
        return JSONResponse(
            status.summary([]),
            status_code=202,
            headers={"X-Progress": status.progress, "Retry-After": "2"},
        )
    headers = {}
    if len(errors) == limit:
        headers["Link"] = (
            f'<{_status_url(job_id)}?after={errors[-1]["line"]}&limit={limit}>; rel="next"'
        )
    return JSONResponse(status.summary(errors), headers=headers)


@router.delete(
    "/fhir/$import-status/{job_id}",
    status_code=202,
    response_class=FHIRResponse,
    response_model=OperationOutcome,
    responses=outcomes(404),
)
def cancel_import(job_id: str, request: Request, principal: Writer) -> Response:
    """Cancel a running job (lines committed so far stay applied) or forget a
    finished one; its status is 404 from then on."""
    runtime = get_runtime(request)
    status = runtime.write_tx(lambda session: bulk.cancel(session, principal.tenant_id, job_id))
    what = (
        f"import job {job_id} deleted"
        if status.done
        else f"import job {job_id} cancelled after {status.lines} of {status.total_lines} lines"
    )
    return FHIRResponse(_information(what), status_code=202)
