"""The region's submission endpoint (docs/FEDERATION.md): member instances post
summary MeasureReports with a submission key; every answer is an OperationOutcome."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from services.indicators import catalogue_for
from services.regions import federation
from services.regions.federation import Submitter
from shared.errors import (
    AppError,
    ForbiddenError,
    InvalidInputError,
    Issue,
    PayloadTooLargeError,
    TooManyRequestsError,
    UnsupportedMediaTypeError,
)
from shared.http import FHIR_JSON, FHIRResponse, get_runtime
from shared.openapi import FHIRResource, OperationOutcome, outcomes
from shared.ratelimit import retry_after_header
from shared.runtime import Runtime

router = APIRouter(prefix="/api/v1")

_JSON_TYPES = (FHIR_JSON, "application/json")
#: The body: a Bundle of summary MeasureReports, or one (checked by ``read_body``).
_SUBMISSION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "a Bundle (collection or batch) of summary MeasureReports, or one",
        "content": {
            media: {"schema": {"$ref": f"#/components/schemas/{FHIRResource.__name__}"}}
            for media in _JSON_TYPES
        },
    }
}


def _outcome(error: AppError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if error.status_code == 401 else None
    if isinstance(error, TooManyRequestsError):
        headers = {"Retry-After": error.retry_after}
    return FHIRResponse(error.operation_outcome(), status_code=error.status_code, headers=headers)


async def _body(request: Request, runtime: Runtime) -> Any:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media not in _JSON_TYPES:
        raise UnsupportedMediaTypeError("send Content-Type: application/fhir+json")
    limit = runtime.settings.max_body_bytes
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(
            f"malformed JSON: {exc}", issues=[Issue("structure", f"malformed JSON: {exc}", ("$",))]
        ) from exc


def _authenticate(runtime: Runtime, region: str, authorization: str | None) -> Submitter:
    with runtime.read() as session:
        submitter = federation.authenticate_submitter(session, authorization)
    wait = runtime.rate_limiter.take(submitter.key_id, runtime.clock.now())
    if wait is not None:
        raise TooManyRequestsError(
            "rate limit for this submission key exceeded", retry_after=retry_after_header(wait)
        )
    if submitter.region_id != region:
        raise ForbiddenError(f"this submission key is not for region '{region}'")
    return submitter


def _submit(runtime: Runtime, submitter: Submitter, body: Any) -> Response:
    catalogue = catalogue_for(runtime.settings.indicators_dir)
    figures = federation.read_body(
        body, submitter, catalogue, max_entries=runtime.settings.max_bundle_entries
    )
    now = runtime.clock.now()
    outcome = runtime.write_tx(lambda session: federation.store(session, submitter, figures, now))
    return FHIRResponse(outcome.operation_outcome())


@router.post(
    "/regions/{region}/submissions",
    summary="Submit a member's monthly MeasureReports to its region",
    response_class=FHIRResponse,
    response_model=OperationOutcome,
    # Every answer is an OperationOutcome, the errors too (``_outcome``): a submission
    # key's 401, 403 and 429, the body's 400, 413, 415 and 422.
    responses=outcomes(400, 413, 415),
    openapi_extra=_SUBMISSION_BODY,
)
async def post_submissions(region: str, request: Request) -> Response:
    """A Bundle (``collection`` or ``batch``) of summary MeasureReports, or one; all
    are stored or none. Authenticated with a submission key, not an API key."""
    runtime = get_runtime(request)
    try:
        submitter = await run_in_threadpool(
            _authenticate, runtime, region, request.headers.get("authorization")
        )
        body = await _body(request, runtime)
        return await run_in_threadpool(_submit, runtime, submitter, body)
    except AppError as error:
        return _outcome(error)
