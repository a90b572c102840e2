"""The audit log (shared/audit.py): one row per patient-level read and per change to
keys and subscriptions; ``GET /api/v1/audit`` for admins, newest first, keyset paged."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from shared.auth import Role, create_key
from shared.clock import FrozenClock
from shared.models import AuditEntry
from shared.runtime import Runtime
from tests.conftest import OTHER_TENANT, T0, TENANT
from tests.fhir_factories import encounter, patient

JSON = dict[str, Any]


def _key(runtime: Runtime, role: Role, tenant: str = TENANT, **kw: Any) -> tuple[str, JSON]:
    with runtime.write() as session:
        row, secret = create_key(session, tenant, role, **kw)
    return row.id, {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def who(runtime: Runtime) -> dict[str, tuple[str, JSON]]:
    return {
        "admin": _key(runtime, Role.ADMIN),
        "reader": _key(runtime, Role.READER),
        "limited": _key(runtime, Role.READER, departments=["emergency"]),
        "ingest": _key(runtime, Role.INGEST),
        "other": _key(runtime, Role.ADMIN, OTHER_TENANT),
    }


def _entries(runtime: Runtime) -> list[AuditEntry]:
    with runtime.read() as session:
        rows = list(session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)))
        session.expunge_all()
    return rows


def _seed(client: TestClient, headers: JSON) -> None:
    for res in (
        patient("p1"),
        patient("p2"),
        encounter("e1", "p1", dept="emergency"),
        encounter("e2", "p2", dept="cardiology"),
    ):
        r = client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res, headers=headers)
        assert r.status_code in (200, 201), r.text


def test_patient_level_reads_write_one_entry_each(
    app_client: TestClient, runtime: Runtime, who: dict[str, tuple[str, JSON]]
) -> None:
    _seed(app_client, who["ingest"][1])
    assert _entries(runtime) == []  # writes through /fhir are not audited reads

    key_id, limited = who["limited"]
    reads = [
        ("/fhir/Patient/p1", 200),
        ("/fhir/Encounter/e2", 404),  # refused: recorded too
        ("/fhir/Encounter/e1/_history", 200),
        ("/fhir/Encounter/e1/_history/1", 200),
        ("/api/v1/indicators/PIT-2026-23/cases?department=emergency", 200),
        ("/console/api/timeline?episode=Encounter/e1", 200),
        ("/api/v1/data-quality", 200),
    ]
    for path, status in reads:
        assert app_client.get(path, headers=limited).status_code == status, path
    # Not patient-level: not audited.
    assert app_client.get("/api/v1/indicators", headers=limited).status_code == 200

    rows = _entries(runtime)
    assert [(r.resource, r.detail["status"]) for r in rows] == [
        (f"GET {p.partition('?')[0]}", s) for p, s in reads
    ]
    assert {(r.tenant_id, r.key_id, r.role, r.action) for r in rows} == {
        (TENANT, key_id, "reader", "read")
    }
    assert all(r.client == "testclient" and r.at == T0 for r in rows)
    assert rows[4].detail["query"] == {"department": "emergency"}


def test_key_and_subscription_changes(
    app_client: TestClient, runtime: Runtime, who: dict[str, tuple[str, JSON]]
) -> None:
    admin_id, admin = who["admin"]
    expires = (T0 + timedelta(days=30)).isoformat()
    made = app_client.post(
        "/api/v1/keys",
        json={"role": "reader", "departments": ["icu"], "expires_at": expires},
        headers=admin,
    )
    assert made.status_code == 201
    refused = app_client.post("/api/v1/keys", json={"role": "nobody"}, headers=admin)
    assert refused.status_code == 422  # not a change: not audited

    sub = app_client.post(
        "/api/v1/subscriptions",
        json={"url": "http://127.0.0.1:9/hook", "events": ["*"]},
        headers=admin,
    )
    assert sub.status_code == 201, sub.text
    sid = sub.json()["id"]
    path = f"/api/v1/subscriptions/{sid}"
    assert app_client.patch(path, json={"enabled": False}, headers=admin).status_code == 200
    assert app_client.patch(path, json={"enabled": True}, headers=admin).status_code == 200
    assert app_client.post(f"{path}/test", headers=admin).status_code == 202
    assert app_client.delete(path, headers=admin).status_code == 204

    rows = _entries(runtime)
    assert [(r.action, r.resource) for r in rows] == [
        ("create", "POST /api/v1/keys"),
        ("create", "POST /api/v1/subscriptions"),
        ("update", f"PATCH {path}"),
        ("update", f"PATCH {path}"),
        ("test", f"POST {path}/test"),
        ("delete", f"DELETE {path}"),
    ]
    assert {r.key_id for r in rows} == {admin_id}
    created = rows[0].detail
    assert created["id"] == made.json()["id"]
    assert created["departments"] == ["icu"] and created["role"] == "reader"
    assert created["expires_at"] is not None
    assert made.json()["key"] not in repr([r.detail for r in rows])  # never the secret
    assert rows[1].detail["id"] == sid
    assert sub.json()["secret"] not in repr([r.detail for r in rows])


def test_audit_api_admin_only_newest_first_paged_and_filtered(
    app_client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    who: dict[str, tuple[str, JSON]],
) -> None:
    _seed(app_client, who["ingest"][1])
    reader_id, reader = who["reader"]
    limited_id, limited = who["limited"]
    for i in range(5):
        clock.advance(timedelta(minutes=1))
        app_client.get("/fhir/Patient/p1", headers=reader if i % 2 == 0 else limited)
    _, admin = who["admin"]
    _, other = who["other"]

    statuses = {
        name: app_client.get("/api/v1/audit", headers=h).status_code for name, (_, h) in who.items()
    }
    assert statuses == {"admin": 200, "reader": 403, "limited": 403, "ingest": 403, "other": 200}
    # Reading the log is not itself a patient-level read; another tenant sees nothing.
    assert app_client.get("/api/v1/audit", headers=other).json() == {
        "entries": [],
        "next_cursor": None,
    }

    every = app_client.get("/api/v1/audit", headers=admin).json()["entries"]
    assert len(every) == 5
    assert [e["id"] for e in every] == sorted((e["id"] for e in every), reverse=True)
    assert [e["key"] for e in every] == [reader_id, limited_id, reader_id, limited_id, reader_id]

    seen: list[int] = []
    cursor = None
    while True:
        params: JSON = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = app_client.get("/api/v1/audit", headers=admin, params=params).json()
        seen += [e["id"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [e["id"] for e in every]

    by_key = app_client.get("/api/v1/audit", headers=admin, params={"key": limited_id}).json()
    assert [e["key"] for e in by_key["entries"]] == [limited_id, limited_id]
    assert (
        app_client.get("/api/v1/audit", headers=admin, params={"action": "create"}).json()[
            "entries"
        ]
        == []
    )
    assert app_client.get("/api/v1/audit", headers=admin, params={"action": "x"}).status_code == 400

    times = sorted({e["at"] for e in every})
    window = app_client.get(
        "/api/v1/audit", headers=admin, params={"from": times[1], "to": times[3]}
    ).json()["entries"]
    assert sorted({e["at"] for e in window}) == times[1:3]


def test_a_read_that_cannot_be_audited_is_not_answered(
    app_client: TestClient,
    runtime: Runtime,
    who: dict[str, tuple[str, JSON]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _seed(app_client, who["ingest"][1])

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("database gone")

    monkeypatch.setattr(runtime, "write", broken)
    r = app_client.get("/fhir/Patient/p1", headers=who["reader"][1])
    assert r.status_code == 500
    assert "张三" not in r.text


def test_every_audited_route_exists(app_client: TestClient) -> None:
    """A typo in ``AUDITED`` would leave a route silently unaudited."""
    from shared.audit import AUDITED

    paths = app_client.get("/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    routes.add(("GET", "/console/api/timeline"))  # the console's own read, not in the schema
    missing = {(m, p.replace("{system:path}", "{system}")) for m, p in AUDITED} - routes
    assert not missing, sorted(missing)
