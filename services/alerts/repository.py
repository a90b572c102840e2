"""Queries over subscriptions, alerts, deliveries and the rule state."""

from __future__ import annotations

import base64
from collections.abc import Collection, Sequence
from datetime import date, datetime, timedelta

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.alerts.models import (
    Alert,
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    DigestItem,
    RateState,
    Subscription,
    WatchedCase,
)
from shared.db import is_postgres
from shared.errors import UnprocessableError

ALL = "*"


# -- keyset cursors ---------------------------------------------------------------------


def encode_cursor(at: datetime, row_id: str) -> str:
    raw = orjson.dumps([at.isoformat(), row_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, row_id = orjson.loads(raw)
        return datetime.fromisoformat(str(at)), str(row_id)
    except (ValueError, TypeError) as exc:
        raise UnprocessableError("invalid cursor") from exc


# -- subscriptions ----------------------------------------------------------------------


def subscription(session: Session, tenant_id: str, sub_id: str) -> Subscription | None:
    row = session.get(Subscription, sub_id)
    if row is None or row.tenant_id != tenant_id or row.deleted_at is not None:
        return None
    return row


def subscriptions(session: Session, tenant_id: str) -> Sequence[Subscription]:
    return session.scalars(
        sa.select(Subscription)
        .where(Subscription.tenant_id == tenant_id, Subscription.deleted_at.is_(None))
        .order_by(Subscription.created_at, Subscription.id)
    ).all()


def _wants(chosen: Sequence[str], value: str) -> bool:
    return ALL in chosen or value in chosen


def matching_subscriptions(
    session: Session, tenant_id: str, kind: str, indicator: str, department: str
) -> list[Subscription]:
    """Enabled subscriptions whose filters take this alert. A tenant has a handful of
    subscriptions, so the filters are applied here rather than in SQL over JSON."""
    rows = session.scalars(
        sa.select(Subscription).where(
            Subscription.tenant_id == tenant_id,
            Subscription.enabled.is_(True),
            Subscription.deleted_at.is_(None),
        )
    )
    return [
        s
        for s in rows
        if _wants(s.events, kind)
        and _wants(s.indicators, indicator)
        and _wants(s.departments, department)
    ]


# -- alerts -----------------------------------------------------------------------------


def alert(session: Session, tenant_id: str, alert_id: str, *, lock: bool = False) -> Alert | None:
    row = session.get(Alert, alert_id, with_for_update=lock and is_postgres(session))
    return row if row is not None and row.tenant_id == tenant_id else None


def alerts_by_id(session: Session, ids: Collection[str]) -> Sequence[Alert]:
    if not ids:
        return []
    return session.scalars(sa.select(Alert).where(Alert.id.in_(list(ids)))).all()


def alerts_page(
    session: Session,
    tenant_id: str,
    *,
    status: str | None,
    indicator: str | None,
    departments: Collection[str] | None,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Alert], str | None]:
    """Newest first."""
    query = sa.select(Alert).where(Alert.tenant_id == tenant_id)
    if status is not None:
        query = query.where(Alert.status == status)
    if indicator is not None:
        query = query.where(Alert.indicator == indicator)
    if departments is not None:
        query = query.where(Alert.department.in_(list(departments)))
    if cursor:
        at, row_id = decode_cursor(cursor)
        query = query.where(sa.tuple_(Alert.created_at, Alert.id) < sa.tuple_(at, row_id))
    rows = session.scalars(
        query.order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None)


# -- deliveries -------------------------------------------------------------------------


def delivery(session: Session, tenant_id: str, delivery_id: str) -> Delivery | None:
    row = session.get(Delivery, delivery_id, with_for_update=is_postgres(session))
    return row if row is not None and row.tenant_id == tenant_id else None


def deliveries_page(
    session: Session, subscription_id: str, *, status: str | None, limit: int, cursor: str | None
) -> tuple[Sequence[Delivery], str | None]:
    """Newest first."""
    query = sa.select(Delivery).where(Delivery.subscription_id == subscription_id)
    if status is not None:
        query = query.where(Delivery.status == status)
    if cursor:
        at, row_id = decode_cursor(cursor)
        query = query.where(sa.tuple_(Delivery.created_at, Delivery.id) < sa.tuple_(at, row_id))
    rows = session.scalars(
        query.order_by(Delivery.created_at.desc(), Delivery.id.desc()).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None)


def attempts_of(
    session: Session, delivery_ids: Collection[str]
) -> dict[str, list[DeliveryAttempt]]:
    out: dict[str, list[DeliveryAttempt]] = {i: [] for i in delivery_ids}
    if not delivery_ids:
        return out
    rows = session.scalars(
        sa.select(DeliveryAttempt)
        .where(DeliveryAttempt.delivery_id.in_(list(delivery_ids)))
        .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.number, DeliveryAttempt.id)
    )
    for row in rows:
        out[row.delivery_id].append(row)
    return out


def pending_deliveries_of(session: Session, subscription_id: str) -> Sequence[Delivery]:
    return session.scalars(
        sa.select(Delivery).where(
            Delivery.subscription_id == subscription_id,
            Delivery.status == DeliveryStatus.PENDING,
        )
    ).all()


def due_deliveries(
    session: Session, now: datetime, limit: int, skip_subscriptions: Collection[str]
) -> list[tuple[Delivery, Subscription]]:
    """Pending deliveries whose time has come, oldest due first, locked for this claim
    (``SKIP LOCKED``: replicas of the alert service claim disjoint rows)."""
    query = (
        sa.select(Delivery, Subscription)
        .join(Subscription, Subscription.id == Delivery.subscription_id)
        .where(Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
    )
    if skip_subscriptions:
        query = query.where(Delivery.subscription_id.not_in(list(skip_subscriptions)))
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True, of=Delivery)
    return [(d, s) for d, s in session.execute(query)]


def has_due_deliveries(session: Session, now: datetime) -> bool:
    return (
        session.scalar(
            sa.select(Delivery.id)
            .where(Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now)
            .limit(1)
        )
        is not None
    )


def in_flight_attempts(session: Session, delivery_id: str) -> Sequence[DeliveryAttempt]:
    return session.scalars(
        sa.select(DeliveryAttempt).where(
            DeliveryAttempt.delivery_id == delivery_id,
            DeliveryAttempt.outcome == AttemptOutcome.IN_FLIGHT,
        )
    ).all()


# -- rule state -------------------------------------------------------------------------


WatchKey = tuple[str, str, str]  # indicator, encounter, case key


def watched_cases_of(
    session: Session, tenant_id: str, encounter_ids: Collection[str]
) -> dict[WatchKey, WatchedCase]:
    """The watched cases of these episodes, locked against the timer (PostgreSQL)."""
    ids = sorted(encounter_ids)
    out: dict[WatchKey, WatchedCase] = {}
    for start in range(0, len(ids), 500):
        query = (
            sa.select(WatchedCase)
            .where(
                WatchedCase.tenant_id == tenant_id,
                WatchedCase.encounter_id.in_(ids[start : start + 500]),
            )
            # One lock order for every writer: no deadlock between two consumers.
            .order_by(WatchedCase.indicator, WatchedCase.encounter_id, WatchedCase.key)
        )
        if is_postgres(session):
            query = query.with_for_update()
        for row in session.scalars(query):
            out[(row.indicator, row.encounter_id, row.key)] = row
    return out


def has_due_watched_cases(session: Session, now: datetime) -> bool:
    return (
        session.scalar(
            sa.select(WatchedCase.key)
            .where(WatchedCase.check_at.is_not(None), WatchedCase.check_at <= now)
            .limit(1)
        )
        is not None
    )


def due_watched_cases(session: Session, now: datetime, limit: int) -> Sequence[WatchedCase]:
    query = (
        sa.select(WatchedCase)
        .where(WatchedCase.check_at.is_not(None), WatchedCase.check_at <= now)
        .order_by(WatchedCase.check_at)
        .limit(limit)
    )
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    return session.scalars(query).all()


def due_digests(
    session: Session, now: datetime, *, lock: bool = True
) -> list[tuple[Subscription, str, list[DigestItem]]]:
    """The waiting digest items of each (subscription, department) whose oldest item
    has waited the subscription's interval, oldest first, locked (PostgreSQL)."""
    query = (
        sa.select(DigestItem, Subscription)
        .join(Subscription, Subscription.id == DigestItem.subscription_id)
        .order_by(DigestItem.subscription_id, DigestItem.department, DigestItem.id)
    )
    if lock and is_postgres(session):
        query = query.with_for_update(skip_locked=True, of=DigestItem)
    groups: dict[tuple[str, str], tuple[Subscription, list[DigestItem]]] = {}
    for item, sub in session.execute(query):
        groups.setdefault((sub.id, item.department), (sub, []))[1].append(item)
    out = []
    for (_, department), (sub, items) in groups.items():
        interval = timedelta(seconds=sub.digest_seconds or 0)
        if not sub.enabled or now >= items[0].created_at + interval:
            out.append((sub, department, items))
    return out


def has_due_digests(session: Session, now: datetime) -> bool:
    if session.scalar(sa.select(DigestItem.id).limit(1)) is None:
        return False  # the usual case: one indexed probe
    return bool(due_digests(session, now, lock=False))


def rate_state(
    session: Session, tenant_id: str, indicator: str, department: str, month: date
) -> RateState | None:
    return session.get(
        RateState, (tenant_id, indicator, department, month), with_for_update=is_postgres(session)
    )
