"""Decided at the clock start: NIT-2026-VII (per surgery) and AMR-PATHOGEN."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from services.indicators.evaluator import Catalogue, evaluate
from shared.clinical import CaseStatus, Coding, Fact

from .test_evaluator_support import (
    ICD9,
    ICD9_CN,
    MIDNIGHT_EDGE,
    QC,
    T0,
    at,
    c,
    episode,
    med_admin,
    med_request,
    observation,
    one,
    procedure,
    run,
)

MDT = "NIT-2026-VII"
AMR = "AMR-PATHOGEN"


def surgery(rid: str = "s1", minutes: float = 0) -> Fact:
    return procedure(rid, c(ICD9, "32.4"), at(minutes), category=c(QC, "surgery-level-4"))


def mdt(minutes: float) -> Fact:
    return procedure("mdt", c(QC, "preop-mdt"), at(minutes))


class TestPreoperativeMdt:
    def test_mdt_before_surgery_is_numerator(self) -> None:
        case = one(MDT, episode(), [surgery(), mdt(-60 * 24)], at(10))
        assert case.key == "Procedure/s1"
        assert case.status is CaseStatus.NUMERATOR
        assert (case.clock_start, case.deadline, case.at_risk_at, case.decide_at) == (
            T0,
            T0,
            None,
            None,
        )
        assert case.period_date == date(2026, 3, 10)

    def test_mdt_at_or_after_surgery_start_is_denominator(self) -> None:
        assert one(MDT, episode(), [surgery(), mdt(0)], at(10)).status is CaseStatus.DENOMINATOR
        assert one(MDT, episode(), [surgery(), mdt(30)], at(60)).status is CaseStatus.DENOMINATOR

    def test_no_mdt_is_decided_at_surgery_start(self) -> None:
        case = one(MDT, episode(), [surgery()], T0)
        assert case.status is CaseStatus.DENOMINATOR

    def test_scheduled_surgery_waits_for_its_start(self) -> None:
        case = one(MDT, episode(), [surgery(minutes=120)], at(0))
        assert case.status is CaseStatus.PENDING
        assert case.decide_at == at(120)

    def test_late_documentation_of_an_earlier_mdt_flips_the_case(self) -> None:
        assert one(MDT, episode(), [surgery()], at(600)).status is CaseStatus.DENOMINATOR
        case = one(MDT, episode(), [surgery(), mdt(-120)], at(600))
        assert case.status is CaseStatus.NUMERATOR

    def test_each_level4_surgery_is_a_case_and_others_are_not(self) -> None:
        facts = [
            surgery("s2", 300),
            surgery("s1", 0),
            mdt(-10),
            procedure("s3", c(ICD9, "47.01"), at(100)),
        ]
        cases = run(MDT, episode(), facts, at(400))
        assert [(k.key, k.status) for k in cases] == [
            ("Procedure/s1", CaseStatus.NUMERATOR),
            ("Procedure/s2", CaseStatus.NUMERATOR),
        ]

    def test_surgery_without_start_time_is_not_a_case(self) -> None:
        untimed = procedure("s1", (), None, category=c(QC, "surgery-level-4"))
        assert run(MDT, episode(), [untimed], at(10)) == []

    def test_surgery_after_local_midnight(self) -> None:
        s = procedure("s1", (), MIDNIGHT_EDGE, category=c(QC, "surgery-level-4"))
        case = one(MDT, episode(), [s], MIDNIGHT_EDGE)
        assert case.period_date == date(2026, 4, 1)

    def test_level4_catalogue_extended_by_a_deployment(self, tmp_path: Path) -> None:
        (tmp_path / "NIT-2026-VII.yaml").write_text(
            'extends: NIT-2026-VII\nvaluesets:\n  level-4-catalogue: {icd9cm3: ["32.4"]}\n',
            encoding="utf-8",
        )
        by_code = procedure("s9", c(ICD9_CN, "32.4100"), T0)
        assert run(MDT, episode(), [by_code], at(10)) == []
        ind = Catalogue.load(tmp_path).indicator(MDT)
        cases = evaluate(ind, episode(), [by_code], at(10))
        assert [(k.key, k.status) for k in cases] == [("Procedure/s9", CaseStatus.DENOMINATOR)]


def j01(
    rid: str, minutes: float, *, category: Coding | None = None, reason: Coding | None = None
) -> Fact:
    return med_admin(
        rid, c("atc", "J01CA04"), at(minutes), category=category or (), reason=reason or ()
    )


def specimen(minutes: float, code: str = "600-7") -> Fact:
    return observation("spec", c("loinc", code), at(minutes), status="registered")


class TestPathogenBeforeAntibacterials:
    def test_specimen_at_first_antibacterial_is_numerator(self) -> None:
        case = one(AMR, episode(), [j01("a1", 30), specimen(30)], at(60))
        assert case.status is CaseStatus.NUMERATOR
        assert (case.clock_start, case.deadline) == (at(30), at(30))
        assert case.period_date == date(2026, 3, 10)

    def test_specimen_one_minute_later_is_denominator(self) -> None:
        case = one(AMR, episode(), [j01("a1", 30), specimen(31)], at(60))
        assert case.status is CaseStatus.DENOMINATOR

    @pytest.mark.parametrize("code", ["630-4", "624-7", "6463-4"])
    def test_other_microbiology_tests(self, code: str) -> None:
        case = one(AMR, episode(), [j01("a1", 30), specimen(0, code)], at(60))
        assert case.status is CaseStatus.NUMERATOR

    def test_prophylaxis_by_category_or_reason_is_not_therapy(self) -> None:
        facts = [
            j01("p1", 0, category=c(QC, "prophylaxis")),
            j01("p2", 10, reason=c(QC, "prophylaxis")),
            j01("t1", 120),
            specimen(60),
        ]
        case = one(AMR, episode(), facts, at(200))
        assert case.clock_start == at(120)
        assert case.status is CaseStatus.NUMERATOR

    def test_prophylaxis_only_is_not_a_case(self) -> None:
        facts = [j01("p1", 0, category=c(QC, "prophylaxis"))]
        assert run(AMR, episode(), facts, at(200)) == []

    def test_order_time_used_only_without_administration(self) -> None:
        order = med_request("r1", c("atc", "J01DD04"), at(20))
        case = one(AMR, episode(), [order, specimen(25)], at(60))
        assert (case.clock_start, case.status) == (at(20), CaseStatus.DENOMINATOR)
        with_admin = one(AMR, episode(), [order, j01("a1", 40), specimen(25)], at(60))
        assert (with_admin.clock_start, with_admin.status) == (at(40), CaseStatus.NUMERATOR)

    def test_future_first_dose_is_pending_until_given(self) -> None:
        case = one(AMR, episode(), [j01("a1", 90)], at(30))
        assert (case.status, case.decide_at) == (CaseStatus.PENDING, at(90))

    def test_non_inpatients_are_not_cases(self) -> None:
        assert run(AMR, episode(cls="AMB"), [j01("a1", 30)], at(60)) == []

    def test_first_dose_after_local_midnight(self) -> None:
        dose = med_admin("a1", c("atc", "J01"), MIDNIGHT_EDGE)
        case = one(AMR, episode(), [dose], MIDNIGHT_EDGE)
        assert case.period_date == date(2026, 4, 1)
