"""Tables every service relies on: tenants, API keys and the outbox of events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from shared.clock import utcnow
from shared.db import Base, JSONDoc, UTCDateTime


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    timezone: Mapped[str] = mapped_column(sa.String(64), default="Asia/Shanghai")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The named target profile (``services/indicators/profiles/``); None: national defaults.
    target_profile: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    #: The catalogue year the tenant reports (``"2026"``); None: the current default.
    catalogue: Mapped[str | None] = mapped_column(sa.String(8), nullable=True)
    #: Seconds after a case's deadline before ``case.breached`` is sent (documentation
    #: lags care); None: ``QCPULSE_ALERT_GRACE``. An indicator's ``alert_grace`` wins.
    alert_grace_seconds: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    #: The key's tenant; for a region role (``region-reader``), its region's id
    #: (``services/regions``), hence no foreign key to ``tenants``.
    tenant_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    #: SHA-256 of the whole key. Keys are 256-bit random, so a slow hash adds nothing.
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    departments: Mapped[list[str] | None] = mapped_column(JSONDoc, nullable=True)
    #: Permissions beyond the role's (``["manual"]``: a reader who enters manual values).
    permissions: Mapped[list[str] | None] = mapped_column(JSONDoc, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The key answers 401 from this moment on; None: never expires.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OutboxEvent(Base):
    """An event written in the same transaction as the change it announces.

    Each topic has one consumer (a service); ``processed_at`` is set in the same
    transaction as that consumer's effects, so effects happen exactly once even when
    delivery (in-process or through NATS) happens more than once.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        sa.Index("ix_outbox_pending", "topic", "processed_at", "id"),
        sa.Index("ix_outbox_unpublished", "published_at", "id"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[str] = mapped_column(sa.String(64))
    topic: Mapped[str] = mapped_column(sa.String(64))
    key: Mapped[str] = mapped_column(sa.String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Set by the NATS relay once JetStream acknowledged the message (distributed mode).
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Why the consumer gave up on this event (it failed alone, after its batch failed).
    #: Parked events are counted by ``/metrics`` and reported by ``qcpulse verify``.
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


class AuditEntry(Base):
    """One audited request (shared/audit.py): who read patient-level data, or changed
    keys, subscriptions and other settings. Written once per request, never updated."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_log_tenant_id", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    key_id: Mapped[str] = mapped_column(sa.String(32))
    role: Mapped[str] = mapped_column(sa.String(16))
    #: ``read``, ``create``, ``update``, ``delete``, ``test``.
    action: Mapped[str] = mapped_column(sa.String(16))
    #: The method and the request path, e.g. ``GET /fhir/Patient/p1``.
    resource: Mapped[str] = mapped_column(sa.String(400))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    client: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
