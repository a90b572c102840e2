"""FHIR Measure endpoints: the catalogue as ``Measure`` resources and
``$evaluate-measure`` (docs/MEASURES.md). Included before the ingest router, whose
``GET /fhir/{rtype}/{rid}`` would otherwise answer for ``/fhir/Measure/{code}``."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.indicators import measure
from services.indicators.definitions import IndicatorDefinition
from services.indicators.measure_report import subject_list_report, tenant_report
from services.indicators.router import (
    allowed_departments,
    definition,
    tenant_catalogue,
)
from services.indicators.worker import catalogue_for
from shared.auth import Principal
from shared.errors import AppError, ForbiddenError, InvalidInputError, Issue, PayloadTooLargeError
from shared.http import FHIR_JSON, FHIRResponse, get_runtime, require
from shared.openapi import FHIRBundle, FHIRResource, OperationOutcome, outcomes
from shared.runtime import Runtime

router = APIRouter()

#: Measures are definitions, no patient data: any key that reads FHIR reads them.
FhirReader = Annotated[Principal, Depends(require("fhir:read"))]
#: A MeasureReport is the indicator API's (``api:read``), as at ``/measure-report``.
ApiReader = Annotated[Principal, Depends(require("api:read"))]
#: A ``Parameters`` body is a few dates and codes.
MAX_PARAMETERS_BYTES = 64 * 1024


class MethodNotAllowedError(AppError):
    status_code = 405
    title = "Method not allowed"
    issue_code = "not-supported"


def _read_only() -> Response:
    error = MethodNotAllowedError(
        "Measure resources are the server's indicator definitions and are read-only; "
        "change a definition in the deployment's definition directory"
    )
    return FHIRResponse(error.operation_outcome(), status_code=405, headers={"Allow": "GET"})


# -- the OpenAPI declaration of the parameters these routes parse themselves
# (measure.parse_search, measure.parse_evaluate): FHIR's names, not Python's.


def _param(
    name: str,
    schema: dict[str, Any],
    description: str,
    *,
    where: str = "query",
    required: bool = False,
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required,
        "description": description,
        "schema": schema,
    }


_STRING: dict[str, Any] = {"type": "string"}
_YEAR = "(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
#: A FHIR ``date`` as the operation takes it: a year, a month or a real day.
_DATE: dict[str, Any] = {
    "type": "string",
    "pattern": (
        f"^({_YEAR}(-(0[1-9]|1[0-2]))?"
        f"|{_YEAR}-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
        "|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
        f"|{_LEAP}-02-29)$"
    ),
}
_COMMON = [
    _param(
        "_format",
        {"type": "string", "enum": ["json", "application/json", "application/fhir+json"]},
        "the answer's format: JSON only",
    ),
    _param(
        "Prefer",
        _STRING,
        "`handling=lenient`: unknown parameters are ignored instead of refused (400)",
        where="header",
    ),
]
_SEARCH: dict[str, Any] = {
    "parameters": [
        _param("_id", _STRING, "indicator codes, comma-separated (any of them)"),
        _param("url", _STRING, "canonical URLs (`|version` optional), comma-separated"),
        *(
            _param(f"{name}{modifier}", _STRING, f"{what} {how}")
            for name, what in (("name", "the computable name"), ("title", "the title, zh or en"))
            for modifier, how in (
                ("", "starts with (case-insensitive)"),
                (":exact", "is"),
                (":contains", "contains (case-insensitive)"),
            )
        ),
        _param("status", _STRING, "`active` (every measure is)"),
        _param("version", _STRING, "the definition's version"),
        _param(
            "catalogue",
            {"type": "string", "enum": ["2025", "2026", "all"]},
            "a catalogue year, or all; default the tenant's year",
        ),
        _param(
            "_count",
            {"type": "integer", "minimum": 0, "maximum": measure.MAX_COUNT},
            f"entries a page; default {measure.DEFAULT_COUNT}",
        ),
        _param("_offset", {"type": "integer", "minimum": 0, "maximum": 10**6}, "entries skipped"),
        _param(
            "_summary",
            {"type": "string", "enum": ["count", "false"]},
            "`count`: the total only, no entries",
        ),
        *_COMMON,
    ]
}


def _evaluate_params(*, type_level: bool) -> list[dict[str, Any]]:
    out = [
        _param("periodStart", _DATE, "the period's first day (of a year or month)", required=True),
        _param("periodEnd", _DATE, "the period's last day (of a year or month)", required=True),
        _param(
            "reportType",
            {"type": "string", "enum": ["summary", "population", "subject-list"]},
            "`summary` (default; `population` is R4's name) or `subject-list`",
        ),
        _param("department", _STRING, "one department's report"),
        *_COMMON,
    ]
    if type_level:
        out.insert(
            0, _param("measure", _STRING, "an indicator code, or a canonical URL", required=True)
        )
    return out


#: The ``Parameters`` a POST may send besides the query's (each name given once).
_PARAMETERS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "description": "a FHIR Parameters resource: reportType and department",
        "content": {
            media: {
                "schema": {
                    "type": "object",
                    "required": ["resourceType"],
                    "properties": {
                        "resourceType": {"type": "string", "enum": ["Parameters"]},
                        "parameter": {
                            "type": "array",
                            "maxItems": 1,
                            "items": {
                                "oneOf": [
                                    {
                                        "type": "object",
                                        "required": ["name", "valueCode"],
                                        "properties": {
                                            "name": {"type": "string", "enum": ["reportType"]},
                                            "valueCode": {
                                                "type": "string",
                                                "enum": ["summary", "population", "subject-list"],
                                            },
                                        },
                                        "additionalProperties": False,
                                    },
                                    {
                                        "type": "object",
                                        "required": ["name", "valueString"],
                                        "properties": {
                                            "name": {"type": "string", "enum": ["department"]},
                                            "valueString": _STRING,
                                        },
                                        "additionalProperties": False,
                                    },
                                ]
                            },
                        },
                    },
                }
            }
            for media in (FHIR_JSON, "application/json")
        },
    }
}


def _evaluate_extra(*, type_level: bool, post: bool) -> dict[str, Any]:
    extra: dict[str, Any] = {"parameters": _evaluate_params(type_level=type_level)}
    return extra | _PARAMETERS_BODY if post else extra


def _params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def _is_lenient(request: Request) -> bool:
    return measure.lenient(request.headers.get("prefer"))


@router.get(
    "/fhir/Measure",
    response_class=FHIRResponse,
    response_model=FHIRBundle,
    responses=outcomes(400),
    openapi_extra=_SEARCH,
)
def search_measures(request: Request, principal: FhirReader) -> Response:
    """A ``searchset`` of the tenant's reported catalogue (``catalogue=`` for another
    year or ``all``), filtered by ``_id``, ``url``, ``name``, ``title``, ``status``,
    ``version``; paged by ``_count`` and ``_offset``."""
    runtime = get_runtime(request)
    query = measure.parse_search(_params(request), is_lenient=_is_lenient(request))
    loaded = catalogue_for(runtime.settings.indicators_dir)
    with runtime.read() as session:
        year = query.catalogue or tenant_catalogue(session, principal.tenant_id)
    reported = loaded.reported(year)
    found = measure.search((d for d in loaded.definitions() if d.code in reported), query)
    page = found[query.offset : query.offset + query.count]

    def link(relation: str, offset: int) -> dict[str, str]:
        pairs = [(k, v) for k, v in query.used if k != "_offset"]
        if offset:
            pairs.append(("_offset", str(offset)))
        suffix = f"?{urlencode(pairs)}" if pairs else ""
        return {"relation": relation, "url": f"{request.base_url}fhir/Measure{suffix}"}

    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(found),
        "link": [link("self", query.offset)],
    }
    if query.summary_count:
        return FHIRResponse(bundle)
    if query.offset + query.count < len(found) and query.count:
        bundle["link"].append(link("next", query.offset + query.count))
    if query.offset:
        bundle["link"].append(link("previous", max(0, query.offset - query.count)))
    bundle["entry"] = [
        {
            "fullUrl": f"{request.base_url}fhir/Measure/{d.code}",
            "resource": measure.build_measure(d),
            "search": {"mode": "match"},
        }
        for d in page
    ]
    if not bundle["entry"]:
        del bundle["entry"]
    return FHIRResponse(bundle)


async def _operation_params(request: Request) -> list[tuple[str, str]]:
    """The query's parameters, and a POST's ``Parameters`` body (one place per name)."""
    params = _params(request)
    if request.method != "POST":
        return params
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_PARAMETERS_BYTES:
            raise PayloadTooLargeError(f"a Parameters body is at most {MAX_PARAMETERS_BYTES} bytes")
    if not body.strip():
        return params
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        text = f"malformed JSON: {exc}"
        raise InvalidInputError(text, issues=[Issue("structure", text, ("$",))]) from exc
    return params + measure.parameters_body(parsed)


def _evaluate(
    runtime: Runtime, principal: Principal, defn: IndicatorDefinition, ev: measure.Evaluation
) -> Response:
    departments = allowed_departments(principal, ev.department)
    # Patient-level: the subjects are FHIR references, read as cases are.
    if ev.report_type == "subject-list" and not principal.may("fhir:read"):
        raise ForbiddenError(
            f"role '{principal.role}' may not read subjects (reportType=subject-list "
            "needs 'api:read' and 'fhir:read')"
        )
    with runtime.read() as session:
        tz = runtime.tenant_zone(session, principal.tenant_id)
        report = tenant_report(
            session,
            defn,
            principal.tenant_id,
            ev.start,
            ev.end,
            tz,
            departments,
            department=ev.department,
            generated=runtime.clock.now(),
        )
        if ev.report_type == "subject-list":
            lists = measure.subject_lists(
                session, principal.tenant_id, defn, ev.start, ev.end, departments
            )
            report = subject_list_report(report, lists)
    return FHIRResponse(report)


def _check_measure_param(defn: IndicatorDefinition, ev: measure.Evaluation) -> None:
    if ev.measure is None:
        return
    url, _, version = ev.measure.partition("|")
    if ev.measure != defn.code and (
        url != measure.measure_url(defn.code) or (version and version != defn.version)
    ):
        text = f"measure '{ev.measure}' is not Measure/{defn.code} of this URL"
        raise InvalidInputError(text, issues=[Issue("value", text, ("measure",))])


def _measure_of(runtime: Runtime, wanted: str | None) -> IndicatorDefinition:
    """The type-level operation's ``measure``: an id, or a canonical URL (``|version``)."""
    if wanted is None:
        text = "measure is required at /fhir/Measure/$evaluate-measure (an id or canonical URL)"
        raise InvalidInputError(text, issues=[Issue("required", text, ("measure",))])
    url, _, _ = wanted.partition("|")
    prefix = f"{measure.measure_url('')}"
    return definition(runtime, url.removeprefix(prefix) if url.startswith(prefix) else url)


#: What ``$evaluate-measure`` answers: a MeasureReport, or an OperationOutcome (400 for
#: a parameter, 404 for an unknown measure, 413 for a large body, 422 for a
#: subject-list the indicator cannot give).
_EVALUATED: dict[str, Any] = {
    "response_class": FHIRResponse,
    "response_model": FHIRResource,
}


@router.get(
    "/fhir/Measure/$evaluate-measure",
    **_EVALUATED,
    responses=outcomes(400, 404),
    openapi_extra=_evaluate_extra(type_level=True, post=False),
)
@router.post(
    "/fhir/Measure/$evaluate-measure",
    **_EVALUATED,
    responses=outcomes(400, 404, 413),
    openapi_extra=_evaluate_extra(type_level=True, post=True),
)
async def evaluate_any_measure(request: Request, principal: ApiReader) -> Response:
    """``$evaluate-measure`` of the measure named by ``measure``: an unknown one is a 404
    before the other parameters are read, as at ``/fhir/Measure/{code}``."""
    runtime = get_runtime(request)
    params = await _operation_params(request)
    defn = _measure_of(runtime, next((value for name, value in params if name == "measure"), None))
    ev = measure.parse_evaluate(params, is_lenient=_is_lenient(request))
    _check_measure_param(defn, ev)
    return _evaluate(runtime, principal, defn, ev)


@router.get(
    "/fhir/Measure/{code}/$evaluate-measure",
    **_EVALUATED,
    responses=outcomes(400, 404),
    openapi_extra=_evaluate_extra(type_level=False, post=False),
)
@router.post(
    "/fhir/Measure/{code}/$evaluate-measure",
    **_EVALUATED,
    responses=outcomes(400, 404, 413),
    openapi_extra=_evaluate_extra(type_level=False, post=True),
)
async def evaluate_measure(code: str, request: Request, principal: ApiReader) -> Response:
    """FHIR R4 ``$evaluate-measure``: ``periodStart``, ``periodEnd`` (dates),
    ``reportType`` ``summary`` (default) or ``subject-list``, and qcpulse's
    ``department``; in the query, or for POST in a ``Parameters`` body too."""
    runtime = get_runtime(request)
    defn = definition(runtime, code)
    ev = measure.parse_evaluate(await _operation_params(request), is_lenient=_is_lenient(request))
    _check_measure_param(defn, ev)
    return _evaluate(runtime, principal, defn, ev)


@router.get(
    "/fhir/Measure/{code}",
    response_class=FHIRResponse,
    response_model=FHIRResource,
    responses={
        200: {"headers": {"ETag": {"description": "the version", "schema": _STRING}}},
        **outcomes(404),
    },
)
def read_measure(code: str, request: Request, principal: FhirReader) -> Response:
    """Any definition of the catalogue, whichever year the tenant reports."""
    defn = definition(get_runtime(request), code)
    return FHIRResponse(measure.build_measure(defn), headers={"ETag": f'W/"{defn.version}"'})


# Measure resources are read-only: these answer 405 (after the key is checked), where
# the generic ``/fhir/{rtype}`` routes would store a Measure. ``Allow`` names the one
# method that works.
_READ_ONLY: dict[str, Any] = {
    "response_class": FHIRResponse,
    "response_model": OperationOutcome,
    "status_code": 405,
    "responses": {
        405: {
            "description": "Measure resources are read-only",
            "headers": {"Allow": {"description": "`GET`", "schema": _STRING}},
        },
        **outcomes(),
    },
}


@router.post("/fhir/Measure", **_READ_ONLY)
def create_measure(principal: FhirReader) -> Response:
    return _read_only()


@router.put("/fhir/Measure/{code}", **_READ_ONLY)
@router.delete("/fhir/Measure/{code}", **_READ_ONLY)
def write_measure(code: str, principal: FhirReader) -> Response:
    return _read_only()
