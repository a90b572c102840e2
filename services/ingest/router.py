"""FHIR R4 endpoints. Thin: read the body within limits, call the service, answer."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy.orm import Session

from services.ingest import access, quality, repository, service
from services.ingest.bundles import precheck, process_bundle
from services.ingest.capability import capability_statement
from services.ingest.schemas import DataQuality
from services.ingest.service import IngestUnit, WriteResult
from services.ingest.validation import (
    content_hash,
    is_known_type,
    json_depth_exceeds,
    valid_id,
    validate_resource,
)
from shared.auth import Principal
from shared.errors import (
    InvalidInputError,
    Issue,
    NotFoundError,
    PayloadTooLargeError,
    UnprocessableError,
)
from shared.http import FHIR_JSON, FHIRResponse, JSONResponse, get_runtime, require
from shared.openapi import FHIRBundle, FHIRResource, OperationOutcome, outcomes, problems
from shared.runtime import Runtime

router = APIRouter()
api_router = APIRouter(prefix="/api/v1")

Writer = Annotated[Principal, Depends(require("fhir:write"))]
Reader = Annotated[Principal, Depends(require("fhir:read"))]


async def read_json(request: Request, runtime: Runtime) -> Any:
    """The request body as JSON, within the size and nesting limits."""
    limit = runtime.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(
            f"malformed JSON: {exc}", issues=[Issue("structure", f"malformed JSON: {exc}", ("$",))]
        ) from exc
    if json_depth_exceeds(body, runtime.settings.max_json_depth):
        raise InvalidInputError(
            f"JSON nested deeper than {runtime.settings.max_json_depth} levels",
            issues=[Issue("too-costly", "JSON nested too deeply", ("$",))],
        )
    return body


def _unit(runtime: Runtime, session: Session, tenant_id: str) -> IngestUnit:
    return IngestUnit(
        session, tenant_id, runtime.tenant_zone(session, tenant_id), runtime.clock.now()
    )


def _check_type(rtype: str) -> None:
    # API.md: a wrong resourceType is a 400/422, not a missing resource.
    if not is_known_type(rtype):
        raise InvalidInputError(
            f"unknown resource type '{rtype}'",
            issues=[Issue("not-supported", f"unknown resource type '{rtype}'", ("resourceType",))],
        )


def _write_response(result: WriteResult) -> Response:
    headers = {
        "ETag": f'W/"{result.version}"',
        "Last-Modified": result.last_updated.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Location": f"/fhir/{result.location}",
    }
    status = 201 if result.status == "created" else 200
    return FHIRResponse(result.resource, status_code=status, headers=headers)


async def _write_one(
    runtime: Runtime, principal: Principal, resource: dict[str, Any], method: str
) -> Response:
    """One resource written in its own transaction: PUT and POST differ only in who
    chose the id. As for a Bundle, changed content is validated before the write
    transaction, outside its locks; the write re-reads the head under its lock."""

    def read_then_write() -> WriteResult:
        issues = service.check_and_rewrite_references(
            resource, principal.tenant_id, {}, resource["resourceType"]
        )
        if issues:
            raise UnprocessableError(issues[0].diagnostics, issues=issues)
        validated = False
        if not precheck_unchanged(runtime, principal.tenant_id, resource):
            if issues := validate_resource(resource):
                raise UnprocessableError(issues[0].diagnostics, issues=issues)
            validated = True

        def work(session: Session) -> WriteResult:
            unit = _unit(runtime, session, principal.tenant_id)
            result = unit.put(resource, method=method, validated=validated)
            unit.finish()
            return result

        return runtime.write_tx(work)

    return _write_response(await run_in_threadpool(read_then_write))


def precheck_unchanged(runtime: Runtime, tenant_id: str, resource: dict[str, Any]) -> bool:
    """Whether ``resource`` is what is stored now (read without the write path)."""
    key = (str(resource["resourceType"]), str(resource["id"]))
    with runtime.read() as session:
        head = repository.current_heads(session, tenant_id, [key]).get(key)
    return head is not None and not head[2] and head[1] == content_hash(resource)


def _body(description: str, *, bundle: bool = False) -> dict[str, Any]:
    """The request body these routes read themselves (``read_json``): FHIR JSON. Its
    content is FHIR R4's, checked by the service, not repeated here."""
    schema = {"$ref": f"#/components/schemas/{(FHIRBundle if bundle else FHIRResource).__name__}"}
    content = {media: {"schema": schema} for media in (FHIR_JSON, "application/json")}
    return {"requestBody": {"required": True, "description": description, "content": content}}


#: PUT answers 200 for an update (or an identical resource stored already), 201 for a
#: new one.
_CREATED: dict[str, Any] = {"description": "Created", "model": FHIRResource}


@router.get(
    "/fhir/metadata",
    response_class=FHIRResponse,
    response_model=FHIRResource,
    summary="The CapabilityStatement (no key needed)",
)
def metadata() -> Response:
    return FHIRResponse(capability_statement())


@router.post(
    "/fhir",
    response_class=FHIRResponse,
    response_model=FHIRBundle,
    responses=outcomes(400, 404, 413),
    openapi_extra=_body("a transaction or batch Bundle", bundle=True),
)
async def post_bundle(request: Request, principal: Writer) -> Response:
    runtime = get_runtime(request)
    bundle = await read_json(request, runtime)

    limit = runtime.settings.max_bundle_entries

    def read_then_write() -> dict[str, Any]:
        # Read phase: heads and validation, outside the write lock; the write phase
        # re-reads the heads under its locks and validates only what this one did not.
        with runtime.read() as session:
            pre = precheck(session, principal.tenant_id, bundle, max_entries=limit)
        if pre.response is not None:
            return pre.response

        def work(session: Session) -> dict[str, Any]:
            unit = _unit(runtime, session, principal.tenant_id)
            return process_bundle(unit, bundle, max_entries=limit, valid=pre.valid)

        return runtime.write_tx(work)

    return FHIRResponse(await run_in_threadpool(read_then_write))


@router.put(
    "/fhir/{rtype}/{rid}",
    response_class=FHIRResponse,
    response_model=FHIRResource,
    responses={201: _CREATED, **outcomes(400, 413)},
    openapi_extra=_body("the resource; its resourceType and id those of the URL"),
)
async def put_resource(rtype: str, rid: str, request: Request, principal: Writer) -> Response:
    runtime = get_runtime(request)
    _check_type(rtype)
    resource = await read_json(request, runtime)
    if not isinstance(resource, dict) or resource.get("resourceType") != rtype:
        found = resource.get("resourceType") if isinstance(resource, dict) else None
        raise InvalidInputError(
            f"body resourceType '{found}' does not match URL type '{rtype}'",
            issues=[
                Issue(
                    "value", f"resourceType '{found}' does not match '{rtype}'", ("resourceType",)
                )
            ],
        )
    if not valid_id(rid) or resource.get("id", rid) != rid:
        raise InvalidInputError(
            f"body id '{resource.get('id')}' does not match URL id '{rid}'",
            issues=[
                Issue(
                    "value",
                    f"id '{resource.get('id')}' does not match URL id '{rid}'",
                    (f"{rtype}.id",),
                )
            ],
        )
    resource = {**resource, "id": rid}

    return await _write_one(runtime, principal, resource, "PUT")


@router.post(
    "/fhir/{rtype}",
    status_code=201,
    response_class=FHIRResponse,
    response_model=FHIRResource,
    responses=outcomes(400, 413),
    openapi_extra=_body("the resource; the server chooses its id"),
)
async def create_resource(rtype: str, request: Request, principal: Writer) -> Response:
    runtime = get_runtime(request)
    _check_type(rtype)
    resource = await read_json(request, runtime)
    if not isinstance(resource, dict) or resource.get("resourceType") != rtype:
        raise InvalidInputError(
            f"body must be a {rtype} resource",
            issues=[Issue("value", f"body must be a {rtype}", ("resourceType",))],
        )
    resource = {**resource, "id": service.new_id()}

    return await _write_one(runtime, principal, resource, "POST")


@router.delete(
    "/fhir/{rtype}/{rid}",
    response_class=FHIRResponse,
    response_model=OperationOutcome,
    responses=outcomes(400, 404),
)
def delete_resource(rtype: str, rid: str, request: Request, principal: Writer) -> Response:
    runtime = get_runtime(request)
    _check_type(rtype)

    def work(session: Session) -> WriteResult:
        unit = _unit(runtime, session, principal.tenant_id)
        result = unit.delete(rtype, rid)
        unit.finish()
        return result

    result = runtime.write_tx(work)
    return FHIRResponse(
        {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "information",
                    "code": "informational",
                    "diagnostics": f"{rtype}/{rid} deleted (version {result.version})",
                }
            ],
        },
        headers={"ETag": f'W/"{result.version}"'},
    )


def _check_visible(session: Session, principal: Principal, rtype: str, rid: str) -> None:
    """A department-limited key reads only its departments' resources; the others are
    answered as absent, as another tenant's are (services/ingest/access.py)."""
    if not access.visible(session, principal.tenant_id, principal.departments, rtype, rid):
        raise NotFoundError(f"{rtype}/{rid} is not known")


@router.get(
    "/fhir/{rtype}/{rid}",
    response_class=FHIRResponse,
    response_model=FHIRResource,
    responses=outcomes(400, 404, 410),
)
def get_resource(rtype: str, rid: str, request: Request, principal: Reader) -> Response:
    runtime = get_runtime(request)
    _check_type(rtype)
    with runtime.read() as session:
        _check_visible(session, principal, rtype, rid)
        row = service.read(session, principal.tenant_id, rtype, rid)
    return FHIRResponse(row.body, headers={"ETag": f'W/"{row.version}"'})


@router.get(
    "/fhir/{rtype}/{rid}/_history",
    response_class=FHIRResponse,
    response_model=FHIRBundle,
    responses=outcomes(400, 404),
)
def get_history(rtype: str, rid: str, request: Request, principal: Reader) -> Response:
    runtime = get_runtime(request)
    _check_type(rtype)
    with runtime.read() as session:
        _check_visible(session, principal, rtype, rid)
        return FHIRResponse(service.read_history(session, principal.tenant_id, rtype, rid))


@router.get(
    "/fhir/{rtype}/{rid}/_history/{vid}",
    response_class=FHIRResponse,
    response_model=FHIRResource,
    responses=outcomes(400, 404),
)
def get_version(rtype: str, rid: str, vid: int, request: Request, principal: Reader) -> Response:
    runtime = get_runtime(request)
    _check_type(rtype)
    with runtime.read() as session:
        _check_visible(session, principal, rtype, rid)
        bundle = service.read_history(session, principal.tenant_id, rtype, rid)
    for entry in bundle["entry"]:
        if entry["response"]["etag"] == f'W/"{vid}"' and "resource" in entry:
            return FHIRResponse(entry["resource"], headers={"ETag": f'W/"{vid}"'})
    raise NotFoundError(f"{rtype}/{rid} has no version {vid}")


@api_router.get("/data-quality", response_model=DataQuality, responses=problems())
def data_quality(
    request: Request,
    principal: Annotated[Principal, Depends(require("api:read"))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Resources that did not reach an episode, types stored but not mapped, and the
    findings of :mod:`services.ingest.quality` (``limit`` caps every list). A
    department-limited key gets its departments' findings only, and no unlinked or
    unmapped resources (they belong to no department)."""
    runtime = get_runtime(request)
    departments = principal.departments
    with runtime.read() as session:
        if departments is None:
            counts = service.unlinked_counts(session, principal.tenant_id)
            items = service.unlinked_resources(session, principal.tenant_id, limit)
        else:
            counts, items = {"unlinked": {}, "unmapped": {}}, []
        found = quality.findings(session, principal.tenant_id, limit, departments=departments)
    return JSONResponse({**counts, "unlinked_resources": items, **found})
