"""Target profiles (national defaults, the Tianjin plan), the tenant's choice of profile
and catalogue year, and target resolution: tenant > profile > definition."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.indicators import profiles as profiles_module
from services.indicators.profiles import ProfileError, load_profiles, profiles_for
from services.indicators.worker import catalogue_for, drain
from tests.fhir_factories import condition, encounter, patient, procedure, transaction

# A manual stand-in for the nutrition-screening item, so that the shipped Tianjin
# profile has a definition to apply to whatever the shipped catalogue holds.
NUTRITION = """\
code: PIT-2026-17-A
name: {zh: 住院患者营养评估率, en: Nutrition assessment}
source: test
version: "1"
kind: manual
period: month
direction: higher_is_better
unit: percent
target: 0.6
"""

NUTRITION_2025 = NUTRITION.replace("PIT-2026-17-A", "PIT-2025-17")

TEST_PROFILE = """\
name: test-region
title: A test region
source: test
targets:
  PIT-2026-31: {target: 0.7}
  PIT-2026-23: {previous_year: true, direction: higher_is_better}
  NIT-2026-IX: {previous_year: true, target: 3.0}
  NO-SUCH-CODE: {target: 0.5}
"""


@pytest.fixture
def settings(settings, tmp_path):
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "PIT-2026-17-A.yaml").write_text(NUTRITION, encoding="utf-8")
    (defs / "PIT-2025-17.yaml").write_text(NUTRITION_2025, encoding="utf-8")
    return settings.model_copy(update={"indicators_dir": defs})


@pytest.fixture
def test_profiles(tmp_path, monkeypatch):
    """The shipped profiles plus ``test-region``."""
    directory = tmp_path / "profiles"
    directory.mkdir()
    for shipped in profiles_module.PROFILES_DIR.glob("*.yaml"):
        (directory / shipped.name).write_text(shipped.read_text(encoding="utf-8"))
    (directory / "test-region.yaml").write_text(TEST_PROFILE, encoding="utf-8")
    monkeypatch.setattr(profiles_module, "PROFILES_DIR", directory)
    profiles_for.cache_clear()
    yield directory
    profiles_for.cache_clear()


def choose(client, headers, **body):
    return client.put("/api/v1/tenant", json=body, headers=headers)


def target(client, headers, code, **params):
    r = client.get(f"/api/v1/indicators/{code}/value", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["target"]


def summary(client, headers, code):
    r = client.get(f"/api/v1/indicators/{code}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


# -- the shipped profiles -------------------------------------------------------------


def test_shipped_profiles_load_with_the_tianjin_numbers():
    loaded = load_profiles(catalogue_for(None).definitions())
    assert {"national-2026", "tianjin-2025"} <= set(loaded.profiles)
    assert loaded.profiles["national-2026"].entries == {}
    tianjin = loaded.profiles["tianjin-2025"].spec.targets
    assert tianjin["NIT-2026-IX"].target == 1.8
    assert tianjin["NIT-2026-I-IVT"].target == pytest.approx(0.70)
    assert tianjin["PIT-2026-17-A"].target == pytest.approx(0.45)
    assert tianjin["NIT-2026-VI"].target == 2.5
    assert tianjin["PIT-2026-34"].previous_year
    reperfusion = [e for e in tianjin.values() if e.item and "再灌注" in e.item]
    assert [e.target for e in reperfusion] == [pytest.approx(0.85)]
    evt = [e for e in tianjin.values() if e.item and "血管内治疗" in e.item]
    assert evt and all(e.target == pytest.approx(0.50) for e in evt)


def test_unknown_codes_are_warnings_not_errors(tmp_path):
    (tmp_path / "p.yaml").write_text(
        "name: p\ntitle: t\nsource: s\ntargets:\n  NO-SUCH: {target: 0.5}\n"
        "  PIT-2026-23: {target: 0.9, direction: lower_is_better}\n"
    )
    loaded = load_profiles(catalogue_for(None).definitions(), tmp_path)
    profile = loaded.profiles["p"]
    assert set(profile.entries) == {"PIT-2026-23"}
    assert any("NO-SUCH" in w for w in profile.warnings)
    assert any("direction" in w for w in profile.warnings)


@pytest.mark.parametrize(
    "text",
    [
        "name: p\ntitle: t\nsource: s\ntargets:\n  PIT-2026-23: {target: 85}\n",  # not a fraction
        "name: p\ntitle: t\nsource: s\ntargets:\n  PIT-2026-23: {}\n",  # no target
        "name: p\ntitle: t\nsource: s\ntargets:\n  PIT-2026-23: {target: 0.9, goal: 1}\n",
        "name: q\ntitle: t\nsource: s\n",  # name differs from the file
    ],
)
def test_malformed_profiles_are_errors(tmp_path, text):
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ProfileError, match=r"p\.yaml"):
        load_profiles(catalogue_for(None).definitions(), tmp_path)


def test_list_target_profiles(app_client, reader_headers):
    r = app_client.get("/api/v1/target-profiles", headers=reader_headers)
    assert r.status_code == 200
    by_name = {p["name"]: p for p in r.json()}
    tianjin = by_name["tianjin-2025"]
    assert tianjin["targets"]["PIT-2026-17-A"] == {
        "target": 0.45,
        "direction": "higher_is_better",
        "item": "营养风险筛查率 45%",
        "applies": True,
    }
    # Every Tianjin number names a shipped definition (unknown codes would be warnings,
    # see test_unknown_codes_are_warnings_not_errors).
    assert all(e["applies"] for e in tianjin["targets"].values()), tianjin["warnings"]
    assert tianjin["targets"]["STEMI-REPERFUSION"]["target"] == 0.85


# -- the tenant's settings ------------------------------------------------------------


def test_tenant_shows_and_changes_profile_and_catalogue(app_client, admin_headers, reader_headers):
    t = app_client.get("/api/v1/tenant", headers=reader_headers).json()
    assert (t["id"], t["target_profile"], t["catalogue"]) == ("H0001", None, "2026")
    r = choose(app_client, admin_headers, target_profile="tianjin-2025")
    assert r.status_code == 200 and r.json()["target_profile"] == "tianjin-2025"
    r = choose(app_client, admin_headers, catalogue="2025")
    assert r.json()["catalogue"] == "2025" and r.json()["target_profile"] == "tianjin-2025"
    t = app_client.get("/api/v1/tenant", headers=reader_headers).json()
    assert (t["target_profile"], t["catalogue"]) == ("tianjin-2025", "2025")
    assert choose(app_client, admin_headers, target_profile=None).json()["target_profile"] is None


def test_tenant_changes_are_checked(app_client, admin_headers, reader_headers):
    r = choose(app_client, admin_headers, target_profile="atlantis-2030")
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert choose(app_client, admin_headers, catalogue="2019").status_code == 422
    assert choose(app_client, reader_headers, target_profile="tianjin-2025").status_code == 403


def test_settings_are_per_tenant(app_client, runtime, admin_headers):
    from shared.auth import Role
    from tests.conftest import OTHER_TENANT, make_key

    choose(app_client, admin_headers, target_profile="tianjin-2025")
    other = {"Authorization": f"Bearer {make_key(runtime, Role.READER, OTHER_TENANT)}"}
    assert app_client.get("/api/v1/tenant", headers=other).json()["target_profile"] is None
    assert target(app_client, other, "PIT-2026-17-A") == 0.6


# -- resolution -----------------------------------------------------------------------


def test_profile_target_wins_over_the_definition(app_client, admin_headers, reader_headers):
    assert target(app_client, reader_headers, "PIT-2026-17-A") == 0.6
    assert summary(app_client, reader_headers, "PIT-2026-17-A")["target_source"] == "definition"
    choose(app_client, admin_headers, target_profile="tianjin-2025")
    assert target(app_client, reader_headers, "PIT-2026-17-A") == 0.45
    s = summary(app_client, reader_headers, "PIT-2026-17-A")
    assert (s["target"], s["target_source"]) == (0.45, "profile")
    # Indicators the profile does not name keep the definition's target.
    assert target(app_client, reader_headers, "PIT-2026-23") == 0.85
    choose(app_client, admin_headers, target_profile="national-2026")
    assert target(app_client, reader_headers, "PIT-2026-17-A") == 0.6


def test_tenant_target_wins_over_the_profile(app_client, admin_headers, reader_headers):
    choose(app_client, admin_headers, target_profile="tianjin-2025")
    r = app_client.put(
        "/api/v1/indicators/PIT-2026-17-A/target", json={"target": 0.5}, headers=admin_headers
    )
    assert r.status_code == 200
    assert target(app_client, reader_headers, "PIT-2026-17-A") == 0.5
    s = summary(app_client, reader_headers, "PIT-2026-17-A")
    assert (s["target"], s["target_source"]) == (0.5, "tenant")
    listed = {
        d["code"]: d for d in app_client.get("/api/v1/indicators", headers=reader_headers).json()
    }
    assert listed["PIT-2026-17-A"]["target"] == 0.5


def test_profile_target_in_breakdown_and_meets_target(app_client, admin_headers, reader_headers):
    choose(app_client, admin_headers, target_profile="tianjin-2025")
    app_client.put(
        "/api/v1/indicators/PIT-2026-17-A/manual/2026-02",
        json={"numerator": 5, "denominator": 10, "department": "surgery"},
        headers=admin_headers,
    )
    rows = app_client.get(
        "/api/v1/indicators/PIT-2026-17-A/breakdown",
        params={"from": "2026-02-01", "to": "2026-02-28"},
        headers=reader_headers,
    ).json()["rows"]
    # 50 % meets Tianjin's 45 %, not the definition's 60 %.
    assert [(r["department"], r["target"], r["meets_target"]) for r in rows] == [
        ("surgery", 0.45, True)
    ]


def stemi(n: int, day: str, pci_minutes: int):
    start = f"{day}T10:00:00+08:00"
    h, m = divmod(10 * 60 + pci_minutes, 60)
    return transaction(
        patient(f"p{n}"),
        encounter(f"e{n}", f"p{n}", start=start),
        condition(f"c{n}", f"e{n}", f"p{n}", onset=start),
        procedure(f"pr{n}", f"e{n}", f"p{n}", start=f"{day}T{h:02d}:{m:02d}:00+08:00"),
    )


@pytest.fixture
def last_february(app_client, runtime, ingest_headers):
    """PIT-2026-23 in February 2025: 3 of 4 in time (75 %); one 2026 case in time."""
    for n, day, minutes in [
        (1, "2025-02-03", 60),
        (2, "2025-02-10", 80),
        (3, "2025-02-17", 45),
        (4, "2025-02-24", 120),
        (5, "2026-02-05", 30),
    ]:
        r = app_client.post("/fhir", json=stemi(n, day, minutes), headers=ingest_headers)
        assert r.status_code == 200, r.text
    drain(runtime)
    return app_client


def test_previous_year_target_is_last_years_computed_rate(
    last_february, test_profiles, admin_headers, reader_headers
):
    client = last_february
    last_year = client.get(
        "/api/v1/indicators/PIT-2026-23/value",
        params={"from": "2025-02-01", "to": "2025-02-28"},
        headers=reader_headers,
    ).json()
    assert (last_year["numerator"], last_year["denominator"]) == (3, 4)
    choose(client, admin_headers, target_profile="test-region")
    this_year = client.get(
        "/api/v1/indicators/PIT-2026-23/value",
        params={"from": "2026-02-01", "to": "2026-02-28"},
        headers=reader_headers,
    ).json()
    assert this_year["target"] == pytest.approx(0.75) == last_year["rate"]
    assert this_year["meets_target"] is True  # 1/1 ≥ 75 %
    # The summary compares this year so far (2026-01-01 … 2026-03-02) with last year's.
    s = summary(client, reader_headers, "PIT-2026-23")
    assert (s["target"], s["target_source"]) == (pytest.approx(0.75), "previous_year")
    # No data a year before: no target, unless the entry gives a fallback.
    march = client.get(
        "/api/v1/indicators/PIT-2026-23/value",
        params={"from": "2026-03-01", "to": "2026-03-31"},
        headers=reader_headers,
    ).json()
    assert march["target"] is None
    assert target(client, reader_headers, "NIT-2026-IX") == 3.0
    # A fixed profile number, and the unknown code did no harm.
    assert target(client, reader_headers, "PIT-2026-31") == 0.7


def test_previous_year_target_of_a_manual_indicator(
    app_client, test_profiles, admin_headers, reader_headers
):
    (test_profiles / "manual-region.yaml").write_text(
        "name: manual-region\ntitle: t\nsource: s\n"
        "targets:\n  PIT-2026-17-A: {previous_year: true}\n"
    )
    profiles_for.cache_clear()
    for month, n, d in [("2025-01", 3, 10), ("2025-02", 5, 10), ("2026-01", 6, 10)]:
        r = app_client.put(
            f"/api/v1/indicators/PIT-2026-17-A/manual/{month}",
            json={"numerator": n, "denominator": d},
            headers=admin_headers,
        )
        assert r.status_code == 200
    choose(app_client, admin_headers, target_profile="manual-region")
    v = app_client.get(
        "/api/v1/indicators/PIT-2026-17-A/value",
        params={"from": "2026-01-01", "to": "2026-02-28"},
        headers=reader_headers,
    ).json()
    assert (v["numerator"], v["denominator"]) == (6, 10)
    assert v["target"] == pytest.approx(0.4)  # (3 + 5) / 20
    assert v["meets_target"] is True


# -- the indicator list ---------------------------------------------------------------


def test_list_shows_the_tenants_catalogue_year(app_client, admin_headers, reader_headers):
    def codes(**params):
        r = app_client.get("/api/v1/indicators", params=params, headers=reader_headers)
        assert r.status_code == 200, r.text
        return {d["code"]: d for d in r.json()}

    default = codes()
    assert "PIT-2026-17-A" in default and "PIT-2026-23" in default
    assert "PIT-2025-17" not in default
    assert "AMR-PATHOGEN" in default  # no catalogue year: always listed
    entry = default["PIT-2026-17-A"]
    assert (entry["kind"], entry["catalogue"], entry["group"]) == ("manual", "2026", "specialty")
    assert {"source", "formula_source", "supersedes", "target", "target_source"} <= set(entry)
    assert default["AMR-PATHOGEN"]["catalogue"] is None
    assert default["AMR-PATHOGEN"]["group"] == "other"
    assert default["NIT-2026-IX"]["group"] == "national"

    choose(app_client, admin_headers, catalogue="2025")
    old = codes()
    assert "PIT-2025-17" in old and "AMR-PATHOGEN" in old and "PIT-2025-24" in old
    # A 2026 definition that a 2025 one supersedes gives way to it; one that none does
    # (the 2025 item was unchanged, or 2025 had no such item) is reported in 2025 too.
    assert "PIT-2026-23" not in old
    assert "PIT-2026-17-A" in old and "NIT-2026-VII" in old
    everything = codes(catalogue="all")
    assert {"PIT-2025-17", "PIT-2026-17-A", "PIT-2026-23", "AMR-PATHOGEN"} <= set(everything)
    assert set(codes(catalogue="2026")) == set(default)
    r = app_client.get("/api/v1/indicators", params={"catalogue": "1999"}, headers=reader_headers)
    assert r.status_code == 422


def test_shipped_profile_dir_is_packaged():
    assert (Path(profiles_module.__file__).parent / "profiles" / "tianjin-2025.yaml").is_file()
