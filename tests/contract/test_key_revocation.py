"""DELETE /api/v1/keys/{id}: the key stops authenticating at once, audited; another
tenant's key is 404; a key cannot revoke itself."""

from __future__ import annotations

from shared.auth import Role
from tests.conftest import OTHER_TENANT, make_key


def _key_id(client, headers, name: str) -> str:
    keys = client.get("/api/v1/keys", headers=headers).json()["keys"]
    return next(k["id"] for k in keys if k["name"] == name)


def test_revoked_key_answers_401_at_once_and_is_audited(app_client, admin_headers):
    r = app_client.post(
        "/api/v1/keys", json={"role": "reader", "name": "victim"}, headers=admin_headers
    )
    assert r.status_code == 201
    victim, secret = r.json()["id"], r.json()["key"]
    victim_headers = {"Authorization": f"Bearer {secret}"}
    assert app_client.get("/api/v1/indicators", headers=victim_headers).status_code == 200

    r = app_client.delete(f"/api/v1/keys/{victim}", headers=admin_headers)
    assert r.status_code == 204 and r.content == b""
    r = app_client.get("/api/v1/indicators", headers=victim_headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"

    listed = {
        k["id"]: k for k in app_client.get("/api/v1/keys", headers=admin_headers).json()["keys"]
    }
    first = listed[victim]["revoked_at"]
    assert first is not None
    # Again: nothing changes, still 204.
    assert app_client.delete(f"/api/v1/keys/{victim}", headers=admin_headers).status_code == 204
    listed = {
        k["id"]: k for k in app_client.get("/api/v1/keys", headers=admin_headers).json()["keys"]
    }
    assert listed[victim]["revoked_at"] == first

    entries = app_client.get(
        "/api/v1/audit", params={"action": "delete"}, headers=admin_headers
    ).json()["entries"]
    assert any(
        e["resource"] == f"DELETE /api/v1/keys/{victim}"
        and e["detail"]["id"] == victim
        and e["detail"]["role"] == "reader"
        for e in entries
    )


def test_other_tenant_key_is_not_found_and_stays_valid(app_client, runtime, admin_headers):
    other = make_key(runtime, Role.READER, OTHER_TENANT)
    other_headers = {"Authorization": f"Bearer {other}"}
    other_admin = {"Authorization": f"Bearer {make_key(runtime, Role.ADMIN, OTHER_TENANT)}"}
    other_id = _key_id(app_client, other_admin, "test reader")
    r = app_client.delete(f"/api/v1/keys/{other_id}", headers=admin_headers)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert app_client.get("/api/v1/indicators", headers=other_headers).status_code == 200
    assert app_client.delete("/api/v1/keys/nosuchkey", headers=admin_headers).status_code == 404


def test_a_key_cannot_revoke_itself(app_client, admin_headers):
    own = _key_id(app_client, admin_headers, "test admin")
    r = app_client.delete(f"/api/v1/keys/{own}", headers=admin_headers)
    assert r.status_code == 409
    assert app_client.get("/api/v1/keys", headers=admin_headers).status_code == 200


def test_only_admins_revoke(app_client, admin_headers, reader_headers, ingest_headers):
    r = app_client.post("/api/v1/keys", json={"role": "ingest"}, headers=admin_headers)
    victim = r.json()["id"]
    for headers in (reader_headers, ingest_headers):
        assert app_client.delete(f"/api/v1/keys/{victim}", headers=headers).status_code == 403
    assert app_client.delete(f"/api/v1/keys/{victim}").status_code == 401
