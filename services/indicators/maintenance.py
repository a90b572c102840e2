"""``qcpulse verify`` and ``qcpulse recompute``: the proof that incremental = full.

``verify`` evaluates every episode from its stored facts, as ``recompute`` would, and
compares the result with the stored cases and the running day counters. It first
lets the timer re-decide cases whose deadline has passed, so that it compares both
sides at the same instant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

import services.ingest as ingest
from services.indicators.engine import Deltas, CounterKey, load_code_map
from services.indicators.models import CaseRow, CounterRow
from services.indicators.worker import drain, evaluator_for
from shared.models import Tenant
from shared.runtime import Runtime

Progress = Callable[[int, int], None]


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


def verify(runtime: Runtime, *, progress: Progress | None = None, limit: int = 200) -> VerifyReport:
    drain(runtime)
    report = VerifyReport()
    evaluator = evaluator_for(runtime)
    now = runtime.clock.now()
    for tenant_id in _tenants(runtime):
        report.tenants += 1
        with runtime.read() as session:
            tz = runtime.tenant_zone(session, tenant_id)
            code_map = load_code_map(session, tenant_id)
            stored_ids = set(
                session.scalars(
                    sa.select(CaseRow.encounter_id).where(CaseRow.tenant_id == tenant_id).distinct()
                )
            )
            ids = sorted(set(ingest.episode_ids(session, tenant_id)) | stored_ids)
            expected_counts = Deltas()
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                expected = evaluator.expected_cases(session, tenant_id, chunk, now, tz, code_map)
                stored = {
                    (r.indicator, r.encounter_id, r.key): r
                    for r in session.scalars(
                        sa.select(CaseRow).where(
                            CaseRow.tenant_id == tenant_id, CaseRow.encounter_id.in_(chunk)
                        )
                    )
                }
                for encounter_id, cases in expected.items():
                    for case in cases:
                        report.cases += 1
                        expected_counts.add(case.indicator, case.department, case.period_date,
                                            case.status, +1)
                        row = stored.pop((case.indicator, encounter_id, case.key), None)
                        if row is None:
                            report.differences.append(
                                f"{tenant_id} {case.indicator} {case.key}: missing case ({case.status})"
                            )
                        elif (row.status, row.period_date, row.department) != (
                            case.status.value, case.period_date, case.department,
                        ):
                            report.differences.append(
                                f"{tenant_id} {case.indicator} {case.key}: stored "
                                f"{row.status}/{row.period_date}/{row.department}, expected "
                                f"{case.status}/{case.period_date}/{case.department}"
                            )
                for (indicator, _, key), row in stored.items():
                    report.differences.append(
                        f"{tenant_id} {indicator} {key}: stored case ({row.status}) should not exist"
                    )
                report.episodes += len(chunk)
                if progress:
                    progress(min(start + 500, len(ids)), len(ids))
            counters: dict[CounterKey, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
            for row in session.scalars(sa.select(CounterRow).where(CounterRow.tenant_id == tenant_id)):
                counters[(row.indicator, row.department, row.day)] = [
                    row.numerator, row.denominator, row.excluded, row.pending,
                ]
            want = expected_counts.nonzero()
            for key in sorted(set(want) | {k for k, v in counters.items() if any(v)}):
                got = counters.get(key, [0, 0, 0, 0])
                if want.get(key, [0, 0, 0, 0]) != got:
                    indicator, department, day = key
                    report.differences.append(
                        f"{tenant_id} {indicator} {department} {day}: counters "
                        f"(num, den, excl, pend) = {tuple(got)}, recomputed {tuple(want.get(key, [0, 0, 0, 0]))}"
                    )
        if len(report.differences) >= limit:
            break
    return report


def recompute(runtime: Runtime, *, tenant: str | None = None, progress: Progress | None = None) -> int:
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
            for start in range(0, len(ids), 500):
                changes = evaluator.reevaluate(
                    session, tenant_id, ids[start : start + 500], now, tz, code_map
                )
                total += sum(1 for c in changes if c.new is not None)
                if progress:
                    progress(min(start + 500, len(ids)), len(ids))
    return total
