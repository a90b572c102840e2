"""FHIR R4 MeasureReport (summary) for one indicator and period."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.indicators import queries
from services.indicators.definitions import IndicatorDefinition

POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
MEASURE_BASE = "https://qcpulse.org/fhir/Measure"


def _population(code: str, count: int) -> dict[str, Any]:
    return {"code": {"coding": [{"system": POPULATION_SYSTEM, "code": code}]}, "count": count}


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
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation",
                    "code": "increase" if defn.direction == "higher_is_better" else "decrease",
                }
            ]
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
