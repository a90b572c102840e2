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
from services.indicators.engine import CounterKey, Deltas, load_code_map
from services.indicators.models import CaseRow, CounterRow
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
    expected: dict[str, list[Case]],
    stored: dict[tuple[str, str, str], CaseRow],
    report: VerifyReport,
    counts: Deltas,
) -> None:
    """Record expected cases in ``counts``; report each one stored differently."""
    for encounter_id, cases in expected.items():
        for case in cases:
            report.cases += 1
            counts.add(case.indicator, case.department, case.period_date, case.status, +1)
            row = stored.pop((case.indicator, encounter_id, case.key), None)
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


def _verify_tenant(
    runtime: Runtime, tenant_id: str, report: VerifyReport, progress: Progress | None
) -> None:
    evaluator = evaluator_for(runtime)
    now = runtime.clock.now()
    with runtime.read() as session:
        tz = runtime.tenant_zone(session, tenant_id)
        code_map = load_code_map(session, tenant_id)
        with_cases = sa.select(CaseRow.encounter_id).where(CaseRow.tenant_id == tenant_id)
        ids = sorted(
            set(ingest.episode_ids(session, tenant_id))
            | set(session.scalars(with_cases.distinct()))
        )
        counts = Deltas()
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            expected = evaluator.expected_cases(session, tenant_id, chunk, now, tz, code_map)
            rows = session.scalars(
                sa.select(CaseRow).where(
                    CaseRow.tenant_id == tenant_id, CaseRow.encounter_id.in_(chunk)
                )
            )
            stored = {(r.indicator, r.encounter_id, r.key): r for r in rows}
            _compare_cases(tenant_id, expected, stored, report, counts)
            report.episodes += len(chunk)
            if progress:
                progress(min(start + CHUNK, len(ids)), len(ids))
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
            ids = list(ingest.episode_ids(session, tenant_id))
            for start in range(0, len(ids), CHUNK):
                changes = evaluator.reevaluate(
                    session, tenant_id, ids[start : start + CHUNK], now, tz, code_map
                )
                total += sum(1 for c in changes if c.new is not None)
                if progress:
                    progress(min(start + CHUNK, len(ids)), len(ids))
    return total
