"""A department's rate for one month against its target and its control limits:
what rate alerts are decided on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy.orm import Session

from services.indicators import queries
from services.indicators.definitions import IndicatorDefinition
from services.indicators.profiles import ProfileSet

#: Months of history (the current one included) that set a p-chart's center line.
BASELINE_MONTHS = 12


@dataclass(frozen=True, slots=True)
class RateStatus:
    indicator: str
    department: str
    month: date
    numerator: int
    denominator: int
    rate: float | None
    target: float | None
    meets_target: bool | None
    center: float | None
    ucl: float | None
    lcl: float | None
    min_cases: int
    direction: str
    unit: str

    @property
    def enough_cases(self) -> bool:
        return self.denominator >= self.min_cases

    @property
    def outside_limits(self) -> bool:
        if self.rate is None or self.ucl is None or self.lcl is None:
            return False
        return self.rate > self.ucl or self.rate < self.lcl

    def to_json(self) -> dict[str, Any]:
        return {
            "indicator": self.indicator,
            "department": self.department,
            "month": self.month.isoformat(),
            "numerator": self.numerator,
            "denominator": self.denominator,
            "rate": self.rate,
            "target": self.target,
            "meets_target": self.meets_target,
            "center": self.center,
            "ucl": self.ucl,
            "lcl": self.lcl,
            "min_cases": self.min_cases,
        }


def _months_back(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 - n
    return date(index // 12, index % 12 + 1, 1)


def month_status(
    session: Session,
    tenant_id: str,
    defn: IndicatorDefinition,
    department: str,
    day: date,
    *,
    profiles: ProfileSet | None = None,
) -> RateStatus:
    """The rate of the month that contains ``day`` for one department, against the
    target in effect (tenant, else its profile — with ``profiles`` — else definition)."""
    shape = queries.shape_of(defn)
    month = day.replace(day=1)
    month_end = queries.next_period(month, "month")
    baseline_start = _months_back(month, BASELINE_MONTHS - 1)
    last_day = month_end - timedelta(days=1)
    current = queries.totals_for(session, tenant_id, shape, month, last_day, [department])
    baseline = queries.totals_for(session, tenant_id, shape, baseline_start, last_day, [department])
    scale = queries.SCALE[defn.unit]
    n = queries.denominator(shape, current)
    base_den = queries.denominator(shape, baseline)
    center = baseline.numerator / base_den if base_den else None
    ucl, lcl = queries.control_limits(shape, center, n)
    target = queries.target_for(
        session,
        tenant_id,
        shape,
        profiles=profiles,
        period=(month, last_day),
        departments=[department],
    )
    value = queries.rate(shape, current)
    return RateStatus(
        indicator=defn.code,
        department=department,
        month=month,
        numerator=current.numerator,
        denominator=n,
        rate=value,
        target=target,
        meets_target=queries.meets(shape, value, target),
        center=center * scale if center is not None else None,
        ucl=ucl * scale if ucl is not None else None,
        lcl=lcl * scale if lcl is not None else None,
        min_cases=defn.min_cases,
        direction=defn.direction,
        unit=defn.unit,
    )
