"""Request bodies and response shapes of the alert API.

Shapes and closed sets are checked here (a wrong event name is a 422 before any
service code runs); what needs the catalogue or the settings (indicator codes,
private addresses) is checked in the service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import httpx
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from services.alerts.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Subscription,
)

ALL = "*"

EventName = AlertKind | Literal["*"]


def _check_url(value: str) -> str:
    value = value.strip()
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise ValueError("the URL must be http:// or https://")
    if not url.host:
        raise ValueError("the URL has no host")
    if url.fragment:
        raise ValueError("the URL may not have a #fragment")
    return value


def _digest(value: object) -> object:
    """``"PT1H"`` (ISO 8601) or a whole number of minutes."""
    if isinstance(value, bool):
        raise ValueError("digest: an ISO 8601 duration or minutes")
    if isinstance(value, int):
        return timedelta(minutes=value)
    return value


def _digest_range(value: timedelta) -> timedelta:
    if not timedelta(minutes=1) <= value <= timedelta(hours=24):
        raise ValueError("digest: between 1 minute and 24 hours")
    if value.total_seconds() != int(value.total_seconds()):
        raise ValueError("digest: whole seconds")
    return value


Digest = Annotated[timedelta, BeforeValidator(_digest), AfterValidator(_digest_range)]


def format_duration(seconds: int | None) -> str | None:
    """``3600`` → ``"PT1H"``, ``90`` → ``"PT1M30S"``."""
    if seconds is None:
        return None
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    parts = (f"{h}H" if h else "") + (f"{m}M" if m else "") + (f"{s}S" if s or not (h or m) else "")
    return f"PT{parts}"


WebhookURL = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_check_url)]
Names = Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(min_length=1)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubscriptionCreate(_Body):
    url: WebhookURL
    events: Annotated[list[EventName], Field(min_length=1)]
    indicators: Names = Field(default_factory=lambda: [ALL])
    departments: Names = Field(default_factory=lambda: [ALL])
    description: str = Field(default="", max_length=500)
    #: Send rate alerts as one ``rate.digest`` per department per interval.
    digest: Digest | None = None


class SubscriptionUpdate(_Body):
    url: WebhookURL | None = None
    events: Annotated[list[EventName], Field(min_length=1)] | None = None
    indicators: Names | None = None
    departments: Names | None = None
    description: str | None = Field(default=None, max_length=500)
    #: ``true`` re-enables a subscription that a 410 Gone (or an admin) disabled.
    enabled: bool | None = None
    #: ``null`` turns the digest off (waiting rate alerts go out in one last digest).
    digest: Digest | None = None


# -- responses: one place that says what a client sees ----------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def subscription_json(row: Subscription) -> dict[str, Any]:
    """A subscription as clients see it: never its secret (shown once, at creation)."""
    return {
        "id": row.id,
        "url": row.url,
        "events": row.events,
        "indicators": row.indicators,
        "departments": row.departments,
        "description": row.description,
        "enabled": row.enabled,
        "disabled_reason": row.disabled_reason,
        "digest": format_duration(row.digest_seconds),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def alert_json(row: Alert) -> dict[str, Any]:
    data = row.payload["data"]
    return {
        "id": row.id,
        "type": row.kind,
        "status": row.status,
        "tenant": row.tenant_id,
        "indicator": data["indicator"],
        "department": row.department,
        "episode": data.get("episode"),
        "case": data.get("case"),
        "rate": data.get("rate"),
        "message": data["message"],
        "created_at": _iso(row.created_at),
        "acknowledged_at": _iso(row.acknowledged_at),
        "acknowledged_by": row.acknowledged_by,
        "resolved_at": _iso(row.resolved_at),
        "resolution": row.resolution,
    }


def attempt_json(row: DeliveryAttempt) -> dict[str, Any]:
    return {
        "number": row.number,
        "at": _iso(row.started_at),
        "outcome": row.outcome,
        "status_code": row.status_code,
        "latency_ms": row.latency_ms,
        "error": row.error,
        "next_retry_at": _iso(row.next_retry_at),
    }


def delivery_json(row: Delivery, attempts: Sequence[DeliveryAttempt]) -> dict[str, Any]:
    return {
        "id": row.id,
        "subscription_id": row.subscription_id,
        "alert_id": row.alert_id,
        "type": row.event_type,
        "webhook_id": row.webhook_id,
        "status": row.status,
        "attempt_count": row.attempt_count,
        "next_attempt_at": _iso(row.next_attempt_at)
        if row.status == DeliveryStatus.PENDING
        else None,
        "retry_until": _iso(row.retry_until),
        "created_at": _iso(row.created_at),
        "finished_at": _iso(row.finished_at),
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "attempts": [attempt_json(a) for a in attempts],
    }


# -- response models: what ``/openapi.json`` says of the dicts above -------------------


class SubscriptionOut(BaseModel):
    id: str
    url: str
    events: list[EventName]
    indicators: list[str]
    departments: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None
    #: ISO 8601 duration (``"PT1H"``); null: rate alerts are sent one by one.
    digest: str | None
    created_at: datetime | None
    updated_at: datetime | None


class SubscriptionCreated(SubscriptionOut):
    #: The signing secret (``whsec_…``): shown once, here.
    secret: str


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionOut]


class AttemptOut(BaseModel):
    number: int
    at: datetime | None
    outcome: str
    status_code: int | None
    latency_ms: float | None
    error: str | None
    next_retry_at: datetime | None


class DeliveryOut(BaseModel):
    id: str
    subscription_id: str
    alert_id: str | None
    type: str
    webhook_id: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None
    retry_until: datetime | None
    created_at: datetime | None
    finished_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    attempts: list[AttemptOut]


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryOut]
    next_cursor: str | None


class AlertOut(BaseModel):
    id: str
    type: AlertKind
    status: AlertStatus
    tenant: str
    indicator: str
    department: str | None
    episode: str | None
    #: The case's clock (``case.*`` alerts), else null.
    case: dict[str, Any] | None
    #: The rate and its limits (``rate.*`` alerts), else null.
    rate: dict[str, Any] | None
    #: ``{"zh": …, "en": …}``
    message: dict[str, str]
    created_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolution: str | None


class AlertPage(BaseModel):
    alerts: list[AlertOut]
    next_cursor: str | None
