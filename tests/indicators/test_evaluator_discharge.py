"""Discharge-decided rates: NIT-2026-V, NIT-2026-VI (ratio), NIT-2026-IX."""

from __future__ import annotations

from datetime import date, timedelta

from services.indicators.valuesets import CodeMap
from shared.clinical import CaseStatus

from .test_evaluator_support import (
    LOCAL,
    MIDNIGHT_EDGE,
    QC,
    SNOMED,
    T0,
    adverse_event,
    at,
    c,
    episode,
    med_admin,
    med_request,
    one,
    procedure,
    run,
)

IV_INFUSION = "NIT-2026-V"
ADVERSE = "NIT-2026-VI"
REOP = "NIT-2026-IX"
IV = c(SNOMED, "47625008")
ORAL = c(SNOMED, "26643006")


class TestIntravenousInfusion:
    def test_open_episode_is_pending_under_its_arrival_date(self) -> None:
        case = one(IV_INFUSION, episode(), [med_admin("a1", route=IV)], at(hours=2))
        assert case.status is CaseStatus.PENDING
        assert case.period_date == date(2026, 3, 10)
        assert case.decide_at is None

    def test_discharged_with_iv_administration_is_numerator_on_discharge_date(self) -> None:
        ep = episode(discharge=at(days=3))
        case = one(IV_INFUSION, ep, [med_admin("a1", route=IV)], at(days=4))
        assert case.status is CaseStatus.NUMERATOR
        assert case.period_date == date(2026, 3, 13)

    def test_oral_only_is_denominator(self) -> None:
        ep = episode(discharge=at(days=3))
        case = one(IV_INFUSION, ep, [med_admin("a1", route=ORAL)], at(days=4))
        assert case.status is CaseStatus.DENOMINATOR

    def test_iv_order_counts(self) -> None:
        ep = episode(discharge=at(days=3))
        facts = [med_admin("a1", route=ORAL), med_request("r1", route=IV)]
        case = one(IV_INFUSION, ep, facts, at(days=4))
        assert case.status is CaseStatus.NUMERATOR

    def test_retracted_administration_counts_nothing(self) -> None:
        ep = episode(discharge=at(days=3))
        facts = [med_admin("a1", route=IV, status="entered-in-error")]
        case = one(IV_INFUSION, ep, facts, at(days=4))
        assert case.status is CaseStatus.DENOMINATOR

    def test_local_route_code_through_code_map(self) -> None:
        ep = episode(discharge=at(days=3))
        facts = [med_admin("a1", route=c(LOCAL, "静滴"))]
        cm = CodeMap([(LOCAL, "静滴", c("snomed", "47625008"))])
        case = one(IV_INFUSION, ep, facts, at(days=4), code_map=cm)
        assert case.status is CaseStatus.NUMERATOR

    def test_discharge_after_local_midnight(self) -> None:
        case = one(IV_INFUSION, episode(discharge=MIDNIGHT_EDGE), [], MIDNIGHT_EDGE)
        assert case.period_date == date(2026, 4, 1)

    def test_emergency_and_cancelled_episodes_are_not_cases(self) -> None:
        assert run(IV_INFUSION, episode(cls="EMER", discharge=at(hours=5)), [], at(days=1)) == []
        assert run(IV_INFUSION, episode(status="cancelled"), [], at(days=1)) == []


class TestAdverseEventRatio:
    def test_two_case_sets_told_apart_by_status(self) -> None:
        ep = episode(discharge=at(days=4))
        facts = [
            adverse_event("ae2", MIDNIGHT_EDGE, "potential"),
            adverse_event("ae1", at(hours=5), "actual"),
            adverse_event("ae3", at(hours=6), None),
        ]
        cases = run(ADVERSE, ep, facts, at(days=30))
        got = [(k.key, k.status, k.period_date, k.details["set"]) for k in cases]
        assert got == [
            ("AdverseEvent/ae1", CaseStatus.NUMERATOR, date(2026, 3, 10), "numerator"),
            ("AdverseEvent/ae2", CaseStatus.NUMERATOR, date(2026, 4, 1), "numerator"),
            ("E1", CaseStatus.DENOMINATOR, date(2026, 3, 14), "denominator"),
        ]

    def test_open_inpatient_is_a_pending_denominator_case(self) -> None:
        cases = run(ADVERSE, episode(), [], at(hours=3))
        assert [(k.key, k.status, k.period_date) for k in cases] == [
            ("E1", CaseStatus.PENDING, date(2026, 3, 10))
        ]

    def test_events_in_non_inpatient_episodes_still_count(self) -> None:
        cases = run(
            ADVERSE,
            episode(cls="EMER", discharge=at(hours=4)),
            [adverse_event("ae1", T0)],
            at(days=1),
        )
        assert [(k.key, k.status) for k in cases] == [("AdverseEvent/ae1", CaseStatus.NUMERATOR)]

    def test_event_without_date_files_under_arrival(self) -> None:
        cases = run(ADVERSE, episode(cls="EMER"), [adverse_event("ae1", None)], at(days=1))
        assert [(k.key, k.period_date) for k in cases] == [("AdverseEvent/ae1", date(2026, 3, 10))]


class TestUnplannedReoperation:
    SURGERY = c(SNOMED, "387713003")

    def test_reoperation_is_numerator_on_discharge_date(self) -> None:
        facts = [
            procedure("p1", c("icd9cm3", "47.01"), at(hours=3), category=self.SURGERY),
            procedure(
                "p2",
                c("icd9cm3", "54.12"),
                at(days=2),
                category=[self.SURGERY, c(QC, "unplanned-reoperation")],
            ),
        ]
        case = one(REOP, episode(discharge=at(days=7)), facts, at(days=8))
        assert case.status is CaseStatus.NUMERATOR
        assert case.period_date == date(2026, 3, 17)

    def test_surgery_without_reoperation_is_denominator(self) -> None:
        facts = [procedure("p1", c("icd9cm3", "47.01"), at(hours=3), category=self.SURGERY)]
        case = one(REOP, episode(discharge=at(days=7)), facts, at(days=8))
        assert case.status is CaseStatus.DENOMINATOR

    def test_open_surgical_episode_is_pending(self) -> None:
        facts = [procedure("p1", c("icd9cm3", "47.01"), at(hours=3), category=self.SURGERY)]
        case = one(REOP, episode(), facts, at(days=1))
        assert case.status is CaseStatus.PENDING

    def test_episode_without_surgery_is_not_a_case(self) -> None:
        facts = [procedure("p1", c(SNOMED, "71388002"), at(hours=3))]
        assert run(REOP, episode(discharge=at(days=7)), facts, at(days=8)) == []

    def test_not_done_surgery_does_not_qualify(self) -> None:
        facts = [procedure("p1", (), at(hours=3), category=self.SURGERY, status="not-done")]
        assert run(REOP, episode(discharge=at(days=7)), facts, at(days=8)) == []

    def test_pending_moves_to_discharge_date_when_decided(self) -> None:
        facts = [procedure("p1", (), at(hours=3), category=self.SURGERY)]
        ep_open = episode(arrival=MIDNIGHT_EDGE - timedelta(days=2))
        pending = one(REOP, ep_open, facts, MIDNIGHT_EDGE)
        decided = one(
            REOP, episode(arrival=ep_open.arrival, discharge=MIDNIGHT_EDGE), facts, MIDNIGHT_EDGE
        )
        assert pending.period_date == date(2026, 3, 30)
        assert decided.period_date == date(2026, 4, 1)
