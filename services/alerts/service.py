"""The alert service's logic: subscriptions, alert records, and raising an alert.

Every function works in the caller's session and only flushes; the edge (the request
dependency or the worker wrapper) commits. :func:`raise_alert` writes the alert and one
delivery row per matching subscription in the same transaction as the rule state that
decided it, so an alert is never raised without being queued, and never queued twice.

Decisions (see also :mod:`services.alerts.rules` and :mod:`services.alerts.delivery`):

* Acknowledging needs ``api:read`` (reader or admin): on-call staff and the quality
  department read alerts, and acknowledging one is part of reading it, not
  configuration. A reader limited to departments sees and acknowledges only theirs.
  Acknowledging twice is a no-op; acknowledging a resolved alert is a 409.
* ``DELETE`` keeps the row (``deleted_at``) so delivery history stays readable; its
  pending deliveries are cancelled. Disabling (PATCH ``enabled: false``, or a 410 from
  the receiver) dead-letters them instead, so an admin can re-send them after
  re-enabling.
* ``POST …/test`` queues a ``ping`` through the same durable queue as alerts (signed,
  retried) and answers 202 with the delivery; its result shows in ``…/deliveries``.
* A subscription secret must sign every delivery, so it is encrypted, not hashed:
  AES-GCM under ``QCPULSE_SECRET_KEY`` (``shared/secretbox.py``), sealed to its row
  (:func:`secret_context`). It is shown once, at creation, and never logged.
* Receivers on link-local, metadata, multicast, unspecified or broadcast addresses,
  and (unless ``webhook_allow_private``) loopback and private ones, answer ``400``
  (``services/alerts/targets.py``); the delivery checks again after resolving.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.orm import Session

from services.alerts import repository, targets
from services.alerts.messages import digest_body, ping_body
from services.alerts.models import (
    DIGEST,
    DIGESTED,
    PING,
    Alert,
    AlertKind,
    AlertStatus,
    Delivery,
    DeliveryStatus,
    DigestItem,
    Resolution,
    Subscription,
)
from services.alerts.schemas import (
    ALL,
    SubscriptionCreate,
    SubscriptionUpdate,
    alert_json,
    delivery_json,
    subscription_json,
)
from services.indicators import Catalogue
from shared.auth import Principal
from shared.bus import wake_after_commit
from shared.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    UnprocessableError,
)
from shared.metrics import ALERTS_RAISED
from shared.secretbox import secret_box
from shared.settings import Settings

#: Woken when a delivery row commits: the delivery loop sends at once instead of polling.
DELIVERIES_TOPIC = "alerts.deliveries"

SECRET_PREFIX = "whsec_"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_context(subscription_id: str) -> str:
    """What a sealed subscription secret is bound to: its own row."""
    return f"alert_subscriptions.secret:{subscription_id}"


# -- subscriptions ----------------------------------------------------------------------


def _normalize(values: list[str]) -> list[str]:
    unique = list(dict.fromkeys(str(v) for v in values))
    return [ALL] if ALL in unique else unique


def _check_indicators(codes: list[str], catalogue: Catalogue) -> list[str]:
    codes = _normalize(codes)
    unknown = [c for c in codes if c != ALL and c not in catalogue]
    if unknown:
        raise UnprocessableError(f"indicators: unknown indicator code(s) {', '.join(unknown)}")
    return codes


def _seconds(digest: timedelta | None) -> int | None:
    return None if digest is None else int(digest.total_seconds())


def _check_address(url: str, settings: Settings) -> None:
    """Refuse receivers the delivery would refuse, judged from the URL as written."""
    try:
        targets.check_url(url, allow_private=settings.webhook_allow_private)
    except targets.TargetRefusedError as exc:
        raise InvalidInputError(f"url: receiver refused: {exc}") from None


def create_subscription(
    session: Session,
    tenant_id: str,
    body: SubscriptionCreate,
    *,
    catalogue: Catalogue,
    settings: Settings,
    now: datetime,
) -> dict[str, Any]:
    _check_address(body.url, settings)
    sub_id, secret = new_id("sub"), new_secret()
    row = Subscription(
        id=sub_id,
        tenant_id=tenant_id,
        url=body.url,
        secret=secret_box(settings).seal(secret, secret_context(sub_id)),
        events=_normalize([str(e) for e in body.events]),
        indicators=_check_indicators(body.indicators, catalogue),
        departments=_normalize(body.departments),
        description=body.description,
        enabled=True,
        digest_seconds=_seconds(body.digest),
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return subscription_json(row) | {"secret": secret}


def _subscription(session: Session, tenant_id: str, sub_id: str) -> Subscription:
    row = repository.subscription(session, tenant_id, sub_id)
    if row is None:
        raise NotFoundError(f"no subscription '{sub_id}'")
    return row


def get_subscription(session: Session, tenant_id: str, sub_id: str) -> dict[str, Any]:
    return subscription_json(_subscription(session, tenant_id, sub_id))


def list_subscriptions(session: Session, tenant_id: str) -> dict[str, Any]:
    return {
        "subscriptions": [
            subscription_json(s) for s in repository.subscriptions(session, tenant_id)
        ]
    }


def _stop_pending(
    session: Session, row: Subscription, status: DeliveryStatus, why: str, now: datetime
) -> None:
    for delivery in repository.pending_deliveries_of(session, row.id):
        delivery.status = status
        delivery.next_attempt_at = None
        delivery.finished_at = now
        delivery.last_error = why


def disable_subscription(session: Session, row: Subscription, reason: str, now: datetime) -> None:
    row.enabled = False
    row.disabled_reason = reason
    row.updated_at = now
    _stop_pending(session, row, DeliveryStatus.DEAD, f"subscription disabled: {reason}", now)


def update_subscription(
    session: Session,
    tenant_id: str,
    sub_id: str,
    body: SubscriptionUpdate,
    *,
    catalogue: Catalogue,
    settings: Settings,
    now: datetime,
) -> dict[str, Any]:
    row = _subscription(session, tenant_id, sub_id)
    if body.url is not None:
        _check_address(body.url, settings)
        row.url = body.url
    if body.events is not None:
        row.events = _normalize([str(e) for e in body.events])
    if body.indicators is not None:
        row.indicators = _check_indicators(body.indicators, catalogue)
    if body.departments is not None:
        row.departments = _normalize(body.departments)
    if body.description is not None:
        row.description = body.description
    if "digest" in body.model_fields_set:
        row.digest_seconds = _seconds(body.digest)
    if body.enabled is True and not row.enabled:
        row.enabled, row.disabled_reason = True, None
    elif body.enabled is False and row.enabled:
        disable_subscription(session, row, "disabled by an admin", now)
    row.updated_at = now
    session.flush()
    return subscription_json(row)


def delete_subscription(session: Session, tenant_id: str, sub_id: str, now: datetime) -> None:
    row = _subscription(session, tenant_id, sub_id)
    row.deleted_at = now
    row.enabled = False
    row.updated_at = now
    _stop_pending(session, row, DeliveryStatus.CANCELLED, "subscription deleted", now)
    session.flush()


# -- deliveries -------------------------------------------------------------------------


def enqueue(
    session: Session,
    subscription: Subscription,
    *,
    event_type: str,
    webhook_id: str,
    body: dict[str, Any],
    alert_id: str | None,
    settings: Settings,
    now: datetime,
) -> Delivery:
    row = Delivery(
        id=new_id("dlv"),
        tenant_id=subscription.tenant_id,
        subscription_id=subscription.id,
        alert_id=alert_id,
        event_type=event_type,
        webhook_id=webhook_id,
        body=orjson.dumps(body).decode(),
        status=DeliveryStatus.PENDING,
        attempt_count=0,
        backoff_step=0,
        next_attempt_at=now,
        retry_until=now + settings.webhook_max_age,
        created_at=now,
    )
    session.add(row)
    wake_after_commit(session, DELIVERIES_TOPIC)
    return row


def send_test(
    session: Session, tenant_id: str, sub_id: str, *, settings: Settings, now: datetime
) -> dict[str, Any]:
    row = _subscription(session, tenant_id, sub_id)
    if not row.enabled:
        raise ConflictError(f"subscription '{sub_id}' is disabled: {row.disabled_reason}")
    webhook_id = new_id("msg")
    delivery = enqueue(
        session,
        row,
        event_type=PING,
        webhook_id=webhook_id,
        body=ping_body(tenant_id, row.id, now),
        alert_id=None,
        settings=settings,
        now=now,
    )
    session.flush()
    return delivery_json(delivery, [])


def list_deliveries(
    session: Session,
    tenant_id: str,
    sub_id: str,
    *,
    status: DeliveryStatus | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    row = repository.subscription(session, tenant_id, sub_id)
    if row is None:
        raise NotFoundError(f"no subscription '{sub_id}'")
    rows, next_cursor = repository.deliveries_page(
        session, row.id, status=status, limit=limit, cursor=cursor
    )
    attempts = repository.attempts_of(session, [d.id for d in rows])
    return {
        "deliveries": [delivery_json(d, attempts[d.id]) for d in rows],
        "next_cursor": next_cursor,
    }


def get_delivery(session: Session, tenant_id: str, delivery_id: str) -> dict[str, Any]:
    row = repository.delivery(session, tenant_id, delivery_id)
    if row is None:
        raise NotFoundError(f"no delivery '{delivery_id}'")
    return delivery_json(row, repository.attempts_of(session, [row.id])[row.id])


def retry_delivery(
    session: Session, tenant_id: str, delivery_id: str, *, settings: Settings, now: datetime
) -> dict[str, Any]:
    """Re-send a dead-lettered delivery with a fresh retry schedule."""
    row = repository.delivery(session, tenant_id, delivery_id)
    if row is None:
        raise NotFoundError(f"no delivery '{delivery_id}'")
    if row.status != DeliveryStatus.DEAD:
        raise ConflictError(f"delivery '{delivery_id}' is {row.status}; only dead ones are retried")
    sub = repository.subscription(session, tenant_id, row.subscription_id)
    if sub is None or not sub.enabled:
        raise ConflictError(
            f"subscription '{row.subscription_id}' is deleted or disabled: re-enable it first"
        )
    row.status = DeliveryStatus.PENDING
    row.backoff_step = 0
    row.next_attempt_at = now
    row.retry_until = now + settings.webhook_max_age
    row.finished_at = None
    wake_after_commit(session, DELIVERIES_TOPIC)
    session.flush()
    return delivery_json(row, repository.attempts_of(session, [row.id])[row.id])


# -- alerts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewAlert:
    """What a rule decided; :func:`raise_alert` turns it into rows."""

    kind: AlertKind
    indicator: str
    department: str
    dedup_key: str
    encounter_id: str | None = None
    case_key: str | None = None
    month: date | None = None
    #: Born resolved (news rather than an open problem).
    notice: bool = False


def raise_alert(
    session: Session,
    tenant_id: str,
    new: NewAlert,
    alert_id: str,
    body: dict[str, Any],
    *,
    settings: Settings,
    now: datetime,
) -> Alert:
    """Write the alert and queue it for every subscription that wants it."""
    row = Alert(
        id=alert_id,
        tenant_id=tenant_id,
        kind=new.kind.value,
        status=AlertStatus.RESOLVED if new.notice else AlertStatus.OPEN,
        indicator=new.indicator,
        department=new.department,
        encounter_id=new.encounter_id,
        case_key=new.case_key,
        month=new.month,
        dedup_key=new.dedup_key,
        payload=body,
        created_at=now,
        resolved_at=now if new.notice else None,
        resolution=Resolution.NOTICE if new.notice else None,
    )
    session.add(row)
    session.flush()
    ALERTS_RAISED.labels(new.kind.value).inc()
    for sub in repository.matching_subscriptions(
        session, tenant_id, new.kind.value, new.indicator, new.department
    ):
        if sub.digest_seconds and new.kind.value in DIGESTED:
            session.add(
                DigestItem(
                    tenant_id=tenant_id,
                    subscription_id=sub.id,
                    department=new.department,
                    alert_id=alert_id,
                    created_at=now,
                )
            )
            continue
        enqueue(
            session,
            sub,
            event_type=new.kind.value,
            webhook_id=alert_id,
            body=body,
            alert_id=alert_id,
            settings=settings,
            now=now,
        )
    session.flush()
    return row


def flush_digests(session: Session, *, settings: Settings, now: datetime) -> int:
    """Send the digests that came due: for each (subscription, department), the rate
    alerts collected since its oldest waiting one, once that one has waited the
    subscription's interval. One ``rate.digest`` delivery each; returns how many."""
    sent = 0
    for sub, department, items in repository.due_digests(session, now):
        rows = {a.id: a for a in repository.alerts_by_id(session, [i.alert_id for i in items])}
        collected = [rows[i.alert_id] for i in items if i.alert_id in rows]
        for item in items:
            session.delete(item)
        if not sub.enabled or sub.deleted_at is not None or not collected:
            continue
        webhook_id = new_id("dig")
        enqueue(
            session,
            sub,
            event_type=DIGEST,
            webhook_id=webhook_id,
            body=digest_body(
                sub.tenant_id, sub.id, department, [a.payload for a in collected], now
            ),
            alert_id=None,
            settings=settings,
            now=now,
        )
        sent += 1
    session.flush()
    return sent


def resolve_alerts(
    session: Session, ids: Collection[str | None], resolution: Resolution, now: datetime
) -> None:
    """Resolve those of these alerts that are still open or acknowledged."""
    for row in repository.alerts_by_id(session, [i for i in ids if i]):
        if row.status != AlertStatus.RESOLVED:
            row.status = AlertStatus.RESOLVED
            row.resolved_at = now
            row.resolution = resolution


def _visible_departments(principal: Principal, department: str | None) -> Collection[str] | None:
    if department is not None:
        if principal.departments is not None and department not in principal.departments:
            raise ForbiddenError(f"this key may not read department '{department}'")
        return [department]
    return principal.departments


def list_alerts(
    session: Session,
    principal: Principal,
    *,
    status: AlertStatus | None,
    indicator: str | None,
    department: str | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    rows, next_cursor = repository.alerts_page(
        session,
        principal.tenant_id,
        status=status,
        indicator=indicator,
        departments=_visible_departments(principal, department),
        limit=limit,
        cursor=cursor,
    )
    return {"alerts": [alert_json(a) for a in rows], "next_cursor": next_cursor}


def _visible_alert(
    session: Session, principal: Principal, alert_id: str, *, lock: bool = False
) -> Alert:
    row = repository.alert(session, principal.tenant_id, alert_id, lock=lock)
    if row is None or (
        principal.departments is not None and row.department not in principal.departments
    ):
        raise NotFoundError(f"no alert '{alert_id}'")
    return row


def get_alert(session: Session, principal: Principal, alert_id: str) -> dict[str, Any]:
    return alert_json(_visible_alert(session, principal, alert_id))


def acknowledge(
    session: Session, principal: Principal, alert_id: str, now: datetime
) -> dict[str, Any]:
    row = _visible_alert(session, principal, alert_id, lock=True)
    if row.status == AlertStatus.RESOLVED:
        raise ConflictError(f"alert '{alert_id}' is already resolved")
    if row.status == AlertStatus.OPEN:
        row.status = AlertStatus.ACKNOWLEDGED
        row.acknowledged_at = now
        row.acknowledged_by = principal.key_id
        session.flush()
    return alert_json(row)
