"""Shape 1 of a region: one instance, its hospitals H0001 and H0002 as tenants and
members, posting STEMI episodes (PIT-2026-23: door-to-balloon within 90 minutes)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from services.indicators.worker import drain
from services.regions.service import add_member, create_region, create_region_key
from shared.runtime import Runtime
from tests.conftest import OTHER_TENANT, TENANT
from tests.fhir_factories import condition, encounter, patient, procedure, transaction

CODE = "PIT-2026-23"
REGION = "TJ-HX"


def stemi(n: int, pci_minutes: int | None, *, month: int, day: int, dept: str) -> dict[str, Any]:
    start = f"2026-{month:02d}-{day:02d}T10:00:00+08:00"
    resources = [
        patient(f"p{n}"),
        encounter(f"e{n}", f"p{n}", start=start, dept=dept, dept_name=dept),
        condition(f"c{n}", f"e{n}", f"p{n}", onset=start),
    ]
    if pci_minutes is not None:
        h, m = divmod(10 * 60 + pci_minutes, 60)
        resources.append(
            procedure(
                f"pr{n}",
                f"e{n}",
                f"p{n}",
                start=f"2026-{month:02d}-{day:02d}T{h:02d}:{m:02d}:00+08:00",
            )
        )
    return transaction(*resources)


#: (tenant, episode number, minutes to PCI or None, month, day, department)
EPISODES = [
    # H0001: February 2/3 in time; March 3/4 in time (emergency 2/2, cardiology 1/2).
    (TENANT, 1, 60, 2, 10, "emergency"),
    (TENANT, 2, 80, 2, 11, "emergency"),
    (TENANT, 3, 120, 2, 12, "cardiology"),
    (TENANT, 4, 60, 3, 10, "emergency"),
    (TENANT, 5, 45, 3, 11, "emergency"),
    (TENANT, 6, 70, 3, 12, "cardiology"),
    (TENANT, 7, 95, 3, 13, "cardiology"),
    # H0002: March only, 1/3 in time.
    (OTHER_TENANT, 1, 30, 3, 5, "emergency"),
    (OTHER_TENANT, 2, 100, 3, 6, "emergency"),
    (OTHER_TENANT, 3, 150, 3, 7, "cardiology"),
]


def post_episodes(client: TestClient, runtime: Runtime, headers: dict[str, dict[str, str]]) -> None:
    for tenant, n, minutes, month, day, dept in EPISODES:
        r = client.post(
            "/fhir",
            json=stemi(n, minutes, month=month, day=day, dept=dept),
            headers=headers[tenant],
        )
        assert r.status_code == 200, r.text
    drain(runtime)


def make_region(runtime: Runtime, *, target_profile: str | None = None) -> str:
    """Region TJ-HX: H0001 and H0002 of this instance, and H0003, federated, which has
    submitted nothing. Returns a region-reader key."""
    with runtime.write() as session:
        create_region(session, REGION, name="天津市河西区质控中心", target_profile=target_profile)
        add_member(session, REGION, "H0001", name="示例医院", tenant_id=TENANT)
        add_member(session, REGION, "H0002", name="第二医院", tenant_id=OTHER_TENANT)
        add_member(session, REGION, "H0003", name="联网医院")
        _, secret = create_region_key(session, REGION, name="test region reader")
    return secret
