"""FHIR R4 MeasureReport (summary, or subject-list) for one indicator and period."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from services.indicators import queries
from services.indicators.definitions import IndicatorDefinition

POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
MEASURE_BASE = "https://qcpulse.org/fhir/Measure"
IMPROVEMENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"
EMPTY_REASON = "http://terminology.hl7.org/CodeSystem/list-empty-reason"


def improvement_code(defn: IndicatorDefinition) -> str:
    return "increase" if defn.direction == "higher_is_better" else "decrease"


def _population(code: str, count: int) -> dict[str, Any]:
    return {"code": {"coding": [{"system": POPULATION_SYSTEM, "code": code}]}, "count": count}


def tenant_report(
    session: Session,
    defn: IndicatorDefinition,
    tenant_id: str,
    start: date,
    end: date,
    tz: ZoneInfo,
    departments: Sequence[str] | None,
    *,
    department: str | None,
    generated: datetime,
) -> dict[str, Any]:
    """The summary report of a tenant's counters (``departments``: the departments
    counted, None for all; ``department``: the one asked for, named in the report)."""
    shape = queries.shape_of(defn)
    total = queries.totals_for(session, tenant_id, shape, start, end, departments)
    return measure_report(
        defn, shape, tenant_id, start, end, tz, total, department=department, generated=generated
    )


def measure_report(
    defn: IndicatorDefinition,
    shape: queries.IndicatorShape,
    tenant_id: str,
    start: date,
    end: date,
    tz: ZoneInfo,
    total: queries.Counts,
    *,
    department: str | None,
    generated: datetime,
) -> dict[str, Any]:
    """Populations use the standard codes. For a ratio the denominator is its own case
    set (discharges), so the initial population is the two sets together."""
    den = queries.denominator(shape, total)
    initial = total.numerator + total.denominator_only + total.excluded
    rate = queries.rate(shape, total)
    group: dict[str, Any] = {
        "code": {"text": defn.name.en},
        "population": [
            _population("initial-population", initial),
            _population("denominator", den),
            _population("numerator", total.numerator),
            _population("denominator-exclusion", total.excluded),
        ],
    }
    if rate is not None:
        unit = {"percent": "1", "per_100": "/100", "per_1000": "/1000", "per_10000": "/10000"}[
            defn.unit
        ]
        group["measureScore"] = {
            "value": round(rate, 6),
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        }
    period_end = datetime.combine(end + timedelta(days=1), time(0), tzinfo=tz) - timedelta(
        seconds=1
    )
    report: dict[str, Any] = {
        "resourceType": "MeasureReport",
        "id": f"{defn.code}-{start.isoformat()}-{end.isoformat()}".replace(":", "-")[:64],
        "status": "complete",
        "type": "summary",
        "measure": f"{MEASURE_BASE}/{defn.code}|{defn.version}",
        "date": generated.isoformat(),
        "reporter": {"display": tenant_id},
        "period": {
            "start": datetime.combine(start, time(0), tzinfo=tz).isoformat(),
            "end": period_end.isoformat(),
        },
        "improvementNotation": {
            "coding": [{"system": IMPROVEMENT_SYSTEM, "code": improvement_code(defn)}]
        },
        "group": [group],
    }
    if department is not None:
        report["extension"] = [
            {
                "url": "https://qcpulse.org/fhir/StructureDefinition/department",
                "valueString": department,
            }
        ]
    return report


def subject_list_report(
    summary: dict[str, Any], lists: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """The summary report as ``type: subject-list``: each population refers to a
    contained ``List`` of its subjects (``lists``: population code → ``List.entry``).
    The counts stay the summary's, so that the two reports agree."""
    report = {**summary, "type": "subject-list", "contained": []}
    group = {**summary["group"][0], "population": []}
    for population in summary["group"][0]["population"]:
        code = population["code"]["coding"][0]["code"]
        report["contained"].append(
            {
                "resourceType": "List",
                "id": code,
                "status": "current",
                "mode": "snapshot",
                "title": f"{code} subjects",
                **(
                    {"entry": lists[code]}
                    if lists.get(code)
                    else {"emptyReason": {"coding": [{"system": EMPTY_REASON, "code": "nilknown"}]}}
                ),
            }
        )
        group["population"].append({**population, "subjectResults": {"reference": f"#{code}"}})
    report["group"] = [group]
    # ``contained`` sits before ``extension`` and ``status``, as FHIR orders elements.
    return {k: report[k] for k in ("resourceType", "id", "contained", *summary) if k in report}
