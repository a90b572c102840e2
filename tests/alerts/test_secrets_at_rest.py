"""Webhook secrets at rest: sealed in the table, opened to sign, rotated with
``qcpulse rotate-secrets``, clear rows from before 0009 read and sealed on start, and
no secret (nor API key) in the logs."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
import structlog
from fastapi.testclient import TestClient
from pydantic import SecretStr

from qcpulse import cli
from qcpulse.app import create_app, prepare
from services.alerts import reseal_all, seal_weak_secrets
from services.alerts.models import DeliveryStatus, Subscription
from services.alerts.worker import deliver_due_once
from shared.logging import configure_logging
from shared.runtime import Runtime
from shared.secretbox import DEV_KEY_ID, key_id, key_id_of, new_key, parse_key
from tests.alerts.conftest import attempts, deliveries, raise_test_alert, status, subscribe


def stored_secret(runtime, sub_id: str) -> str:
    with runtime.engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT secret FROM alert_subscriptions WHERE id = :id"), {"id": sub_id}
        ).scalar_one()


def set_stored_secret(runtime, sub_id: str, value: str) -> None:
    with runtime.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE alert_subscriptions SET secret = :s WHERE id = :id"),
            {"s": value, "id": sub_id},
        )


def kid(key: str) -> str:
    return key_id(parse_key(key))


@pytest.fixture
def keyed(runtime, settings, clock):
    """A runtime (and its API client) whose settings carry the given keys."""
    made: list[tuple[Runtime, TestClient]] = []

    def make(current: str | None, previous: str | None = None) -> tuple[Runtime, TestClient]:
        configured = settings.model_copy(
            update={
                "secret_key": SecretStr(current) if current else None,
                "secret_key_previous": SecretStr(previous) if previous else None,
            }
        )
        rt = Runtime(settings=configured, engine=runtime.engine, clock=clock)
        client = TestClient(create_app(runtime=rt, run_workers=False))
        client.__enter__()
        made.append((rt, client))
        return rt, client

    yield make
    for _, client in made:
        client.__exit__(None, None, None)


def test_the_table_holds_the_secret_sealed_and_deliveries_verify(keyed, admin_headers, receiver):
    key = new_key()
    rt, client = keyed(key)
    sub = subscribe(client, admin_headers, receiver)
    stored = stored_secret(rt, sub["id"])
    assert stored.startswith(f"qcenc:v1:{kid(key)}:")
    assert sub["secret"] not in stored
    assert sub["secret"].removeprefix("whsec_") not in stored

    raise_test_alert(rt)
    assert deliver_due_once(rt) == 1
    [got] = receiver.wait_for(1)
    assert got.verified, got.error  # signed with the clear secret, opened from the row


def test_without_a_key_the_development_key_seals(app_client, admin_headers, runtime, receiver):
    sub = subscribe(app_client, admin_headers, receiver)
    assert key_id_of(stored_secret(runtime, sub["id"])) == DEV_KEY_ID
    raise_test_alert(runtime)
    deliver_due_once(runtime)
    assert receiver.wait_for(1)[0].verified


def test_rotation_previous_key_opens_then_rotate_reseals(keyed, admin_headers, receiver):
    old, new = new_key(), new_key()
    rt_old, client = keyed(old)
    sub = subscribe(client, admin_headers, receiver)
    assert key_id_of(stored_secret(rt_old, sub["id"])) == kid(old)

    # New key deployed with the old one as previous: old rows still sign.
    rt_both, _ = keyed(new, old)
    raise_test_alert(rt_both, key="e1")
    deliver_due_once(rt_both)
    assert receiver.wait_for(1)[0].verified
    # Starting does not re-seal rows under a real older key (rolling key change).
    assert seal_weak_secrets(rt_both).older_key == 1
    assert key_id_of(stored_secret(rt_both, sub["id"])) == kid(old)

    report = reseal_all(rt_both)
    assert (report.rows, report.resealed, report.failed) == (1, 1, [])
    assert key_id_of(stored_secret(rt_both, sub["id"])) == kid(new)
    assert reseal_all(rt_both).resealed == 0  # idempotent

    # The old key can go now.
    rt_new, _ = keyed(new)
    raise_test_alert(rt_new, key="e2")
    deliver_due_once(rt_new)
    second = receiver.wait_for(2)[1]
    assert second.verified, second.error


def test_a_secret_under_a_missing_key_fails_the_attempt_and_is_retried(
    keyed, admin_headers, receiver
):
    old, other = new_key(), new_key()
    _, client = keyed(old)
    sub = subscribe(client, admin_headers, receiver)
    rt, _ = keyed(other)  # the old key was dropped too early
    raise_test_alert(rt)
    assert deliver_due_once(rt) == 1
    assert receiver.received == []
    [delivery] = deliveries(rt)
    assert delivery.status == DeliveryStatus.PENDING  # adding the key back heals it
    [attempt] = attempts(rt, delivery.id)
    assert kid(old) in attempt.error and "QCPULSE_SECRET_KEY_PREVIOUS" in attempt.error
    assert sub["secret"] not in attempt.error
    assert reseal_all(rt).failed == [sub["id"]]


def test_clear_rows_from_before_0009_are_read_and_sealed_on_start(keyed, admin_headers, receiver):
    key = new_key()
    rt, client = keyed(key)
    sub = subscribe(client, admin_headers, receiver)
    set_stored_secret(rt, sub["id"], sub["secret"])  # as migration 0009 leaves it

    raise_test_alert(rt, key="e1")
    deliver_due_once(rt)
    assert receiver.wait_for(1)[0].verified

    prepare(rt)  # what every start does
    assert key_id_of(stored_secret(rt, sub["id"])) == kid(key)
    raise_test_alert(rt, key="e2")
    deliver_due_once(rt)
    assert receiver.wait_for(2)[1].verified


def test_start_under_the_development_key_leaves_clear_rows_alone(
    app_client, admin_headers, runtime, receiver
):
    sub = subscribe(app_client, admin_headers, receiver)
    set_stored_secret(runtime, sub["id"], sub["secret"])
    assert seal_weak_secrets(runtime).resealed == 0
    assert stored_secret(runtime, sub["id"]) == sub["secret"]


class TestCli:
    @pytest.fixture
    def cli_env(self, monkeypatch, settings):
        monkeypatch.setenv("QCPULSE_DATABASE_URL", settings.database_url)
        for name in ("BOOTSTRAP_TENANT", "BOOTSTRAP_ADMIN_KEY", "INSECURE_DEV_KEY"):
            monkeypatch.delenv(f"QCPULSE_{name}", raising=False)
        monkeypatch.delenv("QCPULSE_SECRET_KEY", raising=False)
        monkeypatch.delenv("QCPULSE_SECRET_KEY_PREVIOUS", raising=False)
        return monkeypatch

    def test_rotate_secrets(self, cli_env, keyed, admin_headers, receiver, capsys):
        old, new = new_key(), new_key()
        rt, client = keyed(old)
        sub = subscribe(client, admin_headers, receiver)
        set_stored_secret(rt, subscribe(client, admin_headers, receiver)["id"], "whsec_clear")

        assert cli.main(["rotate-secrets"]) == 2
        assert "QCPULSE_SECRET_KEY is not set" in capsys.readouterr().err

        cli_env.setenv("QCPULSE_SECRET_KEY", new)
        assert cli.main(["rotate-secrets"]) == 1  # the old key is not configured
        out, err = capsys.readouterr()
        assert sub["id"] in err and "QCPULSE_SECRET_KEY_PREVIOUS" in err

        cli_env.setenv("QCPULSE_SECRET_KEY_PREVIOUS", old)
        assert cli.main(["rotate-secrets"]) == 0
        out, _ = capsys.readouterr()
        assert f"2 subscription secret(s), 1 re-sealed with key {kid(new)}" in out
        with rt.read() as session:
            stored = session.scalars(sa.select(Subscription.secret)).all()
        assert {key_id_of(s) for s in stored} == {kid(new)}
        assert new not in out and old not in out

    def test_secret_key_prints_a_usable_key(self, capsys):
        assert cli.main(["secret-key"]) == 0
        printed = capsys.readouterr().out.strip()
        assert len(parse_key(printed)) == 32

    def test_serve_without_a_key_fails_clearly(self, cli_env, capsys, monkeypatch):
        import uvicorn

        started = []
        monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append(a))
        assert cli.main(["serve"]) == 2
        err = capsys.readouterr().err
        assert "QCPULSE_SECRET_KEY is not set" in err and "--insecure-dev-key" in err
        assert started == []

        saved = structlog.get_config()  # serve configures logging
        try:
            assert cli.main(["serve", "--insecure-dev-key"]) == 0
            cli_env.setenv("QCPULSE_SECRET_KEY", new_key())
            assert cli.main(["serve"]) == 0
        finally:
            structlog.configure(**saved)
        assert len(started) == 2


def test_no_secret_and_no_api_key_in_the_logs(
    app_client, admin_headers, runtime, receiver, capsys, caplog
):
    saved = structlog.get_config()
    configure_logging("DEBUG", json=True)
    caplog.set_level(logging.DEBUG)
    try:
        sub = subscribe(app_client, admin_headers, receiver)
        ping = app_client.post(f"/api/v1/subscriptions/{sub['id']}/test", headers=admin_headers)
        assert ping.status_code == 202
        receiver.answers(status(500))
        raise_test_alert(runtime)
        deliver_due_once(runtime)  # the ping and a failed alert attempt
        assert app_client.get("/api/v1/alerts", headers={"Authorization": "Bearer qcp_x"})
        received = receiver.wait_for(2)
    finally:
        structlog.configure(**saved)
    captured = capsys.readouterr()
    logs = captured.out + captured.err + caplog.text
    assert logs.count("webhook attempt") >= 2  # the logs were captured
    secret = sub["secret"]
    api_key = admin_headers["Authorization"].removeprefix("Bearer ")
    for leaked in (
        secret,
        secret.removeprefix("whsec_"),
        api_key,
        api_key.removeprefix("qcp_"),
        stored_secret(runtime, sub["id"]),
        *(r.headers["webhook-signature"] for r in received),
    ):
        assert leaked not in logs
