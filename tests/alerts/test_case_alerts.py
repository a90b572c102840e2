"""Case alerts from the clock: STEMI door-to-PCI (PIT-2026-23) and radiology critical
values (PIT-2026-31), from a posted bundle through the indicator worker, the alert
rules and the timer, to a verified webhook. Time moves by hand (FrozenClock)."""

from datetime import timedelta

import sqlalchemy as sa

from services.alerts.models import Alert, WatchedCase
from services.alerts.worker import deliver_due_once, run_timer_once
from services.alerts.worker import drain as drain_alerts
from services.indicators.worker import drain as drain_indicators
from tests.alerts.conftest import subscribe
from tests.fhir_factories import condition, encounter, patient, procedure, transaction

ARRIVAL = "2026-03-02T10:00:00+08:00"  # = conftest T0, the FrozenClock's start
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def post(client, headers, *resources):
    r = client.post("/fhir", json=transaction(*resources), headers=headers)
    assert r.status_code == 200, r.text


def step(runtime):
    """Everything the workers would do now: evaluate, alert, deliver."""
    drain_indicators(runtime)
    drain_alerts(runtime)
    deliver_due_once(runtime)


def alerts(client, headers, **params):
    r = client.get("/api/v1/alerts", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["alerts"]


def stemi_without_pci():
    return (patient(), encounter(start=ARRIVAL), condition(onset=ARRIVAL))


def imaging_critical(oid="o1", eid="e1", issued="2026-03-02T10:00:00+08:00"):
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "imaging"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2"}]},
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "effectiveDateTime": issued,
        "issued": issued,
        "interpretation": [{"coding": [{"system": INTERPRETATION, "code": "AA"}]}],
    }


def notification(cid="m1", about="Observation/o1", sent="2026-03-02T10:08:00+08:00"):
    return {
        "resourceType": "Communication",
        "id": cid,
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "about": [{"reference": about}],
        "sent": sent,
    }


class TestStemi:
    def test_at_risk_then_breached_then_resolved_by_late_documentation(
        self, app_client, runtime, clock, admin_headers, ingest_headers, reader_headers, receiver
    ):
        subscribe(app_client, admin_headers, receiver)
        post(app_client, ingest_headers, *stemi_without_pci())
        step(runtime)
        assert receiver.received == []  # 10:00, the clock just started

        clock.advance(timedelta(minutes=59))
        run_timer_once(runtime)
        assert alerts(app_client, reader_headers) == []
        clock.advance(timedelta(minutes=1))  # 11:00 = 60 min: at risk
        run_timer_once(runtime)
        deliver_due_once(runtime)
        [at_risk] = receiver.received
        assert at_risk.verified, at_risk.error
        body = at_risk.json
        assert body["type"] == "case.at_risk"
        data = body["data"]
        assert data["tenant"] == "H0001"
        assert data["indicator"]["code"] == "PIT-2026-23"
        assert data["indicator"]["name"]["zh"] == "急性STEMI到院90分钟内行直接PCI比例"
        assert data["department"] == "emergency"
        assert data["department_name"] == "急诊科"
        assert data["episode"] == "Encounter/e1"
        assert data["case"]["status"] == "pending"
        assert data["case"]["elapsed_minutes"] == 60.0
        assert data["case"]["clock_start"] == "2026-03-02T02:00:00+00:00"
        assert data["case"]["deadline"] == "2026-03-02T03:30:00+00:00"
        assert "rate" not in data
        zh, en = data["message"]["zh"], data["message"]["en"]
        for text in (zh, en):
            assert "Encounter/e1" in text
            assert "2026-03-02 10:00" in text
            assert "11:30" in text
            assert "急诊科" in text
            assert "张三" not in text  # no patient names
        assert "已用时 60 分钟" in zh
        assert "60 min elapsed" in en
        assert "张三" not in at_risk.body.decode()
        assert at_risk.webhook_id == data["alert_id"]

        # The deadline passes with no PCI and no new data: the timer decides, once the
        # grace for documentation on its way (5 min by default) is over.
        clock.advance(timedelta(minutes=30))
        run_timer_once(runtime)
        deliver_due_once(runtime)
        assert receiver.types() == ["case.at_risk"]
        clock.advance(timedelta(minutes=5))
        run_timer_once(runtime)
        deliver_due_once(runtime)
        assert receiver.types() == ["case.at_risk", "case.breached"]
        breached = receiver.received[1].json["data"]
        assert breached["case"]["elapsed_minutes"] == 95.0
        assert breached["case"]["status"] == "pending"  # STEMI stays pending past its deadline
        listed = {a["type"]: a for a in alerts(app_client, reader_headers)}
        assert listed["case.at_risk"]["status"] == "resolved"
        assert listed["case.at_risk"]["resolution"] == "escalated"
        assert listed["case.breached"]["status"] == "open"

        # 11:45: PCI documented late, performed at 11:20 (80 min): the target was met.
        clock.advance(timedelta(minutes=10))
        post(app_client, ingest_headers, procedure(start="2026-03-02T11:20:00+08:00"))
        step(runtime)
        assert receiver.types() == ["case.at_risk", "case.breached", "case.resolved"]
        resolved = receiver.received[2].json["data"]
        assert resolved["case"]["status"] == "numerator"
        assert resolved["case"]["elapsed_minutes"] == 80.0
        assert "补录或更正" in resolved["message"]["zh"]
        listed = {a["type"]: a for a in alerts(app_client, reader_headers)}
        assert listed["case.breached"]["resolution"] == "met"
        assert listed["case.resolved"]["status"] == "resolved"
        assert alerts(app_client, reader_headers, status="open") == []
        assert len({r.webhook_id for r in receiver.received}) == 3

        # Nothing fires twice: re-sending, more ticks, more time.
        post(app_client, ingest_headers, procedure(start="2026-03-02T11:20:00+08:00"))
        clock.advance(timedelta(hours=2))
        step(runtime)
        assert len(receiver.received) == 3

    def test_late_pci_keeps_the_breach(
        self, app_client, runtime, clock, admin_headers, ingest_headers, reader_headers, receiver
    ):
        subscribe(app_client, admin_headers, receiver)
        post(app_client, ingest_headers, *stemi_without_pci())
        step(runtime)
        clock.advance(timedelta(minutes=100))
        step(runtime)
        assert receiver.types() == ["case.breached"]  # first look after the deadline
        post(app_client, ingest_headers, procedure(start="2026-03-02T11:35:00+08:00"))
        step(runtime)
        assert receiver.types() == ["case.breached"]
        [alert] = alerts(app_client, reader_headers)
        assert alert["status"] == "open"

    def test_a_case_first_seen_late_as_denominator_is_breached(
        self, app_client, runtime, clock, admin_headers, ingest_headers, receiver
    ):
        subscribe(app_client, admin_headers, receiver)
        clock.advance(timedelta(hours=2))
        late = procedure(start="2026-03-02T11:45:00+08:00")  # 105 min
        post(app_client, ingest_headers, *stemi_without_pci(), late)
        step(runtime)
        assert receiver.types() == ["case.breached"]
        assert receiver.received[0].json["data"]["case"]["status"] == "denominator"
        assert receiver.received[0].json["data"]["case"]["elapsed_minutes"] == 105.0

    def test_pci_in_time_raises_nothing(
        self, app_client, runtime, clock, admin_headers, ingest_headers, receiver
    ):
        subscribe(app_client, admin_headers, receiver)
        post(app_client, ingest_headers, *stemi_without_pci())
        step(runtime)
        clock.advance(timedelta(minutes=40))
        post(app_client, ingest_headers, procedure(start="2026-03-02T10:35:00+08:00"))
        step(runtime)
        clock.advance(timedelta(hours=3))
        step(runtime)
        assert receiver.received == []
        # The settled case is remembered (the order it applied) until a change about it
        # would be a backfill anyway, then forgotten.
        clock.advance(timedelta(hours=24))
        step(runtime)
        run_timer_once(runtime)
        with runtime.read() as session:
            assert session.scalars(sa.select(WatchedCase)).all() == []  # nothing to remember

    def test_an_episode_closed_without_pci_resolves_silently(
        self, app_client, runtime, clock, admin_headers, ingest_headers, reader_headers, receiver
    ):
        subscribe(app_client, admin_headers, receiver)
        post(app_client, ingest_headers, *stemi_without_pci())
        step(runtime)
        clock.advance(timedelta(minutes=95))
        step(runtime)
        assert receiver.types() == ["case.breached"]
        closed = encounter(start=ARRIVAL, end="2026-03-02T12:00:00+08:00")
        post(app_client, ingest_headers, closed)
        step(runtime)
        assert receiver.types() == ["case.breached"]  # no webhook for a vanished case
        [alert] = alerts(app_client, reader_headers)
        assert (alert["status"], alert["resolution"]) == ("resolved", "retracted")

    def test_a_deadline_that_passed_while_down_fires_at_start(
        self, app_client, runtime, clock, admin_headers, ingest_headers, receiver
    ):
        subscribe(app_client, admin_headers, receiver)
        post(app_client, ingest_headers, *stemi_without_pci())
        step(runtime)
        clock.advance(timedelta(hours=5))  # the service was down from 10:00 to 15:00
        assert run_timer_once(runtime) == 1
        deliver_due_once(runtime)
        assert receiver.types() == ["case.breached"]
        assert receiver.received[0].json["data"]["case"]["elapsed_minutes"] == 300.0

    def test_backfilled_old_cases_raise_nothing(
        self, app_client, runtime, clock, admin_headers, ingest_headers, reader_headers, receiver
    ):
        subscribe(app_client, admin_headers, receiver)
        clock.advance(timedelta(days=3))
        late = procedure(start="2026-03-02T11:45:00+08:00")
        post(app_client, ingest_headers, *stemi_without_pci(), late)
        step(runtime)
        assert receiver.received == []
        assert alerts(app_client, reader_headers) == []

    def test_subscription_filters(
        self, app_client, runtime, clock, admin_headers, ingest_headers, new_receiver
    ):
        breaches, cardiology, stemi = new_receiver(), new_receiver(), new_receiver()
        subscribe(app_client, admin_headers, breaches, events=["case.breached"])
        subscribe(app_client, admin_headers, cardiology, departments=["cardiology"])
        subscribe(app_client, admin_headers, stemi, indicators=["PIT-2026-23"])
        post(app_client, ingest_headers, *stemi_without_pci())
        step(runtime)
        clock.advance(timedelta(minutes=61))
        step(runtime)
        clock.advance(timedelta(minutes=35))
        step(runtime)
        assert breaches.types() == ["case.breached"]
        assert cardiology.types() == []
        assert stemi.types() == ["case.at_risk", "case.breached"]


class TestRadiologyCriticalValue:
    def test_no_notification_within_10_minutes_is_breached(
        self, app_client, runtime, clock, admin_headers, ingest_headers, reader_headers, receiver
    ):
        subscribe(app_client, admin_headers, receiver, indicators=["PIT-2026-31"])
        post(app_client, ingest_headers, patient(), encounter(start=ARRIVAL), imaging_critical())
        step(runtime)
        clock.advance(timedelta(minutes=7))  # the default at-risk share: 2/3 of 10 min
        step(runtime)
        assert receiver.types() == ["case.at_risk"]
        clock.advance(timedelta(minutes=3))
        step(runtime)
        assert receiver.types() == ["case.at_risk"]  # the deadline, but within the grace
        clock.advance(timedelta(minutes=5))
        step(runtime)
        assert receiver.types() == ["case.at_risk", "case.breached"]
        data = receiver.received[1].json["data"]
        assert data["indicator"]["code"] == "PIT-2026-31"
        assert data["case"]["key"] == "Observation/o1"
        # The indicator's own timer decided the case (denominator): still one breach.
        clock.advance(timedelta(minutes=5))
        step(runtime)
        assert receiver.types() == ["case.at_risk", "case.breached"]
        with runtime.read() as session:
            assert (
                session.get(WatchedCase, ("H0001", "PIT-2026-31", "e1", "Observation/o1")).status
                == "denominator"
            )

    def test_notification_sent_in_time_but_documented_late_resolves(
        self, app_client, runtime, clock, admin_headers, ingest_headers, receiver
    ):
        subscribe(app_client, admin_headers, receiver, indicators=["PIT-2026-31"])
        post(app_client, ingest_headers, patient(), encounter(start=ARRIVAL), imaging_critical())
        step(runtime)
        clock.advance(timedelta(minutes=16))  # past the deadline and its grace
        step(runtime)
        assert receiver.types() == ["case.breached"]
        post(app_client, ingest_headers, notification(sent="2026-03-02T10:08:00+08:00"))
        step(runtime)
        assert receiver.types() == ["case.breached", "case.resolved"]

    def test_each_alert_fires_once_per_case_and_kind(
        self, app_client, runtime, clock, admin_headers, ingest_headers, receiver
    ):
        subscribe(app_client, admin_headers, receiver)
        post(app_client, ingest_headers, patient(), encounter(start=ARRIVAL), imaging_critical())
        step(runtime)
        clock.advance(timedelta(minutes=11))
        step(runtime)
        # Correct the notification back and forth: met, not met, met again.
        post(app_client, ingest_headers, notification(sent="2026-03-02T10:08:00+08:00"))
        step(runtime)
        post(app_client, ingest_headers, notification(sent="2026-03-02T10:30:00+08:00"))
        step(runtime)
        post(app_client, ingest_headers, notification(sent="2026-03-02T10:05:00+08:00"))
        step(runtime)
        assert receiver.types() == ["case.breached", "case.resolved"]
        with runtime.read() as session:
            kinds = session.scalars(
                sa.select(Alert.kind).where(Alert.indicator == "PIT-2026-31")
            ).all()
        assert sorted(kinds) == ["case.breached", "case.resolved"]
