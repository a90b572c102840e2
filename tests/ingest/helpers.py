"""Helpers for ingest tests: store snapshots, direct units of work, resource factories
beyond the shared ones."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from qcpulse import schema
from services.ingest.models import EpisodeRow, FactRow, ResourceVersion, StoredResource
from services.ingest.service import IngestUnit
from shared.models import OutboxEvent
from shared.runtime import Runtime

JSON = dict[str, Any]
T = TypeVar("T")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def dump_all(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, order-independent: the whole store as a value."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            rows = conn.execute(sa.select(table)).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def store_counts(runtime: Runtime, tenant: str) -> dict[str, int]:
    """Row counts per ingest table (and outbox) for one tenant."""
    with runtime.read() as session:
        return {
            model.__tablename__: session.scalar(
                sa.select(sa.func.count()).select_from(model).where(model.tenant_id == tenant)
            )
            or 0
            for model in (StoredResource, ResourceVersion, EpisodeRow, FactRow, OutboxEvent)
        }


def outbox_keys(runtime: Runtime, tenant: str) -> list[str]:
    """``episode.changed`` keys in the order they were written."""
    with runtime.read() as session:
        return list(
            session.scalars(
                sa.select(OutboxEvent.key)
                .where(OutboxEvent.tenant_id == tenant, OutboxEvent.topic == "episode.changed")
                .order_by(OutboxEvent.id)
            )
        )


def fact(runtime: Runtime, tenant: str, rtype: str, rid: str) -> FactRow | None:
    with runtime.read() as session:
        return session.get(FactRow, (tenant, rtype, rid))


def episode(runtime: Runtime, tenant: str, encounter_id: str) -> EpisodeRow | None:
    with runtime.read() as session:
        return session.get(EpisodeRow, (tenant, encounter_id))


def in_unit(runtime: Runtime, tenant: str, work: Callable[[IngestUnit], T]) -> T:
    """Run ``work`` in one IngestUnit and commit, as one request would."""

    def tx(session: Any) -> T:
        unit = IngestUnit(session, tenant, SHANGHAI, runtime.clock.now())
        result = work(unit)
        unit.finish()
        return result

    return runtime.write_tx(tx)


def ingest_snapshot(runtime: Runtime, tenant: str) -> dict[str, Any]:
    """What a tenant's data means, without the tenant id: current resources, every
    version, episodes and facts."""
    with runtime.read() as session:
        resources = {
            (r.type, r.id): (r.version, r.deleted, r.content_hash, r.body)
            for r in session.scalars(
                sa.select(StoredResource).where(StoredResource.tenant_id == tenant)
            )
        }
        versions = sorted(
            (v.type, v.id, v.version, v.content_hash, v.deleted)
            for v in session.scalars(
                sa.select(ResourceVersion).where(ResourceVersion.tenant_id == tenant)
            )
        )
        episodes = {
            e.encounter_id: (
                e.status,
                e.class_code,
                e.department,
                e.department_name,
                e.patient_id,
                e.arrival,
                e.discharge,
                e.birth_date,
            )
            for e in session.scalars(sa.select(EpisodeRow).where(EpisodeRow.tenant_id == tenant))
        }
        facts = {
            (f.resource_type, f.resource_id): (
                f.encounter_id,
                f.link_ref,
                f.patient_id,
                f.kind,
                f.time,
                f.data,
            )
            for f in session.scalars(sa.select(FactRow).where(FactRow.tenant_id == tenant))
        }
    return {"resources": resources, "versions": versions, "episodes": episodes, "facts": facts}


# -- resources the shared factories do not have ---------------------------------------


def observation(
    oid: str = "o1",
    eid: str | None = "e1",
    pid: str = "p1",
    *,
    value: float = 5.8,
    status: str = "final",
    effective: str = "2026-03-02T10:20:00+08:00",
) -> JSON:
    res: JSON = {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": effective,
        "valueQuantity": {"value": value, "unit": "mmol/L", "code": "mmol/L"},
        "interpretation": [{"coding": [{"code": "HH"}]}],
    }
    if eid is not None:
        res["encounter"] = {"reference": f"Encounter/{eid}"}
    return res


def communication(
    cid: str = "m1",
    about: str = "Observation/o1",
    pid: str = "p1",
    *,
    sent: str = "2026-03-02T10:30:00+08:00",
) -> JSON:
    return {
        "resourceType": "Communication",
        "id": cid,
        "status": "completed",
        "subject": {"reference": f"Patient/{pid}"},
        "about": [{"reference": about}],
        "sent": sent,
    }


def medication_administration(mid: str = "ma1", eid: str = "e1", pid: str = "p1") -> JSON:
    return {
        "resourceType": "MedicationAdministration",
        "id": mid,
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": "urn:atc", "code": "B01AC06"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "context": {"reference": f"Encounter/{eid}"},
        "effectiveDateTime": "2026-03-02T10:15:00+08:00",
        "dosage": {"route": {"coding": [{"code": "PO"}]}},
    }


def location(lid: str = "l1") -> JSON:
    return {"resourceType": "Location", "id": lid, "name": "急诊抢救室", "status": "active"}


def entry(resource: JSON, method: str = "PUT", *, full_url: str | None = None) -> JSON:
    url = (
        resource["resourceType"]
        if method == "POST"
        else (f"{resource['resourceType']}/{resource['id']}")
    )
    out: JSON = {"request": {"method": method, "url": url}}
    if method != "DELETE":
        out["resource"] = resource
    if full_url:
        out["fullUrl"] = full_url
    return out


def bundle(*entries: JSON, btype: str = "transaction") -> JSON:
    return {"resourceType": "Bundle", "type": btype, "entry": list(entries)}


def issues(response: Any) -> list[JSON]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"], body
    for issue in body["issue"]:
        assert {"severity", "code", "diagnostics"} <= issue.keys(), issue
    return list(body["issue"])


@contextmanager
def sqlite_writer_holding_the_lock(runtime: Runtime) -> Iterator[threading.Event]:
    """Another writer holding SQLite's one write lock for the block. Should the code
    under test wait for the lock after all, the lock is let go after 20 s (and the
    event set) so the test fails on its assertion instead of hanging."""
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's single writer lock; PostgreSQL writers do not block reads")
    released = threading.Event()
    with runtime.engine.connect() as holder:
        holder.begin()  # BEGIN IMMEDIATE (shared/db.py): the write lock, held
        timer = threading.Timer(20, lambda: (released.set(), holder.rollback()))
        timer.start()
        try:
            yield released
        finally:
            timer.cancel()
            if not released.is_set():
                holder.rollback()
