"""The hospital's submitter against the region endpoint of the same app (one database
holds both sides): what it sends equals the hospital's own values, only changes are
re-sent, and nothing is marked sent before the region said 2xx."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from services.indicators.worker import drain
from services.regions.federation import (
    SubmissionRow,
    create_submission_key,
    submission_versions,
    submitted_counts,
)
from services.regions.service import add_member, create_region
from services.regions.submitter import (
    RegionRefused,
    RegionUnavailable,
    SubmissionStateRow,
    Target,
    backoff,
    months_back,
    submit_once,
)
from shared.settings import Settings
from tests.conftest import TENANT
from tests.fhir_factories import condition, encounter, patient, procedure, transaction

REGION = "TJ-SUB"
CODE = "PIT-2026-23"
TZ = ZoneInfo("Asia/Shanghai")
MARCH_20 = datetime(2026, 3, 20, 12, 0, tzinfo=TZ)


def stemi(n: int, day: str, pci_minutes: int, dept: str) -> dict[str, Any]:
    start = f"{day}T10:00:00+08:00"
    h, m = divmod(10 * 60 + pci_minutes, 60)
    return transaction(
        patient(f"p{n}"),
        encounter(f"e{n}", f"p{n}", start=start, dept=dept, dept_name=dept),
        condition(f"c{n}", f"e{n}", f"p{n}", onset=start),
        procedure(f"pr{n}", f"e{n}", f"p{n}", start=f"{day}T{h:02d}:{m:02d}:00+08:00"),
    )


#: February: emergency 1/1, cardiology 0/1; March: emergency 1/1, cardiology 1/2.
EPISODES = [
    (1, "2026-02-10", 60, "emergency"),
    (2, "2026-02-11", 120, "cardiology"),
    (3, "2026-03-10", 45, "emergency"),
    (4, "2026-03-11", 70, "cardiology"),
    (5, "2026-03-12", 95, "cardiology"),
]


@pytest.fixture
def hospital(app_client, runtime, clock, ingest_headers):
    clock.set(MARCH_20)
    for n, day, minutes, dept in EPISODES:
        r = app_client.post("/fhir", json=stemi(n, day, minutes, dept), headers=ingest_headers)
        assert r.status_code == 200, r.text
    drain(runtime)
    with runtime.write() as session:
        create_region(session, REGION, name="河西区质控中心")
        add_member(session, REGION, "M1", name="示例医院")
        _, key = create_submission_key(session, REGION, "M1")
    return Target(
        url="http://testserver", region_id=REGION, key=key, tenant_id=TENANT, member_id="M1"
    )


class Sent:
    """Records what each POST carried: (code, month, department) per report."""

    def __init__(self, client: httpx.Client) -> None:
        self.posts: list[list[tuple[str, str, str | None]]] = []
        client.event_hooks["request"] = [self]

    def __call__(self, request: httpx.Request) -> None:
        if not request.url.path.endswith("/submissions"):
            return
        body = orjson.loads(request.content)
        self.posts.append([_key(e["resource"]) for e in body["entry"]])

    @property
    def reports(self) -> set[tuple[str, str, str | None]]:
        return {k for post in self.posts for k in post}


def _key(report: dict[str, Any]) -> tuple[str, str, str | None]:
    code = report["measure"].rsplit("/", 1)[1].partition("|")[0]
    dept = next((e["valueString"] for e in report.get("extension", [])), None)
    return code, report["period"]["start"][:7], dept


def hospital_value(client, headers, code: str, month: str, department: str | None):
    first = datetime.strptime(month, "%Y-%m").date()
    last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    params = {"from": first.isoformat(), "to": last.isoformat()}
    if department is not None:
        params["department"] = department
    r = client.get(f"/api/v1/indicators/{code}/value", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["numerator"], r.json()["denominator"]


def region_codes(runtime) -> set[str]:
    with runtime.read() as session:
        return set(session.scalars(sa.select(SubmissionRow.code).distinct()))


def test_the_region_holds_the_hospitals_own_values(app_client, runtime, hospital, admin_headers):
    sent = Sent(app_client)
    assert submit_once(runtime, app_client, hospital) > 0
    codes = region_codes(runtime)
    assert CODE in codes
    compared = 0
    with runtime.read() as session:
        for code in codes:
            counts = submitted_counts(session, REGION, "M1", code, ["2026-02", "2026-03"])
            for (month, dept), figures in counts.items():
                assert figures == hospital_value(app_client, admin_headers, code, month, dept)
                compared += 1
        assert submitted_counts(session, REGION, "M1", CODE, ["2026-02", "2026-03"]) == {
            ("2026-02", None): (1, 2),
            ("2026-02", "emergency"): (1, 1),
            ("2026-02", "cardiology"): (0, 1),
            ("2026-03", None): (2, 3),
            ("2026-03", "emergency"): (1, 1),
            ("2026-03", "cardiology"): (1, 2),
        }
    assert compared == len(sent.reports)
    # Months without a case are not reported as zeros.
    assert {month for _, month, _ in sent.reports} == {"2026-02", "2026-03"}


def test_only_changes_and_the_current_month_are_sent_again(
    app_client, runtime, clock, hospital, ingest_headers
):
    submit_once(runtime, app_client, hospital)
    sent = Sent(app_client)
    submit_once(runtime, app_client, hospital)
    assert sent.reports and {month for _, month, _ in sent.reports} == {"2026-03"}
    with runtime.read() as session:
        march = submission_versions(session, REGION, "M1", CODE, "2026-03")
    assert {v.version for v in march} == {1}

    # Late data for closed February: the PCI of episode 1 was at 100 minutes, not 60.
    late = procedure("pr1", "e1", "p1", start="2026-02-10T11:40:00+08:00")
    assert app_client.put("/fhir/Procedure/pr1", json=late, headers=ingest_headers).is_success
    drain(runtime)
    sent = Sent(app_client)
    submit_once(runtime, app_client, hospital)
    february = {(c, d) for c, m, d in sent.reports if m == "2026-02"}
    assert (CODE, None) in february and (CODE, "emergency") in february
    assert (CODE, "cardiology") not in february  # unchanged
    with runtime.read() as session:
        versions = submission_versions(session, REGION, "M1", CODE, "2026-02")
        rows = sorted((v.department or "", v.version, v.numerator, v.denominator) for v in versions)
    assert rows == [
        ("", 1, 1, 2),
        ("", 2, 0, 2),
        ("cardiology", 1, 0, 1),
        ("emergency", 1, 1, 1),
        ("emergency", 2, 0, 1),
    ]

    # April: March is closed and unchanged, April has no case: nothing to send.
    clock.set(datetime(2026, 4, 5, 9, 0, tzinfo=TZ))
    sent = Sent(app_client)
    assert submit_once(runtime, app_client, hospital) == 0
    assert sent.posts == []


def test_a_department_whose_cases_left_is_sent_as_zero(
    app_client, runtime, hospital, ingest_headers
):
    submit_once(runtime, app_client, hospital)
    moved = encounter("e1", "p1", start="2026-02-10T10:00:00+08:00", dept="cardiology")
    assert app_client.put("/fhir/Encounter/e1", json=moved, headers=ingest_headers).is_success
    drain(runtime)
    submit_once(runtime, app_client, hospital)
    with runtime.read() as session:
        counts = submitted_counts(session, REGION, "M1", CODE, ["2026-02"])
    assert counts[("2026-02", "emergency")] == (0, 0)
    assert counts[("2026-02", "cardiology")] == (1, 2)


def _failing(answer):
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={"resourceType": "OperationOutcome", "issue": []})

    return httpx.Client(transport=httpx.MockTransport(handler), base_url="http://region")


def state_rows(runtime) -> int:
    with runtime.read() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(SubmissionStateRow)) or 0)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.ConnectError("connection refused"), RegionUnavailable),
        (httpx.ReadTimeout("timed out"), RegionUnavailable),
        (503, RegionUnavailable),
        (500, RegionUnavailable),
        (429, RegionUnavailable),
        (401, RegionRefused),
        (422, RegionRefused),
    ],
)
def test_nothing_is_marked_sent_without_a_2xx(app_client, runtime, hospital, answer, error):
    with _failing(answer) as client, pytest.raises(error):
        submit_once(runtime, client, hospital)
    assert state_rows(runtime) == 0
    # The region comes back: everything is sent, February included.
    sent = Sent(app_client)
    submit_once(runtime, app_client, hospital)
    assert {m for _, m, _ in sent.reports} == {"2026-02", "2026-03"}
    assert state_rows(runtime) > 0


def test_backoff_doubles_to_its_cap_with_jitter():
    rng = random.Random(7)
    cap = timedelta(seconds=30)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (40, 30)]:
        waits = [backoff(attempt, cap, rng) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(set(waits)) > 1


def test_months_back():
    assert [m.isoformat() for m in months_back(MARCH_20.date(), 4)] == [
        "2025-12-01",
        "2026-01-01",
        "2026-02-01",
        "2026-03-01",
    ]


def test_settings_go_together():
    with pytest.raises(ValidationError, match="go together"):
        Settings(region_url="http://region:8000", region_id="TJ")
    with pytest.raises(ValidationError, match="QCPULSE_REGION_TENANT"):
        Settings(region_url="http://r", region_id="TJ", region_submission_key="qcs_x")
    settings = Settings(
        region_url="http://r/", region_id="TJ", region_submission_key="qcs_x", bootstrap_tenant="H1"
    )
    target = Target.from_settings(settings)
    assert target is not None
    assert (target.endpoint, target.tenant_id, target.member_id) == (
        "http://r/api/v1/regions/TJ/submissions",
        "H1",
        "H1",
    )
    assert Target.from_settings(Settings()) is None
