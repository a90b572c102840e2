"""Property: with episode chains and patient-level cases, counters still equal a
recomputation, whatever arrives in whatever order.

The pool is one patient's year, built so that every new semantic can flip: an ED visit
and the ward stay that is ``partOf`` it (the link can be dropped, pointed elsewhere or
turned into a cycle, and the stay can arrive before its root), a cardiac arrest whose
survival depends on the disposition or on the Patient's date of death, a chest-wall
repair whose readmission moves in and out of the 31-day window, changes priority or
moves to another patient, and dialysis months whose last haemoglobin changes unit.
After every step the outbox is drained and ``verify`` must report nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.indicators.maintenance import recompute, verify
from services.indicators.models import CaseRow, CounterRow
from services.indicators.worker import drain
from tests.fhir_factories import ACT, ICD9CM3_CN, ICD10_CN
from tests.pipeline.test_incremental_equals_recompute import apply as write
from tests.pipeline.test_incremental_equals_recompute import at, cc, reset

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
DAY = 24 * 60


def enc(
    eid: str,
    cls: str,
    dept: str,
    start: int,
    end: int | None,
    *,
    patient: str = "p1",
    part_of: str | None = None,
    priority: str | None = None,
    disposition: str | None = None,
) -> dict[str, Any]:
    period: dict[str, Any] = {"start": at(start)}
    if end is not None:
        period["end"] = at(end)
    r: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished" if end is not None else "in-progress",
        "class": {"system": ACT, "code": cls},
        "subject": {"reference": f"Patient/{patient}"},
        "period": period,
        "serviceProvider": {"reference": f"Organization/{dept}"},
    }
    if part_of:
        r["partOf"] = {"reference": f"Encounter/{part_of}"}
    if priority:
        r["priority"] = cc(PRIORITY, priority)
    if disposition:
        r["hospitalization"] = {"dischargeDisposition": cc(DISPOSITION, disposition)}
    return r


def cond(cid: str, eid: str, code: str, onset: int) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "code": cc(ICD10_CN, code),
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "onsetDateTime": at(onset),
    }


def proc(pid: str, eid: str, code: str, start: int) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": pid,
        "status": "completed",
        "code": cc(ICD9CM3_CN, code),
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "performedDateTime": at(start),
    }


def hb(oid: str, eid: str, time: int, value: float, unit: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": cc(LOINC, "718-7"),
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "effectiveDateTime": at(time),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


POOL: list[list[dict[str, Any]]] = [
    [
        {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01"},
        {
            "resourceType": "Patient",
            "id": "p1",
            "birthDate": "1960-01-01",
            "deceasedDateTime": at(3 * DAY),
        },
    ],
    # The ED visit (the root) and the ward stay it became.
    [
        enc("ed1", "EMER", "emergency", 0, 120),
        enc("ed1", "EMER", "emergency", 0, None),
        enc("ed1", "EMER", "emergency", -60, 120, part_of="w1"),  # a cycle
    ],
    [
        enc("w1", "IMP", "cardiology", 120, 5 * DAY, part_of="ed1", disposition="home"),
        enc("w1", "IMP", "cardiology", 120, 5 * DAY, part_of="ed1", disposition="exp"),
        enc("w1", "IMP", "cardiology", 120, None, part_of="ed1"),
        enc("w1", "IMP", "cardiology", 120, 5 * DAY, disposition="home"),
    ],
    [cond("c1", "w1", "I21.000x001", 10), cond("c1", "ed1", "I21.000x001", 10)],
    [proc("pci", "w1", "00.6600", 80), proc("pci", "w1", "00.6600", 150)],
    [cond("ca", "ed1", "I46.900", 5), cond("ca", "w1", "I46.900", 200)],
    [proc("cpr", "ed1", "99.6000", 6), proc("cpr", "w1", "99.6300", 201)],
    # Chest-wall repair and what follows it.
    [
        enc("s1", "IMP", "thoracic", 10 * DAY, 15 * DAY, disposition="home"),
        enc("s1", "IMP", "thoracic", 10 * DAY, None),
        enc("s1", "IMP", "thoracic", 10 * DAY, 15 * DAY, disposition="exp"),
    ],
    [proc("nuss", "s1", "34.7400", 11 * DAY), proc("nuss", "s1", "34.7400", 11 * DAY + 60)],
    [
        enc("s2", "IMP", "thoracic", 30 * DAY, 33 * DAY, priority="EM"),
        enc("s2", "IMP", "thoracic", 30 * DAY, 33 * DAY, priority="EL"),
        enc("s2", "IMP", "thoracic", 50 * DAY, 53 * DAY, priority="UR"),
        enc("s2", "IMP", "thoracic", 30 * DAY, 33 * DAY, priority="EM", patient="p2"),
    ],
    # Dialysis in two months, haemoglobin in three units and one that is not one.
    [
        enc("d1", "AMB", "nephrology", 20 * DAY, 20 * DAY + 240),
        enc("d1", "AMB", "nephrology", 40 * DAY, 40 * DAY + 240),
    ],
    [proc("hd1", "d1", "39.9500", 20 * DAY + 10), proc("hd1", "d1", "54.9800", 40 * DAY + 10)],
    [
        hb("hb1", "d1", 20 * DAY + 20, 11.5, "g/dL"),
        hb("hb1", "d1", 20 * DAY + 20, 105, "g/L"),
        hb("hb1", "d1", 20 * DAY + 20, 7.2, "mmol/L"),
        hb("hb1", "d1", 20 * DAY + 20, 120, "mg"),
    ],
    [
        # A planned admission: no readmission for the chest-wall index.
        enc("d2", "IMP", "nephrology", 24 * DAY, 26 * DAY, priority="EL"),
        enc("d2", "IMP", "nephrology", 24 * DAY, 26 * DAY, priority="EL", patient="p2"),
    ],
    [proc("hd2", "d2", "39.9500", 24 * DAY + 60)],
    [hb("hb2", "d2", 25 * DAY, 100, "g/L"), hb("hb2", "d2", 18 * DAY, 130, "g/L")],
]

RETRACT, DELETE = -1, -2  # as in test_incremental_equals_recompute

step = st.tuples(
    st.integers(0, len(POOL) - 1),
    st.integers(DELETE, 3),
    st.sampled_from([0, 0, 0, 61, 60 * 25, 20 * DAY, 45 * DAY]),
)


def apply(runtime, index: int, variant: int) -> None:
    write(runtime, index, variant, POOL)


def counters(runtime) -> list[tuple]:
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


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step, min_size=1, max_size=16))
def test_chains_and_patients_equal_a_recomputation_after_every_step(runtime, steps):
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
@given(steps=st.lists(step, min_size=1, max_size=16), data=st.data())
def test_order_of_arrival_does_not_matter_across_episodes(runtime, steps, data):
    """The same final versions in another order, with duplicates (a ward stay before its
    ED visit, a readmission before its index), give the same counters."""
    final = {index: variant for index, variant, _ in steps}
    reset(runtime)
    for index, variant, _ in steps:
        apply(runtime, index, variant)
    runtime.clock.advance(timedelta(days=70))
    drain(runtime)
    first = counters(runtime)

    reset(runtime)
    order = data.draw(st.permutations(sorted(final)))
    duplicated = data.draw(st.lists(st.sampled_from(order), max_size=5)) if order else []
    for index in [*order, *duplicated]:
        apply(runtime, index, final[index])
    runtime.clock.advance(timedelta(days=70))
    drain(runtime)
    assert counters(runtime) == first


def cases(runtime, indicator: str) -> list[CaseRow]:
    with runtime.read() as session:
        return list(
            session.scalars(
                sa.select(CaseRow).where(CaseRow.indicator == indicator).order_by(CaseRow.key)
            )
        )


def test_the_pool_exercises_every_new_semantic(runtime):
    """Guard against a property that holds because nothing happens."""
    reset(runtime)
    for index in reversed(range(len(POOL))):  # the ward stay before its ED visit
        apply(runtime, index, 0)
    runtime.clock.advance(timedelta(days=70))
    drain(runtime)
    stemi = cases(runtime, "PIT-2026-23")
    assert [(c.encounter_id, c.clock_start) for c in stemi] == [("ed1", _utc(0))]
    assert [c.status for c in cases(runtime, "PIT-2026-11")] == ["numerator"]  # survived
    readmission = cases(runtime, "PIT-2026-47")
    assert [(c.encounter_id, c.patient_id, c.status) for c in readmission] == [
        ("s1", "p1", "numerator")
    ]
    months = cases(runtime, "PIT-2026-03")
    # March: d1's 11.5 g/dL (115 g/L) is the only Hb — met; hb2 in d2 (26 Mar) is later
    # and 100 g/L — not met. April: dialysis but no Hb — not a case.
    assert [(c.key, c.encounter_id, c.status) for c in months] == [
        ("p1/2026-03", "d2", "denominator")
    ]
    assert verify(runtime).ok

    apply(runtime, 2, 1)  # died in the ward
    apply(runtime, 9, 1)  # the readmission was elective
    apply(runtime, 15, 1)  # d2's haemoglobin moved before d1's
    drain(runtime)
    assert [c.status for c in cases(runtime, "PIT-2026-11")] == ["denominator"]
    assert [c.status for c in cases(runtime, "PIT-2026-47")] == ["denominator"]
    assert [c.status for c in cases(runtime, "PIT-2026-03")] == ["numerator"]
    assert verify(runtime).ok

    apply(runtime, 2, 3)  # the stay no longer says it is part of the ED visit
    drain(runtime)
    stemi = cases(runtime, "PIT-2026-23")
    assert [(c.encounter_id, c.clock_start) for c in stemi] == [("w1", _utc(120))]
    assert verify(runtime).ok
    recompute(runtime)
    assert verify(runtime).ok


def test_a_readmission_pending_until_the_window_closes(runtime):
    reset(runtime)
    for index in (0, 7, 8):
        apply(runtime, index, 0)
    runtime.clock.advance(timedelta(days=16))  # the index was discharged on day 15
    drain(runtime)
    [case] = cases(runtime, "PIT-2026-47")
    assert case.status == "pending" and case.decide_at == _utc(15 * DAY + 31 * DAY)
    runtime.clock.advance(timedelta(days=31))
    drain(runtime)
    assert [c.status for c in cases(runtime, "PIT-2026-47")] == ["denominator"]
    apply(runtime, 9, 0)  # late data: a readmission on day 30 arrives now
    drain(runtime)
    assert [c.status for c in cases(runtime, "PIT-2026-47")] == ["numerator"]
    apply(runtime, 9, 3)  # … and was another patient's
    drain(runtime)
    assert [c.status for c in cases(runtime, "PIT-2026-47")] == ["denominator"]
    assert verify(runtime).ok


def _utc(minutes: int):
    from tests.conftest import T0

    return T0 + timedelta(minutes=minutes)
