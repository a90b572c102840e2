"""Cross-cutting evaluator properties: determinism, order independence, the catalogue,
void episodes, the custom escape hatch."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.indicators.definitions import CATALOGUE_DIR, DefinitionError
from services.indicators.evaluator import (
    Catalogue,
    CustomInput,
    FactIndex,
    custom_indicator,
    evaluate,
)
from shared.clinical import Case, CaseStatus, Coding, Episode, Fact, FactKind

from .test_evaluator_support import (
    ATC,
    ICD9,
    ICD10,
    LOINC,
    QC,
    SNOMED,
    T0,
    at,
    c,
    catalogue,
    condition,
    critical_image,
    episode,
    procedure,
)

EXPECTED_CODES = {
    "PIT-2026-31",
    "PIT-2026-23",
    "NIT-2026-I-DNT",
    "NIT-2026-III-A",
    "NIT-2026-III-B",
    "NIT-2026-IV-1H",
    "NIT-2026-IV-3H",
    "NIT-2026-IV-6H",
    "NIT-2026-V",
    "NIT-2026-VI",
    "NIT-2026-VII",
    "NIT-2026-IX",
    "PIT-2026-40",
    "AMR-PATHOGEN",
}

# A small vocabulary that hits every indicator of the catalogue.
CODES: list[tuple[FactKind, Coding]] = [
    (FactKind.CONDITION, Coding(ICD10, "I21.0")),
    (FactKind.CONDITION, Coding(ICD10, "I63.9")),
    (FactKind.CONDITION, Coding(ICD10, "R57.2")),
    (FactKind.CONDITION, Coding(ICD10, "F32.1")),
    (FactKind.PROCEDURE, Coding(ICD9, "00.66")),
    (FactKind.PROCEDURE, Coding(QC, "preop-mdt")),
    (FactKind.PROCEDURE, Coding(QC, "vte-mechanical-prophylaxis")),
    (FactKind.MEDICATION_ADMINISTRATION, Coding(ATC, "B01AD02")),
    (FactKind.MEDICATION_ADMINISTRATION, Coding(ATC, "J01DD04")),
    (FactKind.MEDICATION_ADMINISTRATION, Coding(ATC, "B05BB01")),
    (FactKind.MEDICATION_ADMINISTRATION, Coding(ATC, "C01CA03")),
    (FactKind.MEDICATION_ADMINISTRATION, Coding(ATC, "B01AB05")),
    (FactKind.MEDICATION_REQUEST, Coding(ATC, "J01CA04")),
    (FactKind.OBSERVATION, Coding(LOINC, "600-7")),
    (FactKind.OBSERVATION, Coding(LOINC, "2524-7")),
    (FactKind.RISK_ASSESSMENT, Coding(QC, "vte-risk")),
    (FactKind.RISK_ASSESSMENT, Coding(QC, "bleeding-risk")),
    (FactKind.RISK_ASSESSMENT, Coding(QC, "psych-risk")),
    (FactKind.ADVERSE_EVENT, Coding(QC, "fall")),
]
TYPE_BY_KIND = {
    FactKind.CONDITION: "Condition",
    FactKind.PROCEDURE: "Procedure",
    FactKind.MEDICATION_ADMINISTRATION: "MedicationAdministration",
    FactKind.MEDICATION_REQUEST: "MedicationRequest",
    FactKind.OBSERVATION: "Observation",
    FactKind.RISK_ASSESSMENT: "RiskAssessment",
    FactKind.ADVERSE_EVENT: "AdverseEvent",
    FactKind.COMMUNICATION: "Communication",
}

minutes = st.one_of(st.none(), st.integers(min_value=-600, max_value=3000))


@st.composite
def facts_strategy(draw: st.DrawFn) -> list[Fact]:
    out: list[Fact] = []
    for i in range(draw(st.integers(min_value=0, max_value=14))):
        kind, coding = draw(st.sampled_from(CODES))
        m = draw(minutes)
        extra: dict[str, object] = {}
        if kind is FactKind.OBSERVATION:
            extra["value"] = draw(st.sampled_from([None, 1.0, 2.0, 3.5]))
            extra["issued"] = None if m is None else at(m + 5)
        if kind is FactKind.RISK_ASSESSMENT:
            extra["interpretation"] = (
                Coding(
                    "http://terminology.hl7.org/CodeSystem/risk-probability",
                    draw(st.sampled_from(["low", "moderate", "high"])),
                ),
            )
        if kind is FactKind.ADVERSE_EVENT:
            extra["actuality"] = draw(st.sampled_from(["actual", "potential", None]))
        out.append(
            Fact(
                TYPE_BY_KIND[kind],
                f"r{i}",
                kind,
                status=draw(st.sampled_from(["completed", "entered-in-error", "not-done", None])),
                time=None if m is None else at(m),
                codes=(coding,),
                categories=draw(
                    st.sampled_from(
                        [
                            (),
                            (Coding(SNOMED, "387713003"),),
                            (Coding(QC, "surgery-level-4"),),
                            (Coding(QC, "prophylaxis"),),
                        ]
                    )
                ),
                route=draw(st.sampled_from([(), (Coding(SNOMED, "47625008"),)])),
                **extra,  # type: ignore[arg-type]
            )
        )
    # Critical images and notifications exercise per-resource cases.
    for j in range(draw(st.integers(min_value=0, max_value=2))):
        m = draw(minutes)
        out.append(critical_image(f"img{j}", None if m is None else at(m)))
        n = draw(minutes)
        out.append(
            Fact(
                "Communication",
                f"com{j}",
                FactKind.COMMUNICATION,
                status="completed",
                time=None if n is None else at(n),
                about=(f"Observation/img{j}",),
            )
        )
    return out


@st.composite
def episodes(draw: st.DrawFn) -> Episode:
    stay = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=60 * 24 * 5)))
    return episode(
        cls=draw(st.sampled_from(["IMP", "EMER", "AMB"])),
        discharge=None if stay is None else at(stay),
        birth=draw(st.sampled_from([None, date(1960, 1, 1), date(2015, 1, 1)])),
    )


def _snapshot(cases: Sequence[Case]) -> list[tuple[Case, dict[str, str]]]:
    return [(k, dict(k.details)) for k in cases]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ep=episodes(),
    facts=facts_strategy(),
    now_min=st.integers(min_value=0, max_value=8000),
    seed=st.integers(),
)
def test_evaluate_all_is_deterministic_and_order_independent(
    ep: Episode, facts: list[Fact], now_min: int, seed: int
) -> None:
    now = at(now_min)
    cat = catalogue()
    first = cat.evaluate_all(ep, facts, now)
    shuffled = list(facts)
    random.Random(seed).shuffle(shuffled)
    # Duplicates of the same resource version must not change anything either.
    again = cat.evaluate_all(ep, shuffled + shuffled[: len(shuffled) // 2], now)
    assert _snapshot(first) == _snapshot(again)
    assert _snapshot(first) == _snapshot(cat.evaluate_all(ep, facts, now))
    keys = [(k.indicator, k.key) for k in first]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    for case in first:
        assert case.period_date is not None
        assert (case.decide_at is None) or case.status is CaseStatus.PENDING
        per_indicator = evaluate(cat.indicator(case.indicator), ep, shuffled, now)
        assert case in per_indicator


class TestCatalogue:
    def test_ships_the_first_catalogue_and_the_pinned_second_wave(self) -> None:
        codes = {ind.code for ind in catalogue()}
        assert codes >= EXPECTED_CODES
        assert {"PIT-2026-03", "PIT-2026-11", "PIT-2026-39", "PIT-2026-47"} <= codes
        assert len(catalogue()) == len(list(CATALOGUE_DIR.glob("*.yaml")))

    def test_read_api_views(self) -> None:
        defn = catalogue().get("PIT-2026-23")
        assert defn is not None
        assert (defn.name.zh, defn.window_minutes, defn.unit, defn.target) == (
            "急性STEMI到院90分钟内行直接PCI比例",
            90,
            "percent",
            0.85,
        )
        assert catalogue().get("NOPE") is None
        codes = [d.code for d in catalogue().definitions()]
        assert codes == sorted(codes)

    def test_no_shipped_indicator_needs_python(self) -> None:
        assert all(ind.spec.custom is None for ind in catalogue())

    def test_evaluate_all_sorts_by_indicator_then_key(self) -> None:
        facts = [
            condition("c1", c(ICD10, "I21.0"), T0),
            procedure("p1", c(ICD9, "00.66"), at(30)),
            critical_image("o1", T0),
        ]
        cases = catalogue().evaluate_all(episode(), facts, at(60))
        first_wave = [k for k in cases if k.indicator in EXPECTED_CODES]
        keys = [(k.indicator, k.key) for k in cases]
        assert keys == sorted(keys)
        assert [(k.indicator, k.key, k.status) for k in first_wave] == [
            ("NIT-2026-III-A", "E1", CaseStatus.PENDING),
            ("NIT-2026-V", "E1", CaseStatus.PENDING),
            ("NIT-2026-VI", "E1", CaseStatus.PENDING),
            ("PIT-2026-23", "E1", CaseStatus.NUMERATOR),
            ("PIT-2026-31", "Observation/o1", CaseStatus.DENOMINATOR),
        ]

    @pytest.mark.parametrize("status", ["cancelled", "entered-in-error"])
    def test_void_episodes_yield_nothing(self, status: str) -> None:
        facts = [condition("c1", c(ICD10, "I21.0"), T0), critical_image("o1", T0)]
        assert catalogue().evaluate_all(episode(status=status), facts, at(60)) == []

    def test_fact_index_drops_retracted_and_orders_by_time(self) -> None:
        facts = [
            procedure("b", (), at(10)),
            procedure("a", (), None),
            procedure("c", (), at(5), status="entered-in-error"),
            procedure("d", (), at(1), status="not-done"),
            procedure("e", (), at(1)),
        ]
        idx = FactIndex(facts)
        assert [f.resource_id for f in idx.of(FactKind.PROCEDURE)] == ["e", "b", "a"]


@custom_indicator
def _one_case_per_episode(inp: CustomInput) -> list[Case]:
    ep = inp.episode
    assert ep.arrival is not None
    n = len(inp.facts.of(FactKind.PROCEDURE))
    return [
        Case(
            inp.indicator.code,
            ep.encounter_id,
            ep.encounter_id,
            ep.department,
            CaseStatus.NUMERATOR if n else CaseStatus.DENOMINATOR,
            ep.arrival.astimezone(inp.tz).date(),
        )
    ]


CUSTOM_YAML = """\
code: X-CUSTOM
name: {{zh: 自定义, en: Custom}}
source: test
version: "1"
custom: {ref}
period: discharge
direction: higher_is_better
unit: percent
"""


class TestCustomEscapeHatch:
    def test_registered_function_decides(self, tmp_path: Path) -> None:
        ref = f"{__name__}:_one_case_per_episode"
        (tmp_path / "X-CUSTOM.yaml").write_text(CUSTOM_YAML.format(ref=ref), encoding="utf-8")
        cat = Catalogue.load(tmp_path)
        assert len(cat) == len(catalogue()) + 1
        cases = evaluate(cat.indicator("X-CUSTOM"), episode(), [procedure("p", (), T0)], at(1))
        assert [(k.key, k.status) for k in cases] == [("E1", CaseStatus.NUMERATOR)]

    def test_unregistered_function_is_refused_naming_file_and_field(self, tmp_path: Path) -> None:
        (tmp_path / "X-CUSTOM.yaml").write_text(
            CUSTOM_YAML.format(ref="os.path:join"), encoding="utf-8"
        )
        with pytest.raises(DefinitionError, match=r"^X-CUSTOM\.yaml: custom: .*not registered"):
            Catalogue.load(tmp_path)


def test_hot_path_budget() -> None:
    """All 14 indicators over a busy episode stay well under a millisecond per indicator."""
    import time

    facts: list[Fact] = []
    for i in range(400):
        facts.append(
            Fact(
                "Observation",
                f"o{i}",
                FactKind.OBSERVATION,
                status="final",
                time=at(i),
                codes=(Coding(LOINC, "2345-7"),),
                value=5.0,
            )
        )
    facts += [condition("c1", c(ICD10, "R57.2"), T0), critical_image("img", T0)]
    cat = catalogue()
    ep = episode()
    cat.evaluate_all(ep, facts, at(500))
    started = time.perf_counter()
    for _ in range(20):
        cat.evaluate_all(ep, facts, at(500) + timedelta(seconds=1))
    per_call = (time.perf_counter() - started) / 20
    assert per_call < 0.05, per_call
