"""The region's submission endpoint: summary MeasureReports from federated members,
every version kept, identical re-sends not counted, refusals store nothing."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from qcpulse.cli import main as cli_main
from services.indicators import catalogue_for
from services.indicators.measure_report import measure_report
from services.indicators.queries import Counts, shape_of
from services.regions.federation import (
    MEMBER_SYSTEM,
    SubmissionRow,
    authenticate_submitter,
    create_submission_key,
    report_digest,
    report_month,
    submission_versions,
    submitted_counts,
)
from services.regions.service import add_member, create_region
from shared.errors import ConflictError, NotFoundError, UnauthorizedError
from tests.conftest import TENANT

REGION = "TJ-FED"
CODE = "PIT-2026-23"
TZ = ZoneInfo("Asia/Shanghai")
PATH = f"/api/v1/regions/{REGION}/submissions"


@pytest.fixture
def region(runtime):
    """A region with two federated members (M1, M2), a local one (the tenant H0001),
    and a submission key for M1."""
    with runtime.write() as session:
        create_region(session, REGION, name="天津市胸痛质控中心")
        create_region(session, "OTHER-REG", name="Other")
        add_member(session, REGION, "M1", name="第一医院")
        add_member(session, REGION, "M2", name="第二医院")
        add_member(session, REGION, "LOCAL", name="本地医院", tenant_id=TENANT)
        add_member(session, "OTHER-REG", "M1", name="第一医院")
        _, m1 = create_submission_key(session, REGION, "M1")
        _, m2 = create_submission_key(session, REGION, "M2")
        _, other = create_submission_key(session, "OTHER-REG", "M1")
    return {"M1": m1, "M2": m2, "other": other}


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/fhir+json"}


def report(
    month: int = 3,
    numerator: int = 3,
    denominator: int = 4,
    *,
    department: str | None = None,
    member: str = "M1",
    code: str = CODE,
) -> dict[str, Any]:
    """A report as a member's qcpulse builds it (the same builder)."""
    defn = catalogue_for(None).get(code)
    assert defn is not None
    start = date(2026, month, 1)
    end = date(2026, month + 1, 1).replace(day=1) if month < 12 else date(2027, 1, 1)
    end = date.fromordinal(end.toordinal() - 1)
    counts = Counts(numerator=numerator, denominator_only=denominator - numerator)
    out = measure_report(
        defn,
        shape_of(defn),
        "H-remote",
        start,
        end,
        TZ,
        counts,
        department=department,
        generated=datetime.now(UTC),
    )
    out["reporter"] = {"identifier": {"system": MEMBER_SYSTEM, "value": member}}
    return out


def bundle(*reports: dict[str, Any], btype: str = "collection") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": btype, "entry": [{"resource": r} for r in reports]}


def stored(runtime) -> int:
    with runtime.read() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(SubmissionRow)) or 0)


def diagnostics(response) -> str:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return "; ".join(i["diagnostics"] for i in body["issue"])


class TestAccepting:
    def test_every_version_is_kept_and_an_identical_resend_is_not_one(
        self, app_client, runtime, region
    ):
        first = bundle(report(), report(numerator=2, denominator=2, department="emergency"))
        r = app_client.post(PATH, json=first, headers=headers(region["M1"]))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/fhir+json")
        assert r.json()["issue"][0]["severity"] == "information"
        assert diagnostics(r) == "accepted 2, unchanged 0"

        # Rebuilt a minute later: new date, same figures.
        again = bundle(report(), report(numerator=2, denominator=2, department="emergency"))
        r = app_client.post(PATH, json=again, headers=headers(region["M1"]))
        assert diagnostics(r) == "accepted 0, unchanged 2"

        # Late data: the hospital total changes, the department does not.
        late = bundle(report(numerator=3, denominator=5), again["entry"][1]["resource"])
        r = app_client.post(PATH, json=late, headers=headers(region["M1"]))
        assert diagnostics(r) == "accepted 1, unchanged 1"

        with runtime.read() as session:
            counts = submitted_counts(session, REGION, "M1", CODE, ["2026-03", "2026-04"])
            versions = submission_versions(session, REGION, "M1", CODE, "2026-03")
            assert submitted_counts(session, REGION, "M2", CODE, ["2026-03"]) == {}
        assert counts == {("2026-03", None): (3, 5), ("2026-03", "emergency"): (2, 2)}
        hospital = [(v.version, v.numerator, v.denominator) for v in versions if not v.department]
        assert hospital == [(1, 3, 4), (2, 3, 5)]
        assert all(v.report["resourceType"] == "MeasureReport" for v in versions)

    def test_a_change_back_is_a_new_version(self, app_client, runtime, region):
        for numerator in (1, 2, 1):
            body = report(numerator=numerator, denominator=2)
            r = app_client.post(PATH, json=body, headers=headers(region["M1"]))
            assert diagnostics(r) == "accepted 1, unchanged 0"
        with runtime.read() as session:
            versions = submission_versions(session, REGION, "M1", CODE, "2026-03")
        assert [(v.version, v.numerator) for v in versions] == [(1, 1), (2, 2), (3, 1)]

    def test_members_and_regions_are_kept_apart(self, app_client, runtime, region):
        app_client.post(PATH, json=report(numerator=1), headers=headers(region["M1"]))
        app_client.post(PATH, json=report(2, member="M2"), headers=headers(region["M2"]))
        other = report(numerator=4)
        r = app_client.post(
            "/api/v1/regions/OTHER-REG/submissions", json=other, headers=headers(region["other"])
        )
        assert r.status_code == 200
        with runtime.read() as session:
            assert submitted_counts(session, REGION, "M1", CODE, ["2026-03"]) == {
                ("2026-03", None): (1, 4)
            }
            assert submitted_counts(session, REGION, "M2", CODE, ["2026-02", "2026-03"]) == {
                ("2026-02", None): (3, 4)
            }
            assert submitted_counts(session, "OTHER-REG", "M1", CODE, ["2026-03"]) == {
                ("2026-03", None): (4, 4)
            }

    def test_a_batch_bundle_is_accepted_too(self, app_client, region):
        r = app_client.post(
            PATH, json=bundle(report(), btype="batch"), headers=headers(region["M1"])
        )
        assert diagnostics(r) == "accepted 1, unchanged 0"


def _with(change) -> dict[str, Any]:
    body = report()
    change(body)
    return body


def _set(path: str, value: Any):
    def change(body: dict[str, Any]) -> None:
        node: Any = body
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        node[parts[-1]] = value

    return change


REFUSED = {
    "two months": (
        _set("period", {"start": "2026-03-01T00:00:00+08:00", "end": "2026-04-30T23:59:59+08:00"}),
        "one calendar month",
    ),
    "mid-month start": (
        _set("period", {"start": "2026-03-02", "end": "2026-03-31"}),
        "one calendar month",
    ),
    "unknown measure": (
        _set("measure", "https://qcpulse.org/fhir/Measure/NO-SUCH|1"),
        "no known indicator",
    ),
    "foreign measure": (_set("measure", "http://example.org/Measure/PIT-2026-23"), "no known"),
    "another member": (
        _set("reporter", {"identifier": {"system": MEMBER_SYSTEM, "value": "M2"}}),
        "this key's member 'M1'",
    ),
    "no reporter": (_set("reporter", {"display": "M1"}), "this key's member"),
    "not a summary": (_set("type", "individual"), "type must be 'summary'"),
    "invalid FHIR": (_set("group.0.population.2.count", "three"), "MeasureReport:"),
    "numerator above denominator": (
        _set("group.0.population.2.count", 9),
        "numerator exceeds its denominator",
    ),
    "no denominator": (
        lambda body: body["group"][0]["population"].pop(1),
        "numerator and denominator",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_bad_report_refuses_the_whole_bundle(app_client, runtime, region, case):
    change, expected = REFUSED[case]
    good = report(month=2)
    r = app_client.post(PATH, json=bundle(good, _with(change)), headers=headers(region["M1"]))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert expected in diagnostics(r)
    assert any("entry[1]" in e for i in r.json()["issue"] for e in i.get("expression", []))
    assert stored(runtime) == 0


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (bundle(report(), btype="transaction"), 422, "collection or batch"),
        ({"resourceType": "Bundle", "type": "collection"}, 422, "no entry"),
        ({"resourceType": "Patient", "id": "p1"}, 422, "Bundle or a MeasureReport"),
        (bundle({"resourceType": "Patient", "id": "p1"}), 422, "only MeasureReport"),
        (bundle(report(), report()), 422, "same indicator, month and department"),
    ],
)
def test_a_bad_body_is_refused(app_client, runtime, region, body, status, expected):
    r = app_client.post(PATH, json=body, headers=headers(region["M1"]))
    assert r.status_code == status, r.text
    assert expected in diagnostics(r)
    assert stored(runtime) == 0


class TestKeys:
    def test_without_a_valid_submission_key_401(self, app_client, runtime, region, admin_headers):
        for auth in (None, "Bearer qcs_not-a-key", admin_headers["Authorization"]):
            h = {"Content-Type": "application/fhir+json"}
            if auth:
                h["Authorization"] = auth
            r = app_client.post(PATH, json=report(), headers=h)
            assert r.status_code == 401
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["issue"][0]["code"] == "login"
        assert stored(runtime) == 0

    def test_a_key_of_another_region_403(self, app_client, runtime, region):
        r = app_client.post(PATH, json=report(), headers=headers(region["other"]))
        assert r.status_code == 403
        assert "not for region 'TJ-FED'" in diagnostics(r)
        assert stored(runtime) == 0

    def test_a_submission_key_opens_no_tenant_route(self, app_client, region):
        h = {"Authorization": f"Bearer {region['M1']}"}
        assert app_client.get(f"/api/v1/indicators/{CODE}/value", headers=h).status_code == 401
        assert app_client.get("/fhir/Patient/p1", headers=h).status_code == 401

    def test_json_only(self, app_client, region):
        r = app_client.post(
            PATH,
            content=b"<Bundle/>",
            headers={"Authorization": f"Bearer {region['M1']}", "Content-Type": "application/xml"},
        )
        assert r.status_code == 415
        assert r.json()["resourceType"] == "OperationOutcome"

    def test_only_a_federated_member_gets_a_key(self, runtime, region):
        with runtime.write() as session:
            with pytest.raises(ConflictError, match="tenant 'H0001' of this instance"):
                create_submission_key(session, REGION, "LOCAL")
            with pytest.raises(NotFoundError):
                create_submission_key(session, REGION, "M9")

    def test_the_cli_prints_a_working_key_once(self, runtime, region, monkeypatch, capsys):
        url = runtime.engine.url.render_as_string(hide_password=False)
        monkeypatch.setenv("QCPULSE_DATABASE_URL", url)
        assert cli_main(["region", "submission-key", REGION, "M2", "--name", "hx"]) == 0
        out = capsys.readouterr()
        secret = out.out.strip()
        assert secret.startswith("qcs_") and secret not in out.err
        with runtime.read() as session:
            submitter = authenticate_submitter(session, f"Bearer {secret}")
            assert (submitter.region_id, submitter.member_id) == (REGION, "M2")
            with pytest.raises(UnauthorizedError):
                authenticate_submitter(session, "Bearer " + secret[:-1])
        assert cli_main(["region", "submission-key", REGION, "LOCAL"]) == 2
        assert "of this instance" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("period", "month"),
    [
        ({"start": "2026-03-01T00:00:00+08:00", "end": "2026-03-31T23:59:59+08:00"}, "2026-03"),
        ({"start": "2026-02-01", "end": "2026-02-28"}, "2026-02"),
        ({"start": "2028-02-01", "end": "2028-02-29"}, "2028-02"),
        ({"start": "2026-12-01T00:00:00Z", "end": "2026-12-31T23:59:59.999Z"}, "2026-12"),
        ({"start": "2026-03-01T00:00:00+08:00", "end": "2026-03-31T23:59:59+00:00"}, None),
        ({"start": "2026-03-01T00:00:00+08:00", "end": "2026-03-30T23:59:59+08:00"}, None),
        ({"start": "2026-03-01T08:00:00+08:00", "end": "2026-03-31T23:59:59+08:00"}, None),
        ({"start": "2026-03-01", "end": "2026-03-31T23:59:59+08:00"}, None),
        ({"start": "2026-02-01", "end": "2026-02-29"}, None),
        ({"start": "2026-03-01"}, None),
        ("2026-03", None),
    ],
)
def test_report_month(period, month):
    assert report_month(period) == month


def test_the_digest_ignores_what_a_rebuild_changes():
    one, two = report(), copy.deepcopy(report())
    two["id"], two["date"], two["meta"] = "other", "2027-01-01T00:00:00+00:00", {"versionId": "9"}
    assert report_digest(one) == report_digest(two)
    assert report_digest(one) != report_digest(report(numerator=2))
