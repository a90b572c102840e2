"""A year of inpatient cases, lean enough that a million of them can be loaded.

The synthetic hospital (``qcpulse.synth``) models whole pathways, about 34 resources
per episode; a million of those would take the better part of a day to load. The
``query`` scenario asks how fast a year's figures are read back at a large hospital's
volume, so its episodes carry only what the indicators it queries need:

- an adult inpatient ``Encounter``, finished, in one of the synthetic hospital's
  departments: a case of NIT-2026-III-A (VTE risk assessed within 24 h) and of
  NIT-2026-V (intravenous infusion), each case filed under its own local day;
- a VTE ``RiskAssessment`` for most of them, some after the 24 h deadline;
- an intravenous ``MedicationRequest`` for about a third.

Every resource goes through ``POST /fhir`` like any other. Requests are generated
lazily, in order, and are the same for the same arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from random import Random
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from bench.server import Request
from qcpulse.synth import codes as c
from qcpulse.synth.chart import directory_bundle
from qcpulse.synth.clock import fhir_time
from qcpulse.synth.config import DepartmentRole, HospitalConfig

JSON = dict[str, Any]
SHANGHAI = ZoneInfo("Asia/Shanghai")
YEAR_START = datetime(2025, 1, 1, tzinfo=SHANGHAI)
#: The indicators these episodes are cases of.
CODES = ("NIT-2026-III-A", "NIT-2026-V")

_INPATIENT: tuple[DepartmentRole, ...] = (
    "cardiology",
    "neurology",
    "general_medicine",
    "general_surgery",
    "orthopaedics",
)


def _entry(resource: JSON) -> JSON:
    url = f"{resource['resourceType']}/{resource['id']}"
    return {"resource": resource, "request": {"method": "PUT", "url": url}}


def episode(config: HospitalConfig, number: int, arrival: datetime, rng: Random) -> list[JSON]:
    """One inpatient episode's resources."""
    department = config.department(rng.choice(_INPATIENT))
    eid = f"Y{number:07d}"
    patient = {"reference": f"Patient/P{number:07d}"}
    encounter_ref = {"reference": f"Encounter/{eid}"}
    discharge = arrival + timedelta(hours=rng.uniform(30, 24 * 12))
    out: list[JSON] = [
        {
            "resourceType": "Encounter",
            "id": eid,
            "status": "finished",
            "class": c.coding(c.ACT_CODE, "IMP", "inpatient encounter"),
            "subject": patient,
            "period": {"start": fhir_time(arrival), "end": fhir_time(discharge)},
            "serviceProvider": {
                "reference": f"Organization/{department.code}",
                "display": department.name,
            },
        }
    ]
    if rng.random() < 0.93:
        hours = rng.uniform(0.5, 22) if rng.random() < 0.9 else rng.uniform(25, 29)
        out.append(
            {
                "resourceType": "RiskAssessment",
                "id": f"{eid}-vte",
                "status": "final",
                "code": c.concept(c.QC, "vte-risk", "VTE风险评估"),
                "subject": patient,
                "encounter": encounter_ref,
                "occurrenceDateTime": fhir_time(arrival + timedelta(hours=hours)),
            }
        )
    if rng.random() < 0.35:
        out.append(
            {
                "resourceType": "MedicationRequest",
                "id": f"{eid}-iv",
                "status": "completed",
                "intent": "order",
                "medicationCodeableConcept": c.concept(c.ATC, "B05BB01", "氯化钠注射液"),
                "subject": patient,
                "encounter": encounter_ref,
                "authoredOn": fhir_time(arrival + timedelta(hours=2)),
                "dosageInstruction": [{"route": c.concept(c.SNOMED, *c.ROUTE_IV)}],
            }
        )
    return out


def requests(cases: int, *, seed: int = 29, bundle_size: int = 50) -> Iterator[Request]:
    """``cases`` episodes spread evenly over 2025 (a past year: every case is decided)
    as transaction Bundles of about ``bundle_size`` entries (an episode is never split),
    after the department directory."""
    config = HospitalConfig()
    directory = directory_bundle(config, YEAR_START)
    yield "POST", "/fhir", orjson.dumps(directory), len(directory["entry"])
    rng = Random(seed)
    step = timedelta(days=365) / max(cases, 1)
    entries: list[JSON] = []
    for number in range(cases):
        arrival = YEAR_START + step * number
        entries.extend(_entry(r) for r in episode(config, number, arrival, rng))
        if len(entries) >= bundle_size or number == cases - 1:
            body = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            yield "POST", "/fhir", orjson.dumps(body), len(entries)
            entries = []
