"""Alert API: subscriptions and deliveries (admin), alerts (reader). Thin: parse, call
one service function in one transaction, answer."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from services.alerts import service
from services.alerts.models import AlertStatus, DeliveryStatus
from services.alerts.schemas import (
    AlertOut,
    AlertPage,
    DeliveryOut,
    DeliveryPage,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionList,
    SubscriptionOut,
    SubscriptionUpdate,
)
from services.indicators import catalogue_for
from shared.auth import Principal
from shared.http import JSONResponse, get_runtime, require
from shared.openapi import body, problems

router = APIRouter(prefix="/api/v1")

Reader = Annotated[Principal, Depends(require("api:read"))]
Admin = Annotated[Principal, Depends(require("admin"))]
Limit = Annotated[int, Query(ge=1, le=1000)]


@router.post(
    "/subscriptions",
    status_code=201,
    response_model=SubscriptionCreated,
    responses=problems(400),
)
def create_subscription(
    body: SubscriptionCreate, request: Request, principal: Admin
) -> JSONResponse:
    runtime = get_runtime(request)
    with runtime.write() as session:
        out = service.create_subscription(
            session,
            principal.tenant_id,
            body,
            catalogue=catalogue_for(runtime.settings.indicators_dir),
            settings=runtime.settings,
            now=runtime.clock.now(),
        )
    return JSONResponse(out, status_code=201)


@router.get("/subscriptions", response_model=SubscriptionList, responses=problems())
def list_subscriptions(request: Request, principal: Admin) -> JSONResponse:
    with get_runtime(request).read() as session:
        return JSONResponse(service.list_subscriptions(session, principal.tenant_id))


@router.get("/subscriptions/{sub_id}", response_model=SubscriptionOut, responses=problems(404))
def get_subscription(sub_id: str, request: Request, principal: Admin) -> JSONResponse:
    with get_runtime(request).read() as session:
        return JSONResponse(service.get_subscription(session, principal.tenant_id, sub_id))


@router.patch(
    "/subscriptions/{sub_id}", response_model=SubscriptionOut, responses=problems(400, 404)
)
def update_subscription(
    sub_id: str, body: SubscriptionUpdate, request: Request, principal: Admin
) -> JSONResponse:
    runtime = get_runtime(request)
    with runtime.write() as session:
        out = service.update_subscription(
            session,
            principal.tenant_id,
            sub_id,
            body,
            catalogue=catalogue_for(runtime.settings.indicators_dir),
            settings=runtime.settings,
            now=runtime.clock.now(),
        )
    return JSONResponse(out)


@router.delete(
    "/subscriptions/{sub_id}",
    status_code=204,
    response_class=Response,
    responses=problems(404),
)
def delete_subscription(sub_id: str, request: Request, principal: Admin) -> Response:
    runtime = get_runtime(request)
    with runtime.write() as session:
        service.delete_subscription(session, principal.tenant_id, sub_id, runtime.clock.now())
    return Response(status_code=204)


@router.post(
    "/subscriptions/{sub_id}/test",
    status_code=202,
    response_model=DeliveryOut,
    responses=problems(404, 409),
)
def test_subscription(sub_id: str, request: Request, principal: Admin) -> JSONResponse:
    runtime = get_runtime(request)
    with runtime.write() as session:
        out = service.send_test(
            session,
            principal.tenant_id,
            sub_id,
            settings=runtime.settings,
            now=runtime.clock.now(),
        )
    return JSONResponse(out, status_code=202)


@router.get(
    "/subscriptions/{sub_id}/deliveries",
    response_model=DeliveryPage,
    responses=problems(404),
)
def list_deliveries(
    sub_id: str,
    request: Request,
    principal: Admin,
    status: DeliveryStatus | None = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> JSONResponse:
    with get_runtime(request).read() as session:
        return JSONResponse(
            service.list_deliveries(
                session, principal.tenant_id, sub_id, status=status, limit=limit, cursor=cursor
            )
        )


@router.get("/deliveries/{delivery_id}", response_model=DeliveryOut, responses=problems(404))
def get_delivery(delivery_id: str, request: Request, principal: Admin) -> JSONResponse:
    with get_runtime(request).read() as session:
        return JSONResponse(service.get_delivery(session, principal.tenant_id, delivery_id))


@router.post(
    "/deliveries/{delivery_id}/retry",
    status_code=202,
    response_model=DeliveryOut,
    responses=problems(404, 409),
)
def retry_delivery(delivery_id: str, request: Request, principal: Admin) -> JSONResponse:
    runtime = get_runtime(request)
    with runtime.write() as session:
        out = service.retry_delivery(
            session,
            principal.tenant_id,
            delivery_id,
            settings=runtime.settings,
            now=runtime.clock.now(),
        )
    return JSONResponse(out, status_code=202)


@router.get("/alerts", response_model=AlertPage, responses=problems())
def list_alerts(
    request: Request,
    principal: Reader,
    status: AlertStatus | None = None,
    indicator: str | None = None,
    department: str | None = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> JSONResponse:
    with get_runtime(request).read() as session:
        return JSONResponse(
            service.list_alerts(
                session,
                principal,
                status=status,
                indicator=indicator,
                department=department,
                limit=limit,
                cursor=cursor,
            )
        )


#: How often the stream looks for changes, and how long it stays silent at most.
STREAM_POLL_SECONDS = 1.0
STREAM_KEEPALIVE_SECONDS = 15.0


@router.get(
    "/alerts/stream",
    response_class=StreamingResponse,
    responses={
        **body(200, "text/event-stream", "server-sent events: `alerts` with the list"),
        **problems(),
    },
)
async def stream_alerts(
    request: Request,
    principal: Reader,
    status: AlertStatus | None = None,
    department: str | None = None,
    limit: Limit = 100,
) -> StreamingResponse:
    """Server-sent events: an ``alerts`` event with the current list (as ``GET /alerts``
    answers it for the same filters) at once and whenever it changes — a new alert, an
    acknowledgement, a resolution. A comment line keeps idle connections open."""
    runtime = get_runtime(request)

    def snapshot() -> dict[str, Any]:
        with runtime.read() as session:
            page: dict[str, Any] = service.list_alerts(
                session,
                principal,
                status=status,
                indicator=None,
                department=department,
                limit=limit,
                cursor=None,
            )
            return page

    async def events() -> AsyncIterator[bytes]:
        last = ""
        quiet = 0.0
        while not await request.is_disconnected():
            body = orjson.dumps(await run_in_threadpool(snapshot))
            digest = hashlib.sha256(body).hexdigest()
            if digest != last:
                last, quiet = digest, 0.0
                yield b"event: alerts\nid: " + digest[:16].encode() + b"\ndata: " + body + b"\n\n"
            elif quiet >= STREAM_KEEPALIVE_SECONDS:
                quiet = 0.0
                yield b": keepalive\n\n"
            await asyncio.sleep(STREAM_POLL_SECONDS)
            quiet += STREAM_POLL_SECONDS

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/alerts/{alert_id}", response_model=AlertOut, responses=problems(404))
def get_alert(alert_id: str, request: Request, principal: Reader) -> JSONResponse:
    with get_runtime(request).read() as session:
        return JSONResponse(service.get_alert(session, principal, alert_id))


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut, responses=problems(404, 409))
def acknowledge(alert_id: str, request: Request, principal: Reader) -> JSONResponse:
    runtime = get_runtime(request)
    with runtime.write() as session:
        return JSONResponse(service.acknowledge(session, principal, alert_id, runtime.clock.now()))
