"""Alert records: listing, filters, pages, acknowledging, and who may see what."""

from datetime import timedelta

from services.alerts.models import Alert, AlertKind, Resolution
from services.alerts.service import resolve_alerts
from shared.auth import Role, create_key
from tests.alerts.conftest import raise_test_alert
from tests.conftest import OTHER_TENANT, TENANT, make_key


def listing(client, headers, **params):
    r = client.get("/api/v1/alerts", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_ack_moves_open_to_acknowledged(app_client, runtime, reader_headers):
    alert_id = raise_test_alert(runtime)
    [alert] = listing(app_client, reader_headers, status="open")["alerts"]
    assert alert["id"] == alert_id
    assert alert["status"] == "open"
    assert alert["message"] == {"zh": "测试告警", "en": "test alert"}

    r = app_client.post(f"/api/v1/alerts/{alert_id}/ack", headers=reader_headers)
    assert r.status_code == 200, r.text
    acked = r.json()
    assert acked["status"] == "acknowledged"
    assert acked["acknowledged_at"] is not None
    assert acked["acknowledged_by"]
    again = app_client.post(f"/api/v1/alerts/{alert_id}/ack", headers=reader_headers)
    assert again.status_code == 200
    assert again.json()["acknowledged_at"] == acked["acknowledged_at"]
    assert listing(app_client, reader_headers, status="open")["alerts"] == []
    assert [
        a["id"] for a in listing(app_client, reader_headers, status="acknowledged")["alerts"]
    ] == [alert_id]


def test_a_resolved_alert_cannot_be_acknowledged(app_client, runtime, admin_headers):
    alert_id = raise_test_alert(runtime, kind=AlertKind.CASE_RESOLVED)
    with runtime.write() as session:
        resolve_alerts(session, [alert_id], Resolution.MET, runtime.clock.now())
        assert session.get(Alert, alert_id).status == "resolved"
    r = app_client.post(f"/api/v1/alerts/{alert_id}/ack", headers=admin_headers)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"


def test_filters_and_pages(app_client, runtime, clock, reader_headers):
    ids = []
    for i in range(5):
        ids.append(
            raise_test_alert(runtime, key=f"e{i}", department="icu" if i % 2 else "emergency")
        )
        clock.advance(timedelta(seconds=1))
    page = listing(app_client, reader_headers, limit=2)
    seen = [a["id"] for a in page["alerts"]]
    while page["next_cursor"]:
        page = listing(app_client, reader_headers, limit=2, cursor=page["next_cursor"])
        seen += [a["id"] for a in page["alerts"]]
    assert seen == ids[::-1]  # newest first, each once
    icu = listing(app_client, reader_headers, department="icu")["alerts"]
    assert [a["id"] for a in icu] == [ids[3], ids[1]]
    assert listing(app_client, reader_headers, indicator="PIT-2026-31")["alerts"] == []
    assert len(listing(app_client, reader_headers, indicator="PIT-2026-23")["alerts"]) == 5
    bad = app_client.get("/api/v1/alerts", params={"status": "closed"}, headers=reader_headers)
    assert bad.status_code == 422
    bad = app_client.get("/api/v1/alerts", params={"cursor": "!!"}, headers=reader_headers)
    assert bad.status_code == 422


def test_department_limited_readers_see_their_own(app_client, runtime):
    mine = raise_test_alert(runtime, key="e1", department="icu")
    theirs = raise_test_alert(runtime, key="e2", department="emergency")
    with runtime.write() as session:
        _, key = create_key(session, TENANT, Role.READER, name="ICU", departments=["icu"])
    headers = {"Authorization": f"Bearer {key}"}
    assert [a["id"] for a in listing(app_client, headers)["alerts"]] == [mine]
    assert (
        app_client.get(
            "/api/v1/alerts", params={"department": "emergency"}, headers=headers
        ).status_code
        == 403
    )
    assert app_client.post(f"/api/v1/alerts/{theirs}/ack", headers=headers).status_code == 404
    assert app_client.post(f"/api/v1/alerts/{mine}/ack", headers=headers).status_code == 200


def test_tenants_and_roles(app_client, runtime, ingest_headers):
    alert_id = raise_test_alert(runtime)
    other = {"Authorization": f"Bearer {make_key(runtime, Role.READER, OTHER_TENANT)}"}
    assert listing(app_client, other)["alerts"] == []
    assert app_client.get(f"/api/v1/alerts/{alert_id}", headers=other).status_code == 404
    assert app_client.post(f"/api/v1/alerts/{alert_id}/ack", headers=other).status_code == 404
    assert app_client.get("/api/v1/alerts", headers=ingest_headers).status_code == 403
    assert app_client.post(f"/api/v1/alerts/{alert_id}/ack").status_code == 401
