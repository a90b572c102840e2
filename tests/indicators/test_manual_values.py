"""Manual indicators: monthly values entered through the API, audited, and read back by
the same value, series, breakdown, MeasureReport and CSV endpoints as computed ones."""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa

from services.indicators.manual import ManualAuditRow
from shared.auth import Role, create_key
from tests.conftest import TENANT

MANUAL_PROPORTION = """\
code: TEST-EQA
name: {zh: 室间质评参加率, en: EQA participation}
source: test
version: "1"
kind: manual
period: month
direction: higher_is_better
unit: percent
target: 0.9
"""

MANUAL_RATIO = """\
code: TEST-FALLS
name: {zh: 每千住院日跌倒例次, en: Falls per 1000 patient-days}
source: test
version: "1"
kind: manual
period: month
direction: lower_is_better
unit: per_1000
"""


@pytest.fixture
def settings(settings, tmp_path):
    (tmp_path / "TEST-EQA.yaml").write_text(MANUAL_PROPORTION, encoding="utf-8")
    (tmp_path / "TEST-FALLS.yaml").write_text(MANUAL_RATIO, encoding="utf-8")
    return settings.model_copy(update={"indicators_dir": tmp_path})


def key(runtime, role=Role.READER, **kw) -> dict[str, str]:
    with runtime.write() as session:
        _, secret = create_key(session, TENANT, role, name="t", **kw)
    return {"Authorization": f"Bearer {secret}"}


def put(client, headers, month, numerator, denominator, department=None, note="", code="TEST-EQA"):
    return client.put(
        f"/api/v1/indicators/{code}/manual/{month}",
        json={
            "numerator": numerator,
            "denominator": denominator,
            "department": department,
            "note": note,
        },
        headers=headers,
    )


def test_admin_enters_a_value_and_reads_it_back(app_client, admin_headers, reader_headers):
    r = put(app_client, admin_headers, "2026-02", 18, 20, note="EQA round 1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["month"], body["department"], body["numerator"], body["denominator"]) == (
        "2026-02",
        None,
        18,
        20,
    )
    assert body["note"] == "EQA round 1"
    v = app_client.get(
        "/api/v1/indicators/TEST-EQA/value",
        params={"from": "2026-02-01", "to": "2026-02-28"},
        headers=reader_headers,
    ).json()
    assert (v["numerator"], v["denominator"], v["rate"]) == (18, 20, 0.9)
    assert (v["pending"], v["excluded"], v["target"], v["meets_target"]) == (0, 0, 0.9, True)


def test_correction_replaces_the_value_and_audits_the_previous_one(
    app_client, runtime, admin_headers, reader_headers
):
    first = put(app_client, admin_headers, "2026-01", 5, 10, note="first")
    second = put(app_client, admin_headers, "2026-01", 7, 12, note="recount")
    assert first.status_code == second.status_code == 200
    listed = app_client.get("/api/v1/indicators/TEST-EQA/manual", headers=reader_headers).json()
    [entry] = listed["entries"]
    assert (entry["numerator"], entry["denominator"], entry["note"]) == (7, 12, "recount")
    first_audit, second_audit = entry["audit"]
    assert first_audit["previous"] is None
    assert (first_audit["numerator"], first_audit["denominator"]) == (5, 10)
    assert second_audit["previous"] == {"numerator": 5, "denominator": 10, "note": "first"}
    assert (second_audit["numerator"], second_audit["denominator"]) == (7, 12)
    # The audit rows themselves, and who entered them.
    with runtime.read() as session:
        rows = session.scalars(sa.select(ManualAuditRow).order_by(ManualAuditRow.id)).all()
    assert [(r.previous_numerator, r.previous_denominator, r.numerator) for r in rows] == [
        (None, None, 5),
        (5, 10, 7),
    ]
    assert rows[0].entered_by == entry["entered_by"] and rows[0].entered_by
    v = app_client.get(
        "/api/v1/indicators/TEST-EQA/value",
        params={"from": "2026-01-01", "to": "2026-01-31"},
        headers=reader_headers,
    ).json()
    assert (v["numerator"], v["denominator"]) == (7, 12)


def test_reader_needs_the_manual_permission(app_client, runtime, reader_headers, ingest_headers):
    assert put(app_client, reader_headers, "2026-01", 1, 2).status_code == 403
    assert put(app_client, ingest_headers, "2026-01", 1, 2).status_code == 403
    editor = key(runtime, permissions=["manual"])
    r = put(app_client, editor, "2026-01", 1, 2)
    assert r.status_code == 200, r.text


def test_admin_creates_a_reader_key_with_the_manual_permission(app_client, admin_headers):
    r = app_client.post(
        "/api/v1/keys", json={"role": "reader", "permissions": ["manual"]}, headers=admin_headers
    )
    assert r.status_code == 201 and r.json()["permissions"] == ["manual"]
    headers = {"Authorization": f"Bearer {r.json()['key']}"}
    assert put(app_client, headers, "2026-01", 1, 2).status_code == 200
    plain = app_client.post("/api/v1/keys", json={"role": "reader"}, headers=admin_headers)
    assert plain.json()["permissions"] == []
    bad = app_client.post(
        "/api/v1/keys", json={"role": "ingest", "permissions": ["manual"]}, headers=admin_headers
    )
    assert bad.status_code == 422
    unknown = app_client.post(
        "/api/v1/keys", json={"role": "reader", "permissions": ["root"]}, headers=admin_headers
    )
    assert unknown.status_code == 422


def test_department_limited_editor_enters_only_its_departments(app_client, runtime):
    editor = key(runtime, permissions=["manual"], departments=["lab"])
    assert put(app_client, editor, "2026-01", 1, 2, department="lab").status_code == 200
    assert put(app_client, editor, "2026-01", 1, 2, department="icu").status_code == 403
    assert put(app_client, editor, "2026-01", 1, 2, department=None).status_code == 403


@pytest.mark.parametrize(
    ("month", "numerator", "denominator"),
    [
        ("2026-01", 3, 2),  # a proportion's numerator above its denominator
        ("2026-01", -1, 2),
        ("2026-01", 0, 0),
        ("2026-13", 1, 2),
        ("2026-1", 1, 2),
        ("202601", 1, 2),
    ],
)
def test_invalid_entries_are_422(app_client, admin_headers, month, numerator, denominator):
    r = put(app_client, admin_headers, month, numerator, denominator)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


def test_a_ratio_numerator_may_exceed_its_denominator(app_client, admin_headers, reader_headers):
    r = put(app_client, admin_headers, "2026-01", 30, 20, code="TEST-FALLS")
    assert r.status_code == 200, r.text
    v = app_client.get(
        "/api/v1/indicators/TEST-FALLS/value",
        params={"from": "2026-01-01", "to": "2026-01-31"},
        headers=reader_headers,
    ).json()
    assert (v["numerator"], v["denominator"], v["rate"]) == (30, 20, 1500.0)


def test_unknown_or_computed_indicators(app_client, admin_headers, reader_headers):
    assert put(app_client, admin_headers, "2026-01", 1, 2, code="NOPE").status_code == 404
    r = put(app_client, admin_headers, "2026-01", 1, 2, code="PIT-2026-23")
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    listed = app_client.get("/api/v1/indicators/PIT-2026-23/manual", headers=reader_headers)
    assert listed.status_code == 409


def test_months_sum_into_quarters_and_years(app_client, admin_headers, reader_headers):
    for month, n, d in [("2026-01", 8, 10), ("2026-02", 9, 10), ("2026-03", 10, 10)]:
        assert put(app_client, admin_headers, month, n, d).status_code == 200
    assert put(app_client, admin_headers, "2026-04", 1, 10).status_code == 200
    series = app_client.get(
        "/api/v1/indicators/TEST-EQA/series",
        params={"granularity": "quarter", "from": "2026-01-01", "to": "2026-06-30"},
        headers=reader_headers,
    ).json()
    q1, q2 = series["points"]
    assert (q1["period_start"], q1["numerator"], q1["denominator"]) == ("2026-01-01", 27, 30)
    assert q1["rate"] == pytest.approx(0.9)
    assert (q2["numerator"], q2["denominator"]) == (1, 10)
    year = app_client.get(
        "/api/v1/indicators/TEST-EQA/series",
        params={"granularity": "year", "from": "2026-01-01", "to": "2026-12-31"},
        headers=reader_headers,
    ).json()
    assert [(p["numerator"], p["denominator"]) for p in year["points"]] == [(28, 40)]
    months = app_client.get(
        "/api/v1/indicators/TEST-EQA/series",
        params={"granularity": "month", "from": "2026-01-01", "to": "2026-05-31"},
        headers=reader_headers,
    ).json()
    assert [p["numerator"] for p in months["points"]] == [8, 9, 10, 1, 0]
    # A month counts when any of its days is in the range.
    v = app_client.get(
        "/api/v1/indicators/TEST-EQA/value",
        params={"from": "2026-01-15", "to": "2026-02-10"},
        headers=reader_headers,
    ).json()
    assert (v["numerator"], v["denominator"]) == (17, 20)


def test_day_and_week_series_are_refused(app_client, admin_headers, reader_headers):
    put(app_client, admin_headers, "2026-01", 1, 2)
    for granularity in ("day", "week"):
        r = app_client.get(
            "/api/v1/indicators/TEST-EQA/series",
            params={"granularity": granularity},
            headers=reader_headers,
        )
        assert r.status_code == 400, r.text


def test_hospital_value_and_department_values(app_client, admin_headers, reader_headers):
    # February: departments only, pooled. March: a whole-hospital figure wins over them.
    put(app_client, admin_headers, "2026-02", 4, 5, department="lab")
    put(app_client, admin_headers, "2026-02", 1, 5, department="path")
    put(app_client, admin_headers, "2026-03", 2, 5, department="lab")
    put(app_client, admin_headers, "2026-03", 30, 40, department=None)

    def value(**params):
        return app_client.get(
            "/api/v1/indicators/TEST-EQA/value", params=params, headers=reader_headers
        ).json()

    feb = value(**{"from": "2026-02-01", "to": "2026-02-28"})
    assert (feb["numerator"], feb["denominator"]) == (5, 10)
    mar = value(**{"from": "2026-03-01", "to": "2026-03-31"})
    assert (mar["numerator"], mar["denominator"]) == (30, 40)
    lab = value(**{"from": "2026-02-01", "to": "2026-03-31", "department": "lab"})
    assert (lab["numerator"], lab["denominator"]) == (6, 10)

    breakdown = app_client.get(
        "/api/v1/indicators/TEST-EQA/breakdown",
        params={"from": "2026-02-01", "to": "2026-03-31"},
        headers=reader_headers,
    ).json()
    assert [(r["department"], r["numerator"], r["denominator"]) for r in breakdown["rows"]] == [
        ("lab", 6, 10),
        ("path", 1, 5),
    ]


def test_department_limited_reader_sees_its_departments(app_client, runtime, admin_headers):
    put(app_client, admin_headers, "2026-02", 4, 5, department="lab")
    put(app_client, admin_headers, "2026-02", 1, 5, department="path")
    put(app_client, admin_headers, "2026-02", 9, 20, department=None)
    lab_reader = key(runtime, departments=["lab"])
    v = app_client.get(
        "/api/v1/indicators/TEST-EQA/value",
        params={"from": "2026-02-01", "to": "2026-02-28"},
        headers=lab_reader,
    ).json()
    assert (v["numerator"], v["denominator"]) == (4, 5)
    listed = app_client.get("/api/v1/indicators/TEST-EQA/manual", headers=lab_reader).json()
    assert [e["department"] for e in listed["entries"]] == ["lab"]


def test_csv_measure_report_and_cases(app_client, admin_headers, reader_headers):
    put(app_client, admin_headers, "2026-02", 18, 20)
    r = app_client.get(
        "/api/v1/indicators/TEST-EQA/series",
        params={"granularity": "month", "from": "2026-02-01", "to": "2026-02-28", "format": "csv"},
        headers=reader_headers,
    )
    [row] = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert (row["numerator"], row["denominator"]) == ("18", "20")
    report = app_client.get(
        "/api/v1/indicators/TEST-EQA/measure-report",
        params={"from": "2026-02-01", "to": "2026-02-28"},
        headers=reader_headers,
    ).json()
    populations = {
        p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]
    }
    assert (populations["numerator"], populations["denominator"]) == (18, 20)
    assert report["group"][0]["measureScore"]["value"] == pytest.approx(0.9)
    cases = app_client.get("/api/v1/indicators/TEST-EQA/cases", headers=reader_headers)
    assert cases.status_code == 200
    assert cases.json() == {"code": "TEST-EQA", "cases": [], "next_cursor": None}


def test_values_are_per_tenant(app_client, runtime, admin_headers):
    from tests.conftest import OTHER_TENANT, make_key

    put(app_client, admin_headers, "2026-02", 18, 20)
    other = {"Authorization": f"Bearer {make_key(runtime, Role.READER, OTHER_TENANT)}"}
    v = app_client.get(
        "/api/v1/indicators/TEST-EQA/value",
        params={"from": "2026-02-01", "to": "2026-02-28"},
        headers=other,
    ).json()
    assert (v["numerator"], v["denominator"], v["rate"]) == (0, 0, None)
    listed = app_client.get("/api/v1/indicators/TEST-EQA/manual", headers=other).json()
    assert listed["entries"] == []


def test_the_list_shows_manual_kind(app_client, reader_headers):
    listed = {
        d["code"]: d
        for d in app_client.get(
            "/api/v1/indicators", params={"catalogue": "all"}, headers=reader_headers
        ).json()
    }
    assert listed["TEST-EQA"]["kind"] == "manual"
    assert listed["TEST-EQA"]["group"] == "other"
    assert listed["TEST-EQA"]["target"] == 0.9
    assert listed["TEST-EQA"]["target_source"] == "definition"


def test_every_shipped_manual_indicator_takes_a_value(app_client, admin_headers, reader_headers):
    from services.indicators.worker import catalogue_for

    shipped = [d for d in catalogue_for(None).definitions() if d.kind == "manual"]
    assert shipped
    for defn in shipped:
        r = put(app_client, admin_headers, "2026-02", 1, 4, code=defn.code)
        assert r.status_code == 200, (defn.code, r.text)
        v = app_client.get(
            f"/api/v1/indicators/{defn.code}/value",
            params={"from": "2026-02-01", "to": "2026-02-28"},
            headers=reader_headers,
        ).json()
        assert (v["numerator"], v["denominator"]) == (1, 4), defn.code
