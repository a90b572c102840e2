"""Septic-shock bundles NIT-2026-IV-1H / -3H / -6H."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from shared.clinical import CaseStatus, Fact

from .test_evaluator_support import (
    ICD10,
    ICD10_CN,
    MIDNIGHT_EDGE,
    SNOMED,
    T0,
    at,
    c,
    condition,
    episode,
    med_admin,
    med_request,
    observation,
    one,
    run,
)

H1, H3, H6 = "NIT-2026-IV-1H", "NIT-2026-IV-3H", "NIT-2026-IV-6H"


def shock(time: datetime = T0, system: str = ICD10, code: str = "R57.2") -> Fact:
    return condition("shock", c(system, code), time)


def lactate(rid: str, minutes: float, value: float | None = 1.5, code: str = "2524-7") -> Fact:
    return observation(rid, c("loinc", code), at(minutes), value=value)


def culture(minutes: float) -> Fact:
    return observation("bc", c("loinc", "600-7"), at(minutes))


def antibiotic(minutes: float, rid: str = "abx") -> Fact:
    return med_admin(rid, c("atc", "J01DD04"), at(minutes))


def fluid(minutes: float) -> Fact:
    return med_admin("fluid", c("atc", "B05BB01"), at(minutes))


def pressor(minutes: float) -> Fact:
    return med_admin("ne", c("atc", "C01CA03"), at(minutes))


def bundle(last: float = 40, **override: float) -> list[Fact]:
    """A complete 1 h bundle whose last element (the vasopressor) is at ``last`` minutes."""
    t = {"lactate": 5, "culture": 10, "antibiotic": 20, "fluid": 30, "pressor": last} | override
    return [
        shock(),
        lactate("lac1", t["lactate"]),
        culture(t["culture"]),
        antibiotic(t["antibiotic"]),
        fluid(t["fluid"]),
        pressor(t["pressor"]),
    ]


class TestOneHourBundle:
    def test_complete_bundle_is_decided_early(self) -> None:
        case = one(H1, episode(cls="EMER"), bundle(40), at(45))
        assert case.status is CaseStatus.NUMERATOR
        assert (case.clock_start, case.clock_stop, case.deadline) == (T0, at(40), at(60))
        assert case.decide_at is None
        assert case.period_date == date(2026, 3, 10)

    def test_last_element_exactly_at_one_hour_is_numerator(self) -> None:
        case = one(H1, episode(), bundle(60), at(90))
        assert case.status is CaseStatus.NUMERATOR

    def test_last_element_one_minute_over_is_denominator(self) -> None:
        case = one(H1, episode(), bundle(61), at(90))
        assert case.status is CaseStatus.DENOMINATOR

    def test_incomplete_is_pending_until_deadline_then_denominator(self) -> None:
        facts = bundle()[:-1]  # no vasopressor
        pending = one(H1, episode(), facts, at(59))
        assert pending.status is CaseStatus.PENDING
        assert (pending.decide_at, pending.at_risk_at) == (at(60), at(40))
        assert pending.details == {"missing": "vasopressor"}
        done = one(H1, episode(), facts, at(60))
        assert done.status is CaseStatus.DENOMINATOR

    def test_late_documentation_completes_the_bundle(self) -> None:
        facts = bundle()[:-1]
        assert one(H1, episode(), facts, at(120)).status is CaseStatus.DENOMINATOR
        case = one(H1, episode(), [*facts, pressor(50)], at(120))
        assert case.status is CaseStatus.NUMERATOR

    def test_elements_from_six_hours_before_time_zero_count(self) -> None:
        case = one(H1, episode(), bundle(lactate=-360), at(90))
        assert case.status is CaseStatus.NUMERATOR

    def test_elements_earlier_than_six_hours_before_do_not(self) -> None:
        case = one(H1, episode(), bundle(lactate=-361), at(90))
        assert case.status is CaseStatus.DENOMINATOR
        assert case.details == {"missing": "lactate"}

    def test_clock_stop_is_never_before_time_zero(self) -> None:
        facts = bundle(lactate=-60, culture=-50, antibiotic=-40, fluid=-30, pressor=-20)
        case = one(H1, episode(), facts, at(5))
        assert case.status is CaseStatus.NUMERATOR
        assert case.clock_stop == T0

    def test_culture_after_the_first_antibiotic_fails(self) -> None:
        case = one(H1, episode(), bundle(culture=25, antibiotic=20), at(90))
        assert case.status is CaseStatus.DENOMINATOR
        assert case.details == {"missing": "blood_culture"}

    def test_culture_at_the_same_minute_as_the_antibiotic_counts(self) -> None:
        case = one(H1, episode(), bundle(culture=20, antibiotic=20), at(90))
        assert case.status is CaseStatus.NUMERATOR

    def test_antibiotic_order_is_used_only_without_administrations(self) -> None:
        facts = [f for f in bundle() if f.resource_id != "abx"]
        order = med_request("abx-order", c("atc", "J01CR05"), at(15))
        case = one(H1, episode(), [*facts, order], at(90))
        assert case.status is CaseStatus.NUMERATOR
        # With an administration at 70 min, the order no longer stands for the drug.
        with_admin = one(H1, episode(), [*facts, order, antibiotic(70, rid="abx2")], at(90))
        assert with_admin.status is CaseStatus.DENOMINATOR

    def test_time_zero_is_the_shock_condition_time(self) -> None:
        facts = [shock(at(30)), *bundle(80)[1:]]  # everything within 1 h of T0 + 30 min
        case = one(H1, episode(), facts, at(200))
        assert case.clock_start == at(30)
        assert case.status is CaseStatus.NUMERATOR

    @pytest.mark.parametrize(
        ("system", "code"), [(ICD10, "R65.21"), (ICD10_CN, "R57.200x001"), (SNOMED, "76571007")]
    )
    def test_shock_codes(self, system: str, code: str) -> None:
        facts = [shock(system=system, code=code), *bundle()[1:]]
        case = one(H1, episode(), facts, at(90))
        assert case.status is CaseStatus.NUMERATOR

    def test_no_shock_no_case_and_untimed_shock_no_case(self) -> None:
        assert run(H1, episode(), bundle()[1:], at(90)) == []
        untimed = condition("shock", c(ICD10, "R57.2"), None)
        assert run(H1, episode(), [untimed, *bundle()[1:]], at(90)) == []

    def test_period_is_local_date_of_time_zero(self) -> None:
        case = one(H1, episode(), [shock(MIDNIGHT_EDGE)], MIDNIGHT_EDGE)
        assert case.period_date == date(2026, 4, 1)


class TestThreeHourBundle:
    def test_no_vasopressor_needed(self) -> None:
        facts = [f for f in bundle() if f.resource_id != "ne"]
        case = one(H3, episode(), [*facts[:-1], fluid(180)], at(200))
        assert case.status is CaseStatus.NUMERATOR
        assert case.clock_stop == at(180)

    def test_three_hours_and_one_minute_is_denominator(self) -> None:
        facts = [f for f in bundle() if f.resource_id not in ("ne", "fluid")]
        case = one(H3, episode(), [*facts, fluid(181)], at(200))
        assert case.status is CaseStatus.DENOMINATOR


class TestSixHourBundle:
    def test_low_first_lactate_needs_no_repeat(self) -> None:
        case = one(H6, episode(), bundle(300), at(400))
        assert case.status is CaseStatus.NUMERATOR

    def test_high_first_lactate_needs_a_second_one(self) -> None:
        facts = [*bundle(300, lactate=10)[:1], lactate("lac1", 10, value=4.2), *bundle(300)[2:]]
        pending = one(H6, episode(), facts, at(300))
        assert pending.status is CaseStatus.PENDING
        assert pending.details == {"missing": "repeat_lactate"}
        assert one(H6, episode(), facts, at(360)).status is CaseStatus.DENOMINATOR
        met = one(H6, episode(), [*facts, lactate("lac2", 360, value=2.4, code="32693-4")], at(400))
        assert met.status is CaseStatus.NUMERATOR
        assert met.clock_stop == at(360)

    def test_repeat_after_six_hours_is_denominator(self) -> None:
        facts = [
            shock(),
            lactate("lac1", 10, value=3.0),
            *bundle(300)[2:],
            lactate("lac2", 361, value=1.0),
        ]
        case = one(H6, episode(), facts, at(400))
        assert case.status is CaseStatus.DENOMINATOR

    def test_lactate_of_exactly_two_needs_no_repeat(self) -> None:
        facts = [shock(), lactate("lac1", 10, value=2.0), *bundle(300)[2:]]
        case = one(H6, episode(), facts, at(400))
        assert case.status is CaseStatus.NUMERATOR

    def test_deadline_and_at_risk(self) -> None:
        case = one(H6, episode(), [shock()], at(1))
        assert (case.deadline, case.at_risk_at, case.decide_at) == (
            at(360),
            T0 + timedelta(hours=4),
            at(360),
        )
