"""Queries over the adapter's own tables. No commits: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.hl7v2.models import HL7Message, HL7ResourceClock, HL7Source

_CLOCK = cast(sa.Table, HL7ResourceClock.__table__)
_CLOCK_READ = sa.select(_CLOCK.c.type, _CLOCK.c.id, _CLOCK.c.message_time).where(
    _CLOCK.c.tenant_id == sa.bindparam("tenant"),
    _CLOCK.c.type == sa.bindparam("type"),
    _CLOCK.c.id.in_(sa.bindparam("ids", expanding=True)),
)
_CLOCK_INSERT = sa.insert(_CLOCK)
_CLOCK_UPDATE = (
    sa.update(_CLOCK)
    .where(
        _CLOCK.c.tenant_id == sa.bindparam("k_tenant"),
        _CLOCK.c.type == sa.bindparam("k_type"),
        _CLOCK.c.id == sa.bindparam("k_id"),
    )
    .values(message_time=sa.bindparam("message_time"), message_id=sa.bindparam("message_id"))
)


def sources_for_facility(session: Session, facility: str) -> Sequence[HL7Source]:
    return session.scalars(sa.select(HL7Source).where(HL7Source.facility == facility)).all()


def tenant_sources(session: Session, tenant_id: str) -> Sequence[HL7Source]:
    return session.scalars(
        sa.select(HL7Source)
        .where(HL7Source.tenant_id == tenant_id)
        .order_by(HL7Source.created_at, HL7Source.id)
    ).all()


def source_exists(session: Session, facility: str, application: str) -> bool:
    found = session.scalar(
        sa.select(HL7Source.id).where(
            HL7Source.facility == facility, HL7Source.application == application
        )
    )
    return found is not None


def accepted_message(
    session: Session, tenant_id: str, source_id: str, control_id: str
) -> HL7Message | None:
    return session.scalar(
        sa.select(HL7Message).where(
            HL7Message.tenant_id == tenant_id,
            HL7Message.source_id == source_id,
            HL7Message.accepted_control_id == control_id,
        )
    )


def clock_times(
    session: Session, tenant_id: str, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], datetime]:
    by_type: dict[str, list[str]] = {}
    for rtype, rid in keys:
        by_type.setdefault(rtype, []).append(rid)
    out: dict[tuple[str, str], datetime] = {}
    for rtype, ids in by_type.items():
        for row in session.execute(_CLOCK_READ, {"tenant": tenant_id, "type": rtype, "ids": ids}):
            out[(row.type, row.id)] = row.message_time
    return out


def set_clock(
    session: Session,
    tenant_id: str,
    keys: Iterable[tuple[str, str]],
    known: dict[tuple[str, str], datetime],
    message_time: datetime,
    message_id: int,
) -> None:
    """Record ``message_time`` as the last writer of ``keys`` (``known``: the rows that
    exist already, as :func:`clock_times` read them under the resources' locks)."""
    inserts, updates = [], []
    for rtype, rid in keys:
        if (rtype, rid) in known:
            updates.append(
                {
                    "k_tenant": tenant_id,
                    "k_type": rtype,
                    "k_id": rid,
                    "message_time": message_time,
                    "message_id": message_id,
                }
            )
        else:
            inserts.append(
                {
                    "tenant_id": tenant_id,
                    "type": rtype,
                    "id": rid,
                    "message_time": message_time,
                    "message_id": message_id,
                }
            )
    if inserts:
        session.execute(_CLOCK_INSERT, inserts)
    if updates:
        session.execute(_CLOCK_UPDATE, updates)


def messages_page(
    session: Session, tenant_id: str, status: str | None, limit: int, before: int | None
) -> Sequence[HL7Message]:
    query = sa.select(HL7Message).where(HL7Message.tenant_id == tenant_id)
    if status is not None:
        query = query.where(HL7Message.status == status)
    if before is not None:
        query = query.where(HL7Message.id < before)
    return session.scalars(query.order_by(HL7Message.id.desc()).limit(limit)).all()


def messages_to_replay(
    session: Session,
    tenant_id: str | None,
    status: str | None,
    ids: Sequence[int] | None,
    after: int,
    limit: int,
) -> Sequence[HL7Message]:
    query = sa.select(HL7Message).where(HL7Message.id > after)
    if tenant_id is not None:
        query = query.where(HL7Message.tenant_id == tenant_id)
    if status is not None:
        query = query.where(HL7Message.status == status)
    if ids:
        query = query.where(HL7Message.id.in_(list(ids)))
    return session.scalars(query.order_by(HL7Message.id).limit(limit)).all()
