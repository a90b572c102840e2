"""Federation between two real ``qcpulse serve`` processes, each with its own database
(SQLite files, or two PostgreSQL databases created and dropped here when
QCPULSE_TEST_DATABASE_URL names a PostgreSQL): a hospital instance submits to a
region instance; the region's figures equal the hospital's own values, a late
correction arrives as a new version, and a region that was offline is caught up."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from bench.server import ADMIN_KEY, Database, Server, free_port
from services.regions.federation import (
    create_submission_key,
    submission_versions,
    submitted_counts,
)
from services.regions.service import add_member, create_region
from shared.db import create_engine_for, make_session_factory, transaction
from tests.fhir_factories import condition, encounter, patient, procedure
from tests.fhir_factories import transaction as bundle

REGION = "TJ-HP"
MEMBER = "HX-001"
CODE = "PIT-2026-23"
TZ = ZoneInfo("Asia/Shanghai")
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _backend() -> tuple[str, str]:
    url = os.environ.get("QCPULSE_TEST_DATABASE_URL", "")
    if url.startswith("postgres"):
        return "postgresql", url.replace("postgresql+psycopg://", "postgresql://", 1)
    return "sqlite", ""


def month_first(today: date, back: int) -> date:
    first = today.replace(day=1)
    for _ in range(back):
        first = (first - timedelta(days=1)).replace(day=1)
    return first


def month_last(first: date) -> date:
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def label(first: date) -> str:
    return first.strftime("%Y-%m")


def stemi(n: int, day: date, pci_minutes: int, dept: str) -> dict[str, Any]:
    start = f"{day.isoformat()}T10:00:00+08:00"
    h, m = divmod(10 * 60 + pci_minutes, 60)
    return bundle(
        patient(f"p{n}"),
        encounter(f"e{n}", f"p{n}", start=start, dept=dept, dept_name=dept),
        condition(f"c{n}", f"e{n}", f"p{n}", onset=start),
        procedure(f"pr{n}", f"e{n}", f"p{n}", start=f"{day.isoformat()}T{h:02d}:{m:02d}:00+08:00"),
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


class Region:
    """Reads the region instance's database, as its league tables do."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine_for(url)
        self.factory = make_session_factory(self.engine)

    def counts(self, months: list[str]) -> dict[tuple[str, str | None], tuple[int, int]]:
        with transaction(self.factory) as session:
            return submitted_counts(session, REGION, MEMBER, CODE, months)

    def versions(self, month: str) -> list[tuple[str | None, int, int, int]]:
        with transaction(self.factory) as session:
            rows = submission_versions(session, REGION, MEMBER, CODE, month)
            return [(r.department, r.version, r.numerator, r.denominator) for r in rows]


class Hospital:
    def __init__(self, server: Server) -> None:
        self.client = httpx.Client(base_url=server.url, headers=ADMIN, timeout=30)

    def post(self, body: dict[str, Any]) -> None:
        r = self.client.post("/fhir", json=body)
        assert r.status_code == 200, r.text

    def value(self, first: date, department: str | None = None) -> tuple[int, int]:
        params = {"from": first.isoformat(), "to": month_last(first).isoformat()}
        if department is not None:
            params["department"] = department
        r = self.client.get(f"/api/v1/indicators/{CODE}/value", params=params)
        assert r.status_code == 200, r.text
        return r.json()["numerator"], r.json()["denominator"]

    def expected(self, months: list[date]) -> dict[tuple[str, str | None], tuple[int, int]]:
        out: dict[tuple[str, str | None], tuple[int, int]] = {}
        for first in months:
            for department in (None, "emergency", "cardiology"):
                figures = self.value(first, department)
                if figures != (0, 0):
                    out[(label(first), department)] = figures
        return out


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    kind, admin_url = _backend()
    with Database(kind, admin_url) as region_db, Database(kind, admin_url) as hospital_db:
        yield region_db.url, hospital_db.url


def test_a_hospital_instance_reports_to_a_region_instance(databases):
    region_url, hospital_url = databases
    today = datetime.now(TZ).date()
    # Two closed months: nothing here depends on the day the test runs.
    older, last = month_first(today, 2), month_first(today, 1)
    months = [older, last]
    labels = [label(m) for m in months]

    region_port = free_port()
    region_server = Server(region_url, port=region_port).__enter__()
    try:
        # What an operator does with ``qcpulse region create / add-member /
        # submission-key`` (the CLI is tested in test_federation.py; a process start
        # costs seconds here).
        engine = create_engine_for(region_url)
        with transaction(make_session_factory(engine)) as session:
            create_region(session, REGION, name="河西区胸痛质控中心")
            add_member(session, REGION, MEMBER, name="河西医院")
            _, key = create_submission_key(session, REGION, MEMBER)
        engine.dispose()
        assert key.startswith("qcs_")
        env = {
            "QCPULSE_REGION_URL": region_server.url,
            "QCPULSE_REGION_ID": REGION,
            "QCPULSE_REGION_SUBMISSION_KEY": key,
            "QCPULSE_REGION_MEMBER_ID": MEMBER,
            "QCPULSE_REGION_SUBMIT_INTERVAL": "PT0.3S",
            "QCPULSE_REGION_SUBMIT_MAX_BACKOFF": "PT1S",
            "QCPULSE_REGION_SUBMIT_MONTHS": "3",
        }
        with Server(hospital_url, env=env) as hospital_server:
            hospital = Hospital(hospital_server)
            region = Region(region_url)
            try:
                _run(hospital, region, region_server, region_url, region_port, months, labels)
            finally:
                region.engine.dispose()
                hospital.client.close()
    finally:
        region_server.__exit__()


def _run(
    hospital: Hospital,
    region: Region,
    region_server: Server,
    region_url: str,
    region_port: int,
    months: list[date],
    labels: list[str],
) -> None:
    older, last = months
    # Older month: emergency 1/1, cardiology 0/1. Last month: emergency 1/2.
    hospital.post(stemi(1, older.replace(day=3), 60, "emergency"))
    hospital.post(stemi(2, older.replace(day=4), 120, "cardiology"))
    hospital.post(stemi(3, last.replace(day=5), 45, "emergency"))
    hospital.post(stemi(4, last.replace(day=6), 100, "emergency"))

    def caught_up(expect: dict[tuple[str, str | None], tuple[int, int]]) -> Callable[[], bool]:
        return lambda: region.counts(labels) == expect

    assert wait_for(lambda: hospital.value(last) == (1, 2)), "the hospital did not count"
    first = hospital.expected(months)
    assert first == {
        (labels[0], None): (1, 2),
        (labels[0], "emergency"): (1, 1),
        (labels[0], "cardiology"): (0, 1),
        (labels[1], None): (1, 2),
        (labels[1], "emergency"): (1, 2),
    }
    assert wait_for(caught_up(first)), (region.counts(labels), first)

    # Late data in the closed older month: episode 1's PCI was at 95 minutes.
    late = procedure("pr1", "e1", "p1", start=f"{older.replace(day=3).isoformat()}T11:35:00+08:00")
    assert hospital.client.put("/fhir/Procedure/pr1", json=late).status_code == 200
    assert wait_for(lambda: hospital.value(older) == (0, 2))
    corrected = hospital.expected(months)
    assert wait_for(caught_up(corrected)), (region.counts(labels), corrected)
    # Every version is kept (an early one may hold a month half posted): the
    # correction is the newest, after the figures it corrects.
    totals = sorted(v[1:] for v in region.versions(labels[0]) if v[0] is None)
    assert [v[0] for v in totals] == list(range(1, len(totals) + 1))
    assert [v[1:] for v in totals[-2:]] == [(1, 2), (0, 2)]
    before = len([v for v in region.versions(labels[1]) if v[0] is None])

    # The region goes offline; the hospital goes on receiving data.
    region_server.__exit__()
    hospital.post(stemi(5, last.replace(day=7), 50, "cardiology"))
    assert wait_for(lambda: hospital.value(last) == (2, 3))
    time.sleep(2.0)  # several failed rounds, the backoff at its cap
    assert region.counts(labels) == corrected
    with Server(region_url, port=region_port):
        after = hospital.expected(months)
        assert after[(labels[1], "cardiology")] == (1, 1)
        assert wait_for(caught_up(after), timeout=30), (region.counts(labels), after)
        assert [v[1:] for v in region.versions(labels[1]) if v[0] is None][before:] == [
            (before + 1, 2, 3)
        ]
