"""Indicator definitions: the YAML schema, its validation, and the compiled plan.

One YAML file per indicator, named after its code (``PIT-2026-23.yaml``). The shipped
files live in ``services/indicators/catalogue/``; a deployment may pass a directory of
its own files that add indicators, replace a shipped one (same code), or amend one
(``extends: <code>`` plus only the keys that change, merged key by key; lists and
scalars are replaced whole).

Loading is strict: an unknown key, an unparsable or non-positive duration, an unknown
code-system alias, a duplicate code, a reference to an undefined value set or time
point all raise :class:`DefinitionError`, whose message names the file and the field
(``PIT-2026-23.yaml: clock.window: invalid duration '90x'``).

The format, read top to bottom (see the catalogue for complete examples):

``population``
    ``encounter_class`` (any when absent), ``min_age`` with ``unknown_age``
    (``include`` | ``exclude``), ``each`` (resource cases: every fact matching one of
    these selectors is a case), ``requires`` (all must hold), ``pending_while`` (when
    ``requires`` does not hold yet but these all do, the case is pending).
``exclusions``
    Any criterion that holds makes the case ``excluded``.
``times``
    Named time points, ``{first: <selector>}``, usable in time relations.
``clock``
    ``start``, ``stop`` (``{first: <selector>}`` or ``{all_of: {name: element}}`` for
    bundles), ``window``, ``at_risk`` or ``at_risk_share`` (default 2/3).
``numerator``
    Criteria (all must hold) for definitions decided without a clock stop.
``numerator_events``
    Ratio indicators only: every fact matching ``each`` is one numerator case.
``decided_by``, ``period``, ``direction``, ``unit``, ``target``, ``min_cases``,
``valuesets``, ``custom``.

A *selector* names one fact kind and either a value set (matched against the fact's
codes) or filters: ``code``, ``category``, ``interpretation``, ``route``, ``reason``
(value set names), ``status``, ``actuality`` (lists), ``about: resource``, ``unless``
(filters that disqualify a fact) and time relations ``after``, ``not_before``,
``before``, ``not_after`` whose value is a time point with an optional offset
(``start - 6h``). The ``medication`` kind means MedicationAdministration, falling back to
MedicationRequest only when the episode has no administration matching the selector's
code filters (docs/INDICATORS.md, "Fact times").

A *criterion* is a selector (the fact exists) and/or ``episode_open``,
``discharged_within``, ``without`` (no fact matches this selector), ``any_of``; all the
parts of one criterion must hold.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from shared import units
from shared.clinical import FactKind

from .valuesets import ValueSet, ValueSetError

CATALOGUE_DIR = Path(__file__).parent / "catalogue"

# --------------------------------------------------------------------------- durations

_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")


def parse_duration(value: object) -> timedelta:
    """Parse ``90m``, ``24h``, ``1h30m``, ``2d``; reject anything else or a zero length."""
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ValueError(f"duration must be positive: {format_duration(value)!r}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r} (write e.g. '90m', '24h')")
    text = value.strip().lower()
    m = _DURATION_RE.match(text)
    if not text or m is None:
        raise ValueError(f"invalid duration {value!r}")
    days, hours, minutes = (int(g) if g else 0 for g in m.groups())
    td = timedelta(days=days, hours=hours, minutes=minutes)
    if td <= timedelta(0):
        raise ValueError(f"duration must be positive: {value!r}")
    return td


def format_duration(td: timedelta) -> str:
    minutes = int(td.total_seconds() // 60)
    if minutes and minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


def _parse_share(value: object) -> Fraction:
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str):
            share = Fraction(value.replace(" ", ""))
        elif isinstance(value, int | float | Fraction):
            share = Fraction(value).limit_denominator(1000)
        else:
            raise ValueError
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"invalid share {value!r} (write e.g. 2/3 or 0.5)") from None
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1]: {value!r}")
    return share


Share = Annotated[Fraction, BeforeValidator(_parse_share), PlainSerializer(str, return_type=str)]

# --------------------------------------------------------------------------- time refs

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_TIME_REF_RE = re.compile(rf"^\s*({_NAME}(?:\.{_NAME})?)\s*(?:([+-])\s*(\S+)\s*)?$")
#: Time points every definition may use; ``start``/``resource.*`` depend on the definition.
BUILTIN_TIMES = ("arrival", "discharge")
RESOURCE_TIMES = ("resource.time", "resource.issued")


@dataclass(frozen=True, slots=True)
class TimeRef:
    """A named time point plus a signed offset (``start - 6h``)."""

    name: str
    offset: timedelta = timedelta(0)


def parse_time_ref(value: str) -> TimeRef:
    m = _TIME_REF_RE.match(value)
    if m is None:
        raise ValueError(f"invalid time point {value!r} (write e.g. 'start' or 'start - 6h')")
    name, sign, dur = m.groups()
    if sign is None:
        return TimeRef(name)
    offset = parse_duration(dur)
    return TimeRef(name, -offset if sign == "-" else offset)


def _check_time_ref(value: str) -> str:
    parse_time_ref(value)
    return value


def _time_ref_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a time point, got {value!r}")
    return _check_time_ref(value)


TimeRefStr = Annotated[str, BeforeValidator(_time_ref_text)]


# --------------------------------------------------------------------------- spec models


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _code(value: object) -> str:
    # YAML reads 401303003 as an int (harmless) but 00.66 as the float 0.66 (lossy).
    if isinstance(value, bool | float):
        raise ValueError(f"write codes as quoted text: {value!r} was read as a number")
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"invalid code {value!r}")
    return value.strip()


Code = Annotated[str, BeforeValidator(_code)]
ValueSetSpec = dict[str, list[Code]]


def _as_list(value: object) -> object:
    """Let a single mapping stand for a one-item list (``pending_while: {…}``)."""
    return [value] if isinstance(value, dict) else value


class LocalizedName(_Spec):
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class ValueTest(_Spec):
    """A test of ``valueQuantity`` against bounds written in one canonical UCUM unit;
    the fact's value is converted to it (``shared.units``), and a value in a unit that
    cannot be converted passes no test."""

    at_least: float | None = None
    above: float | None = None
    below: float | None = None
    at_most: float | None = None
    unit: str = Field(min_length=1)
    #: The measured quantity, needed to convert between molar and mass units.
    quantity: str | None = None

    @model_validator(mode="after")
    def _bounded(self) -> ValueTest:
        if all(v is None for v in (self.at_least, self.above, self.below, self.at_most)):
            raise ValueError("a value test needs at_least, above, below or at_most")
        return self


class FactFilter(_Spec):
    """Conditions on one fact; value set names refer to the definition's ``valuesets``."""

    code: str | None = None
    category: str | None = None
    interpretation: str | None = None
    route: str | None = None
    reason: str | None = None
    status: list[str] | None = None
    actuality: list[str] | None = None
    about: Literal["resource"] | None = None
    unless: list[FactFilter] = Field(default_factory=list)
    after: TimeRefStr | None = None
    not_before: TimeRefStr | None = None
    before: TimeRefStr | None = None
    not_after: TimeRefStr | None = None
    value: ValueTest | None = None
    #: Duration of the fact (end − start): anaesthesia longer than 2 h.
    longer_than: Duration | None = None
    not_longer_than: Duration | None = None


def _str_or_mapping(value: Any) -> str:
    return "name" if isinstance(value, str) else "filter"


SelectorValue = Annotated[
    Annotated[str, Tag("name")] | Annotated[FactFilter, Tag("filter")],
    Discriminator(_str_or_mapping),
]

#: YAML kind key → fact kinds it reads. ``medication`` is administration-else-request.
SELECTOR_KINDS: Mapping[str, tuple[FactKind, ...]] = {
    "condition": (FactKind.CONDITION,),
    "procedure": (FactKind.PROCEDURE,),
    "medication": (FactKind.MEDICATION_ADMINISTRATION, FactKind.MEDICATION_REQUEST),
    "medication_administration": (FactKind.MEDICATION_ADMINISTRATION,),
    "medication_request": (FactKind.MEDICATION_REQUEST,),
    "observation": (FactKind.OBSERVATION,),
    "diagnostic_report": (FactKind.DIAGNOSTIC_REPORT,),
    "communication": (FactKind.COMMUNICATION,),
    "service_request": (FactKind.SERVICE_REQUEST,),
    "adverse_event": (FactKind.ADVERSE_EVENT,),
    "risk_assessment": (FactKind.RISK_ASSESSMENT,),
}


class _KindFields(_Spec):
    condition: SelectorValue | None = None
    procedure: SelectorValue | None = None
    medication: SelectorValue | None = None
    medication_administration: SelectorValue | None = None
    medication_request: SelectorValue | None = None
    observation: SelectorValue | None = None
    diagnostic_report: SelectorValue | None = None
    communication: SelectorValue | None = None
    service_request: SelectorValue | None = None
    adverse_event: SelectorValue | None = None
    risk_assessment: SelectorValue | None = None

    def chosen(self) -> list[tuple[str, str | FactFilter]]:
        out: list[tuple[str, str | FactFilter]] = []
        for kind in SELECTOR_KINDS:
            value = getattr(self, kind)
            if value is not None:
                out.append((kind, value))
        return out


_KINDS_TEXT = ", ".join(SELECTOR_KINDS)


class FactSelector(_KindFields):
    """Exactly one fact kind: ``{procedure: primary-pci}`` or ``{procedure: {…filters}}``."""

    @model_validator(mode="after")
    def _one_kind(self) -> FactSelector:
        if len(self.chosen()) != 1:
            raise ValueError(f"a selector names exactly one fact kind ({_KINDS_TEXT})")
        return self


class CountSpec(_Spec):
    """How many facts match: ``{of: {medication: antipsychotic}, exactly: 1, distinct: code}``."""

    of: FactSelector
    exactly: int | None = Field(default=None, ge=0)
    at_least: int | None = Field(default=None, ge=0)
    at_most: int | None = Field(default=None, ge=0)
    #: Count distinct resources (default) or distinct codes (two orders of one drug: one).
    distinct: Literal["resource", "code"] = "resource"

    @model_validator(mode="after")
    def _bounded(self) -> CountSpec:
        if self.exactly is not None and (self.at_least is not None or self.at_most is not None):
            raise ValueError("give exactly, or at_least/at_most")
        if all(v is None for v in (self.exactly, self.at_least, self.at_most)):
            raise ValueError("a count needs exactly, at_least or at_most")
        return self


class ValueOf(_Spec):
    """The first or last matching fact (by time) passes a value test."""

    of: FactSelector
    value: ValueTest


class RiseSpec(_Spec):
    """The last value of a measurement exceeds the first by more than ``more_than``
    (an ADL score at discharge above the one at admission)."""

    of: FactSelector
    unit: str = Field(min_length=1)
    quantity: str | None = None
    more_than: float = 0


class Criterion(_KindFields):
    """A test on the episode; every part present must hold."""

    episode_open: bool | None = None
    discharged_within: Duration | None = None
    #: Discharged, and discharge − arrival is longer than this.
    stay_longer_than: Duration | None = None
    #: ``died``: discharge disposition ``exp`` or the patient's death at or before
    #: discharge; ``survived``: discharged and not died.
    outcome: Literal["died", "survived"] | None = None
    count: CountSpec | None = None
    first: ValueOf | None = None
    last: ValueOf | None = None
    rise: RiseSpec | None = None
    without: FactSelector | None = None
    any_of: list[Criterion] | None = None

    @model_validator(mode="after")
    def _shape(self) -> Criterion:
        n = len(self.chosen())
        if n > 1:
            raise ValueError("a criterion names at most one fact kind; list several criteria")
        others = (
            self.episode_open,
            self.discharged_within,
            self.stay_longer_than,
            self.outcome,
            self.count,
            self.first,
            self.last,
            self.rise,
            self.without,
            self.any_of,
        )
        if n == 0 and all(v is None for v in others):
            raise ValueError("empty criterion")
        return self


Criteria = Annotated[list[Criterion], BeforeValidator(_as_list)]


class TimeDef(_Spec):
    first: FactSelector


class ElementCondition(_Spec):
    """A bundle element is required only when an earlier element's value is above a bound."""

    element: str
    value_above: float


class BundleElement(FactSelector):
    when: ElementCondition | None = None


class BundleStop(_Spec):
    """The clock stops when the last of these elements has happened (each at its first)."""

    all_of: dict[str, BundleElement] = Field(min_length=1)

    @field_validator("all_of")
    @classmethod
    def _names(cls, v: dict[str, BundleElement]) -> dict[str, BundleElement]:
        for name in v:
            if not re.fullmatch(_NAME, name):
                raise ValueError(f"invalid element name {name!r} (letters, digits, _)")
        return v


def _point_tag(value: Any) -> str:
    # Called with raw YAML when validating and with model instances when serialising.
    if isinstance(value, str):
        return "name"
    if isinstance(value, BundleStop) or (isinstance(value, dict) and "all_of" in value):
        return "all_of"
    return "first"


ClockStart = Annotated[
    Annotated[TimeRefStr, Tag("name")] | Annotated[TimeDef, Tag("first")],
    Discriminator(_point_tag),
]
ClockStop = Annotated[
    Annotated[TimeRefStr, Tag("name")]
    | Annotated[TimeDef, Tag("first")]
    | Annotated[BundleStop, Tag("all_of")],
    Discriminator(_point_tag),
]


class ClockSpec(_Spec):
    start: ClockStart
    stop: ClockStop | None = None
    window: Duration | None = None
    at_risk: Duration | None = None
    at_risk_share: Share | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ClockSpec:
        if self.stop is not None and self.window is None:
            raise ValueError("a clock with a stop needs a window")
        if (self.at_risk or self.at_risk_share) and self.window is None:
            raise ValueError("at_risk needs a window")
        if self.at_risk is not None and self.at_risk_share is not None:
            raise ValueError("give at_risk or at_risk_share, not both")
        if self.at_risk is not None and self.window is not None and self.at_risk > self.window:
            raise ValueError("at_risk is longer than the window")
        return self


class PopulationSpec(_Spec):
    encounter_class: list[str] | None = None
    min_age: int | None = Field(default=None, ge=0)
    #: Inclusive: ``max_age: 17`` is under 18.
    max_age: int | None = Field(default=None, ge=0)
    unknown_age: Literal["include", "exclude"] = "include"
    each: Annotated[list[FactSelector], BeforeValidator(_as_list)] | None = None
    requires: Criteria = Field(default_factory=list)
    pending_while: Criteria = Field(default_factory=list)


class NumeratorEvents(_Spec):
    each: Annotated[list[FactSelector], BeforeValidator(_as_list)] = Field(min_length=1)


class FollowupEpisode(_Spec):
    """A later episode of the same patient that counts (a readmission)."""

    encounter_class: list[str] | None = None
    #: ``Encounter.priority`` codes that do not count (``EL``: a planned admission).
    priority_not: list[str] = Field(default_factory=list)
    requires: Criteria = Field(default_factory=list)


class FollowupSpec(_Spec):
    """What follows an index episode within a window, for the same patient."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: TimeRefStr = Field(alias="from")
    within: Duration
    episode: FollowupEpisode | None = None
    #: A fact in any episode of the patient (the index too) timed in the window.
    fact: FactSelector | None = None

    @model_validator(mode="after")
    def _one(self) -> FollowupSpec:
        if (self.episode is None) == (self.fact is None):
            raise ValueError("followup takes episode or fact, exactly one")
        return self


class MonthSpec(_Spec):
    """Patient × calendar month cases: months in which ``active`` happened."""

    active: FactSelector
    requires: Criteria = Field(default_factory=list)


def _days_tag(value: Any) -> str:
    return "stay" if value == "stay" else "device"


DenominatorDays = Annotated[
    Annotated[Literal["stay"], Tag("stay")] | Annotated[FactSelector, Tag("device")],
    Discriminator(_days_tag),
]

_YEAR_IN_CODE = re.compile(r"-(20\d\d)-")
_GROUP_BY_PREFIX = {"NIT": "national", "PIT": "specialty"}


def _version(value: object) -> object:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class IndicatorDefinition(_Spec):
    """One indicator as written in its YAML file."""

    code: str = Field(pattern=r"^[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*$")
    name: LocalizedName
    description: str = ""
    source: str = Field(min_length=1)
    version: Annotated[str, BeforeValidator(_version)]
    #: The catalogue year (``"2026"``); by default the year in the code, else none.
    catalogue: str | None = None
    group: Literal["national", "specialty", "regional", "other"] | None = None
    #: Where the formula comes from when the seed states only the goal.
    formula_source: str | None = None
    #: Earlier catalogues' codes this definition replaces.
    supersedes: list[str] = Field(default_factory=list)
    kind: Literal["proportion", "ratio", "manual"] = "proportion"
    case: Literal["episode", "resource", "followup", "patient_month"] = "episode"
    population: PopulationSpec = Field(default_factory=PopulationSpec)
    exclusions: Criteria = Field(default_factory=list)
    times: dict[str, TimeDef] = Field(default_factory=dict)
    clock: ClockSpec | None = None
    numerator: Criteria = Field(default_factory=list)
    numerator_events: NumeratorEvents | None = None
    #: Ratio denominators in days: of stay, or of a device in place (catheter-days).
    denominator_days: DenominatorDays | None = None
    followup: FollowupSpec | None = None
    month: MonthSpec | None = None
    #: Default: ``deadline`` with a clock, else ``discharge``.
    decided_by: Literal["deadline", "discharge"] | None = None
    period: Literal["start", "discharge", "month"]
    direction: Literal["higher_is_better", "lower_is_better"]
    unit: Literal["percent", "per_100", "per_1000", "per_10000"]
    target: float | None = Field(default=None, ge=0)
    min_cases: int = Field(default=10, ge=1)
    #: How long after a deadline ``case.breached`` waits; None: the tenant's grace.
    alert_grace: Duration | None = None
    valuesets: dict[str, ValueSetSpec] = Field(default_factory=dict)
    #: ``package.module:function`` registered with ``evaluator.custom_indicator``.
    custom: str | None = Field(default=None, pattern=r"^[\w.]+:[\w.]+$")

    @property
    def effective_catalogue(self) -> str | None:
        if self.catalogue is not None:
            return self.catalogue
        m = _YEAR_IN_CODE.search(f"{self.code}-")
        return m.group(1) if m else None

    @property
    def effective_group(self) -> str:
        if self.group is not None:
            return self.group
        return _GROUP_BY_PREFIX.get(self.code.split("-")[0], "other")

    @property
    def effective_decided_by(self) -> Literal["deadline", "discharge"]:
        if self.decided_by is not None:
            return self.decided_by
        return "deadline" if self.clock is not None else "discharge"

    @property
    def window_minutes(self) -> int | None:
        if self.clock is None or self.clock.window is None:
            return None
        return int(self.clock.window.total_seconds() // 60)


# --------------------------------------------------------------------------- compiled plan

RelationOp = Literal["after", "not_before", "before", "not_after"]


@dataclass(frozen=True, slots=True)
class ValuePlan:
    """Compiled :class:`ValueTest`: bounds in ``unit``."""

    unit: str
    quantity: str | None
    at_least: float | None = None
    above: float | None = None
    below: float | None = None
    at_most: float | None = None

    def passes(self, value: float) -> bool:
        return not (
            (self.at_least is not None and value < self.at_least)
            or (self.above is not None and value <= self.above)
            or (self.below is not None and value >= self.below)
            or (self.at_most is not None and value > self.at_most)
        )


@dataclass(frozen=True, slots=True, eq=False)
class FilterPlan:
    code: ValueSet | None = None
    category: ValueSet | None = None
    interpretation: ValueSet | None = None
    route: ValueSet | None = None
    reason: ValueSet | None = None
    statuses: frozenset[str] | None = None
    actualities: frozenset[str] | None = None
    unless: tuple[FilterPlan, ...] = ()
    #: Dynamic parts (depend on the case): the about-reference and time relations.
    about_resource: bool = False
    relations: tuple[tuple[RelationOp, TimeRef], ...] = ()
    value: ValuePlan | None = None
    longer_than: timedelta | None = None
    not_longer_than: timedelta | None = None
    #: The coded filters present, as (Fact attribute, value set), for the hot path.
    coded: tuple[tuple[str, ValueSet], ...] = ()

    @staticmethod
    def build(**kw: Any) -> FilterPlan:
        fields = (
            ("codes", "code"),
            ("categories", "category"),
            ("interpretation", "interpretation"),
            ("route", "route"),
            ("reasons", "reason"),
        )
        coded = tuple((attr, kw[name]) for attr, name in fields if kw.get(name) is not None)
        return FilterPlan(**kw, coded=coded)


@dataclass(frozen=True, slots=True, eq=False)
class SelectorPlan:
    """Compiled selector; hashed by identity so fact indexes can memoise its matches."""

    kind: str
    kinds: tuple[FactKind, ...]
    #: ``medication``: requests count only when no administration matches.
    fallback: bool
    filter: FilterPlan


@dataclass(frozen=True, slots=True, eq=False)
class CountPlan:
    selector: SelectorPlan
    at_least: int
    at_most: int | None
    distinct_codes: bool


@dataclass(frozen=True, slots=True, eq=False)
class CriterionPlan:
    selector: SelectorPlan | None = None
    episode_open: bool | None = None
    discharged_within: timedelta | None = None
    stay_longer_than: timedelta | None = None
    outcome: Literal["died", "survived"] | None = None
    count: CountPlan | None = None
    first: tuple[SelectorPlan, ValuePlan] | None = None
    last: tuple[SelectorPlan, ValuePlan] | None = None
    #: (measurement, unit, quantity, more than): last − first value.
    rise: tuple[SelectorPlan, str, str | None, float] | None = None
    without: SelectorPlan | None = None
    any_of: tuple[CriterionPlan, ...] = ()


@dataclass(frozen=True, slots=True)
class TimePointPlan:
    """Either a reference to another time point or the first fact matching a selector."""

    ref: TimeRef | None = None
    first: SelectorPlan | None = None


@dataclass(frozen=True, slots=True)
class BundleElementPlan:
    name: str
    selector: SelectorPlan
    when_element: str | None = None
    when_value_above: float | None = None


@dataclass(frozen=True, slots=True)
class ClockPlan:
    start: TimePointPlan
    stop: TimePointPlan | None
    bundle: tuple[BundleElementPlan, ...]
    window: timedelta | None
    at_risk_after: timedelta | None

    @property
    def has_stop(self) -> bool:
        return self.stop is not None or bool(self.bundle)


@dataclass(frozen=True, slots=True, eq=False)
class FollowupPlan:
    start: TimeRef
    within: timedelta
    #: A later episode counts (readmission) …
    encounter_classes: frozenset[str] | None
    priority_not: frozenset[str]
    requires: tuple[CriterionPlan, ...]
    #: … or, when set, a fact timed in the window in any of the patient's episodes.
    fact: SelectorPlan | None


@dataclass(frozen=True, slots=True, eq=False)
class MonthPlan:
    active: SelectorPlan
    requires: tuple[CriterionPlan, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Indicator:
    """A validated definition compiled for evaluation. Build with :func:`compile_definition`."""

    spec: IndicatorDefinition
    source_file: str
    encounter_classes: frozenset[str] | None
    min_age: int | None
    include_unknown_age: bool
    each: tuple[SelectorPlan, ...]
    requires: tuple[CriterionPlan, ...]
    pending_while: tuple[CriterionPlan, ...]
    exclusions: tuple[CriterionPlan, ...]
    numerator: tuple[CriterionPlan, ...]
    numerator_events: tuple[SelectorPlan, ...]
    times: Mapping[str, TimePointPlan]
    clock: ClockPlan | None
    decided_by: Literal["deadline", "discharge"]
    valuesets: Mapping[str, ValueSet]
    max_age: int | None = None
    followup: FollowupPlan | None = None
    month: MonthPlan | None = None
    #: ``"stay"``, a device selector, or None (denominator cases are episodes).
    denominator_days: Literal["stay"] | SelectorPlan | None = None

    @property
    def code(self) -> str:
        return self.spec.code

    @property
    def is_manual(self) -> bool:
        """Entered monthly through the API, not computed from events."""
        return self.spec.kind == "manual"

    @property
    def patient_level(self) -> bool:
        """Cases span a patient's episodes (follow-up, patient × month)."""
        return self.spec.case in ("followup", "patient_month")

    @property
    def is_ratio(self) -> bool:
        return self.spec.kind == "ratio"

    @property
    def per_resource(self) -> bool:
        return self.spec.case == "resource"

    def __repr__(self) -> str:
        return f"Indicator({self.code!r})"


# --------------------------------------------------------------------------- errors


class DefinitionError(ValueError):
    """A definition file that cannot be loaded; each problem names the file and the field."""

    def __init__(self, file: str, problems: list[tuple[str, str]]) -> None:
        self.file = file
        self.problems = problems
        lines = [
            f"{file}: {field}: {msg}" if field else f"{file}: {msg}" for field, msg in problems
        ]
        super().__init__("\n".join(lines))


#: Discriminator tags: they appear in error locations right after a union-typed field.
_TAGS = frozenset({"name", "filter", "first", "all_of"})
_TAGGED_FIELDS = frozenset({"start", "stop", *SELECTOR_KINDS})


def _format_pydantic(err: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for e in err.errors(include_url=False):
        parts: list[str] = []
        prev: object = None
        for p in e["loc"]:
            # ``stop.first.first`` → ``stop.first``: drop the tag, keep the real field.
            if not (p in _TAGS and prev in _TAGGED_FIELDS):
                parts.append(str(p))
            prev = p
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        problems.append((".".join(parts), msg))
    return problems


# --------------------------------------------------------------------------- compiler


class _Compiler:
    def __init__(self, spec: IndicatorDefinition, file: str) -> None:
        self.spec = spec
        self.file = file
        self.problems: list[tuple[str, str]] = []
        self.valuesets: dict[str, ValueSet] = {}
        self.used_times: dict[str, set[str]] = {}

    def problem(self, field: str, msg: str) -> None:
        self.problems.append((field, msg))

    # value sets --------------------------------------------------------------
    def compile_valuesets(self) -> None:
        for name, codes in self.spec.valuesets.items():
            try:
                self.valuesets[name] = ValueSet.compile(name, codes)
            except ValueSetError as exc:
                self.problem(f"valuesets.{name}.{exc.field}", exc.message)

    def vs(self, name: str | None, path: str) -> ValueSet | None:
        if name is None:
            return None
        found = self.valuesets.get(name)
        if found is None:
            if name not in self.spec.valuesets:
                self.problem(path, f"undefined value set {name!r}")
            return None
        return found

    # time points ---------------------------------------------------------------
    def time_scope(self) -> set[str]:
        scope = set(BUILTIN_TIMES) | set(self.spec.times)
        if self.spec.clock is not None:
            scope.add("start")
        if self.spec.case == "resource":
            scope.update(RESOURCE_TIMES)
        return scope

    def time_ref(self, text: str, path: str, scope: set[str], owner: str | None) -> TimeRef:
        ref = parse_time_ref(text)  # syntax already checked by the model
        if ref.name not in scope:
            self.problem(
                path, f"unknown time point {ref.name!r} (known: {', '.join(sorted(scope))})"
            )
        elif owner is not None:
            self.used_times.setdefault(owner, set()).add(ref.name)
        return ref

    # selectors -----------------------------------------------------------------
    def filter(
        self, f: FactFilter, path: str, scope: set[str], owner: str | None, nested: bool = False
    ) -> FilterPlan:
        relations: list[tuple[RelationOp, TimeRef]] = []
        for op in ("after", "not_before", "before", "not_after"):
            text = getattr(f, op)
            if text is not None:
                if nested:
                    self.problem(f"{path}.{op}", "time relations are not allowed inside unless")
                relations.append((op, self.time_ref(text, f"{path}.{op}", scope, owner)))
        if f.about is not None and self.spec.case != "resource":
            self.problem(f"{path}.about", "about: resource needs case: resource")
        if nested and f.about is not None:
            self.problem(f"{path}.about", "about is not allowed inside unless")
        coded = (
            f.code,
            f.category,
            f.interpretation,
            f.route,
            f.reason,
            f.status,
            f.actuality,
            f.value,
            f.longer_than,
            f.not_longer_than,
        )
        if nested and all(v is None for v in coded):
            # An empty ``unless`` would disqualify every fact.
            self.problem(path, "an unless entry needs at least one condition")
        return FilterPlan.build(
            code=self.vs(f.code, f"{path}.code"),
            category=self.vs(f.category, f"{path}.category"),
            interpretation=self.vs(f.interpretation, f"{path}.interpretation"),
            route=self.vs(f.route, f"{path}.route"),
            reason=self.vs(f.reason, f"{path}.reason"),
            statuses=frozenset(f.status) if f.status is not None else None,
            actualities=frozenset(f.actuality) if f.actuality is not None else None,
            unless=tuple(
                self.filter(u, f"{path}.unless.{i}", scope, owner, nested=True)
                for i, u in enumerate(f.unless)
            ),
            about_resource=f.about == "resource",
            relations=tuple(relations),
            value=self.value(f.value, f"{path}.value") if f.value is not None else None,
            longer_than=f.longer_than,
            not_longer_than=f.not_longer_than,
        )

    def rise(
        self, r: RiseSpec, path: str, scope: set[str]
    ) -> tuple[SelectorPlan, str, str | None, float]:
        if not units.is_known_unit(r.unit, r.quantity):
            self.problem(f"{path}.unit", f"unknown unit {r.unit!r}")
        return (self.selector(r.of, f"{path}.of", scope, None), r.unit, r.quantity, r.more_than)

    def value(self, v: ValueTest, path: str) -> ValuePlan:
        if not units.is_known_unit(v.unit, v.quantity):
            self.problem(f"{path}.unit", f"unknown unit {v.unit!r}")
        return ValuePlan(v.unit, v.quantity, v.at_least, v.above, v.below, v.at_most)

    def selector(
        self, sel: _KindFields, path: str, scope: set[str], owner: str | None
    ) -> SelectorPlan:
        kind, value = sel.chosen()[0]
        sub = f"{path}.{kind}"
        if isinstance(value, str):
            fp = FilterPlan.build(code=self.vs(value, sub))
        else:
            fp = self.filter(value, sub, scope, owner)
        return SelectorPlan(kind, SELECTOR_KINDS[kind], kind == "medication", fp)

    def criterion(self, c: Criterion, path: str, scope: set[str]) -> CriterionPlan:
        count: CountPlan | None = None
        if c.count is not None:
            n = c.count
            count = CountPlan(
                self.selector(n.of, f"{path}.count.of", scope, None),
                n.exactly if n.exactly is not None else (n.at_least or 0),
                n.exactly if n.exactly is not None else n.at_most,
                n.distinct == "code",
            )
        ends: dict[str, tuple[SelectorPlan, ValuePlan] | None] = {}
        for name in ("first", "last"):
            spec: ValueOf | None = getattr(c, name)
            ends[name] = (
                (
                    self.selector(spec.of, f"{path}.{name}.of", scope, None),
                    self.value(spec.value, f"{path}.{name}.value"),
                )
                if spec is not None
                else None
            )
        return CriterionPlan(
            selector=self.selector(c, path, scope, None) if c.chosen() else None,
            episode_open=c.episode_open,
            discharged_within=c.discharged_within,
            stay_longer_than=c.stay_longer_than,
            outcome=c.outcome,
            count=count,
            first=ends["first"],
            last=ends["last"],
            rise=self.rise(c.rise, f"{path}.rise", scope) if c.rise is not None else None,
            without=self.selector(c.without, f"{path}.without", scope, None)
            if c.without is not None
            else None,
            any_of=tuple(
                self.criterion(a, f"{path}.any_of.{i}", scope) for i, a in enumerate(c.any_of or ())
            ),
        )

    def criteria(
        self, cs: list[Criterion], path: str, scope: set[str]
    ) -> tuple[CriterionPlan, ...]:
        return tuple(self.criterion(c, f"{path}.{i}", scope) for i, c in enumerate(cs))

    def point(self, p: str | TimeDef, path: str, scope: set[str], owner: str) -> TimePointPlan:
        if isinstance(p, str):
            return TimePointPlan(ref=self.time_ref(p, path, scope, owner))
        return TimePointPlan(first=self.selector(p.first, f"{path}.first", scope, owner))

    # the whole definition --------------------------------------------------------
    def compile(self) -> Indicator:
        spec = self.spec
        if not self.file.startswith("<") and Path(self.file).stem != spec.code:
            self.problem("code", f"code {spec.code!r} does not match the file name")
        if spec.kind == "manual":
            return self.compile_manual()
        self.compile_valuesets()
        scope = self.time_scope()
        pop = spec.population

        if spec.case == "resource" and not pop.each:
            self.problem("population.each", "case: resource needs population.each")
        if spec.case == "episode" and pop.each:
            self.problem("population.each", "population.each needs case: resource")
        each_scope = set(BUILTIN_TIMES)
        each = tuple(
            self.selector(s, f"population.each.{i}", each_scope, None)
            for i, s in enumerate(pop.each or ())
        )

        times = {
            name: self.point(t, f"times.{name}", scope, owner=name)
            for name, t in spec.times.items()
        }
        for name in spec.times:
            if not re.fullmatch(_NAME, name) or name in scope - set(spec.times):
                self.problem(f"times.{name}", f"invalid or reserved time point name {name!r}")

        clock: ClockPlan | None = None
        if spec.clock is not None:
            clock = self.compile_clock(spec.clock, scope)
        self.check_cycles()

        if spec.kind == "ratio":
            if spec.numerator_events is None:
                self.problem("numerator_events", "kind: ratio needs numerator_events")
            if spec.clock is not None:
                self.problem("clock", "kind: ratio takes no clock")
            if spec.numerator:
                self.problem("numerator", "kind: ratio counts numerator_events, not numerator")
        else:
            if spec.numerator_events is not None:
                self.problem("numerator_events", "numerator_events needs kind: ratio")
            has_stop = clock is not None and clock.has_stop
            if has_stop and spec.numerator:
                self.problem("numerator", "give either clock.stop or numerator, not both")
            if (
                not has_stop
                and not spec.numerator
                and spec.custom is None
                and spec.case != "followup"
            ):
                self.problem("numerator", "a proportion needs clock.stop or numerator")
        if spec.effective_decided_by == "deadline" and spec.clock is None:
            self.problem("decided_by", "decided_by: deadline needs a clock")
        if spec.period == "start" and spec.clock is None:
            self.problem("period", "period: start needs a clock")
        followup, month = self.compile_patient_level(scope)
        days: Literal["stay"] | SelectorPlan | None = None
        if spec.denominator_days is not None:
            if spec.kind != "ratio":
                self.problem("denominator_days", "denominator_days needs kind: ratio")
            if isinstance(spec.denominator_days, str):
                days = "stay"
            else:
                days = self.selector(
                    spec.denominator_days, "denominator_days", set(BUILTIN_TIMES), None
                )
        pop_max, pop_min = pop.max_age, pop.min_age
        if pop_max is not None and pop_min is not None and pop_max < pop_min:
            self.problem("population.max_age", "max_age is below min_age")
        if spec.unit == "percent" and spec.target is not None and spec.target > 1:
            self.problem("target", "a percent target is a fraction between 0 and 1")

        events = tuple(
            self.selector(s, f"numerator_events.each.{i}", set(BUILTIN_TIMES), None)
            for i, s in enumerate(spec.numerator_events.each if spec.numerator_events else ())
        )
        plan = Indicator(
            spec=spec,
            source_file=self.file,
            encounter_classes=frozenset(c.upper() for c in pop.encounter_class)
            if pop.encounter_class is not None
            else None,
            min_age=pop.min_age,
            include_unknown_age=pop.unknown_age == "include",
            each=each,
            requires=self.criteria(pop.requires, "population.requires", scope),
            pending_while=self.criteria(pop.pending_while, "population.pending_while", scope),
            exclusions=self.criteria(spec.exclusions, "exclusions", scope),
            numerator=self.criteria(spec.numerator, "numerator", scope),
            numerator_events=events,
            times=times,
            clock=clock,
            decided_by=spec.effective_decided_by,
            valuesets=self.valuesets,
            max_age=pop.max_age,
            followup=followup,
            month=month,
            denominator_days=days,
        )
        if self.problems:
            raise DefinitionError(self.file, self.problems)
        return plan

    def compile_patient_level(
        self, scope: set[str]
    ) -> tuple[FollowupPlan | None, MonthPlan | None]:
        spec = self.spec
        followup: FollowupPlan | None = None
        month: MonthPlan | None = None
        if spec.case == "followup":
            f = spec.followup
            if f is None:
                self.problem("followup", "case: followup needs followup")
            else:
                later = f.episode
                followup = FollowupPlan(
                    start=self.time_ref(f.from_, "followup.from", scope, None),
                    within=f.within,
                    encounter_classes=frozenset(c.upper() for c in later.encounter_class)
                    if later is not None and later.encounter_class is not None
                    else None,
                    priority_not=frozenset(later.priority_not)
                    if later is not None
                    else frozenset(),
                    requires=self.criteria(
                        later.requires, "followup.episode.requires", set(BUILTIN_TIMES)
                    )
                    if later is not None
                    else (),
                    fact=self.selector(f.fact, "followup.fact", set(BUILTIN_TIMES), None)
                    if f.fact is not None
                    else None,
                )
            if spec.clock is not None:
                self.problem(
                    "clock", "case: followup takes no clock: the window is followup.within"
                )
            if spec.numerator:
                self.problem("numerator", "case: followup counts what follows, not numerator")
        elif spec.followup is not None:
            self.problem("followup", "followup needs case: followup")
        if spec.case == "patient_month":
            m = spec.month
            if m is None:
                self.problem("month", "case: patient_month needs month")
            else:
                month = MonthPlan(
                    self.selector(m.active, "month.active", set(BUILTIN_TIMES), None),
                    self.criteria(m.requires, "month.requires", set(BUILTIN_TIMES)),
                )
            if spec.period != "month":
                self.problem("period", "case: patient_month is filed by month: period: month")
            if spec.clock is not None:
                self.problem("clock", "case: patient_month takes no clock")
        elif spec.month is not None:
            self.problem("month", "month needs case: patient_month")
        elif spec.period == "month":
            self.problem("period", "period: month is for case: patient_month and kind: manual")
        if spec.case in ("followup", "patient_month"):
            if spec.kind != "proportion":
                self.problem("kind", f"case: {spec.case} is a proportion")
            if spec.decided_by is not None:
                self.problem("decided_by", f"case: {spec.case} decides by its own window")
        return followup, month

    def compile_manual(self) -> Indicator:
        """A manual indicator: monthly numerator and denominator entered through the API."""
        spec = self.spec
        computed = {
            "population": spec.population != PopulationSpec(),
            "exclusions": bool(spec.exclusions),
            "times": bool(spec.times),
            "clock": spec.clock is not None,
            "numerator": bool(spec.numerator),
            "numerator_events": spec.numerator_events is not None,
            "denominator_days": spec.denominator_days is not None,
            "followup": spec.followup is not None,
            "month": spec.month is not None,
            "decided_by": spec.decided_by is not None,
            "valuesets": bool(spec.valuesets),
            "custom": spec.custom is not None,
        }
        for name, present in computed.items():
            if present:
                self.problem(name, "kind: manual takes no " + name)
        if spec.case != "episode":
            self.problem("case", "kind: manual takes no case")
        if spec.period != "month":
            self.problem("period", "kind: manual is entered by month: period: month")
        if self.problems:
            raise DefinitionError(self.file, self.problems)
        return Indicator(
            spec=spec,
            source_file=self.file,
            encounter_classes=None,
            min_age=None,
            include_unknown_age=True,
            each=(),
            requires=(),
            pending_while=(),
            exclusions=(),
            numerator=(),
            numerator_events=(),
            times={},
            clock=None,
            decided_by="discharge",
            valuesets={},
        )

    def compile_clock(self, c: ClockSpec, scope: set[str]) -> ClockPlan:
        start_scope = scope - {"start"}
        start = self.point(c.start, "clock.start", start_scope, owner="start")
        stop: TimePointPlan | None = None
        bundle: list[BundleElementPlan] = []
        if isinstance(c.stop, BundleStop):
            element_scope = set(scope)
            for name, el in c.stop.all_of.items():
                path = f"clock.stop.all_of.{name}"
                if name in scope:
                    self.problem(path, f"element name {name!r} is already a time point")
                sel = self.selector(el, path, set(element_scope), None)
                when_el = when_val = None
                if el.when is not None:
                    if el.when.element not in {b.name for b in bundle}:
                        self.problem(
                            f"{path}.when.element", f"unknown or later element {el.when.element!r}"
                        )
                    when_el, when_val = el.when.element, el.when.value_above
                bundle.append(BundleElementPlan(name, sel, when_el, when_val))
                element_scope.add(name)
        elif c.stop is not None:
            stop = self.point(c.stop, "clock.stop", scope, owner="stop")
        at_risk: timedelta | None = None
        if c.window is not None:
            if c.at_risk is not None:
                at_risk = c.at_risk
            else:
                share = c.at_risk_share if c.at_risk_share is not None else Fraction(2, 3)
                us = int(c.window.total_seconds() * 1_000_000)
                at_risk = timedelta(microseconds=us * share.numerator // share.denominator)
        return ClockPlan(start, stop, tuple(bundle), c.window, at_risk)

    def check_cycles(self) -> None:
        graph = self.used_times
        state: dict[str, int] = {}

        def visit(node: str, trail: list[str]) -> None:
            if state.get(node) == 2:
                return
            if state.get(node) == 1:
                cycle = " → ".join([*trail[trail.index(node) :], node])
                self.problem(
                    f"times.{node}" if node in self.spec.times else f"clock.{node}",
                    f"time points refer to each other: {cycle}",
                )
                return
            state[node] = 1
            for nxt in sorted(graph.get(node, ())):
                visit(nxt, [*trail, node])
            state[node] = 2

        for node in sorted(graph):
            visit(node, [])


def compile_definition(spec: IndicatorDefinition, file: str = "<memory>") -> Indicator:
    """Check cross-references of a parsed definition and compile it for evaluation."""
    return _Compiler(spec, file).compile()


def parse_definition(data: object, file: str = "<memory>") -> Indicator:
    """Validate a mapping (as read from YAML) and compile it."""
    if not isinstance(data, dict):
        raise DefinitionError(file, [("", "a definition file holds one mapping")])
    try:
        spec = IndicatorDefinition.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(file, _format_pydantic(exc)) from None
    return compile_definition(spec, file)


# --------------------------------------------------------------------------- loading


def _read_yaml(path: Path) -> dict[str, Any]:
    """Read one definition file: YAML (``.yaml``/``.yml``) or TOML (``.toml``)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionError(path.name, [("", f"not valid TOML: {exc}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise DefinitionError(path.name, [(where, f"not valid YAML: {exc}")]) from None
    except OSError as exc:
        raise DefinitionError(path.name, [("", f"cannot read: {exc}")]) from None
    if not isinstance(data, dict):
        raise DefinitionError(path.name, [("", "a definition file holds one mapping")])
    return data


def _merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        current = out.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[key] = _merge(current, value)
        else:
            out[key] = value
    return out


def _yaml_files(directory: Path) -> Iterator[Path]:
    yield from sorted(
        p for p in directory.iterdir() if p.suffix in (".yaml", ".yml", ".toml") and p.is_file()
    )


def load_definitions(
    override_dir: Path | None = None, *, shipped_dir: Path = CATALOGUE_DIR
) -> list[Indicator]:
    """Load the shipped catalogue, then a deployment's directory on top; sorted by code.

    In the deployment directory a file whose code is shipped replaces that definition;
    with ``extends: <code>`` it amends it instead (only the keys it gives change).
    """
    raw: dict[str, tuple[str, dict[str, Any]]] = {}
    for path in _yaml_files(shipped_dir):
        data = _read_yaml(path)
        raw[str(data.get("code", path.stem))] = (path.name, data)
    shipped = dict(raw)
    if override_dir is not None:
        if not override_dir.is_dir():
            raise DefinitionError(str(override_dir), [("", "not a directory")])
        seen: dict[str, str] = {}
        for path in _yaml_files(override_dir):
            data = _read_yaml(path)
            base_code = data.pop("extends", None)
            code = str(data.get("code", base_code if base_code is not None else path.stem))
            if code in seen:
                raise DefinitionError(
                    path.name, [("code", f"{code!r} is also defined in {seen[code]}")]
                )
            seen[code] = path.name
            if base_code is not None:
                if base_code not in shipped:
                    raise DefinitionError(
                        path.name, [("extends", f"no shipped definition {base_code!r} to extend")]
                    )
                data = _merge(shipped[str(base_code)][1], data)
            raw[code] = (path.name, data)
    return [parse_definition(data, file) for _, (file, data) in sorted(raw.items())]
