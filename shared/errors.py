"""Errors that know their HTTP status.

Services raise these; the edge renders them: FHIR endpoints as an OperationOutcome,
the REST API as RFC 9457 problem JSON. One exception tree, two renderings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

IssueCode = Literal[
    "invalid",
    "structure",
    "required",
    "value",
    "invariant",
    "security",
    "login",
    "forbidden",
    "processing",
    "not-supported",
    "duplicate",
    "not-found",
    "too-costly",
    "exception",
    "conflict",
    "throttled",
]


@dataclass(frozen=True, slots=True)
class Issue:
    """One FHIR OperationOutcome issue."""

    code: IssueCode
    diagnostics: str
    expression: tuple[str, ...] = ()
    severity: Literal["fatal", "error", "warning", "information"] = "error"

    def to_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out


class AppError(Exception):
    status_code = 400
    title = "Bad request"
    issue_code: IssueCode = "invalid"

    def __init__(self, detail: str, *, issues: list[Issue] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.issues = issues or [Issue(self.issue_code, detail)]

    def problem(self) -> dict[str, Any]:
        slug = type(self).__name__.removesuffix("Error").lower() or "error"
        return {
            "type": f"https://qcpulse.org/problems/{slug}",
            "title": self.title,
            "status": self.status_code,
            "detail": self.detail,
        }

    def operation_outcome(self) -> dict[str, Any]:
        return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in self.issues]}


class InvalidInputError(AppError):
    status_code = 400
    title = "Invalid input"


class UnprocessableError(AppError):
    status_code = 422
    title = "Unprocessable content"
    issue_code = "processing"


class UnauthorizedError(AppError):
    status_code = 401
    title = "Unauthorized"
    issue_code = "login"


class ForbiddenError(AppError):
    status_code = 403
    title = "Forbidden"
    issue_code = "forbidden"


class NotFoundError(AppError):
    status_code = 404
    title = "Not found"
    issue_code = "not-found"


class GoneError(AppError):
    status_code = 410
    title = "Gone"
    issue_code = "not-found"


class ConflictError(AppError):
    status_code = 409
    title = "Conflict"
    issue_code = "conflict"


class PayloadTooLargeError(AppError):
    status_code = 413
    title = "Payload too large"
    issue_code = "too-costly"


class UnsupportedMediaTypeError(AppError):
    status_code = 415
    title = "Unsupported media type"
    issue_code = "not-supported"


class TooManyRequestsError(AppError):
    status_code = 429
    title = "Too many requests"
    issue_code = "throttled"

    def __init__(self, detail: str, *, retry_after: str) -> None:
        super().__init__(detail)
        #: The ``Retry-After`` header: whole seconds.
        self.retry_after = retry_after


class InternalError(AppError):
    status_code = 500
    title = "Internal server error"
    issue_code = "exception"
