"""The monthly bulletin (质量安全月刊): the numbers of the API, as JSON, XLSX and PDF.

Seeded through the public API: STEMI episodes posted as FHIR (PIT-2026-23, door to
PCI within 90 minutes) in March 2026 and March 2025, and twelve months of a manual
indicator (NIT-2026-VIII) with one month far below the others, an SPC signal.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook

from services.indicators.worker import drain
from services.regions import service as regions
from services.regions.bulletin import parse_month
from shared.auth import Role, create_key
from shared.errors import UnprocessableError
from tests.conftest import OTHER_TENANT, TENANT, make_key
from tests.fhir_factories import condition, encounter, patient, procedure, transaction

MONTH = "2026-03"
RANGE = {"from": "2026-03-01", "to": "2026-03-31"}
STEMI = "PIT-2026-23"
MANUAL = "NIT-2026-VIII"
#: The manual indicator by month: 90 % every month but 2025-11 (50 %).
MANUAL_MONTHS = [f"2025-{m:02d}" for m in range(4, 13)] + ["2026-01", "2026-02", "2026-03"]
DIP = "2025-11"


@pytest.fixture
def clock(clock):
    clock.set(datetime(2026, 4, 10, 2, 0, tzinfo=UTC))  # March is over
    return clock


def stemi(n, pci_minutes, *, dept="emergency", month="2026-03", day=2):
    start = f"{month}-{day:02d}T10:00:00+08:00"
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
        h, m = divmod(10 * 60 + pci_minutes, 60)
        resources.append(
            procedure(
                f"pr{n}", f"e{n}", f"p{n}", start=f"{month}-{day:02d}T{h:02d}:{m:02d}:00+08:00"
            )
        )
    return transaction(*resources)


@pytest.fixture
def seeded(app_client, runtime, ingest_headers, admin_headers):
    # March 2026: emergency 3 of 4 in time, cardiology 0 of 1; March 2025: 1 of 2.
    for n, minutes, dept, month, day in [
        (1, 60, "emergency", "2026-03", 2),
        (2, 90, "emergency", "2026-03", 3),
        (3, 45, "emergency", "2026-03", 20),
        (4, 91, "emergency", "2026-03", 20),
        (5, 120, "cardiology", "2026-03", 5),
        (6, 50, "emergency", "2025-03", 10),
        (7, 150, "emergency", "2025-03", 11),
    ]:
        r = app_client.post(
            "/fhir", json=stemi(n, minutes, dept=dept, month=month, day=day), headers=ingest_headers
        )
        assert r.status_code == 200, r.text
    for month in MANUAL_MONTHS:
        numerator = 50 if month == DIP else 90
        r = app_client.put(
            f"/api/v1/indicators/{MANUAL}/manual/{month}",
            json={"numerator": numerator, "denominator": 100},
            headers=admin_headers,
        )
        assert r.status_code == 200, r.text
    r = app_client.put(
        f"/api/v1/indicators/{MANUAL}/target", json={"target": 0.95}, headers=admin_headers
    )
    assert r.status_code == 200, r.text
    drain(runtime)
    return app_client


def bulletin(client, headers, month=MONTH):
    r = client.get(f"/api/v1/bulletins/{month}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def value(client, headers, code, params=RANGE):
    r = client.get(f"/api/v1/indicators/{code}/value", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


VALUE_FIELDS = ("numerator", "denominator", "rate", "target", "meets_target", "pending", "excluded")


class TestHospitalBulletin:
    def test_every_indicator_line_is_the_value_of_the_month(self, seeded, reader_headers):
        body = bulletin(seeded, reader_headers)
        listed = [
            i["code"] for i in seeded.get("/api/v1/indicators", headers=reader_headers).json()
        ]
        assert [i["code"] for i in body["indicators"]] == listed
        for line in body["indicators"]:
            api = value(seeded, reader_headers, line["code"])
            assert {f: line[f] for f in VALUE_FIELDS} == {f: api[f] for f in VALUE_FIELDS}, line[
                "code"
            ]
        stemi_line = next(i for i in body["indicators"] if i["code"] == STEMI)
        assert (stemi_line["numerator"], stemi_line["denominator"]) == (3, 5)
        assert stemi_line["name_zh"] and stemi_line["target"] == 0.85
        assert stemi_line["meets_target"] is False
        assert body["complete"] is True and body["subject_name"] == "示例医院"
        assert body["title"]["zh"] == "示例医院 医疗质量安全月刊 2026年3月"

    def test_year_on_year_is_the_same_month_a_year_earlier(self, seeded, reader_headers):
        body = bulletin(seeded, reader_headers)
        line = next(i for i in body["indicators"] if i["code"] == STEMI)
        earlier = value(seeded, reader_headers, STEMI, {"from": "2025-03-01", "to": "2025-03-31"})
        assert (earlier["numerator"], earlier["denominator"]) == (1, 2)
        assert line["year_ago_rate"] == earlier["rate"] == 0.5

    def test_trends_are_the_series_of_twelve_months(self, seeded, reader_headers):
        body = bulletin(seeded, reader_headers)
        for code in (STEMI, MANUAL):
            series = seeded.get(
                f"/api/v1/indicators/{code}/series",
                params={"granularity": "month", "from": "2025-04-01", "to": "2026-03-31"},
                headers=reader_headers,
            ).json()["points"]
            trend = [p for p in body["trends"] if p["code"] == code]
            assert [p["month"] for p in trend] == [p["period_start"][:7] for p in series]
            assert len(trend) == 12
            for mine, api in zip(trend, series, strict=True):
                for field in ("numerator", "denominator", "rate", "center", "ucl", "lcl"):
                    assert mine[field] == api[field], (code, mine["month"], field)

    def test_a_point_outside_its_limits_is_a_signal(self, seeded, reader_headers):
        body = bulletin(seeded, reader_headers)
        signals = [s for s in body["signals"] if s["code"] == MANUAL]
        assert [(s["month"], s["side"], s["favourable"]) for s in signals] == [
            (DIP, "below", False)
        ]
        center = (11 * 90 + 50) / 1200
        assert signals[0]["center"] == pytest.approx(center)
        assert signals[0]["lcl"] == pytest.approx(center - 3 * (center * (1 - center) / 100) ** 0.5)
        line = next(i for i in body["indicators"] if i["code"] == MANUAL)
        assert line["signal"] is None and line["previous_month_rate"] == 0.9
        assert line["target"] == 0.95 and line["target_source"] == "tenant"

    def test_departments_off_target_are_the_breakdown_rows_that_missed(
        self, seeded, reader_headers
    ):
        body = bulletin(seeded, reader_headers)
        gaps = [g for g in body["departments_off_target"] if g["code"] == STEMI]
        rows = seeded.get(
            f"/api/v1/indicators/{STEMI}/breakdown", params=RANGE, headers=reader_headers
        ).json()["rows"]
        missed = {r["department"]: r for r in rows if r["meets_target"] is False}
        assert {g["department"] for g in gaps} == set(missed) == {"emergency", "cardiology"}
        # Both have fewer cases than min_cases (10): the larger shortfall first.
        assert [g["department"] for g in gaps] == ["cardiology", "emergency"]
        for g in gaps:
            api = missed[g["department"]]
            assert (g["numerator"], g["denominator"], g["rate"], g["target"]) == (
                api["numerator"],
                api["denominator"],
                api["rate"],
                api["target"],
            )
            assert g["shortfall"] == pytest.approx(api["target"] - api["rate"])
        assert gaps[1]["department_name"] == "急诊科"
        assert [g["few_cases"] for g in gaps] == [True, True]  # min_cases is 10

    def test_a_department_limited_key_gets_its_departments(self, seeded, runtime):
        with runtime.write() as session:
            _, secret = create_key(session, TENANT, Role.READER, departments=["cardiology"])
        headers = {"Authorization": f"Bearer {secret}"}
        body = bulletin(seeded, headers)
        assert body["departments"] == ["cardiology"]
        line = next(i for i in body["indicators"] if i["code"] == STEMI)
        assert (line["numerator"], line["denominator"]) == (0, 1)
        assert {g["department"] for g in body["departments_off_target"]} <= {"cardiology"}

    def test_the_current_month_is_provisional(self, seeded, reader_headers):
        body = bulletin(seeded, reader_headers, "2026-04")
        assert body["complete"] is False and body["period_to"] == "2026-04-30"

    def test_no_patient_data_in_a_bulletin(self, seeded, reader_headers):
        text = seeded.get(f"/api/v1/bulletins/{MONTH}", headers=reader_headers).text
        for leak in ("Patient/", "Encounter/", "张三", '"p1"', "e1"):
            assert leak not in text


def xlsx_rows(content, sheet):
    book = load_workbook(io.BytesIO(content))
    ws = book[sheet]
    header = [c.value for c in ws[4]]
    rows = []
    for row in ws.iter_rows(min_row=5):
        if row[0].value is None:
            continue
        rows.append({h: c for h, c in zip(header, row, strict=True)})
    return rows


class TestXlsx:
    def test_the_workbook_holds_the_numbers_of_the_api(self, seeded, reader_headers):
        r = seeded.get(f"/api/v1/bulletins/{MONTH}.xlsx", headers=reader_headers)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        )
        assert f"qcpulse-bulletin-{TENANT}-{MONTH}.xlsx" in r.headers["content-disposition"]
        book = load_workbook(io.BytesIO(r.content))
        assert book.sheetnames == [
            "指标 Indicators",
            "趋势 Trends",
            "SPC信号 SPC signals",
            "科室未达标 Departments",
        ]
        rows = xlsx_rows(r.content, "指标 Indicators")
        assert len(rows) == len(bulletin(seeded, reader_headers)["indicators"])
        for row in rows:
            code = row["编码 Code"].value
            api = value(seeded, reader_headers, code)
            assert row["分子 Numerator"].value == api["numerator"], code
            assert row["分母 Denominator"].value == api["denominator"], code
            assert row["率 Rate"].value == api["rate"], code
            assert row["目标 Target"].value == api["target"], code
        stemi_row = next(r for r in rows if r["编码 Code"].value == STEMI)
        assert isinstance(stemi_row["分子 Numerator"].value, int)
        assert isinstance(stemi_row["率 Rate"].value, float)
        assert stemi_row["率 Rate"].number_format == "0.0%"
        assert stemi_row["达标 Met"].value == "未达标 missed"
        assert (
            stemi_row["指标名称 Indicator"].value
            == seeded.get(f"/api/v1/indicators/{STEMI}", headers=reader_headers).json()["name"][
                "zh"
            ]
        )

    def test_trend_and_signal_sheets(self, seeded, reader_headers):
        content = seeded.get(f"/api/v1/bulletins/{MONTH}.xlsx", headers=reader_headers).content
        trend = [r for r in xlsx_rows(content, "趋势 Trends") if r["编码 Code"].value == MANUAL]
        assert [r["月份 Month"].value.strftime("%Y-%m") for r in trend] == MANUAL_MONTHS
        assert [r["分子 Numerator"].value for r in trend] == [
            50 if m == DIP else 90 for m in MANUAL_MONTHS
        ]
        signals = xlsx_rows(content, "SPC信号 SPC signals")
        assert [
            (r["编码 Code"].value, r["月份 Month"].value.strftime("%Y-%m")) for r in signals
        ] == [(MANUAL, DIP)]
        assert signals[0]["率 Rate"].value == 0.5


def pdf_tools():
    missing = [tool for tool in ("pdftoppm", "pdftotext", "pdffonts") if shutil.which(tool) is None]
    assert not missing, f"poppler-utils is needed: {missing} (apt-get install poppler-utils)"


class TestPdf:
    def test_the_pdf_renders_with_chinese_text(self, seeded, reader_headers, tmp_path: Path):
        pdf_tools()
        r = seeded.get(f"/api/v1/bulletins/{MONTH}.pdf", headers=reader_headers)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/pdf"
        path = tmp_path / "bulletin.pdf"
        path.write_bytes(r.content)
        subprocess.run(
            ["pdftoppm", "-png", "-r", "50", str(path), str(tmp_path / "page")], check=True
        )
        pages = sorted(tmp_path.glob("page*.png"))
        assert pages and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pages)
        text = subprocess.run(
            ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True
        ).stdout
        assert "示例医院 医疗质量安全月刊 2026年3月" in text
        names = {
            i["code"]: i["name"]["zh"]
            for i in seeded.get("/api/v1/indicators", headers=reader_headers).json()
        }
        compact = "".join(text.split())
        for code in (STEMI, MANUAL):
            assert "".join(names[code].split()) in compact, code
        assert "急诊科" in text
        fonts = subprocess.run(
            ["pdffonts", str(path)], check=True, capture_output=True, text=True
        ).stdout
        cjk = [line for line in fonts.splitlines() if "QcpulseCJK" in line or "WenQuanYi" in line]
        assert cjk and all(" yes " in line for line in cjk)  # embedded (and subset)


class TestValidationAndAccess:
    @pytest.mark.parametrize("month", ["2026-13", "2026-3", "26-03", "2026-00", "march", "1899-12"])
    @pytest.mark.parametrize("suffix", ["", ".xlsx", ".pdf"])
    def test_an_invalid_month_is_a_422(self, app_client, reader_headers, month, suffix):
        r = app_client.get(f"/api/v1/bulletins/{month}{suffix}", headers=reader_headers)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "month" in r.json()["detail"]

    def test_a_month_that_has_not_begun_has_no_bulletin_yet(self, app_client, reader_headers):
        r = app_client.get("/api/v1/bulletins/2026-05.pdf", headers=reader_headers)
        assert r.status_code == 404 and "has not begun" in r.json()["detail"]

    def test_the_month_parser(self):
        for bad in ("2026-13", "2026-3", "1899-12", "2026-00", "x"):
            with pytest.raises(UnprocessableError):
                parse_month(bad)
        assert parse_month("2026-03").isoformat() == "2026-03-01"

    def test_keys(self, seeded, runtime, ingest_headers, admin_headers):
        assert seeded.get(f"/api/v1/bulletins/{MONTH}").status_code == 401
        assert (
            seeded.get(f"/api/v1/bulletins/{MONTH}.xlsx", headers=ingest_headers).status_code == 403
        )
        assert seeded.get(f"/api/v1/bulletins/{MONTH}", headers=admin_headers).status_code == 200

    def test_a_reader_of_another_tenant_reads_only_its_own(self, seeded, runtime, reader_headers):
        other = {"Authorization": f"Bearer {make_key(runtime, Role.READER, OTHER_TENANT)}"}
        body = bulletin(seeded, other)
        assert body["subject_id"] == OTHER_TENANT
        assert all(i["denominator"] == 0 for i in body["indicators"])
        assert body["departments_off_target"] == [] and body["signals"] == []
        # and no region's bulletin: a tenant key has no region permission
        r = seeded.get(f"/api/v1/regions/R-TJ/bulletins/{MONTH}", headers=reader_headers)
        assert r.status_code == 403


# -- a region ---------------------------------------------------------------------------


@pytest.fixture
def region(seeded, runtime, ingest_headers):
    """Region R-TJ of two local members: H0001 (the seeded hospital) and H0002, which
    has two STEMI episodes in March, both in time; and a member that never reported."""
    other_ingest = {"Authorization": f"Bearer {make_key(runtime, Role.INGEST, OTHER_TENANT)}"}
    for n, minutes in [(21, 30), (22, 40)]:
        r = seeded.post("/fhir", json=stemi(n, minutes), headers=other_ingest)
        assert r.status_code == 200, r.text
    drain(runtime)
    with runtime.write() as session:
        regions.create_region(session, "R-TJ", name="天津市质控中心")
        regions.add_member(session, "R-TJ", "H0001", name="示例医院", tenant_id=TENANT)
        regions.add_member(session, "R-TJ", "H0002", name="第二医院", tenant_id=OTHER_TENANT)
        regions.add_member(session, "R-TJ", "H9999", name="未上报医院")
        _, secret = regions.create_region_key(session, "R-TJ")
        regions.create_region(session, "R-BH", name="滨海新区")
        _, other = regions.create_region_key(session, "R-BH")
    return {"Authorization": f"Bearer {secret}"}, {"Authorization": f"Bearer {other}"}


class TestRegionBulletin:
    def test_pooled_members_and_league(self, region, seeded, reader_headers, runtime):
        headers, _ = region
        r = seeded.get(f"/api/v1/regions/R-TJ/bulletins/{MONTH}", headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["scope"] == "region" and body["subject_name"] == "天津市质控中心"
        other = {"Authorization": f"Bearer {make_key(runtime, Role.READER, OTHER_TENANT)}"}
        mine, theirs = value(seeded, reader_headers, STEMI), value(seeded, other, STEMI)
        line = next(i for i in body["indicators"] if i["code"] == STEMI)
        assert (
            (line["numerator"], line["denominator"])
            == (
                mine["numerator"] + theirs["numerator"],
                mine["denominator"] + theirs["denominator"],
            )
            == (5, 7)
        )
        assert line["rate"] == pytest.approx(5 / 7) and line["pending"] is None
        league = {p["member_id"]: p for p in body["league"] if p["code"] == STEMI}
        assert league["H0002"]["rank"] == 1 and league["H0001"]["rank"] == 2
        assert league["H9999"]["reported"] is False and league["H9999"]["rate"] is None
        assert (league["H0001"]["numerator"], league["H0001"]["denominator"]) == (3, 5)
        table = seeded.get(
            f"/api/v1/regions/R-TJ/indicators/{STEMI}/league",
            params={"from": MONTH, "to": MONTH},
            headers=headers,
        )
        assert table.status_code == 200, table.text
        by_member = {m["member"]: m for m in table.json()["members"]}
        assert set(by_member) == set(league)
        for member_id, position in league.items():
            assert position["rate"] == by_member[member_id]["rate"]
            assert position["funnel"] == by_member[member_id]["funnel"]
            assert position["rank"] == by_member[member_id]["rank"]
        missed = [g for g in body["departments_off_target"] if g["code"] == STEMI]
        assert [g["department"] for g in missed] == ["H0001"]
        assert "Patient/" not in r.text and "Encounter/" not in r.text

    def test_region_files(self, region, seeded, tmp_path: Path):
        headers, _ = region
        r = seeded.get(f"/api/v1/regions/R-TJ/bulletins/{MONTH}.xlsx", headers=headers)
        assert r.status_code == 200, r.text
        league = [
            row for row in xlsx_rows(r.content, "排名 League") if row["编码 Code"].value == STEMI
        ]
        assert [(row["成员 Member"].value, row["排名 Rank"].value) for row in league] == [
            ("H0002", 1),
            ("H0001", 2),
            ("H9999", None),
        ]
        assert league[2]["已上报 Reported"].value == "未上报 no"
        pdf_tools()
        r = seeded.get(f"/api/v1/regions/R-TJ/bulletins/{MONTH}.pdf", headers=headers)
        assert r.status_code == 200, r.text
        path = tmp_path / "region.pdf"
        path.write_bytes(r.content)
        subprocess.run(
            ["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(path), str(tmp_path / "p")],
            check=True,
        )
        assert list(tmp_path.glob("p*.png"))
        text = subprocess.run(
            ["pdftotext", str(path), "-"], check=True, capture_output=True, text=True
        ).stdout
        assert (
            "天津市质控中心 医疗质量安全月刊 2026年3月" in text
            and "排名" in text
            and "未上报" in text
        )

    def test_region_access(self, region, seeded, admin_headers):
        headers, other_region = region
        # another region's key, an unknown region: 404 alike
        assert (
            seeded.get(f"/api/v1/regions/R-TJ/bulletins/{MONTH}", headers=other_region).status_code
            == 404
        )
        assert (
            seeded.get(f"/api/v1/regions/R-XX/bulletins/{MONTH}", headers=headers).status_code
            == 404
        )
        # a hospital's admin key has no region permission; a region key no tenant one
        assert (
            seeded.get(
                f"/api/v1/regions/R-TJ/bulletins/{MONTH}.pdf", headers=admin_headers
            ).status_code
            == 403
        )
        assert seeded.get(f"/api/v1/bulletins/{MONTH}", headers=headers).status_code == 403
        r = seeded.get("/api/v1/regions/R-TJ/bulletins/2026-13.xlsx", headers=headers)
        assert r.status_code == 422
