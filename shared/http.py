"""The HTTP edge shared by every service: auth dependencies, error rendering, responses."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import orjson
import structlog
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.routing import compile_path

from shared.auth import Principal, authenticate
from shared.errors import (
    AppError,
    InternalError,
    Issue,
    IssueCode,
    TooManyRequestsError,
    UnprocessableError,
)
from shared.ratelimit import retry_after_header
from shared.runtime import Runtime

log = structlog.get_logger(__name__)

FHIR_JSON = "application/fhir+json"
PROBLEM_JSON = "application/problem+json"


class JSONResponse(StarletteJSONResponse):
    """JSON by orjson. A Starlette ``JSONResponse`` so that FastAPI documents a route's
    ``response_model`` as its body (it documents other response classes as a string)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class FHIRResponse(JSONResponse):
    media_type = FHIR_JSON


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def require(permission: str, *alternatives: str) -> Callable[[Request], Principal]:
    """A dependency: the caller's key (not expired, within its rate limit), checked for
    ``permission`` or any of ``alternatives`` (refused in the words of ``permission``)."""

    def dependency(request: Request) -> Principal:
        runtime = get_runtime(request)
        now = runtime.clock.now()
        with runtime.read() as session:
            principal = authenticate(session, request.headers.get("authorization"), now=now)
        wait = runtime.rate_limiter.take(principal.key_id, now)
        if wait is not None:
            limit = runtime.settings.rate_limit_per_minute
            raise TooManyRequestsError(
                f"rate limit of {limit} requests per minute for this key exceeded",
                retry_after=retry_after_header(wait),
            )
        if not any(principal.may(p) for p in alternatives):
            principal.require(permission)
        request.state.principal = principal
        return principal

    return dependency


def is_fhir_path(request: Request) -> bool:
    return request.url.path == "/fhir" or request.url.path.startswith("/fhir/")


def render_error(request: Request, error: AppError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if error.status_code == 401 else None
    if isinstance(error, TooManyRequestsError):
        headers = {"Retry-After": error.retry_after}
    if is_fhir_path(request):
        return FHIRResponse(
            error.operation_outcome(), status_code=error.status_code, headers=headers
        )
    response = JSONResponse(error.problem(), status_code=error.status_code, headers=headers)
    response.headers["content-type"] = PROBLEM_JSON
    return response


async def app_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return render_error(request, exc)


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    issues = [
        Issue("value", str(err.get("msg")), (".".join(str(p) for p in err.get("loc", ())),))
        for err in exc.errors()
    ]
    detail = "; ".join(f"{i.expression[0]}: {i.diagnostics}" for i in issues) or "invalid request"
    return render_error(request, UnprocessableError(detail, issues=issues))


_HTTP_ISSUE_CODES: dict[int, IssueCode] = {404: "not-found", 405: "not-supported"}


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Routing errors (unknown path, wrong method) in the same two renderings."""
    assert isinstance(exc, StarletteHTTPException)
    error = AppError(str(exc.detail))
    error.status_code = exc.status_code
    try:
        error.title = HTTPStatus(exc.status_code).phrase
    except ValueError:
        error.title = "Error"
    code = _HTTP_ISSUE_CODES.get(exc.status_code, "processing")
    error.issues = [Issue(code, f"{request.method} {request.url.path}: {exc.detail}")]
    response = render_error(request, error)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(allowed_methods(request))
    return response


def allowed_methods(request: Request) -> list[str]:
    """The methods of the path's routes. Starlette's 405 names only the first route that
    matched the path, and each method is a route of its own here. A literal path
    (``/fhir/metadata``) is its own resource: the templates it also matches
    (``/fhir/{rtype}``) do not count."""
    literal: set[str] = set()
    templated: set[str] = set()
    for context in iter_route_contexts(request.app.routes):
        route_methods = getattr(context, "methods", None)
        path = context.path
        if route_methods and path and compile_path(path)[0].match(request.url.path):
            (literal if path == request.url.path else templated).update(route_methods)
    return sorted(literal or templated)


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    """A bug is still answered in the contract's error format, and logged with its trace."""
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    return render_error(request, InternalError("an unexpected error occurred; it has been logged"))
