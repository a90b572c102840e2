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


class ImportJobRow(Base):
    """A bulk import (``POST /fhir/$import``, ``qcpulse import``): its progress is
    written in the same transaction as the lines it counts (services/ingest/bulk.py)."""

    __tablename__ = "import_jobs"
    __table_args__ = (sa.Index("ix_import_jobs_status", "status", "created_at"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64))
    #: ``receiving`` (body still arriving), ``queued``, ``running``, ``completed``.
    status: Mapped[str] = mapped_column(sa.String(16))
    source: Mapped[str] = mapped_column(sa.String(400))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Non-blank lines in the body, and the chunks they were stored in.
    total_lines: Mapped[int] = mapped_column(sa.Integer, default=0)
    total_chunks: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: The next chunk to apply; every chunk before it is committed.
    next_chunk: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: The last physical line of the body that is committed (0: none yet).
    last_line: Mapped[int] = mapped_column(sa.Integer, default=0)
    lines: Mapped[int] = mapped_column(sa.Integer, default=0)
    applied: Mapped[int] = mapped_column(sa.Integer, default=0)
    unchanged: Mapped[int] = mapped_column(sa.Integer, default=0)
    failed: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: The lease: which process works on the job, and until when (renewed per commit).
    claimed_by: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ImportChunkRow(Base):
    """Consecutive lines of a job's body, zlib-compressed; deleted once applied."""

    __tablename__ = "import_chunks"

    job_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    #: Physical line number (1-based) of the chunk's first line.
    first_line: Mapped[int] = mapped_column(sa.Integer)
    line_count: Mapped[int] = mapped_column(sa.Integer)
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


class ImportErrorRow(Base):
    """A line that was not applied, with the OperationOutcome that says why."""

    __tablename__ = "import_errors"

    job_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    line: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    outcome: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
