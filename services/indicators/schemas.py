"""Response bodies of the indicator API: what ``/openapi.json`` says the routes of
``services.indicators.router`` answer (they build the dicts; these models describe
them, docs/CONTRACT.md)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TargetSource = Literal["tenant", "profile", "previous_year", "definition"]


class LocalizedName(BaseModel):
    zh: str
    en: str


class IndicatorSummary(BaseModel):
    code: str
    name: LocalizedName
    description: str
    direction: Literal["higher_is_better", "lower_is_better"]
    unit: Literal["percent", "per_100", "per_1000", "per_10000"]
    kind: Literal["proportion", "ratio", "manual"]
    catalogue: str | None
    group: str
    target: float | None
    target_source: TargetSource | None
    source: str
    formula_source: str | None
    supersedes: list[str]
    version: str
    window_minutes: int | None = None


class IndicatorDetail(IndicatorSummary):
    #: The definition as loaded from its YAML file (services/indicators/catalogue).
    definition: dict[str, Any]


class Summary(BaseModel):
    """Counts over a period, the rate (in the indicator's unit; null without cases),
    and the target it is compared with."""

    numerator: float
    denominator: float
    rate: float | None
    pending: int
    excluded: int
    target: float | None
    meets_target: bool | None


class IndicatorValue(Summary):
    model_config = ConfigDict(populate_by_name=True)

    code: str
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    department: str | None


class SeriesPoint(BaseModel):
    period_start: date
    numerator: float
    denominator: float
    rate: float | None
    pending: int
    excluded: int
    #: The control chart's centre line and 3-sigma limits (null without cases).
    center: float | None
    ucl: float | None
    lcl: float | None


class Series(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    code: str
    granularity: Literal["day", "week", "month", "quarter", "year"]
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    department: str | None
    unit: str
    points: list[SeriesPoint]


class BreakdownRow(Summary):
    department: str
    department_name: str | None


class Breakdown(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    code: str
    by: Literal["department"]
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    rows: list[BreakdownRow]


class Case(BaseModel):
    episode: str
    case: str
    department: str | None
    status: Literal["pending", "numerator", "denominator", "excluded"]
    clock_start: datetime | None
    clock_stop: datetime | None
    deadline: datetime | None
    elapsed_minutes: float | None
    period_date: date | None
    patient: str | None


class CasePage(BaseModel):
    code: str
    cases: list[Case]
    next_cursor: str | None


class TargetOut(BaseModel):
    code: str
    target: float


class CodeMapSaved(BaseModel):
    system: str
    mappings: int
    episodes_reevaluated: int


class CodeMapEntry(BaseModel):
    system: str
    code: str
    target_system: str
    target_code: str


class ManualValue(BaseModel):
    code: str
    #: ``YYYY-MM``
    month: str
    department: str | None
    numerator: int
    denominator: int
    note: str
    #: The id of the key that entered it.
    entered_by: str
    entered_at: datetime


class ManualPrevious(BaseModel):
    numerator: int | None
    denominator: int | None
    note: str | None


class ManualAudit(BaseModel):
    entered_by: str
    entered_at: datetime
    previous: ManualPrevious | None
    numerator: int
    denominator: int
    note: str


class ManualEntry(ManualValue):
    audit: list[ManualAudit]


class ManualList(BaseModel):
    code: str
    entries: list[ManualEntry]


class TargetProfile(BaseModel):
    name: str
    title: str | None
    source: str | None
    description: str | None
    #: By indicator code: the profile's entry, and whether it applies.
    targets: dict[str, dict[str, Any]]
    warnings: list[str]


class TenantOut(BaseModel):
    id: str
    name: str
    timezone: str
    target_profile: str | None
    catalogue: Literal["2025", "2026"]
    #: ISO 8601 seconds (``"PT300S"``); null: the deployment's ``QCPULSE_ALERT_GRACE``.
    alert_grace: str | None
