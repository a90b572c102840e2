"""``qcpulse verify`` and ``qcpulse recompute``: the proof that incremental = full.

``verify`` evaluates every episode from its stored facts, as ``recompute`` would, and
compares the result with the stored cases and the running day counters. It first
lets the timer re-decide cases whose deadline has passed, so that it compares both
sides at the same instant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

import services.ingest as ingest
from services.indicators.engine import CounterKey, Deltas, StoredCase, gather, load_code_map
from services.indicators.models import CaseRow, CounterRow, UnitRow
from services.indicators.worker import drain, evaluator_for
from shared.clinical import Case
from shared.models import Tenant
from shared.runtime import Runtime

Progress = Callable[[int, int], None]

#: Episodes evaluated per query round trip.
CHUNK = 500


@dataclass
class VerifyReport:
    tenants: int = 0
    episodes: int = 0
    cases: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def _tenants(runtime: Runtime) -> list[str]:
    with runtime.read() as session:
        return sorted(session.scalars(sa.select(Tenant.id)).all())


def _compare_cases(
    tenant_id: str,
    expected: list[Case],
    stored: dict[tuple[str, str, str], StoredCase],
    report: VerifyReport,
    counts: Deltas,
) -> None:
    """Record expected cases in ``counts``; report each one stored differently."""
    for case in expected:
        report.cases += 1
        counts.add(case.indicator, case.department, case.period_date, case.status, +1)
        row = stored.pop((case.indicator, case.encounter_id, case.key), None)
        if row is None:
            report.differences.append(
                f"{tenant_id} {case.indicator} {case.key}: missing case ({case.status})"
            )
            continue
        got = (row.status, row.period_date, row.department)
        want = (case.status.value, case.period_date, case.department)
        if got != want:
            report.differences.append(
                f"{tenant_id} {case.indicator} {case.key}: stored "
                f"{'/'.join(map(str, got))}, expected {'/'.join(map(str, want))}"
            )
    for (indicator, _, key), row in stored.items():
        report.differences.append(
            f"{tenant_id} {indicator} {key}: stored case ({row.status}) should not exist"
        )


def _compare_counters(
    session: Session, tenant_id: str, expected: Deltas, report: VerifyReport
) -> None:
    zero = [0, 0, 0, 0]
    stored: dict[CounterKey, list[int]] = {}
    for row in session.scalars(sa.select(CounterRow).where(CounterRow.tenant_id == tenant_id)):
        values = [row.numerator, row.denominator, row.excluded, row.pending]
        if any(values):
            stored[(row.indicator, row.department, row.day)] = values
    want = expected.nonzero()
    for key in sorted(set(want) | set(stored)):
        got, recomputed = stored.get(key, zero), want.get(key, zero)
        if got != recomputed:
            indicator, department, day = key
            report.differences.append(
                f"{tenant_id} {indicator} {department} {day}: counters (num, den, excl, pend) "
                f"= {tuple(got)}, recomputed {tuple(recomputed)}"
            )


def _all_encounter_ids(session: Session, tenant_id: str) -> list[str]:
    """Every encounter with an episode, a fact, a stored case or a filing."""
    with_cases = sa.select(CaseRow.encounter_id).where(CaseRow.tenant_id == tenant_id)
    filed = sa.select(UnitRow.encounter_id).where(UnitRow.tenant_id == tenant_id)
    return sorted(
        set(ingest.episode_ids(session, tenant_id))
        | set(session.scalars(with_cases.distinct()))
        | set(session.scalars(filed))
    )


def _verify_tenant(
    runtime: Runtime, tenant_id: str, report: VerifyReport, progress: Progress | None
) -> None:
    evaluator = evaluator_for(runtime)
    now = runtime.clock.now()
    with runtime.read() as session:
        tz = runtime.tenant_zone(session, tenant_id)
        code_map = load_code_map(session, tenant_id)
        ids = _all_encounter_ids(session, tenant_id)
        counts = Deltas()
        covered: set[str] = set()
        done_chains: set[str] = set()
        done_patients: set[str] = set()
        examined = 0
        for start in range(0, len(ids), CHUNK):
            chunk = [i for i in ids[start : start + CHUNK] if i not in covered]
            if not chunk:
                continue
            scope = gather(session, tenant_id, chunk)
            chains = [a for a in scope.chains if a not in done_chains]
            patients = [
                p
                for p in scope.by_patient()
                if p not in done_patients and (p.startswith("~") or p in scope.patients)
            ]
            expected = evaluator.expected(
                scope, now, tz, code_map, chains=chains, patients=patients
            )
            stored = evaluator.stored(session, tenant_id, scope, chains=chains, patients=patients)
            examined += len(stored)
            _compare_cases(tenant_id, expected, stored, report, counts)
            done_chains.update(chains)
            done_patients.update(patients)
            covered |= scope.encounter_ids
            report.episodes += sum(1 for a in chains if scope.chains[a].episode is not None)
            if progress:
                progress(min(start + CHUNK, len(ids)), len(ids))
        total = session.scalar(
            sa.select(sa.func.count()).select_from(CaseRow).where(CaseRow.tenant_id == tenant_id)
        )
        total = total or 0
        if total != examined:
            report.differences.append(
                f"{tenant_id}: {total - examined} stored cases belong to no episode or patient"
            )
        _compare_counters(session, tenant_id, counts, report)


def verify(runtime: Runtime, *, progress: Progress | None = None, limit: int = 200) -> VerifyReport:
    """Compare stored cases and counters with a recomputation, tenant by tenant."""
    drain(runtime)
    report = VerifyReport()
    for tenant_id in _tenants(runtime):
        report.tenants += 1
        _verify_tenant(runtime, tenant_id, report, progress)
        if len(report.differences) >= limit:
            break
    return report


def recompute(
    runtime: Runtime, *, tenant: str | None = None, progress: Progress | None = None
) -> int:
    """Rebuild cases and counters from the stored resources. Returns the case count."""
    evaluator = evaluator_for(runtime)
    total = 0
    for tenant_id in [tenant] if tenant else _tenants(runtime):
        with runtime.write() as session:
            now = runtime.clock.now()
            tz = runtime.tenant_zone(session, tenant_id)
            code_map = load_code_map(session, tenant_id)
            session.execute(sa.delete(CaseRow).where(CaseRow.tenant_id == tenant_id))
            session.execute(sa.delete(CounterRow).where(CounterRow.tenant_id == tenant_id))
            session.execute(sa.delete(UnitRow).where(UnitRow.tenant_id == tenant_id))
            ids = list(ingest.episode_ids(session, tenant_id))
            covered: set[str] = set()
            for start in range(0, len(ids), CHUNK):
                chunk = [i for i in ids[start : start + CHUNK] if i not in covered]
                changes, scope = evaluator.reevaluate_scope(
                    session, tenant_id, chunk, now, tz, code_map
                )
                covered |= scope.encounter_ids
                total += sum(1 for c in changes if c.new is not None)
                if progress:
                    progress(min(start + CHUNK, len(ids)), len(ids))
    return total
