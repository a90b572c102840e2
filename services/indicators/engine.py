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
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

import services.ingest as ingest
from services.indicators.evaluator import Catalogue
from services.indicators.models import CaseRow, CodeMapRow, CounterRow
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


def _row_values(case: Case) -> dict[str, Any]:
    return {
        "department": case.department,
        "status": case.status.value,
        "period_date": case.period_date,
        "clock_start": case.clock_start,
        "clock_stop": case.clock_stop,
        "deadline": case.deadline,
        "at_risk_at": case.at_risk_at,
        "decide_at": case.decide_at,
    }


def _same(row: CaseRow, case: Case) -> bool:
    return all(getattr(row, name) == value for name, value in _row_values(case).items())


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


class Evaluator:
    """Re-evaluates episodes against the catalogue and keeps cases and counters exact."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue

    def expected_cases(
        self,
        session: Session,
        tenant_id: str,
        encounter_ids: Iterable[str],
        now: datetime,
        tz: ZoneInfo,
        code_map: CodeMap,
    ) -> dict[str, list[Case]]:
        loaded = ingest.load_episodes(session, tenant_id, encounter_ids)
        return {
            encounter_id: (
                self.catalogue.evaluate_all(episode, facts, now, tz, code_map)
                if episode is not None
                else []
            )
            for encounter_id, (episode, facts) in loaded.items()
        }

    def reevaluate(
        self,
        session: Session,
        tenant_id: str,
        encounter_ids: Sequence[str],
        now: datetime,
        tz: ZoneInfo,
        code_map: CodeMap | None = None,
    ) -> list[CaseChange]:
        """Bring the stored cases of these episodes in line with their facts at ``now``."""
        if not encounter_ids:
            return []
        # Two workers re-evaluating one episode (the timer and the consumer, or two
        # replicas) must take turns: each reads the stored cases and adds the difference
        # to the counters, so interleaved they would both apply it.
        advisory_locks(session, (f"episode:{tenant_id}/{e}" for e in encounter_ids))
        code_map = code_map if code_map is not None else load_code_map(session, tenant_id)
        expected = self.expected_cases(session, tenant_id, encounter_ids, now, tz, code_map)
        stored: dict[tuple[str, str, str], CaseRow] = {}
        for start in range(0, len(encounter_ids), 500):
            rows = session.scalars(
                sa.select(CaseRow).where(
                    CaseRow.tenant_id == tenant_id,
                    CaseRow.encounter_id.in_(encounter_ids[start : start + 500]),
                )
            )
            stored.update({(r.indicator, r.encounter_id, r.key): r for r in rows})

        deltas = Deltas()
        changes: list[CaseChange] = []
        for encounter_id, cases in expected.items():
            for case in cases:
                ident = (case.indicator, encounter_id, case.key)
                row = stored.pop(ident, None)
                if row is not None and _same(row, case):
                    continue
                if row is None:
                    session.add(
                        CaseRow(
                            tenant_id=tenant_id,
                            indicator=case.indicator,
                            encounter_id=encounter_id,
                            key=case.key,
                            updated_at=now,
                            **_row_values(case),
                        )
                    )
                    old_status, old_period, old_dept = None, None, None
                else:
                    old_status, old_period, old_dept = row.status, row.period_date, row.department
                    deltas.add(row.indicator, row.department, row.period_date, row.status, -1)
                    for name, value in _row_values(case).items():
                        setattr(row, name, value)
                    row.updated_at = now
                deltas.add(case.indicator, case.department, case.period_date, case.status, +1)
                changes.append(
                    CaseChange(
                        tenant_id,
                        case.indicator,
                        encounter_id,
                        case.key,
                        old_status,
                        case,
                        old_period,
                        old_dept,
                    )
                )
        for (indicator, encounter_id, key), row in stored.items():
            deltas.add(indicator, row.department, row.period_date, row.status, -1)
            session.delete(row)
            changes.append(
                CaseChange(
                    tenant_id,
                    indicator,
                    encounter_id,
                    key,
                    row.status,
                    None,
                    row.period_date,
                    row.department,
                )
            )
        session.flush()
        apply_deltas(session, tenant_id, deltas)
        return changes

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
