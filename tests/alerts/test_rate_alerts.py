"""Rate alerts: a department's current-month rate against its target and its p-chart
limits, re-checked on each ``cases.changed``, once per month and kind."""

from datetime import UTC, date, datetime, timedelta

from services.alerts.worker import deliver_due_once
from services.alerts.worker import drain as drain_alerts
from services.indicators.models import CounterRow
from services.indicators.worker import drain as drain_indicators
from tests.alerts.conftest import subscribe
from tests.conftest import TENANT
from tests.fhir_factories import condition, encounter, patient, procedure, transaction

RATE_EVENTS = ["rate.deviation", "rate.recovered"]
MARCH_20 = datetime(2026, 3, 20, 2, 0, tzinfo=UTC)  # 10:00 local


def stemi_episode(i: int, pci_minutes: int, day: date = date(2026, 3, 2), dept: str = "emergency"):
    arrival = datetime(day.year, day.month, day.day, 10, 0).isoformat() + "+08:00"
    pci = datetime(day.year, day.month, day.day, 10, 0) + timedelta(minutes=pci_minutes)
    return transaction(
        patient(f"p{i}"),
        encounter(f"e{i}", f"p{i}", start=arrival, dept=dept, dept_name="急诊科"),
        condition(f"c{i}", f"e{i}", f"p{i}", onset=arrival),
        procedure(f"pr{i}", f"e{i}", f"p{i}", start=pci.isoformat() + "+08:00"),
    )


def post_episodes(client, headers, runtime, minutes: list[int], *, first: int = 0, **kw):
    for n, m in enumerate(minutes):
        day = date(2026, 3, 2 + (first + n) % 15)
        r = client.post("/fhir", json=stemi_episode(first + n, m, day, **kw), headers=headers)
        assert r.status_code == 200, r.text
    drain_indicators(runtime)
    drain_alerts(runtime)
    deliver_due_once(runtime)


def test_a_rate_crossing_its_target(
    app_client, runtime, clock, admin_headers, ingest_headers, reader_headers, receiver
):
    clock.set(MARCH_20)
    subscribe(app_client, admin_headers, receiver, events=RATE_EVENTS)
    # 9 cases, 7 in time: below target, but under min_cases (10): quiet.
    post_episodes(app_client, ingest_headers, runtime, [60] * 7 + [120] * 2)
    assert receiver.received == []
    # The 10th case, in time: 8/10 = 80 % < 85 % with enough cases.
    post_episodes(app_client, ingest_headers, runtime, [60], first=9)
    assert receiver.types() == ["rate.deviation"]
    got = receiver.received[0]
    assert got.verified, got.error
    data = got.json["data"]
    assert data["case"] is None
    assert data["episode"] is None
    assert data["department"] == "emergency"
    rate = data["rate"]
    assert (rate["numerator"], rate["denominator"], rate["rate"]) == (8, 10, 0.8)
    assert rate["target"] == 0.85
    assert rate["month"] == "2026-03-01"
    assert rate["reasons"] == ["target"]
    assert "80.0%" in data["message"]["en"]
    assert "85.0%" in data["message"]["en"]
    assert "2026年3月" in data["message"]["zh"]
    assert "未达目标" in data["message"]["zh"]

    # Still below target: no second page.
    post_episodes(app_client, ingest_headers, runtime, [60, 60], first=10)
    assert receiver.types() == ["rate.deviation"]
    # 15/17 = 88 %: recovered.
    post_episodes(app_client, ingest_headers, runtime, [60] * 5, first=12)
    assert receiver.types() == ["rate.deviation", "rate.recovered"]
    assert receiver.received[1].json["data"]["rate"]["rate"] > 0.85
    # Below again in the same month: the state follows, but nobody is paged twice.
    post_episodes(app_client, ingest_headers, runtime, [150] * 3, first=17)
    assert receiver.types() == ["rate.deviation", "rate.recovered"]

    listed = app_client.get("/api/v1/alerts", headers=reader_headers).json()["alerts"]
    by_type = {a["type"]: a for a in listed}
    assert by_type["rate.deviation"]["resolution"] == "recovered"
    assert by_type["rate.recovered"]["status"] == "resolved"


def test_p_chart_point_outside_its_limits(
    app_client, runtime, clock, admin_headers, ingest_headers, receiver
):
    clock.set(MARCH_20)
    subscribe(app_client, admin_headers, receiver, events=RATE_EVENTS)
    # Eleven months of history at 100 %: the center line sits near 1.
    with runtime.write() as session:
        for k in range(1, 12):
            month = date(2026 - (k > 2), (3 - k - 1) % 12 + 1, 1)
            session.add(
                CounterRow(
                    tenant_id=TENANT,
                    indicator="PIT-2026-23",
                    department="emergency",
                    day=month,
                    numerator=100,
                    denominator=0,
                    excluded=0,
                    pending=0,
                )
            )
    # This month 9/10 = 90 %: above the 85 % target, yet far below the lower limit.
    post_episodes(app_client, ingest_headers, runtime, [60] * 9 + [120])
    assert receiver.types() == ["rate.deviation"]
    rate = receiver.received[0].json["data"]["rate"]
    assert rate["reasons"] == ["below_lcl"]
    assert rate["meets_target"] is True
    assert rate["rate"] < rate["lcl"] < rate["center"]
    assert "control limits" in receiver.received[0].json["data"]["message"]["en"]
    assert "低于控制限" in receiver.received[0].json["data"]["message"]["zh"]


def test_past_months_raise_no_rate_alert(
    app_client, runtime, clock, admin_headers, ingest_headers, receiver
):
    clock.set(datetime(2026, 4, 20, 2, 0, tzinfo=UTC))  # March is over
    subscribe(app_client, admin_headers, receiver, events=RATE_EVENTS)
    post_episodes(app_client, ingest_headers, runtime, [120] * 12)
    assert receiver.received == []


def test_departments_are_separate(
    app_client, runtime, clock, admin_headers, ingest_headers, receiver
):
    clock.set(MARCH_20)
    subscribe(app_client, admin_headers, receiver, events=RATE_EVENTS)
    post_episodes(app_client, ingest_headers, runtime, [120] * 6, dept="cardiology")
    post_episodes(app_client, ingest_headers, runtime, [120] * 6, first=6, dept="emergency")
    assert receiver.received == []  # 6 + 6 cases: neither department has 10
