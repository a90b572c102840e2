"""Tables the regions service owns: regions (quality-control centres) and their members."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from shared.clock import utcnow
from shared.db import Base, UTCDateTime


class Region(Base):
    """A city or district quality-control centre (质控中心). Its keys carry its id in
    ``api_keys.tenant_id``, so a region id is never a tenant id (``service.create_region``)."""

    __tablename__ = "regions"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    #: Which month is "this month" and "last month" for the region's defaults.
    timezone: Mapped[str] = mapped_column(sa.String(64), default="Asia/Shanghai")
    #: The region's target profile (``services/indicators/profiles/``); None: each
    #: definition's own target.
    target_profile: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RegionMember(Base):
    """A hospital of a region. ``tenant_id`` is set when the hospital is a tenant of this
    same instance (its counters are read directly); else its figures are the ones it
    submits (``services/regions/federation.py``)."""

    __tablename__ = "region_members"

    region_id: Mapped[str] = mapped_column(sa.ForeignKey("regions.id"), primary_key=True)
    member_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    tenant_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("tenants.id"), nullable=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
