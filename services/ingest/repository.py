"""Queries over the resource store, episodes and facts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.ingest.models import EpisodeRow, FactRow, ResourceVersion, StoredResource


def current_rows(
    session: Session, tenant_id: str, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], StoredResource]:
    """The current rows for many (type, id) keys in one round trip per type."""
    by_type: dict[str, set[str]] = {}
    for rtype, rid in keys:
        by_type.setdefault(rtype, set()).add(rid)
    found: dict[tuple[str, str], StoredResource] = {}
    for rtype, ids in by_type.items():
        rows = session.scalars(
            sa.select(StoredResource).where(
                StoredResource.tenant_id == tenant_id,
                StoredResource.type == rtype,
                StoredResource.id.in_(ids),
            )
        )
        for row in rows:
            found[(row.type, row.id)] = row
    return found


def history(session: Session, tenant_id: str, rtype: str, rid: str) -> Sequence[ResourceVersion]:
    return session.scalars(
        sa.select(ResourceVersion)
        .where(
            ResourceVersion.tenant_id == tenant_id,
            ResourceVersion.type == rtype,
            ResourceVersion.id == rid,
        )
        .order_by(ResourceVersion.version.desc())
    ).all()


def episodes_of_patient(session: Session, tenant_id: str, patient_id: str) -> Sequence[EpisodeRow]:
    return session.scalars(
        sa.select(EpisodeRow).where(
            EpisodeRow.tenant_id == tenant_id, EpisodeRow.patient_id == patient_id
        )
    ).all()


def facts_linked_to(session: Session, tenant_id: str, ref: str) -> Sequence[FactRow]:
    return session.scalars(
        sa.select(FactRow).where(FactRow.tenant_id == tenant_id, FactRow.link_ref == ref)
    ).all()


def facts_of_episode(session: Session, tenant_id: str, encounter_id: str) -> Sequence[FactRow]:
    return session.scalars(
        sa.select(FactRow).where(
            FactRow.tenant_id == tenant_id, FactRow.encounter_id == encounter_id
        )
    ).all()


def facts_of_episodes(
    session: Session, tenant_id: str, encounter_ids: Iterable[str]
) -> Sequence[FactRow]:
    return session.scalars(
        sa.select(FactRow).where(
            FactRow.tenant_id == tenant_id, FactRow.encounter_id.in_(list(encounter_ids))
        )
    ).all()
