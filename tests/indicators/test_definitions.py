"""Definition files: the schema, its error messages, the loader and overrides."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.indicators.definitions import (
    CATALOGUE_DIR,
    DefinitionError,
    IndicatorDefinition,
    format_duration,
    load_definitions,
    parse_definition,
    parse_duration,
    parse_time_ref,
)

STEMI_FILE = CATALOGUE_DIR / "PIT-2026-23.yaml"
#: How many definitions ship (one file each).
SHIPPED = len(list(CATALOGUE_DIR.glob("*.yaml")))


def stemi() -> dict[str, Any]:
    data = yaml.safe_load(STEMI_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def write(directory: Path, name: str, data: dict[str, Any] | str) -> Path:
    path = directory / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, data: dict[str, Any] | str, name: str = "PIT-2026-23.yaml") -> str:
    write(tmp_path, name, data)
    with pytest.raises(DefinitionError) as exc:
        load_definitions(tmp_path)
    return str(exc.value)


class TestDurations:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("90m", timedelta(minutes=90)),
            ("24h", timedelta(hours=24)),
            ("1h", timedelta(hours=1)),
            ("1h30m", timedelta(minutes=90)),
            ("2d", timedelta(days=2)),
            (" 10M ", timedelta(minutes=10)),
        ],
    )
    def test_valid(self, text: str, expected: timedelta) -> None:
        assert parse_duration(text) == expected

    @pytest.mark.parametrize("text", ["90x", "", "m", "-5m", "1.5h", "90", "h1", 90, None])
    def test_invalid(self, text: object) -> None:
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(text)

    @pytest.mark.parametrize("text", ["0m", "0h", "0d0h0m"])
    def test_non_positive(self, text: str) -> None:
        with pytest.raises(ValueError, match="must be positive"):
            parse_duration(text)

    def test_format_round_trips(self) -> None:
        assert [format_duration(parse_duration(t)) for t in ("90m", "24h", "60m", "10m")] == [
            "90m",
            "24h",
            "1h",
            "10m",
        ]

    def test_time_refs(self) -> None:
        assert parse_time_ref("start - 6h") == parse_time_ref("start-6h")
        assert parse_time_ref("start - 6h").offset == -timedelta(hours=6)
        assert parse_time_ref("resource.issued").name == "resource.issued"
        assert parse_time_ref("arrival + 30m").offset == timedelta(minutes=30)


class TestShippedCatalogue:
    def test_every_file_loads_and_is_named_after_its_code(self) -> None:
        loaded = load_definitions()
        assert len(loaded) == SHIPPED > 100
        assert sorted(p.stem for p in CATALOGUE_DIR.glob("*.yaml")) == [i.code for i in loaded]

    def test_every_definition_is_complete(self) -> None:
        for ind in load_definitions():
            spec = ind.spec
            assert all((spec.name.zh, spec.name.en, spec.source, spec.description)), spec.code
            # Every computed episode or resource case says when it is decided; follow-up,
            # patient-month, day-counted and manual definitions decide by their own rule.
            decides_itself = (
                spec.kind == "manual"
                or spec.case in ("followup", "patient_month")
                or spec.denominator_days is not None
            )
            assert (spec.decided_by is None) == decides_itself, spec.code
            assert spec.min_cases >= 1

    def test_table_parameters(self) -> None:
        by_code = {i.code: i.spec for i in load_definitions()}
        got = {
            code: (s.kind, s.case, s.period, s.direction, s.unit, s.target, s.window_minutes)
            for code, s in by_code.items()
        }
        assert {code: got[code] for code in FIRST_WAVE} == FIRST_WAVE

    def test_every_seed_code_cites_its_seed(self) -> None:
        for ind in load_definitions():
            spec = ind.spec
            seed = spec.code.split("-")[0:3]
            if seed[0] in ("NIT", "PIT"):
                assert "-".join(seed[:3]) in spec.source, spec.code

    def test_at_risk_defaults_to_two_thirds_and_stemi_says_60m(self) -> None:
        by_code = {i.code: i for i in load_definitions()}
        stemi_clock, vte_clock = by_code["PIT-2026-23"].clock, by_code["NIT-2026-III-A"].clock
        assert stemi_clock is not None
        assert vte_clock is not None
        assert stemi_clock.at_risk_after == timedelta(minutes=60)
        assert vte_clock.at_risk_after == timedelta(hours=16)

    def test_json_dump_parses_back_to_the_same_definition(self) -> None:
        for ind in load_definitions():
            dumped = ind.spec.model_dump(mode="json", exclude_none=True)
            again = parse_definition(dumped, f"{ind.code}.yaml")
            assert again.spec == ind.spec


class TestErrorsNameFileAndField:
    def test_bad_window(self, tmp_path: Path) -> None:
        data = stemi()
        data["clock"]["window"] = "90x"
        assert (
            load_error(tmp_path, data) == "PIT-2026-23.yaml: clock.window: invalid duration '90x'"
        )

    def test_non_positive_window(self, tmp_path: Path) -> None:
        data = stemi()
        data["clock"]["window"] = "0m"
        assert "PIT-2026-23.yaml: clock.window: duration must be positive" in load_error(
            tmp_path, data
        )

    def test_unknown_field(self, tmp_path: Path) -> None:
        data = stemi()
        data["clock"]["windw"] = "90m"
        assert "PIT-2026-23.yaml: clock.windw: unknown field" in load_error(tmp_path, data)

    def test_unknown_field_in_a_selector(self, tmp_path: Path) -> None:
        data = stemi()
        data["clock"]["stop"] = {"first": {"procedure": {"cod": "primary-pci"}}}
        assert "PIT-2026-23.yaml: clock.stop.first.procedure.cod: unknown field" in load_error(
            tmp_path, data
        )

    def test_unknown_code_system_alias(self, tmp_path: Path) -> None:
        data = stemi()
        data["valuesets"]["stemi"]["icd11"] = ["BA41"]
        msg = load_error(tmp_path, data)
        assert "PIT-2026-23.yaml: valuesets.stemi.icd11: unknown code system alias 'icd11'" in msg

    def test_undefined_value_set(self, tmp_path: Path) -> None:
        data = stemi()
        data["population"]["requires"][1] = {"procedure": "primary-pcy"}
        msg = load_error(tmp_path, data)
        assert (
            "PIT-2026-23.yaml: population.requires.1.procedure: undefined value set 'primary-pcy'"
            in msg
        )

    def test_duplicate_codes(self, tmp_path: Path) -> None:
        data = stemi()
        data["valuesets"]["primary-pci"]["icd9cm3"].append("0066")
        msg = load_error(tmp_path, data)
        assert "PIT-2026-23.yaml: valuesets.primary-pci.icd9cm3.3: duplicate code '0066'" in msg

    def test_unquoted_decimal_code(self, tmp_path: Path) -> None:
        text = STEMI_FILE.read_text(encoding="utf-8").replace('"00.66"', "00.66")
        msg = load_error(tmp_path, text)
        assert (
            "PIT-2026-23.yaml: valuesets.primary-pci.icd9cm3.0: write codes as quoted text" in msg
        )

    def test_unknown_time_point(self, tmp_path: Path) -> None:
        data = stemi()
        data["clock"]["start"] = "admission"
        assert "PIT-2026-23.yaml: clock.start: unknown time point 'admission'" in load_error(
            tmp_path, data
        )

    def test_resource_time_needs_resource_cases(self, tmp_path: Path) -> None:
        data = stemi()
        data["clock"]["start"] = "resource.time"
        assert "clock.start: unknown time point 'resource.time'" in load_error(tmp_path, data)

    def test_time_points_may_not_refer_to_each_other_in_a_circle(self, tmp_path: Path) -> None:
        data = stemi()
        data["times"] = {"pci": {"first": {"procedure": {"code": "primary-pci", "after": "start"}}}}
        data["clock"]["start"] = "pci"
        assert "refer to each other" in load_error(tmp_path, data)

    def test_selector_with_two_kinds(self, tmp_path: Path) -> None:
        data = stemi()
        data["clock"]["stop"] = {"first": {"procedure": "primary-pci", "condition": "stemi"}}
        msg = load_error(tmp_path, data)
        assert "PIT-2026-23.yaml: clock.stop.first: a selector names exactly one fact kind" in msg

    def test_enum_values(self, tmp_path: Path) -> None:
        data = stemi()
        data["unit"] = "per_10"
        assert "PIT-2026-23.yaml: unit: Input should be" in load_error(tmp_path, data)

    def test_stop_without_window(self, tmp_path: Path) -> None:
        data = stemi()
        del data["clock"]["window"]
        del data["clock"]["at_risk"]
        assert "PIT-2026-23.yaml: clock: a clock with a stop needs a window" in load_error(
            tmp_path, data
        )

    def test_at_risk_longer_than_window(self, tmp_path: Path) -> None:
        data = stemi()
        data["clock"]["at_risk"] = "2h"
        assert "clock: at_risk is longer than the window" in load_error(tmp_path, data)

    def test_missing_required_field(self, tmp_path: Path) -> None:
        data = stemi()
        del data["period"]
        assert "PIT-2026-23.yaml: period: Field required" in load_error(tmp_path, data)

    def test_code_must_match_file_name(self, tmp_path: Path) -> None:
        assert (
            "PIT-2026-99.yaml: code: code 'PIT-2026-23' does not match the file name"
            in load_error(tmp_path, stemi(), name="PIT-2026-99.yaml")
        )

    def test_invalid_yaml(self, tmp_path: Path) -> None:
        msg = load_error(tmp_path, "code: [unclosed\n", name="BAD.yaml")
        assert msg.startswith("BAD.yaml: line ")
        assert "not valid YAML" in msg

    def test_empty_unless_entry(self, tmp_path: Path) -> None:
        data = stemi()
        data["clock"]["stop"] = {"first": {"procedure": {"code": "primary-pci", "unless": [{}]}}}
        msg = load_error(tmp_path, data)
        assert "PIT-2026-23.yaml: clock.stop.first.procedure.unless.0: an unless entry needs" in msg

    def test_ratio_needs_numerator_events(self, tmp_path: Path) -> None:
        data = stemi()
        data["kind"] = "ratio"
        msg = load_error(tmp_path, data)
        assert "PIT-2026-23.yaml: numerator_events: kind: ratio needs numerator_events" in msg
        assert "PIT-2026-23.yaml: clock: kind: ratio takes no clock" in msg


class TestOverrides:
    def test_same_code_replaces_the_shipped_definition(self, tmp_path: Path) -> None:
        data = stemi()
        data["clock"]["window"] = "120m"
        data["target"] = 0.9
        write(tmp_path, "PIT-2026-23.yaml", data)
        by_code = {i.code: i for i in load_definitions(tmp_path)}
        assert len(by_code) == SHIPPED
        assert by_code["PIT-2026-23"].spec.window_minutes == 120
        assert by_code["PIT-2026-23"].source_file == "PIT-2026-23.yaml"

    def test_extends_amends_only_the_given_keys(self, tmp_path: Path) -> None:
        write(
            tmp_path,
            "PIT-2026-23.yaml",
            {"extends": "PIT-2026-23", "target": 0.9, "clock": {"window": "100m"}},
        )
        spec = {i.code: i for i in load_definitions(tmp_path)}["PIT-2026-23"].spec
        assert (spec.target, spec.window_minutes) == (0.9, 100)
        assert spec.clock is not None
        assert spec.clock.at_risk == timedelta(minutes=60)
        assert spec.valuesets == stemi()["valuesets"]

    def test_extends_errors_name_the_override_file(self, tmp_path: Path) -> None:
        write(tmp_path, "PIT-2026-23.yaml", {"extends": "PIT-2026-23", "clock": {"window": "soon"}})
        with pytest.raises(
            DefinitionError, match=r"^PIT-2026-23\.yaml: clock\.window: invalid duration 'soon'$"
        ):
            load_definitions(tmp_path)

    def test_extending_an_unknown_code(self, tmp_path: Path) -> None:
        write(tmp_path, "X-1.yaml", {"extends": "X-0"})
        with pytest.raises(
            DefinitionError, match=r"X-1\.yaml: extends: no shipped definition 'X-0'"
        ):
            load_definitions(tmp_path)

    def test_new_indicator_is_added(self, tmp_path: Path) -> None:
        data = copy.deepcopy(stemi())
        data["code"] = "LOCAL-STEMI-60"
        data["clock"]["window"] = "60m"
        data["clock"]["at_risk"] = "40m"
        write(tmp_path, "LOCAL-STEMI-60.yaml", data)
        codes = [i.code for i in load_definitions(tmp_path)]
        assert len(codes) == SHIPPED + 1
        assert "LOCAL-STEMI-60" in codes

    def test_two_files_with_one_code(self, tmp_path: Path) -> None:
        write(tmp_path, "A.yaml", {"extends": "PIT-2026-23", "target": 0.8})
        write(tmp_path, "B.yaml", {"extends": "PIT-2026-23", "target": 0.7})
        with pytest.raises(
            DefinitionError, match=r"^B\.yaml: code: 'PIT-2026-23' is also defined in A\.yaml"
        ):
            load_definitions(tmp_path)

    def test_missing_directory(self, tmp_path: Path) -> None:
        with pytest.raises(DefinitionError, match="not a directory"):
            load_definitions(tmp_path / "nope")


def test_model_is_strict_pydantic() -> None:
    assert IndicatorDefinition.model_config.get("extra") == "forbid"


#: The first catalogue's parameters, as docs/INDICATORS.md tabulates them.
FIRST_WAVE = {
    "PIT-2026-31": (
        "proportion",
        "resource",
        "start",
        "higher_is_better",
        "percent",
        1.0,
        10,
    ),
    "PIT-2026-23": (
        "proportion",
        "episode",
        "start",
        "higher_is_better",
        "percent",
        0.85,
        90,
    ),
    "NIT-2026-I-DNT": (
        "proportion",
        "episode",
        "start",
        "higher_is_better",
        "percent",
        0.8,
        60,
    ),
    "NIT-2026-III-A": (
        "proportion",
        "episode",
        "start",
        "higher_is_better",
        "percent",
        0.95,
        1440,
    ),
    "NIT-2026-III-B": (
        "proportion",
        "episode",
        "discharge",
        "higher_is_better",
        "percent",
        0.9,
        None,
    ),
    "NIT-2026-IV-1H": (
        "proportion",
        "episode",
        "start",
        "higher_is_better",
        "percent",
        0.9,
        60,
    ),
    "NIT-2026-IV-3H": (
        "proportion",
        "episode",
        "start",
        "higher_is_better",
        "percent",
        0.9,
        180,
    ),
    "NIT-2026-IV-6H": (
        "proportion",
        "episode",
        "start",
        "higher_is_better",
        "percent",
        0.9,
        360,
    ),
    "NIT-2026-V": (
        "proportion",
        "episode",
        "discharge",
        "lower_is_better",
        "percent",
        None,
        None,
    ),
    "NIT-2026-VI": (
        "ratio",
        "episode",
        "discharge",
        "higher_is_better",
        "per_100",
        2.5,
        None,
    ),
    "NIT-2026-VII": (
        "proportion",
        "resource",
        "start",
        "higher_is_better",
        "percent",
        1.0,
        None,
    ),
    "NIT-2026-IX": (
        "proportion",
        "episode",
        "discharge",
        "lower_is_better",
        "per_1000",
        1.8,
        None,
    ),
    "PIT-2026-40": (
        "proportion",
        "episode",
        "start",
        "higher_is_better",
        "percent",
        0.95,
        1440,
    ),
    "AMR-PATHOGEN": (
        "proportion",
        "episode",
        "start",
        "higher_is_better",
        "percent",
        0.5,
        None,
    ),
}
