"""Data-quality findings over episodes, facts and stored Patients (docs/API.md §5).

Each finding is ``{"count": n, "examples": [...]}``: how many records have the
problem, and the first ``limit`` of them by id, each ``{"resource": "Type/id", …}``.
Everything is computed in the database but the ``partOf`` cycles, which are found
in Python among the few encounters that both name a ``partOf`` and are named by one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, aliased

from services.ingest.models import EpisodeRow, FactRow, StoredResource
from shared.clinical import FactKind
from shared.units import is_known_unit

JSON = dict[str, Any]

#: Statuses whose Encounters take no part in any episode: not worth a finding.
_VOID = ("cancelled", "entered-in-error")


#: Departments a key is limited to; None: all (``Principal.departments``).
Departments = Collection[str] | None


def _in(departments: Departments) -> tuple[sa.ColumnElement[bool], ...]:
    """The episode (``EpisodeRow``) is in one of ``departments``: nothing when unlimited."""
    return () if departments is None else (EpisodeRow.department.in_(sorted(departments)),)


def _finding(count: int, examples: Sequence[JSON]) -> JSON:
    return {"count": count, "examples": list(examples)}


def _count(session: Session, stmt: sa.SelectBase) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(stmt.subquery())) or 0


def _encounter_finding(
    session: Session, where: Sequence[sa.ColumnElement[bool]], limit: int
) -> JSON:
    ids = sa.select(EpisodeRow.encounter_id).where(*where)
    rows = session.scalars(ids.order_by(EpisodeRow.encounter_id).limit(limit))
    return _finding(_count(session, ids), [{"resource": f"Encounter/{i}"} for i in rows])


def _json_text(session: Session, column: Any, *path: str) -> sa.ColumnElement[Any]:
    """A member of a JSON text column as SQL text (NULL when absent or JSON null)."""
    text = sa.type_coerce(column, sa.Text)
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.jsonb_extract_path_text(sa.cast(text, postgresql.JSONB), *path)
    return sa.func.json_extract(text, "$." + ".".join(path))


def _has_identifier(session: Session) -> sa.ColumnElement[bool]:
    """The stored Patient has an ``identifier`` with a ``value``."""
    text = sa.type_coerce(StoredResource.body, sa.Text)
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.jsonb_path_exists(
            sa.cast(text, postgresql.JSONB),
            sa.cast(sa.literal("$.identifier[*].value"), postgresql.JSONPATH),
        ).is_(True)
    items = sa.func.json_each(text, "$.identifier").table_valued("value").alias("identifier")
    return (
        sa.select(sa.literal(1))
        .select_from(items)
        .where(sa.func.json_extract(items.c.value, "$.value").is_not(None))
        .exists()
    )


def _continued(tenant_id: str) -> sa.ColumnElement[bool]:
    """The episode continues in another Encounter that is ``partOf`` it."""
    later = sa.orm.aliased(EpisodeRow)
    return (
        sa.select(sa.literal(1))
        .where(later.tenant_id == tenant_id, later.part_of == EpisodeRow.encounter_id)
        .exists()
    )


def discharges(
    session: Session, tenant_id: str, limit: int, departments: Departments = None
) -> dict[str, JSON]:
    finished = (
        EpisodeRow.tenant_id == tenant_id,
        EpisodeRow.status == "finished",
        *_in(departments),
    )
    return {
        "discharged_without_end": _encounter_finding(
            session, (*finished, EpisodeRow.discharge.is_(None)), limit
        ),
        # An ED visit that became a ward stay (another Encounter is partOf it) leaves
        # the disposition to the member that ends the chain.
        "discharged_without_disposition": _encounter_finding(
            session,
            (*finished, EpisodeRow.disposition_code.is_(None), ~_continued(tenant_id)),
            limit,
        ),
    }


def patients(
    session: Session, tenant_id: str, limit: int, departments: Departments = None
) -> dict[str, JSON]:
    without_patient = _encounter_finding(
        session,
        (
            EpisodeRow.tenant_id == tenant_id,
            *_in(departments),
            EpisodeRow.patient_id.is_(None),
            sa.or_(EpisodeRow.status.is_(None), EpisodeRow.status.not_in(_VOID)),
        ),
        limit,
    )
    ids = sa.select(StoredResource.id).where(
        StoredResource.tenant_id == tenant_id,
        StoredResource.type == "Patient",
        StoredResource.deleted.is_(False),
        sa.not_(_has_identifier(session)),
    )
    if departments is not None:
        # A limited key sees the patients with an episode in its departments.
        ids = ids.where(
            sa.select(sa.literal(1))
            .where(
                EpisodeRow.tenant_id == tenant_id,
                EpisodeRow.patient_id == StoredResource.id,
                *_in(departments),
            )
            .exists()
        )
    rows = session.scalars(ids.order_by(StoredResource.id).limit(limit))
    return {
        "episodes_without_patient": without_patient,
        "patients_without_identifier": _finding(
            _count(session, ids), [{"resource": f"Patient/{i}"} for i in rows]
        ),
    }


def units(
    session: Session, tenant_id: str, limit: int, departments: Departments = None
) -> dict[str, JSON]:
    """Observations with a ``valueQuantity`` value whose unit shared/units.py does not
    know (or that has no unit): value thresholds never match them. A limited key sees
    those linked to an episode of its departments."""
    unit = _json_text(session, FactRow.data, "unit")
    observations: tuple[sa.ColumnElement[bool], ...] = (
        FactRow.tenant_id == tenant_id,
        FactRow.kind == FactKind.OBSERVATION.value,
        _json_text(session, FactRow.data, "value").is_not(None),
    )
    if departments is not None:
        observations = (
            *observations,
            sa.select(sa.literal(1))
            .where(
                EpisodeRow.tenant_id == tenant_id,
                EpisodeRow.encounter_id == FactRow.encounter_id,
                *_in(departments),
            )
            .exists(),
        )
    by_unit = session.execute(sa.select(unit, sa.func.count()).where(*observations).group_by(unit))
    unknown: list[str] = []
    missing = False
    count = 0
    for code, n in by_unit:
        if not is_known_unit(code if isinstance(code, str) else None):
            count += n
            if code is None:
                missing = True
            else:
                unknown.append(str(code))
    examples: list[JSON] = []
    if count:
        matches = [unit.in_(unknown)] if unknown else []
        if missing:
            matches.append(unit.is_(None))
        rows = session.execute(
            sa.select(FactRow.resource_id, unit, FactRow.encounter_id)
            .where(*observations, sa.or_(*matches))
            .order_by(FactRow.resource_id)
            .limit(limit)
        )
        examples = [
            {
                "resource": f"Observation/{rid}",
                "unit": code,
                "encounter": f"Encounter/{eid}" if eid else None,
            }
            for rid, code, eid in rows
        ]
    return {"unknown_units": _finding(count, examples)}


def _cycles(edges: dict[str, str]) -> list[list[str]]:
    """The cycles of a graph where each node has at most one parent, each from its
    smallest id in link order, sorted."""
    state: dict[str, int] = {}  # 1: on the current walk, 2: done
    found: list[list[str]] = []
    for start in sorted(edges):
        path: list[str] = []
        node: str | None = start
        while node is not None and node not in state:
            state[node] = 1
            path.append(node)
            node = edges.get(node)
        if node is not None and state[node] == 1:
            cycle = path[path.index(node) :]
            first = cycle.index(min(cycle))
            found.append(cycle[first:] + cycle[:first])
        for member in path:
            state[member] = 2
    return sorted(found)


def part_of(
    session: Session, tenant_id: str, limit: int, departments: Departments = None
) -> dict[str, JSON]:
    """Dangling and cyclic ``partOf``. A limited key sees its departments' encounters,
    and the cycles whose members are all in them."""
    parent = aliased(EpisodeRow)
    dangling = (
        sa.select(EpisodeRow.encounter_id, EpisodeRow.part_of)
        .outerjoin(
            parent,
            sa.and_(
                parent.tenant_id == EpisodeRow.tenant_id,
                parent.encounter_id == EpisodeRow.part_of,
            ),
        )
        .where(
            EpisodeRow.tenant_id == tenant_id,
            EpisodeRow.part_of.is_not(None),
            parent.encounter_id.is_(None),
            *_in(departments),
        )
    )
    rows = session.execute(dangling.order_by(EpisodeRow.encounter_id).limit(limit))
    not_received = _finding(
        _count(session, dangling),
        [{"resource": f"Encounter/{i}", "part_of": f"Encounter/{p}"} for i, p in rows],
    )
    # A member of a cycle both names a parent and is named by a child.
    child = aliased(EpisodeRow)
    linked = sa.select(EpisodeRow.encounter_id, EpisodeRow.part_of).where(
        EpisodeRow.tenant_id == tenant_id,
        *_in(departments),
        EpisodeRow.part_of.is_not(None),
        sa.select(sa.literal(1))
        .where(child.tenant_id == tenant_id, child.part_of == EpisodeRow.encounter_id)
        .exists(),
    )
    cycles = _cycles({i: p for i, p in session.execute(linked) if p is not None})
    return {
        "part_of_not_received": not_received,
        "part_of_cycles": _finding(
            len(cycles),
            [
                {"resource": f"Encounter/{c[0]}", "cycle": [f"Encounter/{m}" for m in c]}
                for c in cycles[:limit]
            ],
        ),
    }


def findings(
    session: Session, tenant_id: str, limit: int, *, departments: Departments = None
) -> dict[str, JSON]:
    """Every finding of this module, by name; of ``departments``' episodes only when
    given (a department-limited key)."""
    return {
        **discharges(session, tenant_id, limit, departments),
        **patients(session, tenant_id, limit, departments),
        **units(session, tenant_id, limit, departments),
        **part_of(session, tenant_id, limit, departments),
    }
