"""Assessment within 24 h of admission (NIT-2026-III-A, PIT-2026-40) and VTE
prophylaxis decided at discharge (NIT-2026-III-B)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.indicators.valuesets import CodeMap
from shared.clinical import CaseStatus, Episode, Fact

from .test_evaluator_support import (
    ICD10,
    ICD10_CN,
    LOCAL,
    MIDNIGHT_EDGE,
    QC,
    T0,
    at,
    c,
    condition,
    episode,
    med_admin,
    med_request,
    one,
    procedure,
    risk,
    run,
)

VTE_A = "NIT-2026-III-A"
VTE_B = "NIT-2026-III-B"
PSYCH = "PIT-2026-40"


class TestVteRiskAssessedWithin24h:
    def test_assessed_exactly_at_24h_is_numerator(self) -> None:
        case = one(VTE_A, episode(), [risk("r1", "vte-risk", at(hours=24))], at(hours=30))
        assert case.status is CaseStatus.NUMERATOR
        assert (case.clock_start, case.clock_stop, case.deadline) == (
            T0,
            at(hours=24),
            at(hours=24),
        )
        assert case.period_date == date(2026, 3, 10)

    def test_assessed_one_minute_late_is_denominator(self) -> None:
        late = risk("r1", "vte-risk", at(hours=24, minutes=1))
        case = one(VTE_A, episode(), [late], at(hours=30))
        assert case.status is CaseStatus.DENOMINATOR

    def test_unassessed_open_episode_is_pending_until_the_deadline(self) -> None:
        case = one(VTE_A, episode(), [], at(hours=23, minutes=59))
        assert case.status is CaseStatus.PENDING
        assert (case.decide_at, case.at_risk_at) == (at(hours=24), at(hours=16))

    def test_unassessed_at_the_deadline_is_denominator(self) -> None:
        case = one(VTE_A, episode(), [], at(hours=24))
        assert case.status is CaseStatus.DENOMINATOR
        assert case.decide_at is None

    def test_late_documentation_of_a_timely_assessment_flips_the_case(self) -> None:
        assert one(VTE_A, episode(), [], at(hours=40)).status is CaseStatus.DENOMINATOR
        case = one(VTE_A, episode(), [risk("r1", "vte-risk", at(hours=5))], at(hours=40))
        assert case.status is CaseStatus.NUMERATOR

    def test_discharged_at_20h_unassessed_is_excluded_before_the_deadline(self) -> None:
        case = one(VTE_A, episode(discharge=at(hours=20)), [], at(hours=21))
        assert case.status is CaseStatus.EXCLUDED

    def test_discharged_at_exactly_24h_unassessed_is_excluded(self) -> None:
        case = one(VTE_A, episode(discharge=at(hours=24)), [], at(hours=48))
        assert case.status is CaseStatus.EXCLUDED

    def test_short_stay_with_assessment_is_counted(self) -> None:
        ep = episode(discharge=at(hours=20))
        case = one(VTE_A, ep, [risk("r1", "vte-risk", at(hours=3))], at(hours=21))
        assert case.status is CaseStatus.NUMERATOR

    def test_discharged_after_24h_unassessed_is_denominator(self) -> None:
        case = one(VTE_A, episode(discharge=at(hours=30)), [], at(hours=31))
        assert case.status is CaseStatus.DENOMINATOR

    def test_other_assessments_do_not_stop_the_clock(self) -> None:
        case = one(VTE_A, episode(), [risk("r1", "psych-risk", at(hours=1))], at(hours=2))
        assert case.status is CaseStatus.PENDING

    def test_minors_and_non_inpatients_are_not_cases(self) -> None:
        assert run(VTE_A, episode(birth=date(2010, 1, 1)), [], at(hours=1)) == []
        assert run(VTE_A, episode(cls="EMER"), [], at(hours=1)) == []

    def test_unknown_birth_date_is_included(self) -> None:
        case = one(VTE_A, episode(birth=None), [], at(hours=1))
        assert case.status is CaseStatus.PENDING

    def test_eighteenth_birthday_is_judged_on_the_local_arrival_date(self) -> None:
        # Arrival 2026-04-01 00:30 Shanghai = 2026-03-31 16:30 UTC; born 2008-04-01.
        ep = episode(arrival=MIDNIGHT_EDGE, birth=date(2008, 4, 1))
        case = one(VTE_A, ep, [], MIDNIGHT_EDGE + timedelta(hours=1))
        assert case.period_date == date(2026, 4, 1)
        assert run(VTE_A, ep, [], MIDNIGHT_EDGE + timedelta(hours=1), tz=ZoneInfo("UTC")) == []

    def test_local_assessment_code_through_code_map(self) -> None:
        from shared.clinical import Fact, FactKind

        local = Fact(
            "RiskAssessment",
            "r1",
            FactKind.RISK_ASSESSMENT,
            time=at(hours=2),
            codes=(c(LOCAL, "Caprini"),),
        )
        cm = CodeMap([(LOCAL, "Caprini", c(QC, "vte-risk"))])
        case = one(VTE_A, episode(), [local], at(hours=3), code_map=cm)
        assert case.status is CaseStatus.NUMERATOR


class TestPsychiatricRiskAssessment:
    def dx(self, code: str = "F32.900", system: str = ICD10_CN) -> Fact:
        return condition("c1", c(system, code), T0)

    def test_assessed_at_24h_is_numerator_and_one_minute_over_is_not(self) -> None:
        ok = one(PSYCH, episode(), [self.dx(), risk("r1", "psych-risk", at(hours=24))], at(days=2))
        late = one(
            PSYCH,
            episode(),
            [self.dx(), risk("r1", "psych-risk", at(hours=24, minutes=1))],
            at(days=2),
        )
        assert ok.status is CaseStatus.NUMERATOR
        assert late.status is CaseStatus.DENOMINATOR

    def test_pending_then_denominator_without_assessment(self) -> None:
        assert one(PSYCH, episode(), [self.dx()], at(hours=23)).status is CaseStatus.PENDING
        assert one(PSYCH, episode(), [self.dx()], at(hours=24)).status is CaseStatus.DENOMINATOR

    @pytest.mark.parametrize("code", ["F20", "F25.1", "F31.900x002", "F39"])
    def test_f20_to_f39_are_in(self, code: str) -> None:
        case = one(PSYCH, episode(), [self.dx(code, ICD10)], at(hours=1))
        assert case.status is CaseStatus.PENDING

    @pytest.mark.parametrize("code", ["F19.2", "F40.0", "F03"])
    def test_other_f_codes_are_out(self, code: str) -> None:
        assert run(PSYCH, episode(), [self.dx(code, ICD10)], at(hours=1)) == []

    def test_short_unassessed_stay_is_excluded(self) -> None:
        case = one(PSYCH, episode(discharge=at(hours=10)), [self.dx()], at(hours=11))
        assert case.status is CaseStatus.EXCLUDED

    def test_no_age_limit(self) -> None:
        case = one(PSYCH, episode(birth=date(2012, 5, 1)), [self.dx()], at(hours=1))
        assert case.status is CaseStatus.PENDING


def high_risk(time: datetime = T0, level: str = "high") -> Fact:
    return risk("r1", "vte-risk", time, level=level)


class TestVteProphylaxis:
    DISCHARGE = at(days=5)

    def closed(self) -> Episode:
        return episode(discharge=self.DISCHARGE)

    def test_open_episode_is_pending_on_its_arrival_date(self) -> None:
        case = one(VTE_B, episode(), [high_risk()], at(days=1))
        assert case.status is CaseStatus.PENDING
        assert case.period_date == date(2026, 3, 10)
        assert (case.decide_at, case.deadline, case.clock_start) == (None, None, None)

    def test_pending_even_when_the_numerator_is_already_met(self) -> None:
        facts = [
            high_risk(),
            risk("b1", "bleeding-risk", at(10)),
            med_admin("a1", c("atc", "B01AB05"), at(60)),
        ]
        case = one(VTE_B, episode(), facts, at(days=1))
        assert case.status is CaseStatus.PENDING

    def test_discharged_with_bleeding_assessment_and_anticoagulant_after(self) -> None:
        facts = [
            high_risk(),
            risk("b1", "bleeding-risk", at(10)),
            med_admin("a1", c("atc", "B01AB05"), at(60)),
        ]
        case = one(VTE_B, self.closed(), facts, at(days=6))
        assert case.status is CaseStatus.NUMERATOR
        assert case.period_date == date(2026, 3, 15)

    def test_moderate_risk_and_mechanical_prophylaxis(self) -> None:
        facts = [
            high_risk(level="moderate"),
            risk("b1", "bleeding-risk", at(10)),
            procedure("p1", c(QC, "vte-mechanical-prophylaxis"), at(30)),
        ]
        case = one(VTE_B, self.closed(), facts, at(days=6))
        assert case.status is CaseStatus.NUMERATOR

    def test_prophylaxis_before_the_risk_assessment_does_not_count(self) -> None:
        facts = [
            high_risk(at(60)),
            risk("b1", "bleeding-risk", at(10)),
            med_admin("a1", c("atc", "B01AX05"), at(30)),
        ]
        case = one(VTE_B, self.closed(), facts, at(days=6))
        assert case.status is CaseStatus.DENOMINATOR

    def test_missing_bleeding_assessment_is_denominator(self) -> None:
        facts = [high_risk(), med_admin("a1", c("atc", "B01AF01"), at(60))]
        case = one(VTE_B, self.closed(), facts, at(days=6))
        assert case.status is CaseStatus.DENOMINATOR

    def test_low_risk_is_not_a_case(self) -> None:
        assert run(VTE_B, self.closed(), [high_risk(level="low")], at(days=6)) == []

    def test_order_counts_only_without_administration_of_the_class(self) -> None:
        bleeding = risk("b1", "bleeding-risk", at(10))
        order_after = med_request("q1", c("atc", "B01AB05"), at(90))
        only_order = one(VTE_B, self.closed(), [high_risk(), bleeding, order_after], at(days=6))
        assert only_order.status is CaseStatus.NUMERATOR
        # An administration of the class exists (before the assessment), so the order's
        # authoredOn is not used: no prophylaxis after the assessment.
        early_admin = med_admin("a1", c("atc", "B01AB05"), at(-30))
        case = one(
            VTE_B, self.closed(), [high_risk(), bleeding, order_after, early_admin], at(days=6)
        )
        assert case.status is CaseStatus.DENOMINATOR

    def test_discharge_after_local_midnight(self) -> None:
        ep = episode(discharge=MIDNIGHT_EDGE)
        case = one(VTE_B, ep, [high_risk()], MIDNIGHT_EDGE + timedelta(hours=1))
        assert case.status is CaseStatus.DENOMINATOR
        assert case.period_date == date(2026, 4, 1)

    def test_open_episode_without_arrival_yields_no_case(self) -> None:
        assert run(VTE_B, episode(arrival=None), [high_risk()], at(days=1)) == []
