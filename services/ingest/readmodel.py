"""What other services may read from ingest: episodes with their facts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.ingest import repository
from services.ingest.mapping import fact_from_json
from services.ingest.models import DepartmentRow, EpisodeRow, FactRow
from shared.clinical import Coding, Episode, Fact

_EPOCH = datetime.min.replace(tzinfo=UTC)
_VOID = frozenset({"cancelled", "entered-in-error"})
#: Encounter classes from most to least acute, for a chain's class (v3-ActCode).
_ACUITY = {"IMP": 4, "ACUTE": 4, "NONAC": 4, "EMER": 3, "OBSENC": 2, "AMB": 1}


def _episode(row: EpisodeRow, members: tuple[str, ...] = ()) -> Episode:
    disposition = (
        Coding(row.disposition_system or "", row.disposition_code) if row.disposition_code else None
    )
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
        deceased_at=row.deceased_at,
        part_of=row.part_of,
        priority=row.priority,
        disposition=disposition,
        members=members or (row.encounter_id,),
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
        for encounter_id, facts in _facts_of(session, tenant_id, chunk).items():
            out[encounter_id][1].extend(facts)
    return out


def _facts_of(
    session: Session, tenant_id: str, encounter_ids: Sequence[str]
) -> dict[str, list[Fact]]:
    """The facts linked to these encounters (at most a few hundred ids), by encounter."""
    rows = session.execute(
        sa.select(
            FactRow.encounter_id,
            FactRow.resource_type,
            FactRow.resource_id,
            FactRow.kind,
            sa.type_coerce(FactRow.data, sa.Text),
        ).where(FactRow.tenant_id == tenant_id, FactRow.encounter_id.in_(encounter_ids))
    )
    out: dict[str, list[Fact]] = {}
    for encounter_id, rtype, rid, kind, data in rows:
        assert encounter_id is not None
        out.setdefault(encounter_id, []).append(_decoded_fact(rtype, rid, kind, data))
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


# --------------------------------------------------------------------------- chains


@dataclass(frozen=True, slots=True)
class Chain:
    """The Encounters joined by ``partOf`` into one episode, and the facts of all of them.

    ``anchor`` is the top of the ``partOf`` links — an encounter that may not have
    arrived yet — and names the chain while its members come and go; ``episode`` is the
    chain seen as one :class:`Episode` (None when no member is present).
    """

    anchor: str
    #: Every encounter id of the chain, present or only referenced, sorted.
    ids: tuple[str, ...]
    episode: Episode | None
    facts: tuple[Fact, ...]
    #: ``partOf`` links run in a circle; the smallest id in it is taken as the top.
    cycle: bool = False

    @property
    def patient_id(self) -> str | None:
        return self.episode.patient_id if self.episode is not None else None


def _when(moment: datetime | None) -> tuple[bool, datetime]:
    """Sort key: known times in order, unknown ones first."""
    return (moment is not None, moment or _EPOCH)


def chain_episode(anchor: str, rows: Sequence[EpisodeRow]) -> Episode | None:
    """One episode from a chain's present Encounters (docs/INDICATORS.md, "Encounter
    chains"): arrival of the root, discharge once every member is finished, the most
    acute class, the department of the member that started last, the disposition of
    the member that ended last. Cancelled members take no part."""
    if not rows:
        return None
    active = [r for r in rows if r.status not in _VOID]
    if not active:
        return _episode(min(rows, key=lambda r: r.encounter_id))
    by_id = {r.encounter_id: r for r in active}
    # The root is the top of the links when it has arrived, else the member that
    # arrived first (a ward stay whose ED visit is not here yet stands for the chain).
    root = by_id.get(anchor) or min(
        active, key=lambda r: (r.arrival is None, r.arrival or _EPOCH, r.encounter_id)
    )
    if len(active) == 1:
        return _episode(root)
    members = (root.encounter_id, *sorted(i for i in by_id if i != root.encounter_id))
    finished = all(r.discharge is not None for r in active)
    last_started = max(active, key=lambda r: (*_when(r.arrival), r.encounter_id))
    last_ended = max(active, key=lambda r: (*_when(r.discharge), r.encounter_id))
    most_acute = max(
        active,
        key=lambda r: (_ACUITY.get((r.class_code or "").upper(), 0), r is root, r.encounter_id),
    )
    with_patient = next((r for r in (root, *active) if r.patient_id), root)
    in_order = sorted(active, key=lambda r: (r is not root, *_when(r.arrival), r.encounter_id))
    return Episode(
        tenant_id=root.tenant_id,
        encounter_id=root.encounter_id,
        status="finished" if finished else "in-progress",
        class_code=most_acute.class_code,
        department=last_started.department,
        department_name=last_started.department_name,
        patient_id=with_patient.patient_id,
        arrival=root.arrival,
        discharge=max(r.discharge for r in active if r.discharge) if finished else None,
        birth_date=with_patient.birth_date,
        deceased_at=with_patient.deceased_at,
        part_of=None,
        priority=next((r.priority for r in in_order if r.priority), None),
        disposition=_episode(last_ended).disposition if finished else None,
        members=members,
    )


class _Links:
    """``partOf`` links of the encounters looked at so far, loaded level by level."""

    def __init__(self, session: Session, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id
        self.rows: dict[str, EpisodeRow] = {}
        self.known: set[str] = set()
        self.children: dict[str, set[str]] = {}

    def _add(self, rows: Iterable[EpisodeRow]) -> set[str]:
        new: set[str] = set()
        for row in rows:
            rid = row.encounter_id
            if rid not in self.rows:
                self.rows[rid] = row
                new.add(rid)
            self.known.add(rid)
            if row.part_of:
                self.children.setdefault(row.part_of, set()).add(rid)
        return new

    def load(self, ids: Iterable[str]) -> None:
        frontier = set(ids) - self.known
        while frontier:  # up: the encounters these are part of
            chunk_rows: list[EpisodeRow] = []
            for chunk in _chunks(sorted(frontier)):
                chunk_rows.extend(
                    self.session.scalars(
                        sa.select(EpisodeRow).where(
                            EpisodeRow.tenant_id == self.tenant_id,
                            EpisodeRow.encounter_id.in_(chunk),
                        )
                    )
                )
            self.known |= frontier
            self._add(chunk_rows)
            frontier = {r.part_of for r in chunk_rows if r.part_of and r.part_of not in self.known}
        frontier = set(self.known)
        looked: set[str] = set()
        while frontier:  # down: the encounters that are part of these
            looked |= frontier
            found: list[EpisodeRow] = []
            for chunk in _chunks(sorted(frontier)):
                found.extend(
                    self.session.scalars(
                        sa.select(EpisodeRow).where(
                            EpisodeRow.tenant_id == self.tenant_id,
                            EpisodeRow.part_of.in_(chunk),
                        )
                    )
                )
            self._add(found)
            frontier = {r.encounter_id for r in found} - looked

    def top(self, encounter_id: str) -> tuple[str, bool]:
        """The top of the links above an encounter, and whether they run in a circle."""
        path: list[str] = []
        seen: set[str] = set()
        current = encounter_id
        while True:
            path.append(current)
            seen.add(current)
            row = self.rows.get(current)
            parent = row.part_of if row is not None else None
            if not parent:
                return current, False
            if parent in seen:
                return min(path[path.index(parent) :]), True
            current = parent


def _chunks(ids: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def load_chains(session: Session, tenant_id: str, encounter_ids: Iterable[str]) -> dict[str, Chain]:
    """The chains these encounters belong to, by anchor, with every member and fact.

    An id that is neither an Encounter nor named by one is a chain of one without an
    episode (its facts wait for their Encounter)."""
    links = _Links(session, tenant_id)
    links.load(encounter_ids)
    groups: dict[str, list[str]] = {}
    cycles: set[str] = set()
    for rid in links.known:
        anchor, cycle = links.top(rid)
        groups.setdefault(anchor, []).append(rid)
        if cycle:
            cycles.add(anchor)
    facts: dict[str, list[Fact]] = {}
    for chunk in _chunks(sorted(links.known)):
        facts.update(_facts_of(session, tenant_id, chunk))
    out: dict[str, Chain] = {}
    for anchor, ids in groups.items():
        ids.sort()
        rows = [links.rows[i] for i in ids if i in links.rows]
        out[anchor] = Chain(
            anchor=anchor,
            ids=tuple(ids),
            episode=chain_episode(anchor, rows),
            facts=tuple(f for i in ids for f in facts.get(i, ())),
            cycle=anchor in cycles,
        )
    return out


def patients_encounter_ids(
    session: Session, tenant_id: str, patient_ids: Iterable[str]
) -> list[str]:
    """Encounters whose subject is one of these patients."""
    ids = sorted(set(patient_ids))
    out: list[str] = []
    for chunk in _chunks(ids):
        out.extend(
            session.scalars(
                sa.select(EpisodeRow.encounter_id).where(
                    EpisodeRow.tenant_id == tenant_id, EpisodeRow.patient_id.in_(chunk)
                )
            )
        )
    return sorted(out)
