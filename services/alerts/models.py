"""Tables the alert service owns, and the closed sets stored in them.

Deliveries are data (docs/STYLE.md, habit 6): an alert row holds what happened, one
delivery row per (alert, subscription) holds the exact body and the retry state, and
one attempt row per HTTP attempt says what the receiver answered. The queue *is* the
``webhook_deliveries`` table, so nothing is lost across restarts.

Two tables hold rule state rather than output: ``alert_watched_cases`` (the clock
cases the timer watches, and which alerts each one has already raised) and
``alert_rate_states`` (per tenant, indicator, department and month: deviating or
not, and which rate alerts that month already raised).
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, JSONDoc, UTCDateTime


class AlertKind(enum.StrEnum):
    """What an alert says; also the webhook ``type`` and the subscription event name."""

    CASE_AT_RISK = "case.at_risk"
    CASE_BREACHED = "case.breached"
    CASE_RESOLVED = "case.resolved"
    RATE_DEVIATION = "rate.deviation"
    RATE_RECOVERED = "rate.recovered"


#: Rate alerts a digest subscription collects instead of sending one by one.
DIGESTED = frozenset({AlertKind.RATE_DEVIATION.value, AlertKind.RATE_RECOVERED.value})
#: The webhook ``type`` of a digest message; never an alert, never subscribable.
DIGEST = "rate.digest"
#: The webhook ``type`` of a subscription test; never an alert, never subscribable.
PING = "ping"


class AlertStatus(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Resolution(enum.StrEnum):
    """Why an alert was resolved."""

    #: Late documentation or a correction shows the case met its target.
    MET = "met"
    #: An at-risk alert whose case then breached: the breach alert carries on.
    ESCALATED = "escalated"
    #: The case became excluded.
    EXCLUDED = "excluded"
    #: The case disappeared (retracted data, or an episode that closed without a case).
    RETRACTED = "retracted"
    #: The department's rate came back.
    RECOVERED = "recovered"
    #: ``case.resolved`` and ``rate.recovered`` are news, not open problems: born resolved.
    NOTICE = "notice"


class RateReason(enum.StrEnum):
    """Why a department's month deviates."""

    #: On the wrong side of its target, with at least ``min_cases`` cases.
    TARGET = "target"
    #: The month's p-chart point is above / below its 3-sigma control limits.
    ABOVE_UCL = "above_ucl"
    BELOW_LCL = "below_lcl"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    #: Gave up (retries exhausted, a permanent error, or 410 Gone): retry by hand.
    DEAD = "dead"
    #: The subscription was deleted.
    CANCELLED = "cancelled"


class AttemptOutcome(enum.StrEnum):
    IN_FLIGHT = "in_flight"
    DELIVERED = "delivered"
    FAILED = "failed"
    #: The process stopped while this attempt was in flight; the delivery was retried.
    INTERRUPTED = "interrupted"


_ID = sa.String(40)
_BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class Subscription(Base):
    """A webhook endpoint and the alerts it wants."""

    __tablename__ = "alert_subscriptions"
    __table_args__ = (sa.Index("ix_alert_subscriptions_tenant", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(_ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id"))
    url: Mapped[str] = mapped_column(sa.String(2000))
    #: The ``whsec_`` signing secret, sealed (``qcenc:v1:<key id>:…``, AES-GCM under
    #: ``QCPULSE_SECRET_KEY``; ``shared/secretbox.py``). Rows written before migration
    #: 0009 hold it in clear until the next start or ``qcpulse rotate-secrets`` seals it.
    secret: Mapped[str] = mapped_column(sa.String(400))
    #: Alert kinds, indicator codes, department codes; ``["*"]`` means all.
    events: Mapped[list[str]] = mapped_column(JSONDoc)
    indicators: Mapped[list[str]] = mapped_column(JSONDoc)
    departments: Mapped[list[str]] = mapped_column(JSONDoc)
    description: Mapped[str] = mapped_column(sa.String(500), default="")
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Deleted subscriptions are kept so that their delivery history stays readable.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Digest mode: rate alerts are collected and sent as one ``rate.digest`` message
    #: per department every this many seconds. None: one message per alert.
    digest_seconds: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)


class Alert(Base):
    """One alert. ``payload`` is the webhook body, fixed when the alert is raised."""

    __tablename__ = "alerts"
    __table_args__ = (
        # Once per case and kind, once per department, month and kind: the database
        # refuses a second one even from two concurrent writers.
        sa.UniqueConstraint("tenant_id", "dedup_key"),
        sa.Index("ix_alerts_list", "tenant_id", "created_at", "id"),
        sa.Index("ix_alerts_status", "tenant_id", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(_ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id"))
    kind: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(16))
    indicator: Mapped[str] = mapped_column(sa.String(64))
    department: Mapped[str] = mapped_column(sa.String(64))
    encounter_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    case_key: Mapped[str | None] = mapped_column(sa.String(140), nullable=True)
    month: Mapped[date | None] = mapped_column(sa.Date, nullable=True)
    dedup_key: Mapped[str] = mapped_column(sa.String(400))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolution: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)


class Delivery(Base):
    """One message to one subscription, and where its retries stand."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("alert_id", "subscription_id"),
        sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        sa.Index("ix_webhook_deliveries_subscription", "subscription_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(_ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id"))
    subscription_id: Mapped[str] = mapped_column(sa.ForeignKey("alert_subscriptions.id"))
    #: None for a ping.
    alert_id: Mapped[str | None] = mapped_column(sa.ForeignKey("alerts.id"), nullable=True)
    event_type: Mapped[str] = mapped_column(sa.String(32))
    #: The ``webhook-id`` header: the alert id, the same across retries and receivers.
    webhook_id: Mapped[str] = mapped_column(sa.String(64))
    #: The exact body that is signed and sent, on every attempt.
    body: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16))
    attempt_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: Failed attempts since the schedule (re)started: the backoff exponent.
    backoff_step: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: When the next attempt is due; while one is in flight, when its lease runs out.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Retries stop (dead letter) after this: creation or manual retry + webhook_max_age.
    retry_until: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)


class DeliveryAttempt(Base):
    """One HTTP attempt of a delivery."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (sa.Index("ix_webhook_attempts_delivery", "delivery_id", "number"),)

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(sa.ForeignKey("webhook_deliveries.id"))
    number: Mapped[int] = mapped_column(sa.Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(sa.String(16))
    status_code: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    error: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    next_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DigestItem(Base):
    """A rate alert waiting for its subscription's next digest (one per department)."""

    __tablename__ = "alert_digest_items"
    __table_args__ = (
        sa.UniqueConstraint("subscription_id", "alert_id"),
        sa.Index("ix_alert_digest_items_due", "subscription_id", "department", "created_at"),
    )

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id"))
    subscription_id: Mapped[str] = mapped_column(sa.ForeignKey("alert_subscriptions.id"))
    department: Mapped[str] = mapped_column(sa.String(64))
    alert_id: Mapped[str] = mapped_column(sa.ForeignKey("alerts.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WatchedCase(Base):
    """A clock case as the last ``cases.changed`` event described it, and what it raised.

    Kept while the case is pending, and for ever once it raised an alert (that memory
    makes each alert fire once per case and kind).
    """

    __tablename__ = "alert_watched_cases"
    __table_args__ = (sa.Index("ix_alert_watched_cases_check", "check_at"),)

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    indicator: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    encounter_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(140), primary_key=True)
    department: Mapped[str] = mapped_column(sa.String(64))
    #: The case status; None once the case is gone.
    status: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    clock_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    clock_stop: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    at_risk_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: When the timer must look again (the at-risk time, then the deadline); None: never.
    check_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    at_risk_alert_id: Mapped[str | None] = mapped_column(_ID, nullable=True)
    breached_alert_id: Mapped[str | None] = mapped_column(_ID, nullable=True)
    resolved_alert_id: Mapped[str | None] = mapped_column(_ID, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: The order of the change last applied: the id of its ``cases.changed`` outbox
    #: row (the NATS message names the same row). A change with a smaller one is older
    #: (a redelivery, or two events overtaking each other) and is ignored. None: rows
    #: written before migration 0010.
    applied_order: Mapped[int | None] = mapped_column(_BIGINT, nullable=True)
    #: When the rules first saw the case: a case whose data arrives after its deadline
    #: gets the breach grace from then, since its documentation lags as much.
    first_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RateState(Base):
    """One department's month of one indicator, as the rate rules last saw it."""

    __tablename__ = "alert_rate_states"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    indicator: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    department: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    month: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    deviating: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    reasons: Mapped[list[str]] = mapped_column(JSONDoc)
    deviation_alert_id: Mapped[str | None] = mapped_column(_ID, nullable=True)
    recovered_alert_id: Mapped[str | None] = mapped_column(_ID, nullable=True)
    #: The RateStatus of the last check (rate, target, limits, counts).
    last: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)
