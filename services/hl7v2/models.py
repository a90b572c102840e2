"""Tables the HL7 v2 adapter owns: registered sources, the message log, and the
message time that last wrote each resource (docs/HL7V2.md, "Order")."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from shared.clock import utcnow
from shared.db import Base, JSONDoc, UTCDateTime


class HL7Source(Base):
    """A sender a tenant vouches for: MLLP carries no credentials, so MSH-4 (and MSH-3
    where given) name the tenant. Unique across the instance: one message, one tenant."""

    __tablename__ = "hl7_sources"
    __table_args__ = (
        # NULLs are distinct in unique indexes, so "any application" is kept unique by
        # the empty string instead.
        sa.UniqueConstraint("facility", "application"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id"), index=True)
    facility: Mapped[str] = mapped_column(sa.String(200))
    #: "" means any sending application.
    application: Mapped[str] = mapped_column(sa.String(200), default="")
    networks: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HL7Message(Base):
    """Every message from a registered source, with what became of it."""

    __tablename__ = "hl7_messages"
    __table_args__ = (
        # A repeated MSH-10 of an accepted message answers the original ACK: at most one
        # accepted message per source and control id.
        sa.UniqueConstraint("tenant_id", "source_id", "accepted_control_id"),
        sa.Index("ix_hl7_messages_tenant_status", "tenant_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[str] = mapped_column(sa.String(64))
    source_id: Mapped[str] = mapped_column(sa.String(32))
    control_id: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    #: The control id once the message is accepted (AA); NULL otherwise, so a rejected
    #: message may be corrected and sent again under the same id.
    accepted_control_id: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    message_type: Mapped[str] = mapped_column(sa.String(32), default="")
    version: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    transport: Mapped[str] = mapped_column(sa.String(8))
    peer: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: AA, AE or AR: the application outcome, whatever mode the ACK was sent in.
    status: Mapped[str] = mapped_column(sa.String(2))
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    raw: Mapped[bytes] = mapped_column(sa.LargeBinary)
    ack: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    #: ``Type/id/_history/v`` of every resource the message's transaction answered.
    written: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    #: ``Type/id`` left alone because a newer message had written them.
    stale: Mapped[list[str]] = mapped_column(JSONDoc, default=list)
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class HL7ResourceClock(Base):
    """The MSH-7 of the message that last wrote each resource: an older message
    leaves a resource as a newer one left it, so arrival order does not matter."""

    __tablename__ = "hl7_resource_clock"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    message_time: Mapped[datetime] = mapped_column(UTCDateTime)
    message_id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"))
