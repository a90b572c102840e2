"""Tables ingest owns: the resource store with every version, episodes and facts."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, JSONDoc, UTCDateTime


class StoredResource(Base):
    """The current version of each resource. ``deleted`` keeps a tombstone."""

    __tablename__ = "fhir_resources"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer)
    #: SHA-256 of the resource without ``meta``, keys sorted: equal hash = identical re-send.
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    body: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, nullable=True)
    deleted: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime)


class ResourceVersion(Base):
    """Every version ever stored, deletes included. Never updated, never deleted."""

    __tablename__ = "fhir_resource_versions"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    body: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, nullable=True)
    method: Mapped[str] = mapped_column(sa.String(8))
    deleted: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime)


class EpisodeRow(Base):
    """One Encounter, as indicators see it."""

    __tablename__ = "episodes"
    __table_args__ = (
        sa.Index("ix_episodes_patient", "tenant_id", "patient_id"),
        sa.Index("ix_episodes_part_of", "tenant_id", "part_of"),
    )

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    encounter_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    status: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    class_code: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    department: Mapped[str] = mapped_column(sa.String(64))
    department_name: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    patient_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    arrival: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    discharge: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    birth_date: Mapped[date | None] = mapped_column(sa.Date, nullable=True)
    #: ``Encounter.partOf`` (an encounter id; it may not have arrived yet).
    part_of: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    priority: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    disposition_system: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    disposition_code: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    #: ``Patient.deceasedDateTime`` of the subject.
    deceased_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DepartmentRow(Base):
    """A department code and the label the hospital last sent with it
    (``Encounter.serviceProvider.display``): read models name departments from here,
    never by scanning episodes."""

    __tablename__ = "departments"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)


class FactRow(Base):
    """The fact one resource's current version contributes.

    ``encounter_id`` is the episode the resource names (it may not have arrived yet).
    ``link_ref`` is set when the resource names no encounter but points at one that
    does (a Communication ``about`` an Observation); ``encounter_id`` then follows
    the target's.
    """

    __tablename__ = "clinical_facts"
    __table_args__ = (
        sa.Index("ix_facts_episode", "tenant_id", "encounter_id"),
        sa.Index("ix_facts_link", "tenant_id", "link_ref"),
    )

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    resource_type: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    resource_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    encounter_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    link_ref: Mapped[str | None] = mapped_column(sa.String(140), nullable=True)
    patient_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
