"""A tenant with a little of everything, for the contract tests: STEMI episodes with
cases and counters (some late: alerts), a subscription, an HL7 source, a code map, a
manual value, and keys of every role, of a department-limited reader and of another
tenant."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.testclient import TestClient

from services.alerts.worker import drain as drain_alerts
from services.indicators.worker import drain as drain_indicators
from shared.auth import Role, create_key
from shared.runtime import Runtime
from tests.conftest import OTHER_TENANT, TENANT
from tests.fhir_factories import condition, encounter, patient, procedure, transaction

#: The department the limited reader may read; the seed has episodes in another too.
LIMITED_DEPARTMENT = "emergency"
OTHER_DEPARTMENT = "cardiology"
#: An indicator computed from events (STEMI door-to-PCI), and one entered by hand.
COMPUTED = "PIT-2026-23"
MANUAL = "PIT-2026-19"


@dataclass(frozen=True, slots=True)
class Seeded:
    keys: dict[str, str]
    key_ids: dict[str, str]
    subscription: str
    source: str
    alert: str | None
    delivery: str
    job: str


def _stemi(n: int, pci_minutes: int | None, dept: str, day: int) -> dict[str, object]:
    start = f"2026-03-{day:02d}T10:00:00+08:00"
    resources = [
        patient(f"p{n}"),
        encounter(f"e{n}", f"p{n}", start=start, dept=dept, dept_name=dept),
        condition(f"c{n}", f"e{n}", f"p{n}", onset=start),
    ]
    if pci_minutes is not None:
        h, m = divmod(10 * 60 + pci_minutes, 60)
        resources.append(
            procedure(
                f"pr{n}", f"e{n}", f"p{n}", start=f"2026-03-{day:02d}T{h:02d}:{m:02d}:00+08:00"
            )
        )
    return transaction(*resources)


def seed(runtime: Runtime, client: TestClient) -> Seeded:
    keys: dict[str, str] = {}
    key_ids: dict[str, str] = {}
    with runtime.write() as session:
        for name, role, tenant, departments in (
            ("admin", Role.ADMIN, TENANT, None),
            ("reader", Role.READER, TENANT, None),
            ("ingest", Role.INGEST, TENANT, None),
            ("limited", Role.READER, TENANT, [LIMITED_DEPARTMENT]),
            ("other", Role.ADMIN, OTHER_TENANT, None),
        ):
            row, secret = create_key(
                session, tenant, role, name=f"contract {name}", departments=departments
            )
            keys[name], key_ids[name] = secret, row.id
    auth = {name: {"Authorization": f"Bearer {secret}"} for name, secret in keys.items()}
    for n, minutes, dept, day in (
        (1, 60, "emergency", 2),
        (2, 120, "emergency", 3),
        (3, None, "cardiology", 1),
        (4, 45, "cardiology", 2),
    ):
        r = client.post("/fhir", json=_stemi(n, minutes, dept, day), headers=auth["ingest"])
        assert r.status_code == 200, r.text
    drain_indicators(runtime)
    drain_alerts(runtime)
    r = client.post(
        "/api/v1/subscriptions",
        json={"url": "https://alerts.example.org/hook", "events": ["*"]},
        headers=auth["admin"],
    )
    assert r.status_code == 201, r.text
    subscription = r.json()["id"]
    r = client.post(
        "/api/v1/hl7/sources", json={"facility": "HIS", "networks": []}, headers=auth["admin"]
    )
    assert r.status_code == 201, r.text
    source = r.json()["id"]
    r = client.put(
        "/api/v1/code-maps/urn:local:dx",
        json={
            "mappings": [
                {
                    "code": "XJ01",
                    "target_system": "urn:oid:2.16.156.10011.2.3.3.11",
                    "target_code": "I21.000x001",
                }
            ]
        },
        headers=auth["admin"],
    )
    assert r.status_code == 200, r.text
    r = client.post(f"/api/v1/subscriptions/{subscription}/test", headers=auth["admin"])
    assert r.status_code == 202, r.text
    delivery = r.json()["id"]
    r = client.put(
        f"/api/v1/indicators/{MANUAL}/manual/2026-02",
        json={"numerator": 1, "denominator": 2, "department": LIMITED_DEPARTMENT},
        headers=auth["admin"],
    )
    assert r.status_code == 200, r.text
    alerts = client.get("/api/v1/alerts", headers=auth["reader"]).json()["alerts"]
    return Seeded(
        keys,
        key_ids,
        subscription,
        source,
        alerts[0]["id"] if alerts else None,
        delivery,
        new_import_job(client, auth["ingest"]),
    )


def new_import_job(client: TestClient, headers: dict[str, str]) -> str:
    """A ``$import`` job of one Patient line: its id."""
    r = client.post(
        "/fhir/$import",
        content=b'{"resourceType": "Patient", "id": "imp1"}\n',
        headers={**headers, "Content-Type": "application/fhir+ndjson"},
    )
    assert r.status_code == 202, r.text
    return r.headers["Content-Location"].rsplit("/", 1)[-1]
