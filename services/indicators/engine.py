"""Incremental evaluation: re-evaluate episodes, diff their cases, move the counters.

For a set of episodes: evaluate every indicator on each episode's current facts, diff
the resulting cases against the stored ones, write the difference, and add the
difference to the day counters, all in the caller's transaction. Because the stored
cases are replaced by a pure function of the stored facts, the counters after any
sequence of events equal a full recomputation (``verify`` checks exactly that).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

import services.ingest as ingest
from services.indicators.evaluator import Catalogue
from services.indicators.models import CaseRow, CodeMapRow, CounterRow, UnitRow
from services.indicators.valuesets import CodeMap
from shared.clinical import Case, CaseStatus, Coding
from shared.db import advisory_locks

#: Counter columns, in the order deltas are kept.
STATUS_COLUMNS: tuple[CaseStatus, ...] = (
    CaseStatus.NUMERATOR,
    CaseStatus.DENOMINATOR,
    CaseStatus.EXCLUDED,
    CaseStatus.PENDING,
)
_COLUMN_INDEX = {status: i for i, status in enumerate(STATUS_COLUMNS)}

CounterKey = tuple[str, str, date]  # indicator, department, day


@dataclass(frozen=True, slots=True)
class CaseChange:
    """A case that appeared, changed or disappeared. ``new`` is None when it is gone."""

    tenant_id: str
    indicator: str
    encounter_id: str
    key: str
    old_status: str | None
    new: Case | None
    old_period: date | None
    old_department: str | None

    def to_json(self) -> dict[str, Any]:
        case = self.new
        period = case.period_date if case else self.old_period
        return {
            "indicator": self.indicator,
            "encounter_id": self.encounter_id,
            "key": self.key,
            "old_status": self.old_status,
            "status": case.status.value if case else None,
            "department": case.department if case else self.old_department,
            "period_date": period.isoformat() if period else None,
            "clock_start": _iso(case.clock_start) if case else None,
            "clock_stop": _iso(case.clock_stop) if case else None,
            "deadline": _iso(case.deadline) if case else None,
            "at_risk_at": _iso(case.at_risk_at) if case else None,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class StoredCase(NamedTuple):
    """A stored case as a plain row: the diff reads hundreds per event, and ORM
    instances cost more than the evaluation that decides them."""

    indicator: str
    encounter_id: str
    key: str
    department: str
    status: str
    period_date: date | None
    clock_start: datetime | None
    clock_stop: datetime | None
    deadline: datetime | None
    at_risk_at: datetime | None
    decide_at: datetime | None
    patient_id: str | None

    @property
    def values(self) -> tuple[Any, ...]:
        return tuple(self[3:])


#: The columns a case's decision writes, in :class:`StoredCase` order after the key.
_VALUE_COLUMNS = StoredCase._fields[3:]
_CASES: sa.Table = CaseRow.__table__  # type: ignore[assignment]
_SELECT_CASES = sa.select(*(_CASES.c[name] for name in StoredCase._fields))
_PK = ("tenant_id", "indicator", "encounter_id", "key")
_UPDATE_CASE = (
    sa.update(_CASES)
    .where(*(_CASES.c[name] == sa.bindparam(f"k_{name}") for name in _PK))
    .values({name: sa.bindparam(f"v_{name}") for name in (*_VALUE_COLUMNS, "updated_at")})
)
_DELETE_CASE = sa.delete(_CASES).where(
    *(_CASES.c[name] == sa.bindparam(f"k_{name}") for name in _PK)
)


def _key_params(tenant_id: str, ident: tuple[str, str, str]) -> dict[str, str]:
    indicator, encounter_id, key = ident
    return {
        "k_tenant_id": tenant_id,
        "k_indicator": indicator,
        "k_encounter_id": encounter_id,
        "k_key": key,
    }


def _case_values(case: Case) -> tuple[Any, ...]:
    """A case's decision in :data:`_VALUE_COLUMNS` order."""
    return (
        case.department,
        case.status.value,
        case.period_date,
        case.clock_start,
        case.clock_stop,
        case.deadline,
        case.at_risk_at,
        case.decide_at,
        case.patient_id,
    )


def _scope_locks(tenant_id: str, scope: Scope) -> set[str]:
    return {f"chain:{tenant_id}/{a}" for a in scope.chains} | {
        f"patient:{tenant_id}/{p}" for p in scope.patients
    }


def _file_units(session: Session, tenant_id: str, scope: Scope) -> None:
    """Record where each encounter's cases are filed now (see :class:`UnitRow`)."""
    for chain in scope.chains.values():
        for encounter_id in chain.ids:
            unit = scope.units.get(encounter_id)
            if chain.episode is None:
                if unit is not None:
                    session.delete(unit)
                continue
            if unit is None:
                session.add(
                    UnitRow(
                        tenant_id=tenant_id,
                        encounter_id=encounter_id,
                        root_id=chain.anchor,
                        patient_id=chain.patient_id,
                    )
                )
            elif (unit.root_id, unit.patient_id) != (chain.anchor, chain.patient_id):
                unit.root_id, unit.patient_id = chain.anchor, chain.patient_id


def load_code_map(session: Session, tenant_id: str) -> CodeMap:
    rows = session.scalars(sa.select(CodeMapRow).where(CodeMapRow.tenant_id == tenant_id))
    return CodeMap(
        (row.source_system, row.source_code, Coding(row.target_system, row.target_code))
        for row in rows
    )


class Deltas:
    """Counter deltas for one tenant, summed before they touch the database."""

    def __init__(self) -> None:
        self.values: dict[CounterKey, list[int]] = defaultdict(lambda: [0, 0, 0, 0])

    def add(
        self, indicator: str, department: str, day: date | None, status: str, sign: int
    ) -> None:
        if day is None:
            return  # a case with no filing date yet is stored but not counted
        self.values[(indicator, department, day)][_COLUMN_INDEX[CaseStatus(status)]] += sign

    def nonzero(self) -> dict[CounterKey, list[int]]:
        return {k: v for k, v in self.values.items() if any(v)}


def apply_deltas(session: Session, tenant_id: str, deltas: Deltas) -> None:
    items = deltas.nonzero()
    if not items:
        return
    rows = [
        {
            "tenant_id": tenant_id,
            "indicator": ind,
            "department": dept,
            "day": day,
            "numerator": d[0],
            "denominator": d[1],
            "excluded": d[2],
            "pending": d[3],
        }
        for (ind, dept, day), d in sorted(items.items())
    ]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(CounterRow)
    table = CounterRow.__table__
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant_id", "indicator", "department", "day"],
        set_={
            name: table.c[name] + stmt.excluded[name]
            for name in ("numerator", "denominator", "excluded", "pending")
        },
    )
    session.execute(stmt, rows)


@dataclass
class Scope:
    """What one evaluation covers: episode chains, and patients whose every chain is
    among them, closed under "where did these encounters' cases live before"."""

    chains: dict[str, ingest.Chain] = field(default_factory=dict)
    #: Patients whose chains are all loaded (their patient-level cases can be decided).
    patients: set[str] = field(default_factory=set)
    #: Stored filing of each encounter of the chains (``indicator_units``).
    units: dict[str, UnitRow] = field(default_factory=dict)

    @property
    def encounter_ids(self) -> set[str]:
        return {i for chain in self.chains.values() for i in chain.ids}

    def by_patient(self) -> dict[str, list[ingest.Chain]]:
        """Chains grouped by patient; a chain without one stands alone, under its
        anchor prefixed ``~``."""
        groups: dict[str, list[ingest.Chain]] = {}
        for chain in self.chains.values():
            if chain.episode is None:
                continue
            groups.setdefault(chain.patient_id or f"~{chain.anchor}", []).append(chain)
        return groups


def _chunks(ids: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def gather(session: Session, tenant_id: str, encounter_ids: Iterable[str]) -> Scope:
    """The chains of these encounters, the chains their cases were filed under before
    (a ``partOf`` or ``subject`` that changed), and every chain of every patient met on
    the way — repeated until nothing new turns up."""
    scope = Scope()
    known: set[str] = set()
    todo = set(encounter_ids)
    while todo:
        new_ids: set[str] = set()
        for anchor, chain in ingest.load_chains(session, tenant_id, todo).items():
            scope.chains.setdefault(anchor, chain)
            new_ids.update(chain.ids)
        new_ids -= known
        known |= new_ids | todo
        units = _units(session, tenant_id, UnitRow.encounter_id, new_ids)
        anchors = {u.root_id for u in units} - {u.encounter_id for u in units}
        units += _units(session, tenant_id, UnitRow.root_id, anchors)
        for unit in units:
            scope.units.setdefault(unit.encounter_id, unit)
        patients = {
            p
            for p in [
                *(c.patient_id for c in scope.chains.values()),
                *(u.patient_id for u in units),
            ]
            if p
        } - scope.patients
        scope.patients |= patients
        todo = (
            {u.encounter_id for u in units}
            | {u.root_id for u in units}
            | set(ingest.patients_encounter_ids(session, tenant_id, patients))
        ) - known
    return scope


def _units(session: Session, tenant_id: str, column: Any, ids: Iterable[str]) -> list[UnitRow]:
    out: list[UnitRow] = []
    for chunk in _chunks(sorted(ids)):
        out.extend(
            session.scalars(
                sa.select(UnitRow).where(UnitRow.tenant_id == tenant_id, column.in_(chunk))
            )
        )
    return out


class Evaluator:
    """Re-evaluates episodes against the catalogue and keeps cases and counters exact."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self._patient_level = frozenset(i.code for i in catalogue.patient_level)

    def expected(
        self,
        scope: Scope,
        now: datetime,
        tz: ZoneInfo,
        code_map: CodeMap,
        *,
        chains: Iterable[str] | None = None,
        patients: Iterable[str] | None = None,
    ) -> list[Case]:
        """The cases the scope's chains (or only ``chains``, by anchor) and patients (or
        only ``patients``; ``~anchor`` for a chain without one) should have now."""
        out: list[Case] = []
        wanted = set(chains) if chains is not None else None
        for anchor, chain in scope.chains.items():
            if chain.episode is None or (wanted is not None and anchor not in wanted):
                continue
            out.extend(self.catalogue.evaluate_all(chain.episode, chain.facts, now, tz, code_map))
        if not self._patient_level:
            return out
        wanted = set(patients) if patients is not None else None
        for patient, group in scope.by_patient().items():
            if wanted is not None and patient not in wanted:
                continue
            if not patient.startswith("~") and patient not in scope.patients:
                continue  # not every chain of this patient is loaded
            out.extend(
                self.catalogue.evaluate_patient(
                    [(c.episode, c.facts) for c in group if c.episode is not None],
                    now,
                    tz,
                    code_map,
                    patient_id=None if patient.startswith("~") else patient,
                )
            )
        return out

    def stored(
        self,
        session: Session,
        tenant_id: str,
        scope: Scope,
        *,
        chains: Iterable[str] | None = None,
        patients: Iterable[str] | None = None,
    ) -> dict[tuple[str, str, str], StoredCase]:
        """The stored cases that the scope's expected cases replace. With ``chains`` and
        ``patients`` (as for :meth:`expected`), only theirs: episode-level cases and
        cases without a patient filed under those chains, and those patients' cases."""
        rows: dict[tuple[str, str, str], StoredCase] = {}

        def read(column: sa.Column[Any], ids: Iterable[str]) -> Iterable[StoredCase]:
            for chunk in _chunks(sorted(ids)):
                query = _SELECT_CASES.where(_CASES.c.tenant_id == tenant_id, column.in_(chunk))
                for row in session.execute(query):
                    yield StoredCase(*row)

        if chains is not None or patients is not None:
            wanted = set(chains or ())
            ids = {i for a, c in scope.chains.items() if a in wanted for i in c.ids}
            for r in read(_CASES.c.encounter_id, ids):
                if r.patient_id is None or r.indicator not in self._patient_level:
                    rows[(r.indicator, r.encounter_id, r.key)] = r
            real = {p for p in patients or () if not p.startswith("~")}
            for r in read(_CASES.c.patient_id, real):
                rows[(r.indicator, r.encounter_id, r.key)] = r
            return rows
        # A patient's case filed under one of these chains is the patient's to decide,
        # and the patient is in scope whenever the chain is.
        for r in read(_CASES.c.encounter_id, scope.encounter_ids):
            rows[(r.indicator, r.encounter_id, r.key)] = r
        for r in read(_CASES.c.patient_id, scope.patients):
            rows[(r.indicator, r.encounter_id, r.key)] = r
        return rows

    def reevaluate(
        self,
        session: Session,
        tenant_id: str,
        encounter_ids: Sequence[str],
        now: datetime,
        tz: ZoneInfo,
        code_map: CodeMap | None = None,
    ) -> list[CaseChange]:
        """Bring the stored cases of these episodes — their whole chains, and their
        patients' cases — in line with their facts at ``now``."""
        return self.reevaluate_scope(session, tenant_id, encounter_ids, now, tz, code_map)[0]

    def reevaluate_scope(
        self,
        session: Session,
        tenant_id: str,
        encounter_ids: Sequence[str],
        now: datetime,
        tz: ZoneInfo,
        code_map: CodeMap | None = None,
    ) -> tuple[list[CaseChange], Scope]:
        """:meth:`reevaluate`, also returning the scope it covered."""
        if not encounter_ids:
            return [], Scope()
        # Two workers re-evaluating one episode (the timer and the consumer, or two
        # replicas) must take turns: each reads the stored cases and adds the difference
        # to the counters, so interleaved they would both apply it. Chains and patients
        # are known only after reading, so their locks follow, and on PostgreSQL the
        # scope is read again under them.
        advisory_locks(session, (f"episode:{tenant_id}/{e}" for e in encounter_ids))
        code_map = code_map if code_map is not None else load_code_map(session, tenant_id)
        scope = gather(session, tenant_id, encounter_ids)
        locked = _scope_locks(tenant_id, scope)
        advisory_locks(session, sorted(locked))
        if session.get_bind().dialect.name == "postgresql":
            scope = gather(session, tenant_id, encounter_ids)
            advisory_locks(session, sorted(_scope_locks(tenant_id, scope) - locked))
        expected = self.expected(scope, now, tz, code_map)
        stored = self.stored(session, tenant_id, scope)

        deltas = Deltas()
        changes: list[CaseChange] = []
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for case in expected:
            ident = (case.indicator, case.encounter_id, case.key)
            values = _case_values(case)
            row = stored.pop(ident, None)
            if row is not None and row.values == values:
                continue
            if row is None:
                inserts.append(
                    {
                        "tenant_id": tenant_id,
                        "indicator": case.indicator,
                        "encounter_id": case.encounter_id,
                        "key": case.key,
                        "updated_at": now,
                        **dict(zip(_VALUE_COLUMNS, values, strict=True)),
                    }
                )
            else:
                deltas.add(row.indicator, row.department, row.period_date, row.status, -1)
                updates.append(
                    {
                        **_key_params(tenant_id, ident),
                        "v_updated_at": now,
                        **{f"v_{n}": v for n, v in zip(_VALUE_COLUMNS, values, strict=True)},
                    }
                )
            deltas.add(case.indicator, case.department, case.period_date, case.status, +1)
            changes.append(
                CaseChange(
                    tenant_id,
                    case.indicator,
                    case.encounter_id,
                    case.key,
                    row.status if row else None,
                    case,
                    row.period_date if row else None,
                    row.department if row else None,
                )
            )
        for row in stored.values():
            deltas.add(row.indicator, row.department, row.period_date, row.status, -1)
            changes.append(
                CaseChange(
                    tenant_id,
                    row.indicator,
                    row.encounter_id,
                    row.key,
                    row.status,
                    None,
                    row.period_date,
                    row.department,
                )
            )
        if stored:
            session.execute(_DELETE_CASE, [_key_params(tenant_id, i) for i in stored])
        if updates:
            session.execute(_UPDATE_CASE, updates)
        if inserts:
            session.execute(sa.insert(_CASES), inserts)
        _file_units(session, tenant_id, scope)
        session.flush()
        apply_deltas(session, tenant_id, deltas)
        return changes, scope

    def due_episodes(
        self, session: Session, now: datetime, limit: int = 500
    ) -> list[tuple[str, str]]:
        """(tenant, encounter) pairs with a pending case whose decision time has come."""
        rows = session.execute(
            sa.select(CaseRow.tenant_id, CaseRow.encounter_id)
            .where(CaseRow.decide_at.is_not(None), CaseRow.decide_at <= now)
            .distinct()
            .limit(limit)
        )
        return [(t, e) for t, e in rows]
