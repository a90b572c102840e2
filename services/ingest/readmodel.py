"""What other services may read from ingest: episodes with their facts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.ingest import repository
from services.ingest.mapping import fact_from_json
from services.ingest.models import DepartmentRow, EpisodeRow, FactRow
from shared.clinical import Episode, Fact


def _episode(row: EpisodeRow) -> Episode:
    return Episode(
        tenant_id=row.tenant_id,
        encounter_id=row.encounter_id,
        status=row.status,
        class_code=row.class_code,
        department=row.department,
        department_name=row.department_name,
        patient_id=row.patient_id,
        arrival=row.arrival,
        discharge=row.discharge,
        birth_date=row.birth_date,
    )


@lru_cache(maxsize=16384)
def _decoded_fact(resource_type: str, resource_id: str, kind: str, data: str) -> Fact:
    """A stored fact row as a :class:`Fact`. An episode's facts are read again on every
    change to it, mostly unchanged: keyed by the stored text, a recently decoded fact
    is reused (Facts are immutable) instead of parsed again."""
    return fact_from_json(resource_type, resource_id, kind, orjson.loads(data))


def load_episodes(
    session: Session, tenant_id: str, encounter_ids: Iterable[str]
) -> dict[str, tuple[Episode | None, list[Fact]]]:
    """Each episode (None when its Encounter is absent or retracted) with its facts,
    in two queries however many episodes are asked for."""
    ids = sorted(set(encounter_ids))
    out: dict[str, tuple[Episode | None, list[Fact]]] = {i: (None, []) for i in ids}
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start : chunk_start + 500]
        episodes = session.scalars(
            sa.select(EpisodeRow).where(
                EpisodeRow.tenant_id == tenant_id, EpisodeRow.encounter_id.in_(chunk)
            )
        )
        for row in episodes:
            out[row.encounter_id] = (_episode(row), out[row.encounter_id][1])
        facts = session.execute(
            sa.select(
                FactRow.encounter_id,
                FactRow.resource_type,
                FactRow.resource_id,
                FactRow.kind,
                sa.type_coerce(FactRow.data, sa.Text),
            ).where(FactRow.tenant_id == tenant_id, FactRow.encounter_id.in_(chunk))
        )
        for encounter_id, rtype, rid, kind, data in facts:
            assert encounter_id is not None
            out[encounter_id][1].append(_decoded_fact(rtype, rid, kind, data))
    return out


def episode_ids(session: Session, tenant_id: str) -> Sequence[str]:
    """Every encounter id that has an episode or a fact naming it."""
    episodes = sa.select(EpisodeRow.encounter_id).where(EpisodeRow.tenant_id == tenant_id)
    facts = sa.select(FactRow.encounter_id).where(
        FactRow.tenant_id == tenant_id, FactRow.encounter_id.is_not(None)
    )
    rows = session.scalars(sa.union(episodes, facts)).all()
    return sorted(str(r) for r in rows)


def tenants_with_data(session: Session) -> Sequence[str]:
    return session.scalars(sa.select(EpisodeRow.tenant_id).distinct()).all()


def department_names(session: Session, tenant_id: str) -> dict[str, str]:
    """Department code → the label integration engines send with it."""
    rows = session.execute(
        sa.select(DepartmentRow.code, DepartmentRow.name).where(
            DepartmentRow.tenant_id == tenant_id
        )
    )
    return {code: name for code, name in rows if name}


def current_resource(
    session: Session, tenant_id: str, rtype: str, rid: str
) -> dict[str, Any] | None:
    """The current body of a resource without its ``meta``; None when absent or deleted."""
    body = repository.current_body(session, tenant_id, rtype, rid)
    if body is None:
        return None
    return {k: v for k, v in body.items() if k != "meta"}


def patient_encounter_ids(session: Session, tenant_id: str, patient_id: str) -> list[str]:
    """Encounters whose subject is the patient (as the episodes record it)."""
    rows = session.scalars(
        sa.select(EpisodeRow.encounter_id)
        .where(EpisodeRow.tenant_id == tenant_id, EpisodeRow.patient_id == patient_id)
        .order_by(EpisodeRow.encounter_id)
    )
    return list(rows)
