"""Subscriptions: the admin API, its validation, and the ping."""

import base64

import pytest

from services.alerts.worker import deliver_due_once
from tests.alerts.conftest import subscribe
from tests.conftest import OTHER_TENANT, Role, make_key


def test_create_shows_the_secret_once(app_client, admin_headers, receiver):
    created = subscribe(
        app_client,
        admin_headers,
        receiver,
        events=["case.breached"],
        indicators=["PIT-2026-23"],
        departments=["emergency"],
    )
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 32
    assert created["events"] == ["case.breached"]
    assert created["enabled"] is True

    got = app_client.get(f"/api/v1/subscriptions/{created['id']}", headers=admin_headers)
    assert got.status_code == 200
    assert "secret" not in got.json()
    assert got.json()["url"] == receiver.url
    listed = app_client.get("/api/v1/subscriptions", headers=admin_headers).json()
    assert [s["id"] for s in listed["subscriptions"]] == [created["id"]]
    assert all("secret" not in s for s in listed["subscriptions"])


def test_star_wins_and_duplicates_collapse(app_client, admin_headers, receiver):
    created = subscribe(
        app_client,
        admin_headers,
        receiver,
        events=["case.at_risk", "*"],
        departments=["icu", "icu"],
    )
    assert created["events"] == ["*"]
    assert created["departments"] == ["icu"]


def test_patch_and_delete(app_client, admin_headers, receiver):
    sub = subscribe(app_client, admin_headers, receiver)
    r = app_client.patch(
        f"/api/v1/subscriptions/{sub['id']}",
        headers=admin_headers,
        json={"events": ["rate.deviation"], "description": "质控科"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["events"], r.json()["description"]) == (["rate.deviation"], "质控科")
    r = app_client.patch(
        f"/api/v1/subscriptions/{sub['id']}", headers=admin_headers, json={"enabled": False}
    )
    assert (r.json()["enabled"], r.json()["disabled_reason"]) == (False, "disabled by an admin")
    r = app_client.patch(
        f"/api/v1/subscriptions/{sub['id']}", headers=admin_headers, json={"enabled": True}
    )
    assert (r.json()["enabled"], r.json()["disabled_reason"]) == (True, None)

    assert (
        app_client.delete(f"/api/v1/subscriptions/{sub['id']}", headers=admin_headers).status_code
        == 204
    )
    gone = app_client.get(f"/api/v1/subscriptions/{sub['id']}", headers=admin_headers)
    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"
    assert app_client.get("/api/v1/subscriptions", headers=admin_headers).json() == {
        "subscriptions": []
    }


@pytest.mark.parametrize(
    ("fields", "word"),
    [
        ({"url": "ftp://127.0.0.1/hook"}, "http"),
        ({"url": "not a url"}, "url"),
        ({"url": "http:///nohost"}, "url"),
        ({"events": ["case.lost"]}, "events"),
        ({"events": []}, "events"),
        ({"indicators": ["PIT-2026-99"]}, "PIT-2026-99"),
        ({"departments": []}, "departments"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_a_422_problem(app_client, admin_headers, receiver, fields, word):
    body = {
        "url": receiver.url,
        "events": ["*"],
        "indicators": ["*"],
        "departments": ["*"],
        "description": "",
    } | fields
    r = app_client.post("/api/v1/subscriptions", json=body, headers=admin_headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 422
    assert {"type", "title", "status", "detail"} <= set(problem)
    assert word.lower() in problem["detail"].lower()


def test_patch_validates_too(app_client, admin_headers, receiver):
    sub = subscribe(app_client, admin_headers, receiver)
    for body in ({"url": "gopher://x"}, {"indicators": ["NOPE-1"]}, {"events": ["ping"]}):
        r = app_client.patch(f"/api/v1/subscriptions/{sub['id']}", json=body, headers=admin_headers)
        assert r.status_code == 422, (body, r.text)


def test_private_receivers_can_be_refused(app_client, admin_headers, runtime, receiver):
    runtime.settings.webhook_allow_private = False
    for url in (receiver.url, "http://localhost:8080/x", "http://10.1.2.3/x", "http://[::1]/x"):
        body = {"url": url, "events": ["*"]}
        r = app_client.post("/api/v1/subscriptions", json=body, headers=admin_headers)
        assert r.status_code == 400, url
        assert r.headers["content-type"] == "application/problem+json"
    ok = {"url": "https://hooks.example.org/qc", "events": ["*"]}
    assert (
        app_client.post("/api/v1/subscriptions", json=ok, headers=admin_headers).status_code == 201
    )


def test_only_admins_of_the_tenant(app_client, admin_headers, reader_headers, runtime, receiver):
    sub = subscribe(app_client, admin_headers, receiver)
    body = {"url": receiver.url, "events": ["*"]}
    assert (
        app_client.post("/api/v1/subscriptions", json=body, headers=reader_headers).status_code
        == 403
    )
    assert app_client.get("/api/v1/subscriptions", headers=reader_headers).status_code == 403
    assert app_client.get("/api/v1/subscriptions").status_code == 401
    other = {"Authorization": f"Bearer {make_key(runtime, Role.ADMIN, OTHER_TENANT)}"}
    assert app_client.get(f"/api/v1/subscriptions/{sub['id']}", headers=other).status_code == 404
    assert app_client.get("/api/v1/subscriptions", headers=other).json() == {"subscriptions": []}


def test_ping_is_signed_and_recorded(app_client, admin_headers, runtime, receiver):
    sub = subscribe(app_client, admin_headers, receiver)
    r = app_client.post(f"/api/v1/subscriptions/{sub['id']}/test", headers=admin_headers)
    assert r.status_code == 202, r.text
    queued = r.json()
    assert (queued["type"], queued["status"]) == ("ping", "pending")

    assert deliver_due_once(runtime) == 1
    [got] = receiver.received
    assert got.verified, got.error
    assert got.json["type"] == "ping"
    assert got.json["data"]["subscription_id"] == sub["id"]
    assert got.webhook_id == queued["webhook_id"]

    listed = app_client.get(
        f"/api/v1/subscriptions/{sub['id']}/deliveries", headers=admin_headers
    ).json()
    [delivery] = listed["deliveries"]
    assert delivery["status"] == "delivered"
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 200
    assert attempt["outcome"] == "delivered"
    assert attempt["latency_ms"] >= 0
    assert attempt["next_retry_at"] is None
    assert listed["next_cursor"] is None
