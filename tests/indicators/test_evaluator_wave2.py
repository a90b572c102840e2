"""The second wave's evaluator semantics, one at a time, on the pure evaluator: value
thresholds with unit conversion, durations, counts, rises, outcomes, day-counted
denominators, follow-up and patient × month cases, and the catalogue a tenant reports."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.indicators.definitions import DefinitionError, Indicator, parse_definition
from services.indicators.evaluator import Catalogue, FactIndex, evaluate, evaluate_patient
from shared.clinical import Case, CaseStatus, Coding, Episode, Fact, FactKind
from tests.indicators.test_evaluator_support import LOINC, SH, T0, at, c, episode

ICD9 = "http://hl7.org/fhir/sid/icd-9-cm"
DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"


def definition(**fields: Any) -> Indicator:
    base: dict[str, Any] = {
        "code": "X-TEST",
        "name": {"zh": "测试", "en": "test"},
        "source": "test",
        "version": "1",
        "period": "discharge",
        "direction": "higher_is_better",
        "unit": "percent",
    }
    return parse_definition(base | fields)


def hb(rid: str, value: float | None, unit: str | None, time: datetime = T0) -> Fact:
    return Fact(
        "Observation",
        rid,
        FactKind.OBSERVATION,
        status="final",
        time=time,
        codes=(c(LOINC, "718-7"),),
        value=value,
        unit=unit,
    )


def proc(rid: str, code: str, time: datetime | None, end: datetime | None = None) -> Fact:
    return Fact(
        "Procedure", rid, FactKind.PROCEDURE, "completed", time, end, codes=(Coding(ICD9, code),)
    )


HB_AT_LEAST_110 = definition(
    numerator=[
        {
            "observation": {
                "code": "hb",
                "value": {"at_least": 110, "unit": "g/L", "quantity": "haemoglobin"},
            }
        }
    ],
    decided_by="discharge",
    valuesets={"hb": {"loinc": ["718-7"]}},
)
DISCHARGED = episode(discharge=at(days=2))


@pytest.mark.parametrize(
    ("value", "unit", "met"),
    [
        (110, "g/L", True),
        (109.9, "g/L", False),
        (11.0, "g/dL", True),
        (10.9, "g/dL", False),
        (6.83, "mmol/L", True),  # 110.03 g/L
        (6.82, "mmol/L", False),  # 109.87 g/L
        (110, "g/l", True),  # a common spelling
        (120, "mg", False),  # not a concentration: matches nothing
        (120, None, False),
        (None, "g/L", False),
    ],
)
def test_value_thresholds_convert_units(value, unit, met):
    [case] = evaluate(HB_AT_LEAST_110, DISCHARGED, [hb("o1", value, unit)], at(days=3))
    assert case.status is (CaseStatus.NUMERATOR if met else CaseStatus.DENOMINATOR)


@given(st.floats(min_value=50, max_value=200, allow_nan=False))
def test_the_same_haemoglobin_in_any_unit_decides_alike(grams_per_litre):
    results = set()
    for value, unit in ((grams_per_litre, "g/L"), (grams_per_litre / 10, "g/dL")):
        [case] = evaluate(HB_AT_LEAST_110, DISCHARGED, [hb("o1", value, unit)], at(days=3))
        results.add(case.status)
    if abs(grams_per_litre - 110) > 1e-9:
        assert len(results) == 1


def test_an_unknown_unit_in_a_definition_is_refused():
    with pytest.raises(DefinitionError, match=r"numerator\.0\.observation\.value\.unit"):
        definition(
            numerator=[{"observation": {"value": {"at_least": 1, "unit": "furlong/fortnight"}}}],
            decided_by="discharge",
        )


def test_durations():
    ind = definition(
        case="resource",
        population={"each": [{"procedure": {"code": "ga", "longer_than": "2h"}}]},
        clock={"start": "resource.time"},
        numerator=[{"procedure": "ga"}],
        period="start",
        valuesets={"ga": {"icd9cm3": ["99.99"]}},
    )
    facts = [
        proc("long", "99.99", at(0), at(121)),
        proc("exact", "99.99", at(0), at(120)),  # not longer than 2 h
        proc("open", "99.99", at(0)),  # no end: no duration
    ]
    assert [k.key for k in evaluate(ind, DISCHARGED, facts, at(days=3))] == ["Procedure/long"]


def med_request(rid: str, atc: str, category: str = "discharge") -> Fact:
    return Fact(
        "MedicationRequest",
        rid,
        FactKind.MEDICATION_REQUEST,
        "active",
        T0,
        codes=(c("atc", atc),),
        categories=(
            Coding("http://terminology.hl7.org/CodeSystem/medicationrequest-category", category),
        ),
    )


@pytest.mark.parametrize(
    ("drugs", "status"),
    [
        (["N05AH04"], CaseStatus.NUMERATOR),
        (["N05AH04", "N05AH04"], CaseStatus.NUMERATOR),  # one drug ordered twice
        (["N05AH04", "N05AN01"], CaseStatus.NUMERATOR),  # lithium is not an antipsychotic
        (["N05AH04", "N05AX08"], CaseStatus.DENOMINATOR),
        (["N05AN01"], None),  # no antipsychotic at discharge: not a case
    ],
)
def test_pit_2026_39_counts_distinct_antipsychotics(drugs, status):
    ind = Catalogue.load().indicator("PIT-2026-39")
    schizophrenia = Fact(
        "Condition", "c1", FactKind.CONDITION, time=T0, codes=(c("icd10", "F20.0"),)
    )
    facts = [schizophrenia, *(med_request(f"m{i}", d) for i, d in enumerate(drugs))]
    cases = evaluate(ind, DISCHARGED, facts, at(days=3))
    assert [k.status for k in cases] == ([status] if status else [])


def test_rise_needs_two_values_and_an_increase():
    ind = Catalogue.load().indicator("PIT-2026-12")

    def barthel(rid: str, value: float, minutes: int) -> Fact:
        return Fact(
            "Observation",
            rid,
            FactKind.OBSERVATION,
            "final",
            at(minutes),
            codes=(Coding("http://snomed.info/sct", "273302005"),),
            value=value,
            unit="{score}",
        )

    now = at(days=3)
    assert evaluate(ind, DISCHARGED, [barthel("a", 40, 0)], now) == []
    [up] = evaluate(ind, DISCHARGED, [barthel("a", 40, 0), barthel("b", 65, 600)], now)
    [same] = evaluate(ind, DISCHARGED, [barthel("a", 40, 0), barthel("b", 40, 600)], now)
    assert (up.status, same.status) == (CaseStatus.NUMERATOR, CaseStatus.DENOMINATOR)


@pytest.mark.parametrize(
    ("disposition", "deceased", "survived"),
    [
        ("home", None, True),
        ("exp", None, False),
        ("home", at(days=2), False),  # died at discharge
        ("home", at(days=2, minutes=1), True),  # died after discharge: survived the stay
    ],
)
def test_pit_2026_11_survival(disposition, deceased, survived):
    ind = Catalogue.load().indicator("PIT-2026-11")
    ep = replace(DISCHARGED, disposition=Coding(DISPOSITION, disposition), deceased_at=deceased)
    facts = [
        Fact("Condition", "c1", FactKind.CONDITION, time=T0, codes=(c("icd10", "I46.9"),)),
        proc("cpr", "99.60", at(5)),
    ]
    [case] = evaluate(ind, ep, facts, at(days=3))
    assert case.status is (CaseStatus.NUMERATOR if survived else CaseStatus.DENOMINATOR)


def test_a_local_disposition_code_mapped_to_exp_is_a_death():
    from services.indicators.valuesets import CodeMap

    ind = Catalogue.load().indicator("PIT-2026-11")
    ep = replace(DISCHARGED, disposition=Coding("urn:local:lyfs", "5"))
    facts = [
        Fact("Condition", "c1", FactKind.CONDITION, time=T0, codes=(c("icd10", "I46.9"),)),
        proc("cpr", "99.60", at(5)),
    ]
    code_map = CodeMap([("urn:local:lyfs", "5", Coding(DISPOSITION, "exp"))])
    [case] = evaluate(ind, ep, facts, at(days=3), code_map=code_map)
    assert case.status is CaseStatus.DENOMINATOR


DEVICE_DAYS = definition(
    kind="ratio",
    population={"encounter_class": ["IMP"]},
    denominator_days={"procedure": "line"},
    numerator_events={"each": [{"condition": "clabsi"}]},
    period="discharge",
    unit="per_1000",
    direction="lower_is_better",
    valuesets={"line": {"icd9cm3": ["38.93"]}, "clabsi": {"icd10": ["T80.2"]}},
)


def day_cases(cases: list[Case]) -> list[tuple[date | None, CaseStatus]]:
    return [(k.period_date, k.status) for k in cases if k.key.startswith("days/")]


def test_device_days_count_each_local_day_once():
    # Inserted 10 Mar 10:00 local, removed 13 Mar: 10, 11, 12 March; a second line on
    # 11 March adds no day.
    lines = [
        proc("l1", "38.93", at(0), at(days=3)),
        proc("l2", "38.93", at(days=1), at(days=1, hours=5)),
    ]
    cases = evaluate(DEVICE_DAYS, DISCHARGED, lines, at(days=5), SH)
    assert day_cases(cases) == [
        (date(2026, 3, 10), CaseStatus.DENOMINATOR),
        (date(2026, 3, 11), CaseStatus.DENOMINATOR),
        (date(2026, 3, 12), CaseStatus.DENOMINATOR),
    ]


def test_an_open_line_has_today_pending_until_midnight():
    open_ep = episode()
    cases = evaluate(DEVICE_DAYS, open_ep, [proc("l1", "38.93", at(0))], at(days=1), SH)
    assert day_cases(cases) == [
        (date(2026, 3, 10), CaseStatus.DENOMINATOR),
        (date(2026, 3, 11), CaseStatus.PENDING),
    ]
    pending = [k for k in cases if k.status is CaseStatus.PENDING]
    assert pending[0].decide_at == datetime(2026, 3, 12, tzinfo=SH)


def test_a_line_within_one_day_counts_that_day():
    cases = evaluate(
        DEVICE_DAYS, DISCHARGED, [proc("l1", "38.93", at(0), at(hours=3))], at(days=5), SH
    )
    assert day_cases(cases) == [(date(2026, 3, 10), CaseStatus.DENOMINATOR)]


def patient_cases(code: str, chains: list[tuple[Episode, list[Fact]]], now: datetime) -> list[Case]:
    ind = Catalogue.load().indicator(code)
    return evaluate_patient(ind, [(e, FactIndex(f)) for e, f in chains], now, SH, "P1")


def test_followup_fact_variant_and_window_edges():
    ind = definition(
        case="followup",
        population={"encounter_class": ["IMP"], "requires": [{"procedure": "op"}]},
        followup={"from": "discharge", "within": "30d", "fact": {"condition": "complication"}},
        valuesets={"op": {"icd9cm3": ["80.0"]}, "complication": {"icd10": ["T81.4"]}},
    )
    index = DISCHARGED
    later = episode("E2", "AMB", arrival=at(days=20), discharge=at(days=20, hours=1))

    def with_complication(when: datetime) -> list[Case]:
        infection = Fact(
            "Condition", "c1", FactKind.CONDITION, time=when, codes=(c("icd10", "T81.4"),)
        )
        chains = [(index, FactIndex([proc("op", "80.0", at(60))])), (later, FactIndex([infection]))]
        return evaluate_patient(ind, chains, at(days=60), SH, "P1")

    assert [k.status for k in with_complication(at(days=32))] == [CaseStatus.NUMERATOR]  # day 30
    assert [k.status for k in with_complication(at(days=32, minutes=1))] == [CaseStatus.DENOMINATOR]
    assert [k.status for k in with_complication(at(days=1))] == [CaseStatus.DENOMINATOR]


def test_patient_months_are_pending_until_the_month_ends():
    dialysis = episode("D1", "AMB", arrival=at(days=1), discharge=at(days=1, hours=4))
    facts = [
        proc("hd", "39.95", at(days=1, minutes=10)),
        hb("o1", 115, "g/L", at(days=1, minutes=20)),
    ]
    march_open = patient_cases("PIT-2026-03", [(dialysis, facts)], at(days=5))
    [case] = march_open
    assert (case.key, case.status, case.period_date) == (
        "P1/2026-03",
        CaseStatus.PENDING,
        date(2026, 3, 31),
    )
    assert case.decide_at == datetime(2026, 4, 1, tzinfo=SH)
    [decided] = patient_cases("PIT-2026-03", [(dialysis, facts)], datetime(2026, 4, 1, tzinfo=SH))
    assert decided.status is CaseStatus.NUMERATOR


def test_a_month_without_haemoglobin_is_not_a_case():
    dialysis = episode("D1", "AMB", arrival=at(days=1), discharge=at(days=1, hours=4))
    assert (
        patient_cases("PIT-2026-03", [(dialysis, [proc("hd", "54.98", at(days=1))])], at(days=40))
        == []
    )


class TestReportedCatalogue:
    def test_a_2026_tenant_reports_no_2025_definition(self):
        cat = Catalogue.load()
        codes = cat.reported("2026")
        assert "PIT-2026-23" in codes and "AMR-PATHOGEN" in codes
        assert not any(code.startswith("PIT-2025-") for code in codes)

    def test_a_2025_tenant_reports_2025_versions_instead_of_their_successors(self):
        cat = Catalogue.load()
        codes = cat.reported("2025")
        assert "PIT-2025-24" in codes and "PIT-2026-23" not in codes
        # Items 2025 did not change have no 2025 file: the 2026 definition reports them.
        assert "PIT-2026-03" in codes
        assert "NIT-2026-VII" in codes

    def test_all_reports_everything(self):
        cat = Catalogue.load()
        assert cat.reported("all") == frozenset(i.code for i in cat)
