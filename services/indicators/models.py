"""Tables the indicator service owns: decided cases, day counters, targets, code maps."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, UTCDateTime


class CaseRow(Base):
    """One case as last decided. Counters are the sum of these rows, kept incrementally."""

    __tablename__ = "indicator_cases"
    __table_args__ = (
        sa.Index("ix_cases_episode", "tenant_id", "encounter_id"),
        sa.Index("ix_cases_due", "decide_at"),
        sa.Index("ix_cases_list", "tenant_id", "indicator", "status", "period_date"),
        sa.Index("ix_cases_patient", "tenant_id", "patient_id"),
    )

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    indicator: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    encounter_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(140), primary_key=True)
    department: Mapped[str] = mapped_column(sa.String(64))
    #: The patient of a patient-level case (followup, patient × month); else None.
    patient_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    period_date: Mapped[date | None] = mapped_column(sa.Date, nullable=True)
    clock_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    clock_stop: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    at_risk_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decide_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UnitRow(Base):
    """Where each encounter's data was filed at its last evaluation: the root of its
    episode chain and its patient. When ``partOf`` or ``subject`` changes, or the
    Encounter is retracted, the episode and patient that held its cases are found here,
    re-evaluated, and their stale cases removed."""

    __tablename__ = "indicator_units"
    __table_args__ = (sa.Index("ix_units_patient", "tenant_id", "patient_id"),)

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    encounter_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    root_id: Mapped[str] = mapped_column(sa.String(64))
    patient_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)


class CounterRow(Base):
    """Case counts per tenant, indicator, department and local day, by status."""

    __tablename__ = "indicator_counters"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    indicator: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    department: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    numerator: Mapped[int] = mapped_column(sa.Integer, default=0)
    denominator: Mapped[int] = mapped_column(sa.Integer, default=0)
    excluded: Mapped[int] = mapped_column(sa.Integer, default=0)
    pending: Mapped[int] = mapped_column(sa.Integer, default=0)


class TargetRow(Base):
    __tablename__ = "indicator_targets"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    indicator: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    target: Mapped[float] = mapped_column(sa.Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CodeMapRow(Base):
    """A tenant's local code mapped to a standard one (ConceptMap-like)."""

    __tablename__ = "code_maps"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    source_system: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    source_code: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    target_system: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    target_code: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
