"""The OpenAPI contract's shared parts: the two error bodies, the FHIR media types, and
the ``responses=`` each route declares (docs/CONTRACT.md).

Errors are rendered by :mod:`shared.http`: problem JSON (RFC 9457) everywhere but under
``/fhir``, where they are FHIR OperationOutcomes. A route lists the statuses it can
answer with :func:`problems` (REST) or :func:`outcomes` (FHIR); both add the statuses
every authenticated route can answer (401, 403, 422, 429). :func:`install` puts the two
error schemas into ``components`` once, so the routes refer to them instead of
repeating them.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from shared.http import FHIR_JSON, PROBLEM_JSON

NDJSON = "application/fhir+ndjson"
CSV = "text/csv"
#: The security scheme of ``/openapi.json``: ``Authorization: Bearer <key>``.
BEARER = "apiKey"

#: What every route behind a key can answer: no or a bad key, a role without the
#: permission, a parameter or body that fails its schema, and the per-key rate limit.
AUTHENTICATED = (401, 403, 422, 429)


class Problem(BaseModel):
    """An error of the REST API (RFC 9457 problem details)."""

    type: str = Field(examples=["https://qcpulse.org/problems/notfound"])
    title: str
    status: int
    detail: str


class OutcomeIssue(BaseModel):
    severity: Literal["fatal", "error", "warning", "information"]
    code: str
    diagnostics: str | None = None
    expression: list[str] | None = None


class OperationOutcome(BaseModel):
    """An error (or the answer to a delete) of the FHIR API."""

    model_config = ConfigDict(extra="allow")

    resourceType: Literal["OperationOutcome"]
    issue: list[OutcomeIssue] = Field(min_length=1)


class FHIRResource(BaseModel):
    """Any FHIR R4 resource: what the ``/fhir`` endpoints store and answer. Its
    content is FHIR's (https://hl7.org/fhir/R4/), validated by the ingest service."""

    model_config = ConfigDict(extra="allow")

    resourceType: str
    id: str | None = None


class FHIRBundle(FHIRResource):
    """A FHIR Bundle (a transaction-response, batch-response or history)."""

    resourceType: Literal["Bundle"]
    type: str
    entry: list[dict[str, Any]] = Field(default_factory=list)


_REF = "#/components/schemas/{}"
_HEADERS_FOR: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "always `Bearer`",
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "whole seconds until the key may call again",
            "schema": {"type": "string"},
        }
    },
}


def _error(status: int, media_type: str, model: type[BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": HTTPStatus(status).phrase,
        "content": {media_type: {"schema": {"$ref": _REF.format(model.__name__)}}},
    }
    if status in _HEADERS_FOR:
        out["headers"] = _HEADERS_FOR[status]
    return out


def problems(*statuses: int, public: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a REST route: each status (and, unless ``public``, those of
    :data:`AUTHENTICATED`) answered with problem JSON."""
    wanted = set(statuses) | (set() if public else set(AUTHENTICATED))
    return {s: _error(s, PROBLEM_JSON, Problem) for s in sorted(wanted)}


def outcomes(*statuses: int, public: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a FHIR route: each status answered with an OperationOutcome."""
    wanted = set(statuses) | (set() if public else set(AUTHENTICATED))
    return {s: _error(s, FHIR_JSON, OperationOutcome) for s in sorted(wanted)}


def body(
    status: int,
    media_type: str,
    description: str,
    model: type[BaseModel] | None = None,
    schema: dict[str, Any] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """A success answer in a media type other than the route's response class (a CSV
    export, an ER7 acknowledgement): merged into ``responses=``."""
    if model is not None:
        schema = {"$ref": _REF.format(model.__name__)}
    return {
        status: {
            "description": description,
            "content": {media_type: {"schema": schema or {"type": "string"}}},
        }
    }


def csv_alternative() -> dict[int | str, dict[str, Any]]:
    """``200`` with ``?format=csv``: a ``text/csv`` file besides the route's JSON model."""
    return {
        200: {
            "description": "JSON, or with `format=csv` a CSV file (UTF-8 with a BOM)",
            "content": {CSV: {"schema": {"type": "string"}}},
        }
    }


#: Models referred to by ``$ref`` only (never a route's ``response_model``).
_COMPONENTS: tuple[type[BaseModel], ...] = (Problem, OperationOutcome)


def install(app: FastAPI, *, extra: tuple[type[BaseModel], ...] = ()) -> None:
    """Have ``app.openapi()`` carry the error schemas (and ``extra``) in ``components``."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (*_COMPONENTS, *extra):
            found = model.model_json_schema(
                ref_template="#/components/schemas/{model}", mode="serialization"
            )
            for name, nested in found.pop("$defs", {}).items():
                components.setdefault(name, nested)
            components.setdefault(model.__name__, found)
        # Every route that can answer 401 takes a key: say so, as an HTTP bearer scheme.
        schema["components"]["securitySchemes"] = {
            BEARER: {"type": "http", "scheme": "bearer", "description": "an API key, qcp_…"}
        }
        for path, operations in schema.get("paths", {}).items():
            fhir = path == "/fhir" or path.startswith("/fhir/")
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if "401" in responses:
                    operation.setdefault("security", [{BEARER: []}])
                # A JSON body that does not parse is FastAPI's 400, on every route
                # that takes one.
                if "requestBody" in operation and "400" not in responses:
                    error = outcomes(400, public=True) if fhir else problems(400, public=True)
                    responses["400"] = error[400]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
