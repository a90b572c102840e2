"""The console for a region's key (质控中心, ``region-reader``): the session says so, the
region's page shows its members' league table as the league API answers it, draws the
funnel plot, downloads the month's bulletin, and offers no hospital-only page.

The browser tests add a second seeded hospital (H0002) to the console's server and a
region over both and a federated member that never reported; the session tests run on
the test database (SQLite or PostgreSQL) through the app."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from qcpulse.loader import Poster, load
from qcpulse.synth import HospitalConfig, generate
from services.regions.service import add_member, create_region, create_region_key
from shared.auth import Role, create_key, ensure_tenant, hash_key
from shared.clock import utcnow
from shared.models import ApiKey
from tests.console import harness
from tests.console.conftest import axe_violations
from tests.regions.helpers import REGION as HELPER_REGION
from tests.regions.helpers import make_region

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
SECOND = "H0002"
REGION = "TJ-HX"
REGION_NAME = "天津市河西区质控中心"
#: A federated member that has submitted nothing: shown as not reported, never zero.
SILENT = "H0107"
FUNNEL = "echarts.getInstanceByDom(document.querySelector('#funnel-chart'))"


def shoot(page, name: str, *, full_page: bool = False) -> None:
    """Screenshots for docs/console/ when QCPULSE_CONSOLE_SCREENSHOTS=1."""
    if os.environ.get("QCPULSE_CONSOLE_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


# -- the session read, on the test database -------------------------------------------


class TestSession:
    def test_a_region_key_is_told_its_region(self, app_client, runtime):
        key = make_region(runtime)
        r = app_client.get("/console/api/session", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["kind"] == "region"
        assert body["region"] == {"id": HELPER_REGION, "name": "天津市河西区质控中心"}
        assert body["role"] == "region-reader"
        assert body["tenant"] == HELPER_REGION
        assert body["tenant_name"] == "天津市河西区质控中心"
        assert body["timezone"] == "Asia/Shanghai"
        assert body["permissions"] == ["region:read"]
        assert body["departments"] is None and body["department_list"] == []

    def test_a_hospital_key_is_a_hospital_s(self, app_client, runtime, reader_headers):
        body = app_client.get("/console/api/session", headers=reader_headers).json()
        assert body["kind"] == "hospital" and body["region"] is None
        assert body["tenant"] == "H0001" and body["permissions"] == ["api:read"]

    def test_the_other_console_read_and_ingest_keys_stay_refused(
        self, app_client, runtime, ingest_headers
    ):
        region = {"Authorization": f"Bearer {make_region(runtime)}"}
        r = app_client.get("/console/api/timeline?episode=Encounter/e1", headers=region)
        assert r.status_code == 403
        assert app_client.get("/console/api/session", headers=ingest_headers).status_code == 403
        assert app_client.get("/console/api/session").status_code == 401

    def test_a_revoked_region_key_is_refused(self, app_client, runtime):
        key = make_region(runtime)
        with runtime.write() as session:
            row = session.query(ApiKey).filter_by(key_hash=hash_key(key)).one()
            row.revoked_at = utcnow()
        r = app_client.get("/console/api/session", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 401

    def test_the_openapi_schema_documents_the_region(self, app_client):
        schema = app_client.get("/openapi.json").json()
        session = schema["components"]["schemas"]["SessionOut"]
        assert {"kind", "region"} <= set(session["required"])
        assert session["properties"]["kind"]["enum"] == ["hospital", "region"]


# -- the region's page in the browser ---------------------------------------------------


@dataclass
class RegionSetup:
    key: str
    code: str
    month: str
    league: dict


def _seed_second_hospital(server: harness.Server) -> None:
    with server.runtime.write() as session:
        ensure_tenant(session, SECOND, name="第二医院", timezone="Asia/Shanghai")
        _, ingest = create_key(session, SECOND, Role.INGEST, name="second hospital feed")
    now = utcnow()
    days = 120
    config = HospitalConfig.for_episodes(300, days, tenant=SECOND)
    sends = generate(config, start=now - timedelta(days=days), days=days, seed=11)
    poster = Poster(server.url, ingest)
    try:
        load(poster, harness.merged((s.bundle for s in sends if s.at <= now), 100), concurrency=2)
    finally:
        poster.close()
    harness.wait_until_evaluated(server)


@pytest.fixture(scope="module")
def region(server) -> RegionSetup:
    """Region TJ-HX over H0001 and H0002 (both tenants of the server, both with data)
    and H0107 (federated, silent); the proportion (else any computed indicator) with
    the most cases last month that both hospitals reported."""
    _seed_second_hospital(server)
    with server.runtime.write() as session:
        create_region(session, REGION, name=REGION_NAME)
        add_member(session, REGION, harness.TENANT, name="示例医院", tenant_id=harness.TENANT)
        add_member(session, REGION, SECOND, name="第二医院", tenant_id=SECOND)
        add_member(session, REGION, SILENT, name="联网医院")
        _, key = create_region_key(session, REGION, name="console region test")
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        indicators = client.get(f"/api/v1/regions/{REGION}/indicators").json()["indicators"]
        best: tuple[tuple[bool, int], str, dict] | None = None
        for ind in indicators:
            if ind["kind"] == "manual":
                continue
            league = client.get(f"/api/v1/regions/{REGION}/indicators/{ind['code']}/league")
            assert league.status_code == 200, league.text
            body = league.json()
            both = {m["member"] for m in body["members"] if m["reported"] and m["denominator"]}
            score = (ind["kind"] == "proportion", body["pooled"]["denominator"])
            if {harness.TENANT, SECOND} <= both and (best is None or score > best[0]):
                best = (score, ind["code"], body)
    assert best is not None, "no indicator both seeded hospitals reported last month"
    _, code, league = best
    return RegionSetup(key=key, code=code, month=league["to"], league=league)


def region_sign_in(page, server, key: str) -> None:
    page.goto(server.url + "/")
    page.get_by_label("访问密钥").fill(key)
    page.get_by_role("button", name="登录").click()
    page.wait_for_selector("#members-summary")


def rate_text(value: float | None, unit: str) -> str:
    """format.js ``rate``."""
    if value is None:
        return "—"
    if unit == "percent":
        return f"{value * 100:.1f}%"
    if unit == "per_100":
        return f"{value:.2f}/100"
    return f"{value:.2f}" + {"per_1000": "‰", "per_10000": "‱"}.get(unit, "")


def table_rows(page, selector: str) -> list[list[str]]:
    return page.eval_on_selector_all(
        f"{selector} tbody tr",
        "rows => rows.map(r => [...r.querySelectorAll('td')].map(td => td.innerText.trim()))",
    )


class TestRegionPage:
    def test_the_session_json_carries_the_region(self, server, region):
        r = httpx.get(
            f"{server.url}/console/api/session",
            headers={"Authorization": f"Bearer {region.key}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["kind"] == "region"
        assert body["region"] == {"id": REGION, "name": REGION_NAME}
        assert body["role"] == "region-reader"

    def test_the_home_lists_members_and_offers_no_hospital_page(self, page, server, region):
        region_sign_in(page, server, region.key)
        assert page.evaluate("sessionStorage.getItem('qcpulse.key')") == region.key
        nav = page.locator("#nav a").all_inner_texts()
        assert nav == ["质控中心", "质量月刊", "API 文档"]
        assert REGION_NAME in page.locator("h1").inner_text()
        members = table_rows(page, "section[aria-labelledby='members-h']")
        by_id = {row[0]: row for row in members}
        assert set(by_id) == {harness.TENANT, SECOND, SILENT}
        assert "已上报" in by_id[harness.TENANT][3] and "已上报" in by_id[SECOND][3]
        assert "未上报" in by_id[SILENT][3]
        assert page.locator("tr.row-missing", has_text=SILENT).count() == 1
        # Every indicator of the region's catalogue links to its league table.
        catalogue = httpx.get(
            f"{server.url}/api/v1/regions/{REGION}/indicators",
            headers={"Authorization": f"Bearer {region.key}"},
        ).json()["indicators"]
        links = page.locator("section[aria-labelledby='region-ind-h'] tbody a")
        assert links.count() == len(catalogue)
        shoot(page, "region-home")
        # A hospital-only route (cases, a timeline) is not served: back to the region.
        for hospital_only in [f"#/cases/{region.code}", "#/case/X/Y", "#/alerts", "#/manual"]:
            page.goto(f"{server.url}/{hospital_only}")
            page.wait_for_function("location.hash === '#/'")
            page.wait_for_selector("#members-summary")
        assert page.locator("#cases-list, #timeline, #alert-feed").count() == 0

    def test_the_league_table_and_funnel_are_the_api_s(self, page, server, region):
        region_sign_in(page, server, region.key)
        page.locator(
            f"section[aria-labelledby='region-ind-h'] a[href^='#/league/{region.code}?']"
        ).click()
        page.wait_for_selector("#league-table tbody tr")
        page.wait_for_selector("#funnel-chart canvas")
        league = region.league
        assert page.get_by_label("起始月份").input_value() == region.month
        rows = {row[1]: row for row in table_rows(page, "#league-table")}
        unit = league["unit"]
        assert len(rows) == len(league["members"]) == 3
        for member in league["members"]:
            row = rows[f"{member['name']} ({member['member']})"]
            if member["reported"]:
                assert row[0] == str(member["rank"])
                assert row[2] == rate_text(member["rate"], unit)
                assert row[3] == str(member["numerator"])
                assert row[4] == str(member["denominator"])
                low, high = member["ci95"]
                assert row[5] == f"{rate_text(low, unit)} – {rate_text(high, unit)}"
                assert member["funnel"] is not None
                assert row[6].endswith(
                    {
                        "inside": "控制限内",
                        "above_95": "高于 95% 上限",
                        "above_998": "高于 99.8% 上限",
                        "below_95": "低于 95% 下限",
                        "below_998": "低于 99.8% 下限",
                    }[member["funnel"]]
                )
                assert row[6].startswith("⚑") == (member["funnel"] != "inside")
            else:
                # Not reported: said so, never 0.
                assert member["member"] == SILENT
                assert row[2] == "未上报" and row[3] == "—" and row[4] == "—"
                assert row[0] == "—"
        assert {harness.TENANT, SECOND} <= {m["member"] for m in league["members"] if m["reported"]}
        # The funnel plot: one point per member that reported, at (denominator, rate).
        points = page.evaluate(f"{FUNNEL}.getOption().series[0].data.map(d => d.value)")
        scale = 100 if unit == "percent" else 1
        expected = sorted(
            (m["denominator"], m["rate"] * scale) for m in league["members"] if m["reported"]
        )
        points = sorted((x, y) for x, y in points)
        assert [x for x, _ in points] == [x for x, _ in expected]
        assert [y for _, y in points] == pytest.approx([y for _, y in expected], abs=0.006)
        limits = page.evaluate(f"{FUNNEL}.getOption().series.map(s => s.data.length)")
        assert limits[2:] == [len(league["funnel_curve"])] * 4
        ink = page.evaluate(
            """() => {
              const c = document.querySelector('#funnel-chart canvas');
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              let n = 0;
              for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
              return n;
            }"""
        )
        assert ink > 2000
        shoot(page, "region", full_page=True)

    def test_the_bulletin_links_download_both_files(self, page, server, region):
        region_sign_in(page, server, region.key)
        page.goto(f"{server.url}/#/league/{region.code}?from={region.month}&to={region.month}")
        page.wait_for_selector("#league-table tbody tr")
        month = region.month
        for label, ext, media_type, magic in [
            ("下载 PDF", "pdf", "application/pdf", b"%PDF-"),
            (
                "下载 Excel (XLSX)",
                "xlsx",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                b"PK",
            ),
        ]:
            path = f"/api/v1/regions/{REGION}/bulletins/{month}.{ext}"
            with (
                page.expect_response(lambda r, path=path: r.url.endswith(path)) as response,
                page.expect_download() as info,
            ):
                page.get_by_role("button", name=label).click()
            assert response.value.status == 200
            assert response.value.headers["content-type"] == media_type
            download = info.value
            assert download.suggested_filename == f"qcpulse-bulletin-{REGION}-{month}.{ext}"
            assert Path(download.path()).read_bytes()[: len(magic)] == magic
            page.get_by_role("status").filter(has_text="已下载").wait_for()

    def test_the_bulletin_page_shows_the_region_s_bulletin(self, page, server, region):
        region_sign_in(page, server, region.key)
        page.get_by_role("link", name="质量月刊").click()
        page.wait_for_selector(".table-wrap tbody tr")
        bulletin = httpx.get(
            f"{server.url}/api/v1/regions/{REGION}/bulletins/{region.month}",
            headers={"Authorization": f"Bearer {region.key}"},
            timeout=60,
        ).json()
        assert bulletin["scope"] == "region"
        with_data = [i for i in bulletin["indicators"] if i["denominator"] > 0]
        table = page.locator(".table-wrap").first
        assert table.locator("tbody tr").count() == len(with_data)
        page.get_by_role("heading", name="未达标成员医院").wait_for()
        xlsx = f"{region.month}.xlsx"
        with (
            page.expect_response(lambda r: r.url.endswith(xlsx)) as response,
            page.expect_download(),
        ):
            page.get_by_role("button", name="下载 Excel (XLSX)").click()
        assert response.value.status == 200

    def test_english(self, page, server, region):
        region_sign_in(page, server, region.key)
        page.get_by_role("button", name="English").click()
        page.get_by_role("heading", name="Member hospitals").first.wait_for()
        page.goto(f"{server.url}/#/league/{region.code}")
        page.get_by_role("heading", name="Member league table").first.wait_for()
        page.wait_for_selector("#funnel-chart canvas")
        assert "Not reported" in page.locator("#league-table").inner_text()
        page.get_by_role("button", name="中文").click()
        page.get_by_role("heading", name="成员医院排名").first.wait_for()

    @pytest.mark.parametrize("where", ["home", "league", "bulletin"])
    def test_no_serious_axe_violations(self, page, server, region, where):
        region_sign_in(page, server, region.key)
        target = {"home": "#/", "league": f"#/league/{region.code}", "bulletin": "#/bulletin"}
        page.goto(f"{server.url}/{target[where]}")
        page.wait_for_selector("table.data tbody tr")
        if where == "league":
            page.wait_for_selector("#league-table tbody tr")
        violations = axe_violations(page)
        assert not violations, [
            (v["id"], v["help"], [n["target"] for n in v["nodes"][:3]]) for v in violations
        ]
