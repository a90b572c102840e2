"""Property: whatever arrives in whatever order, the counters equal a recomputation.

Hypothesis draws a sequence of writes over a small pool of resources that touch
every indicator: each write sends one of a resource's versions (corrections move
clock times, codes and statuses), re-sends one byte for byte, retracts it
(entered-in-error) or deletes it, sometimes with the clock moved past deadlines.
After every step the outbox is drained and ``verify`` must find no difference
between the stored cases and counters and a recomputation from the stored facts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcpulse import schema
from services.indicators.maintenance import recompute, verify
from services.indicators.models import CounterRow
from services.indicators.worker import drain
from services.ingest.service import IngestUnit
from shared.auth import ensure_tenant
from tests.conftest import T0, TENANT
from tests.fhir_factories import ACT, ICD9CM3_CN, ICD10_CN

ATC = "http://www.whocc.no/atc"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
QC = "https://qcpulse.org/fhir/CodeSystem/qc"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
RISK = "http://terminology.hl7.org/CodeSystem/risk-probability"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(minutes: int) -> str:
    """A local (+08:00) time ``minutes`` after T0 (10:00 local, 2 March 2026)."""
    return (T0 + timedelta(minutes=minutes)).astimezone(SHANGHAI).isoformat()


def cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def enc(eid: str, cls: str, dept: str, start: int, end: int | None) -> dict[str, Any]:
    period: dict[str, Any] = {"start": at(start)}
    if end is not None:
        period["end"] = at(end)
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished" if end is not None else "in-progress",
        "class": {"system": ACT, "code": cls},
        "subject": {"reference": "Patient/p1"},
        "period": period,
        "serviceProvider": {"reference": f"Organization/{dept}"},
    }


def cond(cid: str, eid: str, system: str, code: str, onset: int) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "code": cc(system, code),
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "onsetDateTime": at(onset),
    }


def proc(
    pid: str, eid: str, code: dict[str, Any], start: int, category: dict[str, Any] | None = None
) -> dict[str, Any]:
    r = {
        "resourceType": "Procedure",
        "id": pid,
        "status": "completed",
        "code": code,
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "performedDateTime": at(start),
    }
    if category:
        r["category"] = category
    return r


def med(mid: str, eid: str, atc: str, start: int, route: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": mid,
        "status": "completed",
        "medicationCodeableConcept": cc(ATC, atc),
        "subject": {"reference": "Patient/p1"},
        "context": {"reference": f"Encounter/{eid}"},
        "effectiveDateTime": at(start),
    }
    if route:
        r["dosage"] = {"route": cc(SNOMED, route)}
    return r


def obs(oid: str, eid: str | None, code: dict[str, Any], time: int, **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": code,
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": at(time),
    }
    if eid:
        r["encounter"] = {"reference": f"Encounter/{eid}"}
    r.update(extra)
    return r


def risk(rid: str, eid: str, code: str, time: int, level: str = "high") -> dict[str, Any]:
    return {
        "resourceType": "RiskAssessment",
        "id": rid,
        "status": "final",
        "code": cc(QC, code),
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "occurrenceDateTime": at(time),
        "prediction": [{"qualitativeRisk": cc(RISK, level)}],
    }


def critical(oid: str, eid: str | None, issued: int) -> dict[str, Any]:
    return obs(
        oid,
        eid,
        cc(LOINC, "24627-2"),
        issued - 5,
        issued=at(issued),
        category=[cc(OBS_CAT, "imaging")],
        interpretation=[cc(INTERP, "AA")],
    )


def comm(cid: str, about: str, sent: int) -> dict[str, Any]:
    return {
        "resourceType": "Communication",
        "id": cid,
        "status": "completed",
        "about": [{"reference": about}],
        "sent": at(sent),
    }


# Each resource with its versions: corrections move times or codes across thresholds.
POOL: list[list[dict[str, Any]]] = [
    [
        {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01"},
        {"resourceType": "Patient", "id": "p1", "birthDate": "2015-01-01"},
    ],
    [
        enc("e1", "EMER", "emergency", 0, None),
        enc("e1", "EMER", "emergency", 0, 600),
        enc("e1", "IMP", "cardiology", -30, None),
    ],
    [
        enc("e2", "IMP", "icu", 0, None),
        enc("e2", "IMP", "icu", 0, 60 * 20),
        enc("e2", "IMP", "icu", 0, 60 * 72),
    ],
    [
        cond("c1", "e1", ICD10_CN, "I21.000x001", 0),
        cond("c1", "e1", "http://hl7.org/fhir/sid/icd-10", "I63.9", 0),
    ],
    [
        proc("pr1", "e1", cc(ICD9CM3_CN, "00.6600"), 90),
        proc("pr1", "e1", cc(ICD9CM3_CN, "00.6600"), 91),
        proc("pr1", "e1", cc(SNOMED, "415070008"), 30),
    ],
    [med("m1", "e1", "B01AD02", 45), med("m1", "e1", "B01AD02", 75, route="47625008")],
    [cond("c2", "e2", ICD10_CN, "R57.200", 10), cond("c2", "e2", ICD10_CN, "F20.000", 10)],
    [
        obs("o1", "e2", cc(LOINC, "2524-7"), 20, valueQuantity={"value": 3.1, "unit": "mmol/L"}),
        obs("o1", "e2", cc(LOINC, "600-7"), 200),
    ],
    [med("m2", "e2", "J01DD04", 40), med("m2", "e2", "J01DD04", 400, route="47625008")],
    [
        risk("r1", "e2", "vte-risk", 60),
        risk("r1", "e2", "vte-risk", 60 * 30, "moderate"),
        risk("r1", "e2", "psych-risk", 120),
    ],
    [critical("o2", "e2", 100), critical("o2", None, 100)],
    [comm("k1", "Observation/o2", 109), comm("k1", "Observation/o2", 111)],
    [
        proc("pr2", "e2", cc(QC, "preop-mdt"), 300),
        proc("pr2", "e2", cc(SNOMED, "80146002"), 500, category=cc(QC, "surgery-level-4")),
    ],
    [
        {
            "resourceType": "AdverseEvent",
            "id": "ae1",
            "actuality": "actual",
            "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": "Encounter/e2"},
            "date": at(700),
        },
        {
            "resourceType": "AdverseEvent",
            "id": "ae1",
            "actuality": "potential",
            "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": "Encounter/e1"},
            "date": at(60 * 30),
        },
    ],
]

RETRACT = -1
DELETE = -2

step = st.tuples(
    st.integers(0, len(POOL) - 1),
    st.integers(DELETE, 2),
    st.sampled_from([0, 0, 0, 11, 61, 60 * 25]),  # minutes the clock moves before the write
)


def retracted(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource marked entered-in-error, where its type can say so."""
    match resource["resourceType"]:
        case "Condition":
            status = cc(
                "http://terminology.hl7.org/CodeSystem/condition-ver-status", "entered-in-error"
            )
            return {**resource, "verificationStatus": status}
        case "Patient":
            return {**resource, "active": False}  # a Patient is not retracted, only changed
        case "AdverseEvent":
            return {**resource, "actuality": "potential"}
        case _:
            return {**resource, "status": "entered-in-error"}


def apply(runtime, index: int, variant: int, pool: list[list[dict[str, Any]]] = POOL) -> None:
    """Write version ``variant`` of the pool's resource ``index`` (or retract / delete it)."""
    versions = pool[index]
    with runtime.write() as session:
        unit = IngestUnit(
            session, TENANT, runtime.tenant_zone(session, TENANT), runtime.clock.now()
        )
        base = versions[0]
        if variant == DELETE:
            current = unit.current(base["resourceType"], base["id"])
            if current is not None and not current.deleted:
                unit.delete(base["resourceType"], base["id"])
        elif variant == RETRACT:
            unit.put(retracted(base))
        else:
            unit.put(versions[variant % len(versions)])
        unit.finish()


def reset(runtime) -> None:
    tables = [t.name for t in reversed(schema.metadata.sorted_tables)]
    with runtime.write() as session:
        for name in tables:
            if name != "tenants":
                session.execute(sa.text(f"DELETE FROM {name}"))
        ensure_tenant(session, TENANT, timezone="Asia/Shanghai")
    runtime.clock.set(T0)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step, min_size=1, max_size=14))
def test_counters_equal_a_recomputation_after_every_step(runtime, steps):
    reset(runtime)
    for index, variant, minutes in steps:
        runtime.clock.advance(timedelta(minutes=minutes))
        apply(runtime, index, variant)
        drain(runtime)
        report = verify(runtime)
        assert report.ok, report.differences


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step, min_size=1, max_size=14), data=st.data())
def test_order_of_arrival_does_not_matter(runtime, steps, data):
    """The same final versions, sent in another order with duplicates, give the same counters."""
    final = {index: variant for index, variant, _ in steps}

    def counters() -> list[tuple]:
        with runtime.read() as session:
            rows = session.scalars(
                sa.select(CounterRow).order_by(
                    CounterRow.indicator, CounterRow.department, CounterRow.day
                )
            ).all()
        return [
            (r.indicator, r.department, r.day, r.numerator, r.denominator, r.excluded, r.pending)
            for r in rows
            if (r.numerator, r.denominator, r.excluded, r.pending) != (0, 0, 0, 0)
        ]

    reset(runtime)
    for index, variant, _ in steps:
        apply(runtime, index, variant)
    runtime.clock.advance(timedelta(days=3))
    drain(runtime)
    first = counters()

    reset(runtime)
    order = data.draw(st.permutations(sorted(final)))
    duplicated = data.draw(st.lists(st.sampled_from(order), max_size=5)) if order else []
    for index in [*order, *duplicated]:
        apply(runtime, index, final[index])
    runtime.clock.advance(timedelta(days=3))
    drain(runtime)
    assert counters() == first


def test_recompute_rebuilds_identical_counters(runtime):
    reset(runtime)
    for index in range(len(POOL)):
        apply(runtime, index, 0)
    drain(runtime)
    with runtime.read() as session:
        before = session.execute(
            sa.select(
                CounterRow.indicator,
                CounterRow.numerator,
                CounterRow.denominator,
                CounterRow.pending,
            )
        ).all()
    assert any(n or d for _, n, d, _ in before), "the pool should produce decided cases"
    recompute(runtime)
    with runtime.read() as session:
        after = session.execute(
            sa.select(
                CounterRow.indicator,
                CounterRow.numerator,
                CounterRow.denominator,
                CounterRow.pending,
            )
        ).all()
    nonzero = lambda rows: sorted(r for r in rows if any(r[1:]))  # noqa: E731
    assert nonzero(after) == nonzero(before)
    assert verify(runtime).ok


@pytest.mark.parametrize("variant", [RETRACT, DELETE])
def test_retracting_the_pci_removes_the_case(runtime, variant):
    reset(runtime)
    for index in (0, 1, 3, 4):
        apply(runtime, index, 0)
    drain(runtime)
    with runtime.read() as session:
        before = session.scalar(
            sa.select(sa.func.sum(CounterRow.numerator)).where(
                CounterRow.indicator == "PIT-2026-23"
            )
        )
    assert before == 1
    apply(runtime, 4, variant)
    drain(runtime)
    with runtime.read() as session:
        after = session.execute(
            sa.select(CounterRow.numerator, CounterRow.pending).where(
                CounterRow.indicator == "PIT-2026-23"
            )
        ).all()
    # Without PCI the open STEMI episode is pending again.
    assert sum(n for n, _ in after) == 0 and sum(p for _, p in after) == 1
    assert verify(runtime).ok
