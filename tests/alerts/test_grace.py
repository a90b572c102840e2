"""Alert fatigue: ``case.breached`` waits a grace after the deadline (5 min by default,
per tenant, per indicator), so that documentation already on its way resolves the case
without a page. ``case.at_risk`` is unchanged."""

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

import services.indicators.definitions as definitions
from services.alerts.models import Alert, WatchedCase
from services.alerts.worker import drain, run_timer_once
from shared.runtime import Runtime
from tests.alerts.conftest import subscribe
from tests.alerts.test_case_alerts import post, stemi_without_pci, step
from tests.alerts.test_rules import change, emit_all, kinds
from tests.fhir_factories import procedure


def test_pci_documented_within_the_grace_raises_no_breach(
    app_client, runtime, clock, admin_headers, ingest_headers, receiver
):
    subscribe(app_client, admin_headers, receiver)
    post(app_client, ingest_headers, *stemi_without_pci())
    step(runtime)
    clock.advance(timedelta(minutes=61))
    step(runtime)
    clock.advance(timedelta(minutes=31))  # 11:32: the deadline (11:30) has passed
    step(runtime)
    assert receiver.types() == ["case.at_risk"]
    with runtime.read() as session:  # the timer wakes when the grace ends
        row = session.scalars(sa.select(WatchedCase)).one()
        assert row.check_at == row.deadline + timedelta(minutes=5)
    # 11:33: PCI performed at 11:20 (80 min), documented late: the target was met.
    clock.advance(timedelta(minutes=1))
    post(app_client, ingest_headers, procedure(start="2026-03-02T11:20:00+08:00"))
    step(runtime)
    clock.advance(timedelta(hours=1))
    step(runtime)
    assert receiver.types() == ["case.at_risk", "case.resolved"]
    with runtime.read() as session:
        assert "case.breached" not in session.scalars(sa.select(Alert.kind)).all()


def test_the_timer_breaches_when_the_grace_ends(runtime, clock):
    emit_all(runtime, [change(clock, "pending")])  # deadline in 9 min
    drain(runtime)
    clock.advance(timedelta(minutes=6))  # at risk
    run_timer_once(runtime)
    clock.advance(timedelta(minutes=7, seconds=59))
    run_timer_once(runtime)
    assert kinds(runtime) == ["case.at_risk"]
    clock.advance(timedelta(seconds=1))
    assert run_timer_once(runtime) == 1
    assert kinds(runtime) == ["case.at_risk", "case.breached"]


def test_a_tenant_sets_its_grace(app_client, runtime, clock, admin_headers, reader_headers):
    r = app_client.put("/api/v1/tenant", json={"alert_grace": "PT0S"}, headers=admin_headers)
    assert r.status_code == 200, r.text
    assert r.json()["alert_grace"] == "PT0S"
    emit_all(runtime, [change(clock, "pending")])
    drain(runtime)
    clock.advance(timedelta(minutes=6))
    run_timer_once(runtime)
    clock.advance(timedelta(minutes=3))  # the deadline itself
    run_timer_once(runtime)
    assert kinds(runtime) == ["case.at_risk", "case.breached"]
    r = app_client.put("/api/v1/tenant", json={"alert_grace": None}, headers=admin_headers)
    assert r.json()["alert_grace"] is None
    r = app_client.put("/api/v1/tenant", json={"alert_grace": "-PT1M"}, headers=admin_headers)
    assert r.status_code == 422


def test_an_indicator_sets_its_grace(tmp_path, runtime, settings, engine, clock):
    shipped = Path(definitions.__file__).parent / "catalogue" / "PIT-2026-31.yaml"
    defs = tmp_path / "defs"
    defs.mkdir()
    text = shipped.read_text(encoding="utf-8").rstrip("\n") + "\nalert_grace: 20m\n"
    (defs / "PIT-2026-31.yaml").write_text(text, encoding="utf-8")
    custom = Runtime(
        settings=settings.model_copy(update={"indicators_dir": defs}), engine=engine, clock=clock
    )
    emit_all(custom, [change(clock, "pending")])
    drain(custom)
    clock.advance(timedelta(minutes=6))
    run_timer_once(custom)
    clock.advance(timedelta(minutes=22))  # deadline + 19 min
    run_timer_once(custom)
    assert kinds(custom) == ["case.at_risk"]
    clock.advance(timedelta(minutes=1))
    run_timer_once(custom)
    assert kinds(custom) == ["case.at_risk", "case.breached"]


def test_a_case_first_seen_after_its_deadline_gets_the_grace_from_then(runtime, clock):
    """A backlog: the case and its documentation arrive after the deadline, one send
    after the other. The first must not page before the second can land."""
    from tests.alerts.test_order import change as late_change

    emit_all(runtime, [late_change(clock, "pending")])  # deadline 20 min ago
    drain(runtime)
    assert kinds(runtime) == []
    with runtime.read() as session:
        row = session.scalars(sa.select(WatchedCase)).one()
        assert row.check_at == clock.now() + timedelta(minutes=5)
    clock.advance(timedelta(minutes=5))
    run_timer_once(runtime)
    assert kinds(runtime) == ["case.breached"]
