"""The on-disk format round-trips; the config rejects what cannot be simulated."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest

import qcpulse.synth as synth
from qcpulse.synth import HospitalConfig, generate, read_ndjson, write_ndjson
from tests.synth._helpers import START


@pytest.fixture(scope="module")
def sends():
    return list(generate(HospitalConfig(arrivals_per_day=30), start=START, days=1, seed=2))


class TestNdjson:
    def test_round_trip_through_a_path(self, sends, tmp_path):
        path = tmp_path / "feed.ndjson"
        assert write_ndjson(sends, path) == len(sends)
        assert list(read_ndjson(path)) == sends
        assert list(read_ndjson(str(path))) == sends

    def test_text_and_binary_streams_write_the_same_bytes(self, sends):
        text, binary = io.StringIO(), io.BytesIO()
        write_ndjson(sends, text)
        write_ndjson(sends, binary)
        assert text.getvalue().encode("utf-8") == binary.getvalue()
        assert list(read_ndjson(io.BytesIO(binary.getvalue()))) == sends

    def test_one_json_object_per_line_with_the_documented_keys(self, sends):
        buf = io.StringIO()
        write_ndjson(sends, buf)
        lines = buf.getvalue().splitlines()
        assert len(lines) == len(sends)
        first = json.loads(lines[1])
        assert list(first) == ["at", "episode", "note", "bundle"]
        assert first["bundle"]["resourceType"] == "Bundle"
        assert "\\u" not in buf.getvalue()  # Chinese text is written as UTF-8

    def test_progress_goes_to_stderr(self, sends, capsys):
        write_ndjson(sends, io.StringIO(), progress=True)
        captured = capsys.readouterr()
        assert captured.out == ""
        assert f"{len(sends):,} bundles" in captured.err

    def test_a_foreign_line_is_reported_with_its_number(self):
        bad = io.StringIO(
            '{"at": "2026-03-02T00:00:00+00:00", "episode": "", "note": "x", "bundle": {}}\n'
        )
        with pytest.raises(ValueError, match="line 1"):
            list(read_ndjson(bad))


class TestConfig:
    def test_sizes(self):
        assert (
            HospitalConfig.from_size("small").arrivals_per_day
            < HospitalConfig.from_size("medium").arrivals_per_day
            < HospitalConfig.from_size("large").arrivals_per_day
        )
        with pytest.raises(ValueError, match="unknown size"):
            HospitalConfig.from_size("huge")  # type: ignore[arg-type]

    def test_for_episodes(self):
        config = HospitalConfig.for_episodes(1000, 4, tenant="H0042")
        assert config.tenant == "H0042"
        assert config.episodes == 1000
        assert config.arrivals_per_day == 250
        with pytest.raises(ValueError, match="positive"):
            HospitalConfig.for_episodes(0, 4)

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"arrivals_per_day": 0}, "arrivals_per_day"),
            ({"resend_rate": 1.5}, "rates"),
            ({"tenant": ""}, "tenant"),
            ({"mix": ()}, "mix"),
            (
                {"departments": tuple(d for d in synth.DEFAULT_DEPARTMENTS if d.code != "RAD")},
                "radiology",
            ),
        ],
    )
    def test_rejects_impossible_hospitals(self, change, message):
        with pytest.raises(ValueError, match=message):
            replace(HospitalConfig(), **change)

    def test_a_mix_of_one_pathway(self):
        config = HospitalConfig(arrivals_per_day=40, mix=(("psychiatry", 1.0),))
        classes = {
            e["resource"]["serviceProvider"]["reference"]
            for s in generate(config, start=START, days=1, seed=1)
            for e in s.bundle["entry"]
            if e.get("resource", {}).get("resourceType") == "Encounter"
        }
        assert classes == {"Organization/PSY"}

    def test_public_surface(self):
        assert set(synth.__all__) == {
            "DEFAULT_DEPARTMENTS", "DEFAULT_MIX", "PATHWAYS", "Department", "DepartmentRole",
            "HospitalConfig", "Note", "Pathway", "Send", "SizeName", "generate", "read_ndjson",
            "write_ndjson",
        }  # fmt: skip
        for name in synth.__all__:
            assert hasattr(synth, name)


def test_a_department_list_without_the_second_wave_roles_still_works():
    old = tuple(d for d in synth.DEFAULT_DEPARTMENTS if d.code not in ("THOR", "NEPH"))
    config = HospitalConfig(
        arrivals_per_day=20, departments=old, mix=(("chest_wall", 1.0), ("dialysis", 1.0))
    )
    providers = {
        e["resource"]["serviceProvider"]["reference"]
        for s in generate(config, start=START, days=2, seed=1)
        for e in s.bundle["entry"]
        if e.get("resource", {}).get("resourceType") == "Encounter"
    }
    assert providers <= {"Organization/GS", "Organization/GM", "Organization/ED"}
    assert {"Organization/GS", "Organization/GM"} <= providers


def test_journeys_of_several_encounters():
    config = HospitalConfig(
        arrivals_per_day=30,
        mix=(("stemi", 1.0), ("cardiac_arrest", 1.0), ("chest_wall", 1.0), ("dialysis", 1.0)),
    )
    encounters = {
        e["resource"]["id"]: e["resource"]
        for s in generate(config, start=START, days=10, seed=4)
        for e in s.bundle["entry"]
        if e.get("resource", {}).get("resourceType") == "Encounter"
    }
    chained = [r for r in encounters.values() if "partOf" in r]
    assert len(chained) > 10
    for r in chained:
        parent = encounters[r["partOf"]["reference"].removeprefix("Encounter/")]
        assert parent["class"]["code"] == "EMER"
        assert r["class"]["code"] == "IMP"
        assert parent["subject"] == r["subject"]
        assert parent["period"]["end"] <= r["period"]["start"]
    priorities = {
        c["code"] for r in encounters.values() for c in r.get("priority", {}).get("coding", [])
    }
    assert {"EL", "EM", "UR"} <= priorities
    dispositions = {
        c["code"]
        for r in encounters.values()
        for c in r.get("hospitalization", {}).get("dischargeDisposition", {}).get("coding", [])
    }
    assert "exp" in dispositions
