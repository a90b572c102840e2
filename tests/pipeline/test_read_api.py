"""The quality department's read API over a few hand-checkable STEMI episodes."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.measurereport import MeasureReport

from services.indicators.worker import drain
from tests.fhir_factories import condition, encounter, patient, procedure, transaction

RANGE = {"from": "2026-03-01", "to": "2026-03-31"}


def stemi(
    n: int, pci_minutes: int | None, *, dept: str = "emergency", day: int = 2, hour: int = 10
):
    start = f"2026-03-{day:02d}T{hour:02d}:00:00+08:00"
    resources = [
        patient(f"p{n}"),
        encounter(
            f"e{n}",
            f"p{n}",
            start=start,
            dept=dept,
            dept_name={"emergency": "急诊科"}.get(dept, dept),
        ),
        condition(f"c{n}", f"e{n}", f"p{n}", onset=start),
    ]
    if pci_minutes is not None:
        h, m = divmod(hour * 60 + pci_minutes, 60)
        resources.append(
            procedure(
                f"pr{n}", f"e{n}", f"p{n}", start=f"2026-03-{day:02d}T{h:02d}:{m:02d}:00+08:00"
            )
        )
    return transaction(*resources)


@pytest.fixture
def loaded(app_client, runtime, ingest_headers):
    # emergency: 3 in time (one exactly at 90 min), 1 late; cardiology: 1 late; 1 pending.
    for n, minutes, dept, day in [
        (1, 60, "emergency", 2),
        (2, 90, "emergency", 3),
        (3, 45, "emergency", 20),
        (4, 91, "emergency", 20),
        (5, 120, "cardiology", 5),
        (6, None, "cardiology", 6),
    ]:
        r = app_client.post(
            "/fhir", json=stemi(n, minutes, dept=dept, day=day), headers=ingest_headers
        )
        assert r.status_code == 200, r.text
    drain(runtime)
    return app_client


def test_value_counts_by_hand(loaded, reader_headers):
    v = loaded.get(
        "/api/v1/indicators/PIT-2026-23/value", params=RANGE, headers=reader_headers
    ).json()
    assert (v["numerator"], v["denominator"], v["pending"], v["excluded"]) == (3, 5, 1, 0)
    assert v["rate"] == pytest.approx(0.6)
    assert v["target"] == 0.85 and v["meets_target"] is False


def test_value_for_one_department(loaded, reader_headers):
    v = loaded.get(
        "/api/v1/indicators/PIT-2026-23/value",
        params={**RANGE, "department": "emergency"},
        headers=reader_headers,
    ).json()
    assert (v["numerator"], v["denominator"], v["rate"]) == (3, 4, 0.75)


def test_breakdown_by_department(loaded, reader_headers):
    rows = loaded.get(
        "/api/v1/indicators/PIT-2026-23/breakdown", params=RANGE, headers=reader_headers
    ).json()["rows"]
    by = {r["department"]: r for r in rows}
    assert (by["emergency"]["numerator"], by["emergency"]["denominator"]) == (3, 4)
    assert by["emergency"]["department_name"] == "急诊科"
    assert (
        by["cardiology"]["numerator"],
        by["cardiology"]["denominator"],
        by["cardiology"]["pending"],
    ) == (0, 1, 1)


def test_series_by_week_with_control_limits(loaded, reader_headers):
    body = loaded.get(
        "/api/v1/indicators/PIT-2026-23/series",
        params={**RANGE, "granularity": "week"},
        headers=reader_headers,
    ).json()
    points = {p["period_start"]: p for p in body["points"]}
    # ISO weeks start on Monday: 2 March 2026 is a Monday.
    assert points["2026-03-02"]["numerator"] == 2 and points["2026-03-02"]["denominator"] == 3
    assert points["2026-03-16"]["denominator"] == 2
    assert points["2026-03-09"]["denominator"] == 0 and points["2026-03-09"]["ucl"] is None
    center = 3 / 5
    p = points["2026-03-02"]
    assert p["center"] == pytest.approx(center)
    sigma = (center * (1 - center) / 3) ** 0.5
    assert p["ucl"] == pytest.approx(min(1.0, center + 3 * sigma))
    assert p["lcl"] == pytest.approx(max(0.0, center - 3 * sigma))


@pytest.mark.parametrize("granularity", ["week", "month", "quarter", "year"])
def test_series_buckets_add_up_to_the_days(loaded, reader_headers, granularity):
    """Longer buckets are summed by the database by month: each must equal the sum of
    the daily points it covers, and all of them the value."""
    wide = {"from": "2026-02-20", "to": "2026-04-10"}

    def points(g):
        return loaded.get(
            "/api/v1/indicators/PIT-2026-23/series",
            params={**wide, "granularity": g},
            headers=reader_headers,
        ).json()["points"]

    days = points("day")
    buckets = points(granularity)
    starts = [p["period_start"] for p in buckets]
    for i, bucket in enumerate(buckets):
        end = starts[i + 1] if i + 1 < len(starts) else "9999"
        covered = [d for d in days if bucket["period_start"] <= d["period_start"] < end]
        for field in ("numerator", "denominator", "pending"):
            assert bucket[field] == sum(d[field] for d in covered), (bucket, field)
    value = loaded.get(
        "/api/v1/indicators/PIT-2026-23/value", params=wide, headers=reader_headers
    ).json()
    assert sum(b["denominator"] for b in buckets) == value["denominator"] == 5
    assert sum(b["numerator"] for b in buckets) == value["numerator"]


def test_cases_paginate_by_cursor(loaded, reader_headers):
    seen, cursor = [], None
    while True:
        params = {**RANGE, "limit": 2, **({"cursor": cursor} if cursor else {})}
        body = loaded.get(
            "/api/v1/indicators/PIT-2026-23/cases", params=params, headers=reader_headers
        ).json()
        seen += body["cases"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6
    assert len({c["episode"] for c in seen}) == 6
    late = next(c for c in seen if c["episode"] == "Encounter/e4")
    assert late["status"] == "denominator" and late["elapsed_minutes"] == 91.0
    numerators = loaded.get(
        "/api/v1/indicators/PIT-2026-23/cases",
        params={**RANGE, "status": "numerator"},
        headers=reader_headers,
    ).json()["cases"]
    assert sorted(c["episode"] for c in numerators) == [
        "Encounter/e1",
        "Encounter/e2",
        "Encounter/e3",
    ]


def test_csv_exports(loaded, reader_headers):
    r = loaded.get(
        "/api/v1/indicators/PIT-2026-23/breakdown",
        params={**RANGE, "format": "csv"},
        headers=reader_headers,
    )
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert {row["department"] for row in rows} == {"emergency", "cardiology"}
    r = loaded.get(
        "/api/v1/indicators/PIT-2026-23/cases",
        params={**RANGE, "format": "csv"},
        headers=reader_headers,
    )
    assert len(list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))) == 6


def test_measure_report_validates(loaded, reader_headers):
    r = loaded.get(
        "/api/v1/indicators/PIT-2026-23/measure-report", params=RANGE, headers=reader_headers
    )
    assert r.status_code == 200
    report = MeasureReport.model_validate(r.json())
    pops = {p.code.coding[0].code: p.count for p in report.group[0].population}
    assert pops == {
        "initial-population": 5,
        "denominator": 5,
        "numerator": 3,
        "denominator-exclusion": 0,
    }
    assert float(report.group[0].measureScore.value) == pytest.approx(0.6)


def test_target_override(loaded, reader_headers, admin_headers):
    assert (
        loaded.put(
            "/api/v1/indicators/PIT-2026-23/target", json={"target": 0.5}, headers=reader_headers
        ).status_code
        == 403
    )
    assert (
        loaded.put(
            "/api/v1/indicators/PIT-2026-23/target", json={"target": 0.5}, headers=admin_headers
        ).status_code
        == 200
    )
    v = loaded.get(
        "/api/v1/indicators/PIT-2026-23/value", params=RANGE, headers=reader_headers
    ).json()
    assert v["target"] == 0.5 and v["meets_target"] is True
    assert (
        loaded.put(
            "/api/v1/indicators/PIT-2026-23/target", json={"target": 85}, headers=admin_headers
        ).status_code
        == 422
    )


def test_local_code_maps_to_standard(
    app_client, runtime, ingest_headers, admin_headers, reader_headers
):
    local = "http://hospital.example/codes/diagnosis"
    bundle = stemi(1, 60)
    bundle["entry"][2]["resource"]["code"] = {"coding": [{"system": local, "code": "XB-STEMI"}]}
    app_client.post("/fhir", json=bundle, headers=ingest_headers)
    drain(runtime)
    v = app_client.get(
        "/api/v1/indicators/PIT-2026-23/value", params=RANGE, headers=reader_headers
    ).json()
    assert v["denominator"] == 0
    r = app_client.put(
        f"/api/v1/code-maps/{local}",
        headers=admin_headers,
        json={"mappings": [{"code": "XB-STEMI", "target_system": "icd10", "target_code": "I21.0"}]},
    )
    assert r.status_code == 200, r.text
    drain(runtime)
    v = app_client.get(
        "/api/v1/indicators/PIT-2026-23/value", params=RANGE, headers=reader_headers
    ).json()
    assert (v["numerator"], v["denominator"]) == (1, 1)


def test_indicator_list_has_the_catalogue(app_client, reader_headers):
    body = app_client.get("/api/v1/indicators", headers=reader_headers).json()
    codes = {i["code"] for i in body}
    assert {"PIT-2026-23", "PIT-2026-31", "NIT-2026-VI", "AMR-PATHOGEN"} <= codes
    stemi_def = next(i for i in body if i["code"] == "PIT-2026-23")
    assert stemi_def["window_minutes"] == 90 and stemi_def["name"]["zh"].startswith("急性STEMI")


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/v1/indicators/NOPE/value", {}, 404),
        ("/api/v1/indicators/PIT-2026-23/value", {"from": "2026-13-01"}, 422),
        ("/api/v1/indicators/PIT-2026-23/value", {"from": "2026-03-31", "to": "2026-03-01"}, 422),
        ("/api/v1/indicators/PIT-2026-23/series", {"granularity": "fortnight"}, 422),
        ("/api/v1/indicators/PIT-2026-23/cases", {"cursor": "!!not-a-cursor"}, 422),
    ],
)
def test_bad_queries_answer_problem_json(app_client, reader_headers, path, params, status):
    r = app_client.get(path, params=params, headers=reader_headers)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]


def test_reader_limited_to_a_department(app_client, runtime, loaded, admin_headers):
    r = app_client.post(
        "/api/v1/keys",
        json={"role": "reader", "departments": ["cardiology"]},
        headers=admin_headers,
    )
    headers = {"Authorization": f"Bearer {r.json()['key']}"}
    v = app_client.get("/api/v1/indicators/PIT-2026-23/value", params=RANGE, headers=headers).json()
    assert (v["numerator"], v["denominator"]) == (0, 1)
    assert (
        app_client.get(
            "/api/v1/indicators/PIT-2026-23/value",
            params={**RANGE, "department": "emergency"},
            headers=headers,
        ).status_code
        == 403
    )


def test_ingest_key_cannot_read_indicators(app_client, ingest_headers):
    assert app_client.get("/api/v1/indicators", headers=ingest_headers).status_code == 403
    assert app_client.get("/api/v1/indicators").status_code == 401


def test_csv_export_of_cases_is_whole_by_default(loaded, reader_headers):
    r = loaded.get(
        "/api/v1/indicators/PIT-2026-23/cases",
        params={**RANGE, "format": "csv"},
        headers=reader_headers,
    )
    assert len(list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))) == 6
    assert "x-next-cursor" not in r.headers
    r = loaded.get(
        "/api/v1/indicators/PIT-2026-23/cases",
        params={**RANGE, "format": "csv", "limit": 4},
        headers=reader_headers,
    )
    assert len(list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))) == 4
    assert r.headers["x-next-cursor"]


def test_an_unexpected_error_is_still_problem_json(app_client, reader_headers, monkeypatch):
    from services.indicators import queries

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(queries, "totals", broken)
    with TestClient(app_client.app, raise_server_exceptions=False) as client:
        r = client.get("/api/v1/indicators/PIT-2026-23/value", headers=reader_headers)
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert "boom" not in r.text  # no internals leak to the client
