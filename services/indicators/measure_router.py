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
from shared.http import FHIRResponse, get_runtime, require
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


def _read_only() -> MethodNotAllowedError:
    return MethodNotAllowedError(
        "Measure resources are the server's indicator definitions and are read-only; "
        "change a definition in the deployment's definition directory"
    )


def _params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def _is_lenient(request: Request) -> bool:
    return measure.lenient(request.headers.get("prefer"))


@router.get("/fhir/Measure")
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


@router.get("/fhir/Measure/$evaluate-measure")
@router.post("/fhir/Measure/$evaluate-measure")
async def evaluate_any_measure(request: Request, principal: ApiReader) -> Response:
    runtime = get_runtime(request)
    ev = measure.parse_evaluate(await _operation_params(request), is_lenient=_is_lenient(request))
    defn = _measure_of(runtime, ev.measure)
    _check_measure_param(defn, ev)
    return _evaluate(runtime, principal, defn, ev)


@router.get("/fhir/Measure/{code}/$evaluate-measure")
@router.post("/fhir/Measure/{code}/$evaluate-measure")
async def evaluate_measure(code: str, request: Request, principal: ApiReader) -> Response:
    """FHIR R4 ``$evaluate-measure``: ``periodStart``, ``periodEnd`` (dates),
    ``reportType`` ``summary`` (default) or ``subject-list``, and qcpulse's
    ``department``; in the query, or for POST in a ``Parameters`` body too."""
    runtime = get_runtime(request)
    defn = definition(runtime, code)
    ev = measure.parse_evaluate(await _operation_params(request), is_lenient=_is_lenient(request))
    _check_measure_param(defn, ev)
    return _evaluate(runtime, principal, defn, ev)


@router.get("/fhir/Measure/{code}")
def read_measure(code: str, request: Request, principal: FhirReader) -> Response:
    """Any definition of the catalogue, whichever year the tenant reports."""
    defn = definition(get_runtime(request), code)
    return FHIRResponse(measure.build_measure(defn), headers={"ETag": f'W/"{defn.version}"'})


@router.post("/fhir/Measure")
def create_measure(principal: FhirReader) -> Response:
    raise _read_only()


@router.put("/fhir/Measure/{code}")
@router.delete("/fhir/Measure/{code}")
def write_measure(code: str, principal: FhirReader) -> Response:
    raise _read_only()
