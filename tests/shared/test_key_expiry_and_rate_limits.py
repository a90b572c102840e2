"""Keys that expire (401 from ``expires_at`` on, shown in the listing) and per-key
request rate limits (429 + ``Retry-After``, a token bucket per key)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from qcpulse import cli
from qcpulse.app import create_app
from shared.auth import Role, create_key
from shared.models import ApiKey
from shared.ratelimit import RateLimiter
from shared.runtime import Runtime
from tests.conftest import OTHER_TENANT, T0, TENANT, make_key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status
    return body


class TestExpiry:
    def test_a_key_with_an_expiry_works_until_then_and_answers_401_after(
        self, app_client, admin_headers, clock
    ):
        expires = (T0 + timedelta(hours=1)).astimezone(UTC)
        r = app_client.post(
            "/api/v1/keys",
            json={"role": "reader", "name": "visitor", "expires_at": "2026-03-02T11:00:00+08:00"},
            headers=admin_headers,
        )
        assert r.status_code == 201, r.text
        created = r.json()
        assert datetime.fromisoformat(created["expires_at"]) == expires
        key = created["key"]
        assert app_client.get("/api/v1/alerts", headers=bearer(key)).status_code == 200

        clock.advance(timedelta(minutes=59, seconds=59))
        assert app_client.get("/api/v1/alerts", headers=bearer(key)).status_code == 200
        clock.advance(timedelta(seconds=1))
        body = problem(app_client.get("/api/v1/alerts", headers=bearer(key)), 401)
        assert "expired" in body["detail"]
        r = app_client.get("/fhir/Patient/p1", headers=bearer(key))
        assert r.status_code == 401
        assert r.json()["resourceType"] == "OperationOutcome"
        assert r.headers["www-authenticate"] == "Bearer"

    def test_the_listing_shows_expiry_and_never_a_secret(
        self, app_client, admin_headers, runtime, clock
    ):
        with runtime.write() as session:
            create_key(session, TENANT, Role.INGEST, name="his", expires_at=T0 + timedelta(days=1))
        other = make_key(runtime, Role.ADMIN, OTHER_TENANT)
        r = app_client.get("/api/v1/keys", headers=admin_headers)
        assert r.status_code == 200
        keys = {k["name"]: k for k in r.json()["keys"]}
        assert set(keys) == {"test admin", "his"}  # the other tenant's key is not listed
        his = keys["his"]
        assert datetime.fromisoformat(his["expires_at"]) == T0 + timedelta(days=1)
        assert his["expired"] is False
        assert keys["test admin"]["expires_at"] is None
        assert set(his) == {
            "id",
            "role",
            "tenant",
            "name",
            "departments",
            "permissions",
            "created_at",
            "expires_at",
            "expired",
            "revoked_at",
        }
        clock.advance(timedelta(days=1))
        listed = app_client.get("/api/v1/keys", headers=admin_headers).json()["keys"]
        assert {k["name"]: k["expired"] for k in listed} == {"test admin": False, "his": True}
        assert app_client.get("/api/v1/keys", headers=bearer(other)).json()["keys"][0][
            "tenant"
        ] == (OTHER_TENANT)

    def test_listing_needs_admin(self, app_client, reader_headers):
        problem(app_client.get("/api/v1/keys", headers=reader_headers), 403)
        problem(app_client.get("/api/v1/keys"), 401)

    @pytest.mark.parametrize(
        "expires_at",
        ["2026-03-02T09:59:59+08:00", "2026-03-02T02:00:00Z", "2027-01-01T00:00:00", "soon"],
        ids=["past", "now", "naive", "garbage"],
    )
    def test_an_expiry_in_the_past_or_without_offset_is_a_422(
        self, app_client, admin_headers, expires_at
    ):
        r = app_client.post(
            "/api/v1/keys", json={"role": "reader", "expires_at": expires_at}, headers=admin_headers
        )
        assert "expires_at" in problem(r, 422)["detail"]

    def test_cli_creates_a_key_with_an_expiry(self, monkeypatch, settings, runtime, capsys):
        monkeypatch.setenv("QCPULSE_DATABASE_URL", settings.database_url)
        monkeypatch.delenv("QCPULSE_BOOTSTRAP_TENANT", raising=False)
        monkeypatch.delenv("QCPULSE_BOOTSTRAP_ADMIN_KEY", raising=False)
        args = ["keys", "create", "--tenant", TENANT, "--role", "reader"]
        assert cli.main([*args, "--expires-at", "2099-01-01T00:00+08:00"]) == 0
        key = capsys.readouterr().out.strip()
        with runtime.read() as session:
            row = session.query(ApiKey).filter(ApiKey.role == "reader").one()
        assert row.expires_at == datetime(2098, 12, 31, 16, 0, tzinfo=UTC)
        assert key.startswith("qcp_")
        for bad in ("2099-01-01T00:00", "2001-01-01T00:00Z"):
            with pytest.raises(SystemExit):
                cli.main([*args, "--expires-at", bad])


@pytest.fixture
def limited(runtime, settings, clock):
    """An app whose keys may make 3 requests a minute (a bucket of 3)."""
    made = []

    def make(per_minute: int = 3, burst: int | None = None) -> TestClient:
        configured = settings.model_copy(
            update={"rate_limit_per_minute": per_minute, "rate_limit_burst": burst}
        )
        rt = Runtime(settings=configured, engine=runtime.engine, clock=clock)
        client = TestClient(create_app(runtime=rt, run_workers=False))
        client.__enter__()
        made.append(client)
        return client

    yield make
    for client in made:
        client.__exit__(None, None, None)


class TestRateLimits:
    def test_the_fourth_request_in_a_minute_is_a_429_with_retry_after(
        self, limited, runtime, clock
    ):
        client = limited(3)
        key, other = make_key(runtime, Role.READER), make_key(runtime, Role.READER)
        for _ in range(3):
            assert client.get("/api/v1/alerts", headers=bearer(key)).status_code == 200
        r = client.get("/api/v1/alerts", headers=bearer(key))
        body = problem(r, 429)
        assert r.headers["retry-after"] == "20"  # one token every 60 s / 3
        assert "rate limit" in body["detail"]
        # A bucket per key: another key is not slowed down.
        assert client.get("/api/v1/alerts", headers=bearer(other)).status_code == 200

        clock.advance(timedelta(seconds=19))
        r = client.get("/api/v1/alerts", headers=bearer(key))
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        clock.advance(timedelta(seconds=1))
        assert client.get("/api/v1/alerts", headers=bearer(key)).status_code == 200
        assert client.get("/api/v1/alerts", headers=bearer(key)).status_code == 429

    def test_fhir_paths_answer_an_operation_outcome(self, limited, runtime):
        client = limited(1)
        key = make_key(runtime, Role.INGEST)
        assert client.get("/fhir/Patient/p1", headers=bearer(key)).status_code == 404
        r = client.get("/fhir/Patient/p1", headers=bearer(key))
        assert r.status_code == 429
        assert r.headers["retry-after"] == "60"
        assert r.json()["issue"][0]["code"] == "throttled"

    def test_forbidden_requests_count_too(self, limited, runtime):
        client = limited(2)
        key = make_key(runtime, Role.READER)
        assert client.get("/api/v1/subscriptions", headers=bearer(key)).status_code == 403
        assert client.get("/api/v1/subscriptions", headers=bearer(key)).status_code == 403
        assert client.get("/api/v1/alerts", headers=bearer(key)).status_code == 429

    def test_burst_and_zero(self, limited, runtime):
        client = limited(60, burst=2)
        key = make_key(runtime, Role.READER)
        codes = [client.get("/api/v1/alerts", headers=bearer(key)).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        unlimited = limited(0)
        key = make_key(runtime, Role.READER)
        assert {
            unlimited.get("/api/v1/alerts", headers=bearer(key)).status_code for _ in range(50)
        } == {200}

    def test_the_default_is_generous(self, settings):
        assert settings.rate_limit_per_minute >= 6000
        bucket = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        assert all(bucket.take("k", T0) is None for _ in range(5000))
