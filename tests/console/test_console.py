"""The console in a real browser against a real server: each test fails when the
feature it names is broken."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from shared.auth import Role
from shared.clock import utcnow
from tests.console import harness
from tests.console.conftest import axe_violations, sign_in

CHART = "echarts.getInstanceByDom(document.querySelector('#control-chart'))"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"


def shoot(page, name: str) -> None:
    """Screenshots for docs/console/ when QCPULSE_CONSOLE_SCREENSHOTS=1."""
    if os.environ.get("QCPULSE_CONSOLE_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


@pytest.fixture(scope="module")
def api(server):
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture(scope="module")
def busiest(api) -> str:
    """The computed indicator with the most cases over the seeded months."""
    best, most = None, -1
    for ind in api.get("/api/v1/indicators").json():
        if ind["kind"] == "manual":
            continue
        value = api.get(
            f"/api/v1/indicators/{ind['code']}/value",
            params={"from": "2020-01-01", "to": "2030-12-31"},
        ).json()
        if value["denominator"] > most:
            best, most = ind["code"], value["denominator"]
    assert best and most > 20, "the seeded hospital has too little data"
    return best


def chart_points(page, selector: str) -> int:
    return page.evaluate(
        """(sel) => {
          const chart = echarts.getInstanceByDom(document.querySelector(sel));
          if (!chart) return -1;
          return chart.getOption().series[0].data.filter(d => d.value !== null).length;
        }""",
        selector,
    )


def canvas_ink(page, selector: str) -> int:
    """Non-blank pixels of the chart's canvas: the chart was drawn, not just mounted."""
    return page.evaluate(
        """(sel) => {
          const c = document.querySelector(sel + ' canvas');
          const ctx = c.getContext('2d');
          const d = ctx.getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
          return n;
        }""",
        selector,
    )


class TestSignIn:
    def test_overview_has_a_card_per_indicator_and_the_key_stays_in_the_session(
        self, page, server, api
    ):
        sign_in(page, server)
        catalogue = api.get("/api/v1/indicators").json()
        page.wait_for_function(
            "n => document.querySelectorAll('#cards .indicator-card:not(.loading)').length === n",
            arg=len(catalogue),
        )
        codes = page.eval_on_selector_all(
            "#cards .indicator-card", "els => els.map(e => e.dataset.code)"
        )
        assert sorted(codes) == sorted(i["code"] for i in catalogue)
        assert page.locator(".spark canvas").count() == len(catalogue)
        assert page.evaluate("sessionStorage.getItem('qcpulse.key')") == server.reader_key
        assert server.reader_key not in page.evaluate("JSON.stringify(localStorage)")
        assert all(server.reader_key not in url for url in page.context.pages[0].url.split())
        page.wait_for_selector(".overview-table table.data")
        shoot(page, "overview")

    def test_a_wrong_key_is_refused(self, page, server, recorder):
        recorder.http_errors_expected = True
        page.goto(server.url + "/")
        page.get_by_label("访问密钥").fill("qcp_not-a-key")
        page.get_by_role("button", name="登录").click()
        page.get_by_role("alert").wait_for()
        assert page.locator("#cards").count() == 0
        assert page.evaluate("sessionStorage.getItem('qcpulse.key')") is None

    def test_the_group_filter_keeps_manual_indicators_only(self, page, server, api):
        sign_in(page, server)
        page.get_by_label("指标类别").select_option("manual")
        manual = [i["code"] for i in api.get("/api/v1/indicators").json() if i["kind"] == "manual"]
        page.wait_for_function(
            f"document.querySelectorAll('#cards .indicator-card').length === {len(manual)}"
        )
        codes = page.eval_on_selector_all(
            "#cards .indicator-card", "els => els.map(e => e.dataset.code)"
        )
        assert sorted(codes) == sorted(manual)


class TestIndicator:
    def test_control_chart_is_drawn_with_the_api_series(self, page, server, api, busiest):
        sign_in(page, server)
        page.locator(f'.indicator-card[data-code="{busiest}"] a.card-link').click()
        page.wait_for_selector("#control-chart canvas")
        page.wait_for_selector("section[aria-labelledby='league-h'] table.data")
        series = api.get(
            f"/api/v1/indicators/{busiest}/series", params={"granularity": "month"}
        ).json()
        with_rate = [p for p in series["points"] if p["rate"] is not None]
        assert with_rate
        assert chart_points(page, "#control-chart") == len(with_rate)
        assert canvas_ink(page, "#control-chart") > 2000
        option_limits = page.evaluate(f"{CHART}.getOption().series.map(s => s.name)")
        assert option_limits[1:4] == ["中心线", "控制上限", "控制下限"]
        shoot(page, "indicator")

        # Week granularity asks the API for weeks and redraws.
        with page.expect_request(lambda r: "/series" in r.url and "granularity=week" in r.url):
            page.get_by_role("button", name="周").click()
        page.wait_for_function(
            "document.querySelector('#control-chart canvas') && "
            f"{CHART}.getOption().xAxis[0].data.length > 20"
        )

    def test_opening_a_department_filters_the_chart(self, page, server, busiest):
        sign_in(page, server)
        page.goto(f"{server.url}/#/indicator/{busiest}")
        link = page.locator("section[aria-labelledby='league-h'] tbody a").first
        link.wait_for()
        with page.expect_request(lambda r: "/series" in r.url and "department=" in r.url) as req:
            link.click()
        dept = req.value.url.split("department=")[1].split("&")[0]
        page.wait_for_selector("#control-chart canvas")
        assert page.get_by_label("科室", exact=True).input_value() == dept
        assert page.locator("tr.row-current").count() == 1

    def test_csv_export_downloads_the_league_table(self, page, server, busiest):
        sign_in(page, server)
        page.goto(f"{server.url}/#/indicator/{busiest}")
        table = page.locator("section[aria-labelledby='league-h'] .table-wrap")
        table.locator("tbody tr").first.wait_for()
        rows = table.locator("tbody tr").count()
        with page.expect_download() as info:
            table.get_by_role("button", name="导出 CSV").click()
        download = info.value
        assert download.suggested_filename.endswith(".csv")
        text = Path(download.path()).read_text(encoding="utf-8")
        assert text.startswith("\ufeffdepartment,rate,numerator,denominator")
        assert len(text.strip().splitlines()) == rows + 1


class TestCases:
    def test_a_case_timeline_shows_facts_clock_and_fhir(self, page, server, busiest):
        sign_in(page, server)
        page.goto(f"{server.url}/#/cases/{busiest}")
        first = page.locator("#cases-list tbody a").first
        first.wait_for()
        episode = first.inner_text()
        first.click()
        page.wait_for_selector("#timeline li")
        assert episode in page.locator("h1").inner_text()
        labels = page.locator("#timeline .tl-label").all_inner_texts()
        assert "计时起点" in labels
        assert any(
            lbl not in ("计时起点", "时限截止", "计时终点", "到院", "出院") for lbl in labels
        )
        times = page.locator("#timeline time").evaluate_all(
            "els => els.map(e => e.getAttribute('datetime'))"
        )
        known = [datetime.fromisoformat(t) for t in times if t]
        assert len(known) >= 2 and known == sorted(known)
        shoot(page, "timeline")
        page.locator("#timeline button.btn-link").first.click()
        page.wait_for_function(
            "document.getElementById('dialog-body').textContent.includes('resourceType')"
        )
        page.get_by_role("button", name="关闭").click()

    def test_status_filter_and_paging(self, page, server, busiest, api):
        sign_in(page, server)
        page.goto(f"{server.url}/#/cases/{busiest}?status=numerator")
        page.locator("#cases-list tbody tr").first.wait_for()
        statuses = set(page.locator("#cases-list .status").all_inner_texts())
        assert statuses <= {"达标（分子）"}
        total = len(
            api.get(
                f"/api/v1/indicators/{busiest}/cases", params={"status": "numerator", "limit": 1000}
            ).json()["cases"]
        )
        if total > 50:
            page.get_by_role("button", name="下一页").click()
            page.wait_for_selector("text=第 2 页")


class TestLanguage:
    def test_switch_to_english_and_back(self, page, server):
        sign_in(page, server)
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        page.get_by_role("button", name="English").click()
        page.get_by_role("heading", name="Indicator overview").wait_for()
        assert page.evaluate("document.documentElement.lang") == "en"
        assert page.get_by_role("link", name="Alerts").is_visible()
        page.get_by_role("button", name="中文").click()
        page.get_by_role("heading", name="指标总览").wait_for()

    def test_times_are_shown_in_the_tenant_zone(self, browser, server, busiest, recorder):
        # A browser in New York still shows Shanghai times (the tenant's zone).
        context = browser.new_context(timezone_id="America/New_York", locale="en-US")
        page = context.new_page()
        try:
            sign_in(page, server)
            page.goto(f"{server.url}/#/cases/{busiest}")
            page.locator("#cases-list tbody tr").first.wait_for()
            shown = page.locator("#cases-list tbody tr").first.locator("td").nth(3).inner_text()
            start = httpx.get(
                f"{server.url}/api/v1/indicators/{busiest}/cases",
                headers={"Authorization": f"Bearer {server.reader_key}"},
                params={"limit": 1},
            ).json()["cases"][0]["clock_start"]
            local = datetime.fromisoformat(start).astimezone(ZoneInfo("Asia/Shanghai"))
            assert local.strftime("%H:%M") in shown
        finally:
            context.close()


def stemi_without_pci(n: int) -> dict:
    arrival = utcnow() - timedelta(hours=3)
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "id": f"live-pat-{n}",
                    "gender": "male",
                    "birthDate": "1960-01-01",
                    "identifier": [{"system": "https://hospital.example.cn/mrn", "value": f"L{n}"}],
                },
                "request": {"method": "PUT", "url": f"Patient/live-pat-{n}"},
            },
            {
                "resource": {
                    "resourceType": "Encounter",
                    "id": f"live-enc-{n}",
                    "status": "in-progress",
                    "class": {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "EMER",
                    },
                    "subject": {"reference": f"Patient/live-pat-{n}"},
                    "period": {"start": arrival.isoformat()},
                    "serviceProvider": {"reference": "Organization/CARD", "display": "心内科"},
                },
                "request": {"method": "PUT", "url": f"Encounter/live-enc-{n}"},
            },
            {
                "resource": {
                    "resourceType": "Condition",
                    "id": f"live-cond-{n}",
                    "code": {
                        "coding": [
                            {"system": "urn:oid:2.16.156.10011.2.3.3.11", "code": "I21.000x001"}
                        ]
                    },
                    "subject": {"reference": f"Patient/live-pat-{n}"},
                    "encounter": {"reference": f"Encounter/live-enc-{n}"},
                    "onsetDateTime": arrival.isoformat(),
                    "recordedDate": arrival.isoformat(),
                },
                "request": {"method": "PUT", "url": f"Condition/live-cond-{n}"},
            },
        ],
    }


class TestAlerts:
    def test_a_new_alert_arrives_live_and_can_be_acknowledged(self, page, server):
        sign_in(page, server)
        page.goto(f"{server.url}/#/alerts")
        page.wait_for_selector("#alert-feed table.data")
        before = page.locator("#alert-feed tbody tr.row-new").count()
        assert before == 0
        response = httpx.post(
            f"{server.url}/fhir",
            json=stemi_without_pci(1),
            headers={
                "Authorization": f"Bearer {server.ingest_key}",
                "Content-Type": "application/fhir+json",
            },
        )
        assert response.status_code == 200, response.text
        row = page.locator("#alert-feed tbody tr.row-new", has_text="live-enc-1").first
        row.wait_for(timeout=30_000)
        # It came over the event stream, not by polling.
        assert page.locator(".live-state").get_attribute("data-mode") == "stream"
        assert "已超时" in row.inner_text() or "即将超时" in row.inner_text()
        assert "条新告警" in page.locator("#live").inner_text()
        row.get_by_role("button", name="确认").click()
        page.locator("#alert-feed tbody tr", has_text="live-enc-1").filter(
            has_text="已确认"
        ).first.wait_for()

    def test_the_stream_sends_the_list_and_then_its_changes(self, server):
        headers = {"Authorization": f"Bearer {server.reader_key}"}
        listed = httpx.get(f"{server.url}/api/v1/alerts", params={"limit": 100}, headers=headers)
        with httpx.stream(
            "GET",
            f"{server.url}/api/v1/alerts/stream",
            params={"limit": 100},
            headers=headers,
            timeout=60,
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = _sse(response.iter_lines())
            assert next(events)["alerts"] == listed.json()["alerts"]
            posted = httpx.post(
                f"{server.url}/fhir",
                json=stemi_without_pci(2),
                headers={
                    "Authorization": f"Bearer {server.ingest_key}",
                    "Content-Type": "application/fhir+json",
                },
            )
            assert posted.status_code == 200, posted.text
            new = next(
                a for page in events for a in page["alerts"] if "live-enc-2" in json.dumps(a)
            )
            ack = httpx.post(f"{server.url}/api/v1/alerts/{new['id']}/ack", headers=headers)
            assert ack.status_code == 200, ack.text
            acknowledged = next(
                a
                for page in events
                for a in page["alerts"]
                if a["id"] == new["id"] and a["status"] == "acknowledged"
            )
            assert acknowledged["acknowledged_at"]

    def test_the_stream_needs_a_key(self, server):
        r = httpx.get(f"{server.url}/api/v1/alerts/stream", timeout=10)
        assert r.status_code == 401

    def test_admin_sees_webhook_delivery_attempts(self, page, server, api):
        sub = api.post(
            "/api/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook", "events": ["*"]}
        ).json()
        api.post(f"/api/v1/subscriptions/{sub['id']}/test")
        sign_in(page, server, server.admin_key)
        page.goto(f"{server.url}/#/alerts")
        page.locator("section[aria-labelledby='hooks-h'] tbody tr", has_text=sub["id"]).get_by_role(
            "button", name="查看推送"
        ).click()
        page.wait_for_selector("#deliveries tbody tr td")
        page.wait_for_function(
            "document.querySelector('#deliveries tbody').innerText.includes('ping')", timeout=30_000
        )


class TestDepartmentLimit:
    def test_a_limited_key_sees_its_department_only(self, page, server, busiest, api):
        key = server.key(Role.READER, name="心内科 only", departments=["CARD"])
        sign_in(page, server, key)
        options = page.get_by_label("科室", exact=True).locator("option").all_inner_texts()
        assert len(options) == 2 and "CARD" in options[1]
        page.goto(f"{server.url}/#/indicator/{busiest}")
        league = page.locator("section[aria-labelledby='league-h'] tbody tr")
        league.first.wait_for()
        text = page.locator("main").inner_text()
        names = {
            d["code"]: d["name"] for d in api.get("/console/api/session").json()["department_list"]
        }
        for code, name in names.items():
            if code != "CARD":
                assert f"({code})" not in text and name not in text, code
        assert league.count() == 1
        page.goto(f"{server.url}/#/alerts")
        page.wait_for_selector("#alert-feed table.data")
        departments = set(page.locator("#alert-feed tbody tr td:nth-child(4)").all_inner_texts())
        assert departments <= {"CARD", "无数据"}


class TestManualAndReport:
    def test_manual_entry_is_saved_and_listed(self, page, server, api):
        sign_in(page, server, server.admin_key)
        page.get_by_role("link", name="手工录入").click()
        page.get_by_label("分子").fill("7")
        page.get_by_label("分母").fill("9")
        page.get_by_label("备注").fill("console test")
        page.get_by_role("button", name="保存").click()
        page.get_by_role("status").filter(has_text="已保存").wait_for()
        page.locator("table.data tbody tr", has_text="console test").wait_for()

    def test_the_monthly_report_lists_every_indicator(self, page, server, api):
        sign_in(page, server)
        page.get_by_role("link", name="月报").click()
        catalogue = api.get("/api/v1/indicators").json()
        table = page.locator("article.report .table-wrap").last
        table.locator("tbody tr").first.wait_for()
        assert table.locator("tbody tr").count() == len(catalogue)
        page.emulate_media(media="print")
        assert page.locator("#topbar").is_hidden()


class TestBulletin:
    def test_the_bulletin_page_shows_its_table_and_downloads_both_files(self, page, server, api):
        from io import BytesIO

        from openpyxl import load_workbook

        sign_in(page, server)
        page.get_by_role("link", name="质量月刊").click()
        month = page.get_by_label("月份").input_value()
        bulletin = api.get(f"/api/v1/bulletins/{month}").json()
        with_data = [i for i in bulletin["indicators"] if i["denominator"] > 0]
        assert with_data, "the seeded hospital has no indicator last month"
        table = page.locator(".table-wrap").first
        table.locator("tbody tr").first.wait_for()
        assert table.locator("tbody tr").count() == len(with_data)
        first = with_data[0]
        row = table.locator("tbody tr", has_text=first["code"]).first
        assert f"{first['numerator']}" in row.inner_text()
        with page.expect_download() as info:
            page.get_by_role("button", name="下载 Excel (XLSX)").click()
        download = info.value
        assert download.suggested_filename == f"qcpulse-bulletin-{harness.TENANT}-{month}.xlsx"
        book = load_workbook(BytesIO(Path(download.path()).read_bytes()))
        assert book.sheetnames[0] == "指标 Indicators"
        with page.expect_download() as info:
            page.get_by_role("button", name="下载 PDF").click()
        assert Path(info.value.path()).read_bytes()[:5] == b"%PDF-"
        page.get_by_role("status").filter(has_text="已下载").wait_for()


class TestAccessibility:
    def test_keyboard_only_sign_in_and_navigation(self, page, server):
        page.goto(server.url + "/")
        page.wait_for_selector("#key")
        assert page.evaluate("document.activeElement.id") == "key"  # focused for typing
        page.keyboard.type(server.reader_key)
        page.keyboard.press("Enter")
        page.wait_for_selector("#cards .indicator-card:not(.loading)")
        page.reload()
        page.wait_for_selector("#cards .indicator-card:not(.loading)")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip"
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.classList.contains('card-link')"):
                break
        else:
            pytest.fail("no indicator card is reachable with Tab")
        page.keyboard.press("Enter")
        page.wait_for_selector("#control-chart")

    @pytest.mark.parametrize(
        "where", ["signin", "overview", "indicator", "cases", "alerts", "report", "bulletin"]
    )
    def test_no_serious_axe_violations(self, page, server, busiest, where):
        if where == "signin":
            page.goto(server.url + "/")
            page.wait_for_selector("#key")
        else:
            sign_in(page, server)
            target = {
                "overview": "#/",
                "indicator": f"#/indicator/{busiest}",
                "cases": f"#/cases/{busiest}",
                "alerts": "#/alerts",
                "report": "#/report",
                "bulletin": "#/bulletin",
            }[where]
            page.goto(f"{server.url}/{target}")
            page.wait_for_selector("table.data tbody tr")
        violations = axe_violations(page)
        assert not violations, [
            (v["id"], v["help"], [n["target"] for n in v["nodes"][:3]]) for v in violations
        ]


class TestOffline:
    def test_docs_and_redoc_load_their_assets_from_the_server(self, page, server):
        page.goto(server.url + "/docs")
        page.wait_for_selector(".swagger-ui .information-container")
        page.goto(server.url + "/redoc")
        page.wait_for_selector("redoc .api-content, [role='main'], .api-info", timeout=20_000)


def _sse(lines):
    """The ``data`` of each server-sent event, decoded; comments are skipped."""
    data: list[str] = []
    for line in lines:
        if line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            yield json.loads("\n".join(data))
            data = []
