"""Digest subscriptions: rate alerts collected and sent as one ``rate.digest`` per
department per interval; case alerts still go out one by one, at once."""

from datetime import timedelta

from services.alerts.worker import deliver_due_once, run_timer_once
from services.alerts.worker import drain as drain_alerts
from tests.alerts.conftest import subscribe
from tests.alerts.test_rate_alerts import MARCH_20, post_episodes
from tests.alerts.test_rules import change, emit_all


def test_rate_alerts_arrive_as_one_digest_per_department(
    app_client, runtime, clock, admin_headers, ingest_headers, new_receiver
):
    clock.set(MARCH_20)
    each, digest = new_receiver(), new_receiver()
    subscribe(app_client, admin_headers, each)
    sub = subscribe(app_client, admin_headers, digest, digest="PT1H")
    assert sub["digest"] == "PT1H"
    post_episodes(app_client, ingest_headers, runtime, [60] * 8 + [120] * 2)  # 80 %: deviation
    post_episodes(app_client, ingest_headers, runtime, [60] * 7, first=10)  # 88 %: recovered
    assert each.types() == ["rate.deviation", "rate.recovered"]
    assert digest.types() == []

    # A case alert is not digested: it goes out at once.
    emit_all(runtime, [change(clock, "pending")])
    drain_alerts(runtime)
    clock.advance(timedelta(minutes=15))
    run_timer_once(runtime)
    deliver_due_once(runtime)
    assert digest.types() == ["case.breached"]

    clock.advance(timedelta(minutes=44))  # 59 min after the first rate alert
    run_timer_once(runtime)
    deliver_due_once(runtime)
    assert digest.types() == ["case.breached"]
    clock.advance(timedelta(minutes=1))
    assert run_timer_once(runtime) == 1
    deliver_due_once(runtime)
    assert digest.types() == ["case.breached", "rate.digest"]
    got = digest.received[1]
    assert got.verified, got.error
    data = got.json["data"]
    assert data["department"] == "emergency"
    assert data["count"] == 2
    assert [a["type"] for a in data["alerts"]] == ["rate.deviation", "rate.recovered"]
    rates = [r.webhook_id for r in each.received if r.json["type"].startswith("rate.")]
    assert [a["alert_id"] for a in data["alerts"]] == rates
    assert "2 rate alerts" in data["message"]["en"]
    assert got.webhook_id.startswith("dig_")
    # Nothing is sent twice.
    clock.advance(timedelta(hours=2))
    assert run_timer_once(runtime) == 0
    deliver_due_once(runtime)
    assert len(digest.received) == 2


def test_digest_values(app_client, admin_headers, receiver):
    sub = subscribe(app_client, admin_headers, receiver, digest=15)
    assert sub["digest"] == "PT15M"
    url = f"/api/v1/subscriptions/{sub['id']}"
    for bad in ("PT10S", "P2D", 0, True, "soon"):
        r = app_client.patch(url, json={"digest": bad}, headers=admin_headers)
        assert r.status_code == 422, (bad, r.text)
    r = app_client.patch(url, json={"digest": "PT1H30M"}, headers=admin_headers)
    assert r.json()["digest"] == "PT1H30M"
    r = app_client.patch(url, json={"digest": None}, headers=admin_headers)
    assert r.json()["digest"] is None
    assert app_client.get(url, headers=admin_headers).json()["digest"] is None
