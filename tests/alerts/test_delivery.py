"""Webhook delivery against a real receiver on loopback: retries, dead letters, 410,
redirects, garbage, slow receivers, restarts."""

import itertools
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from services.alerts import start_workers
from services.alerts.delivery import Dispatcher, backoff, claim, lease
from services.alerts.models import DeliveryStatus, Subscription
from services.alerts.worker import deliver_due_once
from shared.db import create_engine_for
from shared.runtime import Runtime
from tests.alerts.conftest import (
    GARBAGE,
    OK,
    REDIRECT,
    attempts,
    deliveries,
    hang,
    raise_test_alert,
    status,
    subscribe,
)


class TestRetries:
    def test_503_then_200_is_one_alert_delivered_once(
        self, app_client, admin_headers, runtime, clock, receiver
    ):
        subscribe(app_client, admin_headers, receiver)
        receiver.answers(status(503))
        alert_id = raise_test_alert(runtime)

        assert deliver_due_once(runtime) == 1
        [delivery] = deliveries(runtime)
        assert delivery.status == DeliveryStatus.PENDING
        wait = delivery.next_attempt_at - clock.now()
        assert timedelta(seconds=5) <= wait <= timedelta(seconds=10)
        assert deliver_due_once(runtime) == 0  # not due yet

        clock.advance(wait)
        assert deliver_due_once(runtime) == 1
        first, second = receiver.received
        assert first.verified
        assert second.verified
        assert first.webhook_id == second.webhook_id == alert_id
        assert first.body == second.body
        assert first.headers["webhook-signature"].startswith("v1,")
        [delivery] = deliveries(runtime)
        assert delivery.status == DeliveryStatus.DELIVERED
        tried = attempts(runtime, delivery.id)
        assert [(a.outcome, a.status_code) for a in tried] == [("failed", 503), ("delivered", 200)]
        assert tried[0].next_retry_at == tried[1].started_at
        clock.advance(timedelta(hours=1))
        assert deliver_due_once(runtime) == 0

    def test_retry_after_is_honoured(self, app_client, admin_headers, runtime, clock, receiver):
        subscribe(app_client, admin_headers, receiver)
        receiver.answers(status(429, Retry_After="120"))
        raise_test_alert(runtime)
        deliver_due_once(runtime)
        [delivery] = deliveries(runtime)
        assert delivery.next_attempt_at - clock.now() >= timedelta(seconds=120)

    def test_schedule_reaches_a_day_then_dead_letters_and_retries_by_hand(
        self, app_client, admin_headers, runtime, clock, receiver
    ):
        sub = subscribe(app_client, admin_headers, receiver)
        receiver.default = status(500)
        raise_test_alert(runtime)
        started = clock.now()
        times = []
        while True:
            [delivery] = deliveries(runtime)
            if delivery.status != DeliveryStatus.PENDING:
                break
            clock.set(max(clock.now(), delivery.next_attempt_at))
            times.append(clock.now() - started)
            assert deliver_due_once(runtime) == 1
        assert delivery.status == DeliveryStatus.DEAD
        assert timedelta(seconds=5) <= times[1] <= timedelta(seconds=10)
        assert times[-1] >= timedelta(hours=24)
        assert times[-1] <= runtime.settings.webhook_max_age
        assert 8 <= len(times) <= 20
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(g > timedelta(0) for g in gaps)
        assert len(receiver.received) == len(times)

        # Dead letters are visible, and an admin can send them again.
        listed = app_client.get(
            f"/api/v1/subscriptions/{sub['id']}/deliveries",
            params={"status": "dead"},
            headers=admin_headers,
        ).json()
        [dead] = listed["deliveries"]
        assert dead["status"] == "dead"
        assert len(dead["attempts"]) == len(times)
        assert dead["attempts"][0]["next_retry_at"] is not None
        assert dead["last_status_code"] == 500
        receiver.default = OK
        r = app_client.post(f"/api/v1/deliveries/{dead['id']}/retry", headers=admin_headers)
        assert r.status_code == 202, r.text
        assert deliver_due_once(runtime) == 1
        assert deliveries(runtime)[0].status == DeliveryStatus.DELIVERED
        again = app_client.post(f"/api/v1/deliveries/{dead['id']}/retry", headers=admin_headers)
        assert again.status_code == 409

    def test_backoff_grows_with_jitter_and_a_cap(self):
        assert timedelta(seconds=5) <= backoff(1) < timedelta(seconds=7.5)
        assert timedelta(seconds=15) <= backoff(2) < timedelta(seconds=22.5)
        assert timedelta(hours=3) <= backoff(30) < timedelta(hours=4.5)
        assert len({backoff(4) for _ in range(20)}) > 1


class TestAnswers:
    def test_410_disables_the_subscription(self, app_client, admin_headers, runtime, receiver):
        sub = subscribe(app_client, admin_headers, receiver)
        receiver.answers(status(410))
        raise_test_alert(runtime, key="e1")
        deliver_due_once(runtime)
        got = app_client.get(f"/api/v1/subscriptions/{sub['id']}", headers=admin_headers).json()
        assert got["enabled"] is False
        assert "410" in got["disabled_reason"]
        [delivery] = deliveries(runtime)
        assert delivery.status == DeliveryStatus.DEAD

        raise_test_alert(runtime, key="e2")  # a disabled subscription gets nothing new
        assert len(deliveries(runtime)) == 1
        assert deliver_due_once(runtime) == 0

        r = app_client.post(f"/api/v1/deliveries/{delivery.id}/retry", headers=admin_headers)
        assert r.status_code == 409  # re-enable first
        app_client.patch(
            f"/api/v1/subscriptions/{sub['id']}", json={"enabled": True}, headers=admin_headers
        )
        r = app_client.post(f"/api/v1/deliveries/{delivery.id}/retry", headers=admin_headers)
        assert r.status_code == 202
        assert deliver_due_once(runtime) == 1
        assert deliveries(runtime)[0].status == DeliveryStatus.DELIVERED

    def test_redirects_are_not_followed(self, app_client, admin_headers, runtime, receiver):
        subscribe(app_client, admin_headers, receiver)
        receiver.answers(REDIRECT)
        raise_test_alert(runtime)
        deliver_due_once(runtime)
        [delivery] = deliveries(runtime)
        assert delivery.status == DeliveryStatus.PENDING
        [attempt] = attempts(runtime, delivery.id)
        assert attempt.status_code == 302
        assert "not followed" in attempt.error
        assert len(receiver.received) == 1

    def test_garbage_is_a_transient_failure(
        self, app_client, admin_headers, runtime, clock, receiver
    ):
        subscribe(app_client, admin_headers, receiver)
        receiver.answers(GARBAGE)
        raise_test_alert(runtime)
        deliver_due_once(runtime)
        [delivery] = deliveries(runtime)
        [attempt] = attempts(runtime, delivery.id)
        assert attempt.status_code is None
        assert "Protocol" in attempt.error
        assert delivery.status == DeliveryStatus.PENDING
        clock.advance(timedelta(seconds=10))
        deliver_due_once(runtime)
        assert deliveries(runtime)[0].status == DeliveryStatus.DELIVERED

    def test_a_url_httpx_cannot_send_to_is_dead_at_once(
        self, app_client, admin_headers, runtime, receiver
    ):
        sub = subscribe(app_client, admin_headers, receiver)
        with runtime.write() as session:
            session.get(Subscription, sub["id"]).url = "ftp://127.0.0.1/hook"
        raise_test_alert(runtime)
        deliver_due_once(runtime)
        [delivery] = deliveries(runtime)
        assert delivery.status == DeliveryStatus.DEAD
        assert "UnsupportedProtocol" in delivery.last_error

    def test_a_closed_port_is_retried(self, app_client, admin_headers, runtime, receiver):
        sub = subscribe(app_client, admin_headers, receiver)
        with runtime.write() as session:
            session.get(Subscription, sub["id"]).url = "http://127.0.0.1:9/hook"
        raise_test_alert(runtime)
        deliver_due_once(runtime)
        [delivery] = deliveries(runtime)
        assert delivery.status == DeliveryStatus.PENDING
        assert "ConnectError" in delivery.last_error


class TestConcurrency:
    def test_a_hanging_receiver_does_not_delay_the_others(
        self, app_client, admin_headers, runtime, new_receiver
    ):
        runtime.settings.webhook_timeout = timedelta(seconds=2)
        slow, fast = new_receiver(), new_receiver()
        subscribe(app_client, admin_headers, slow)
        subscribe(app_client, admin_headers, fast)
        slow.default = hang(5)
        raise_test_alert(runtime)
        dispatcher = Dispatcher(runtime)
        try:
            started = time.monotonic()
            assert dispatcher.step() == 2
            assert fast.wait_for(1, timeout=2.0)
            assert time.monotonic() - started < 1.0
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and dispatcher.in_flight() > 1:
                time.sleep(0.01)
            assert dispatcher.in_flight() == 1  # only the hanging one
            by_url = {d.subscription_id: d for d in deliveries(runtime)}
            assert sorted(d.status for d in by_url.values()) == ["delivered", "pending"]
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and dispatcher.in_flight():
                time.sleep(0.05)
        finally:
            dispatcher.close()
        timed_out = next(d for d in deliveries(runtime) if d.status == DeliveryStatus.PENDING)
        [attempt] = attempts(runtime, timed_out.id)
        assert "timeout" in attempt.error
        assert attempt.latency_ms < 3000


class TestRestarts:
    def test_a_retry_survives_a_restart(
        self, app_client, admin_headers, runtime, clock, settings, receiver
    ):
        subscribe(app_client, admin_headers, receiver)
        receiver.answers(status(503))
        raise_test_alert(runtime)
        deliver_due_once(runtime)
        runtime.stop.set()  # the first process goes away between the failure and the retry

        clock.advance(timedelta(seconds=11))
        restarted = Runtime(
            settings=settings, engine=create_engine_for(settings.database_url), clock=clock
        )
        threads = start_workers(restarted)
        try:
            got = receiver.wait_for(2, timeout=5)
        finally:
            restarted.stop.set()
            for t in threads:
                t.join(timeout=5)
            restarted.engine.dispose()
        assert len(got) == 2
        assert got[0].webhook_id == got[1].webhook_id
        assert deliveries(runtime)[0].status == DeliveryStatus.DELIVERED

    def test_an_attempt_in_flight_at_a_crash_is_sent_again(
        self, app_client, admin_headers, runtime, clock, settings, receiver
    ):
        subscribe(app_client, admin_headers, receiver)
        raise_test_alert(runtime)
        [job] = claim(runtime, 10)  # claimed, then the process dies before sending
        assert deliver_due_once(runtime) == 0  # leased: nobody else sends it meanwhile

        clock.advance(lease(settings) + timedelta(seconds=1))
        restarted = Runtime(
            settings=settings, engine=create_engine_for(settings.database_url), clock=clock
        )
        try:
            assert deliver_due_once(restarted) == 1
        finally:
            restarted.engine.dispose()
        [delivery] = deliveries(runtime)
        assert delivery.status == DeliveryStatus.DELIVERED
        assert [a.outcome for a in attempts(runtime, delivery.id)] == ["interrupted", "delivered"]
        assert receiver.received[0].webhook_id == job.webhook_id


@pytest.mark.parametrize("answers", [[status(200)], [status(204)], [status(202)]])
def test_any_2xx_is_delivered(app_client, admin_headers, runtime, receiver, answers):
    subscribe(app_client, admin_headers, receiver)
    receiver.answers(*answers)
    raise_test_alert(runtime)
    deliver_due_once(runtime)
    assert deliveries(runtime)[0].status == DeliveryStatus.DELIVERED


def test_deleting_a_subscription_cancels_its_queue(app_client, admin_headers, runtime, receiver):
    sub = subscribe(app_client, admin_headers, receiver)
    receiver.answers(status(503))
    raise_test_alert(runtime)
    deliver_due_once(runtime)
    app_client.delete(f"/api/v1/subscriptions/{sub['id']}", headers=admin_headers)
    [delivery] = deliveries(runtime)
    assert delivery.status == DeliveryStatus.CANCELLED
    with runtime.read() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 1
