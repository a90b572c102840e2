"""Door-to-X and notification clocks: PIT-2026-31, PIT-2026-23, NIT-2026-I-DNT."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.indicators.valuesets import CodeMap
from shared.clinical import CaseStatus, Fact

from .test_evaluator_support import (
    ICD9,
    ICD9_CN,
    ICD10,
    ICD10_CM,
    ICD10_CN,
    LOCAL,
    MIDNIGHT_EDGE,
    SNOMED,
    T0,
    at,
    c,
    communication,
    condition,
    critical_image,
    episode,
    med_admin,
    med_request,
    observation,
    one,
    procedure,
    run,
)

PIT31 = "PIT-2026-31"
STEMI = "PIT-2026-23"
DNT = "NIT-2026-I-DNT"


class TestCriticalImagingNotification:
    def test_notified_exactly_at_ten_minutes_is_numerator(self) -> None:
        facts = [critical_image("o1", T0), communication("m1", "Observation/o1", at(10))]
        case = one(PIT31, episode(), facts, at(60))
        assert case.key == "Observation/o1"
        assert case.status is CaseStatus.NUMERATOR
        assert (case.clock_start, case.clock_stop, case.deadline) == (T0, at(10), at(10))
        assert case.decide_at is None
        assert case.period_date == date(2026, 3, 10)

    def test_one_minute_over_is_denominator(self) -> None:
        facts = [critical_image("o1", T0), communication("m1", "Observation/o1", at(11))]
        case = one(PIT31, episode(), facts, at(60))
        assert case.status is CaseStatus.DENOMINATOR

    def test_no_notification_pending_before_deadline_with_at_risk_two_thirds(self) -> None:
        case = one(PIT31, episode(), [critical_image("o1", T0)], at(9))
        assert case.status is CaseStatus.PENDING
        assert case.decide_at == at(10)
        assert case.at_risk_at == T0 + timedelta(minutes=10) * 2 / 3

    def test_no_notification_at_deadline_is_denominator(self) -> None:
        case = one(PIT31, episode(), [critical_image("o1", T0)], at(10))
        assert case.status is CaseStatus.DENOMINATOR
        assert case.decide_at is None

    def test_late_documentation_flips_breach_to_met(self) -> None:
        image = critical_image("o1", T0)
        before = one(PIT31, episode(), [image], at(30))
        # The call was made at 4 min but charted at 30 min: the case is re-decided.
        after = one(PIT31, episode(), [image, communication("m1", "Observation/o1", at(4))], at(31))
        assert before.status is CaseStatus.DENOMINATOR
        assert after.status is CaseStatus.NUMERATOR

    def test_earliest_completed_communication_stops_the_clock(self) -> None:
        facts = [
            critical_image("o1", T0),
            communication("m0", "Observation/o1", at(2), status="in-progress"),
            communication("m2", "Observation/o1", at(25)),
            communication("m1", "Observation/o1", at(8)),
            communication("m3", "Observation/other", at(1)),
        ]
        case = one(PIT31, episode(), facts, at(60))
        assert case.clock_stop == at(8)
        assert case.status is CaseStatus.NUMERATOR

    @pytest.mark.parametrize(
        "ref", ["https://his.example/fhir/Observation/o1", "Observation/o1/_history/3"]
    )
    def test_absolute_and_versioned_about_references(self, ref: str) -> None:
        facts = [critical_image("o1", T0), communication("m1", ref, at(5))]
        case = one(PIT31, episode(), facts, at(60))
        assert case.status is CaseStatus.NUMERATOR

    def test_each_critical_result_is_its_own_case(self) -> None:
        facts = [
            critical_image("o2", at(30)),
            critical_image("o1", T0),
            communication("m1", ["Observation/o1", "Observation/o2"], at(35)),
        ]
        cases = run(PIT31, episode(), facts, at(60))
        assert [(k.key, k.status) for k in cases] == [
            ("Observation/o1", CaseStatus.DENOMINATOR),
            ("Observation/o2", CaseStatus.NUMERATOR),
        ]

    def test_only_imaging_results_with_critical_interpretation(self) -> None:
        lab = observation(
            "o1",
            c("loinc", "2823-3"),
            T0,
            issued=T0,
            category=c("observation-category", "laboratory"),
            interpretation=c("observation-interpretation", "HH"),
        )
        normal = observation(
            "o2",
            c("loinc", "24627-2"),
            T0,
            issued=T0,
            category=c("observation-category", "imaging"),
            interpretation=c("observation-interpretation", "N"),
        )
        assert run(PIT31, episode(), [lab, normal], at(60)) == []

    def test_missing_issued_falls_back_to_effective_time(self) -> None:
        case = one(PIT31, episode(), [critical_image("o1", None, time=T0)], at(5))
        assert case.clock_start == T0
        assert case.details == {"start": "effective"}

    def test_no_time_at_all_is_no_case(self) -> None:
        assert run(PIT31, episode(), [critical_image("o1", None)], at(5)) == []

    def test_local_midnight_files_under_shanghai_date(self) -> None:
        facts = [critical_image("o1", MIDNIGHT_EDGE)]
        sh = one(PIT31, episode(), facts, MIDNIGHT_EDGE)
        utc = one(PIT31, episode(), facts, MIDNIGHT_EDGE, tz=ZoneInfo("UTC"))
        assert sh.period_date == date(2026, 4, 1)
        assert utc.period_date == date(2026, 3, 31)

    def test_local_interpretation_code_matches_through_code_map(self) -> None:
        local = observation(
            "o1",
            c("loinc", "24627-2"),
            T0,
            issued=T0,
            category=c("observation-category", "imaging"),
            interpretation=c(LOCAL, "危急"),
        )
        cm = CodeMap([(LOCAL, "危急", c("observation-interpretation", "AA"))])
        assert run(PIT31, episode(), [local], at(5)) == []
        case = one(PIT31, episode(), [local], at(5), code_map=cm)
        assert case.status is CaseStatus.PENDING

    def test_department_comes_from_the_episode(self) -> None:
        case = one(PIT31, episode(dept="D-RAD"), [critical_image("o1", T0)], at(5))
        assert case.department == "D-RAD"


def stemi(system: str = ICD10, code: str = "I21.0") -> Fact:
    return condition("c1", c(system, code), T0)


def pci(minutes: float, system: str = ICD9, code: str = "00.66", rid: str = "p1") -> Fact:
    return procedure(rid, c(system, code), at(minutes))


class TestStemiDoorToPci:
    def test_pci_exactly_at_90_minutes_is_numerator(self) -> None:
        case = one(STEMI, episode(cls="EMER"), [stemi(), pci(90)], at(120))
        assert case.status is CaseStatus.NUMERATOR
        assert case.key == "E1"
        assert (case.clock_start, case.clock_stop) == (T0, at(90))
        assert (case.deadline, case.at_risk_at, case.decide_at) == (at(90), at(60), None)

    def test_pci_at_91_minutes_is_denominator(self) -> None:
        case = one(STEMI, episode(), [stemi(), pci(91)], at(120))
        assert case.status is CaseStatus.DENOMINATOR

    def test_first_pci_counts(self) -> None:
        facts = [stemi(), pci(200, rid="p2"), pci(80, rid="p1")]
        case = one(STEMI, episode(), facts, at(300))
        assert case.clock_stop == at(80)

    @pytest.mark.parametrize("now", [at(30), at(90), at(600)])
    def test_open_stemi_without_pci_stays_pending_past_deadline(self, now: datetime) -> None:
        case = one(STEMI, episode(), [stemi()], now)
        assert case.status is CaseStatus.PENDING
        assert (case.deadline, case.at_risk_at) == (at(90), at(60))
        assert case.decide_at is None

    def test_closed_stemi_without_pci_is_not_a_case(self) -> None:
        assert run(STEMI, episode(discharge=at(hours=30)), [stemi()], at(hours=31)) == []

    def test_late_pci_documentation_decides_the_pending_case(self) -> None:
        ep = episode()
        assert one(STEMI, ep, [stemi()], at(100)).status is CaseStatus.PENDING
        case = one(STEMI, ep, [stemi(), pci(70)], at(100))
        assert case.status is CaseStatus.NUMERATOR

    def test_outpatient_and_non_stemi_episodes_are_not_cases(self) -> None:
        assert run(STEMI, episode(cls="AMB"), [stemi(), pci(30)], at(60)) == []
        nstemi = condition("c1", c(ICD10, "I21.4"), T0)
        assert run(STEMI, episode(), [nstemi, pci(30)], at(60)) == []

    @pytest.mark.parametrize(
        ("system", "code"),
        [
            (ICD10, "I21.0"),
            (ICD10_CM, "I21.09"),
            (ICD10_CN, "I21.000x001"),
            (ICD10, "i213"),
            (SNOMED, "401303003"),
        ],
    )
    def test_stemi_matches_through_every_alias_uri(self, system: str, code: str) -> None:
        case = one(STEMI, episode(), [stemi(system, code), pci(30)], at(60))
        assert case.status is CaseStatus.NUMERATOR

    @pytest.mark.parametrize(
        ("system", "code"),
        [(ICD9, "00.66"), (ICD9_CN, "00.6600x004"), (ICD9, "36.07"), (SNOMED, "415070008")],
    )
    def test_pci_matches_through_every_alias_uri(self, system: str, code: str) -> None:
        case = one(STEMI, episode(), [stemi(), pci(30, system, code)], at(60))
        assert case.status is CaseStatus.NUMERATOR

    def test_local_codes_match_through_code_map(self) -> None:
        facts = [condition("c1", c(LOCAL, "XB-01"), T0), procedure("p1", c(LOCAL, "PCI"), at(45))]
        cm = CodeMap(
            [(LOCAL, "XB-01", c("icd10", "I21.1")), (LOCAL, "PCI", c("snomed", "415070008"))]
        )
        assert run(STEMI, episode(), facts, at(60)) == []
        case = one(STEMI, episode(), facts, at(60), code_map=cm)
        assert case.status is CaseStatus.NUMERATOR

    @pytest.mark.parametrize("status", ["entered-in-error", "not-done"])
    def test_retracted_or_not_done_pci_contributes_nothing(self, status: str) -> None:
        void = procedure("p1", c(ICD9, "00.66"), at(30), status=status)
        case = one(STEMI, episode(), [stemi(), void], at(60))
        assert case.status is CaseStatus.PENDING

    def test_arrival_after_local_midnight_files_next_day(self) -> None:
        ep = episode(arrival=MIDNIGHT_EDGE)
        facts = [
            condition("c1", c(ICD10, "I21.0"), MIDNIGHT_EDGE),
            procedure("p1", c(ICD9, "00.66"), MIDNIGHT_EDGE + timedelta(minutes=50)),
        ]
        case = one(STEMI, ep, facts, MIDNIGHT_EDGE + timedelta(hours=2))
        assert case.period_date == date(2026, 4, 1)
        assert one(STEMI, ep, facts, MIDNIGHT_EDGE, tz=ZoneInfo("UTC")).period_date == date(
            2026, 3, 31
        )

    def test_unknown_arrival_is_no_case(self) -> None:
        assert run(STEMI, episode(arrival=None), [stemi(), pci(30)], at(60)) == []


class TestStrokeDoorToNeedle:
    def stroke(self) -> Fact:
        return condition("c1", c(ICD10_CN, "I63.900"), T0)

    def test_needle_exactly_at_60_minutes_is_numerator(self) -> None:
        facts = [self.stroke(), med_admin("a1", c("atc", "B01AD02"), at(60))]
        case = one(DNT, episode(cls="EMER"), facts, at(90))
        assert case.status is CaseStatus.NUMERATOR
        assert (case.deadline, case.at_risk_at) == (at(60), at(40))

    def test_needle_at_61_minutes_is_denominator(self) -> None:
        facts = [self.stroke(), med_admin("a1", c("atc", "B01AD11"), at(61))]
        case = one(DNT, episode(), facts, at(90))
        assert case.status is CaseStatus.DENOMINATOR

    def test_order_without_administration_does_not_count(self) -> None:
        facts = [self.stroke(), med_request("r1", c("atc", "B01AD02"), at(20))]
        open_case = one(DNT, episode(), facts, at(90))
        assert open_case.status is CaseStatus.PENDING
        assert run(DNT, episode(discharge=at(days=3)), facts, at(days=4)) == []

    def test_stroke_without_thrombolysis_vanishes_at_discharge(self) -> None:
        assert run(DNT, episode(discharge=at(days=5)), [self.stroke()], at(days=6)) == []

    def test_snomed_stroke_and_urokinase(self) -> None:
        facts = [
            condition("c1", c(SNOMED, "422504002"), T0),
            med_admin("a1", c("atc", "B01AD04"), at(45)),
        ]
        case = one(DNT, episode(), facts, at(90))
        assert case.status is CaseStatus.NUMERATOR

    def test_haemorrhagic_stroke_is_not_a_case(self) -> None:
        facts = [
            condition("c1", c(ICD10, "I61.0"), T0),
            med_admin("a1", c("atc", "B01AD02"), at(45)),
        ]
        assert run(DNT, episode(), facts, at(90)) == []


def test_utc_timestamps_are_required_to_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        run(STEMI, episode(), [], T0.replace(tzinfo=None))
    assert T0.tzinfo is UTC
