"""Indicator definitions as FHIR R4 ``Measure`` resources, their search, and the
parameters and subject lists of ``$evaluate-measure`` (docs/MEASURES.md).

A Measure is built from the definition alone: the same code, version and text for
every tenant. What a tenant adds (its target, its catalogue year) stays in the
indicator API; the MeasureReport carries the tenant's numbers.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session

from services.indicators import manual
from services.indicators.definitions import IndicatorDefinition
from services.indicators.measure_report import (
    IMPROVEMENT_SYSTEM,
    MEASURE_BASE,
    POPULATION_SYSTEM,
    improvement_code,
)
from services.indicators.models import CaseRow
from shared.errors import InvalidInputError, Issue, UnprocessableError

SCORING_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-scoring"
USAGE_CONTEXT_SYSTEM = "http://terminology.hl7.org/CodeSystem/usage-context-type"
TRANSLATION_URL = "http://hl7.org/fhir/StructureDefinition/translation"
EXT_BASE = "https://qcpulse.org/fhir/StructureDefinition"
#: The criteria language: the definition's own YAML (docs/INDICATORS.md), verbatim.
CRITERIA_LANGUAGE = "text/x-qcpulse"
PUBLISHER = "qcpulse"
#: FHIR ``id``: every indicator code must fit, or it needs a mapping (none does today).
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

#: The seed document each ``source`` names, by its opening words (docs/MEASURES.md).
SEED_TITLES = {
    "2026年国家医疗质量安全改进目标": "国家卫生健康委 2026年国家医疗质量安全改进目标",
    "2026年各专业质控工作改进目标": "国家卫生健康委 2026年各专业质控工作改进目标",
    "2025年各专业质控工作改进目标": "国家卫生健康委 2025年各专业质控工作改进目标",
    "天津市落实全面提升医疗质量行动计划": (
        "天津市落实全面提升医疗质量行动计划（2023—2025年）工作方案"
    ),
}
SEED_TITLE_PATTERN = re.compile(r"^[^\s§（(]+")

#: Population code → the definition keys that state it (``case`` frames every one).
_CRITERIA_KEYS: dict[str, tuple[str, ...]] = {
    "initial-population": ("case", "population", "times", "followup", "month"),
    "denominator": ("case", "population", "denominator_days"),
    "numerator": ("clock", "numerator", "numerator_events", "decided_by"),
    "denominator-exclusion": ("exclusions",),
}
_CRITERIA_TEXT: dict[str, str] = {
    "initial-population": "The cases of the indicator's population (episodes, resources, "
    "follow-ups or patient-months, by the definition's case).",
    "denominator": "The population's decided cases; a ratio's denominator is its own case "
    "set (discharges, or days in the denominator_days form).",
    "numerator": "Cases meeting the clock window and numerator criteria; for a ratio, "
    "each numerator event.",
    "denominator-exclusion": "Cases for which an exclusion holds; counted apart.",
}
POPULATION_CODES = tuple(_CRITERIA_KEYS)


def fhir_id(code: str) -> str:
    """The Measure id of an indicator code: the code itself (checked, never mapped)."""
    if not FHIR_ID.match(code):
        raise ValueError(f"indicator code '{code}' is not a FHIR id")
    return code


def measure_url(code: str) -> str:
    return f"{MEASURE_BASE}/{code}"


def fhir_name(code: str) -> str:
    """A computer-usable name (Measure invariant mea-0): ``PIT-2026-23`` → ``PIT_2026_23``."""
    return code.replace("-", "_").replace(".", "_")


def _coding(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _scoring(defn: IndicatorDefinition) -> str:
    """Proportion or ratio; a manual indicator by its entered arithmetic. No definition
    measures a quantity per case, so none is continuous-variable."""
    return manual.measure(defn) if defn.kind == "manual" else defn.kind


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


_MANUAL_TEXT: dict[str, str] = {
    "initial-population": "The month's entered denominator (and, for a ratio, its events).",
    "denominator": "Entered monthly by the quality department: the denominator.",
    "numerator": "Entered monthly by the quality department: the numerator.",
    "denominator-exclusion": "None: entered values carry no exclusions.",
}


def _criteria(defn: IndicatorDefinition, written: dict[str, Any], code: str) -> dict[str, Any]:
    """The population's part of the definition file, with the value sets it names."""
    if defn.kind == "manual":
        part: dict[str, Any] = {
            "kind": "manual",
            "entered": "PUT /api/v1/indicators/{code}/manual/{YYYY-MM}",
            "period": "month",
        }
        return {
            "language": CRITERIA_LANGUAGE,
            "expression": yaml.safe_dump(part, allow_unicode=True, sort_keys=False),
            "description": _MANUAL_TEXT[code],
        }
    part = {k: written[k] for k in _CRITERIA_KEYS[code] if k in written}
    if code == "denominator-exclusion":
        part.setdefault("exclusions", [])
    used = set(_strings(part))
    sets = {k: v for k, v in written.get("valuesets", {}).items() if k in used}
    if sets:
        part["valuesets"] = sets
    return {
        "language": CRITERIA_LANGUAGE,
        "expression": yaml.safe_dump(part, allow_unicode=True, sort_keys=False),
        "description": _CRITERIA_TEXT[code],
    }


def _related(defn: IndicatorDefinition) -> list[dict[str, Any]]:
    m = SEED_TITLE_PATTERN.match(defn.source)
    opening = m.group(0) if m else defn.source
    title = next((t for k, t in SEED_TITLES.items() if opening.startswith(k)), opening)
    out: list[dict[str, Any]] = [
        {"type": "citation", "label": "seed", "display": title, "citation": defn.source}
    ]
    if defn.formula_source:
        out.append({"type": "documentation", "label": "formula", "citation": defn.formula_source})
    out += [{"type": "predecessor", "resource": measure_url(old)} for old in defn.supersedes]
    return out


def build_measure(defn: IndicatorDefinition) -> dict[str, Any]:
    """One definition as an R4 Measure. Title in Chinese (the seeds' and the reports'
    language), its English in the standard ``translation`` extension."""
    # As written: keys at their defaults left out, but ``case`` always said.
    written = {
        "case": defn.case,
        **defn.model_dump(mode="json", exclude_defaults=True, by_alias=True),
    }
    year = defn.effective_catalogue
    out: dict[str, Any] = {
        "resourceType": "Measure",
        "id": fhir_id(defn.code),
        "language": "zh-CN",
        "extension": [
            {"url": f"{EXT_BASE}/indicator-kind", "valueCode": defn.kind},
            {"url": f"{EXT_BASE}/score-unit", "valueCode": defn.unit},
        ],
        "url": measure_url(defn.code),
        "identifier": [{"system": "https://qcpulse.org/fhir/indicator", "value": defn.code}],
        "version": defn.version,
        "name": fhir_name(defn.code),
        "title": defn.name.zh,
        "_title": {
            "extension": [
                {
                    "url": TRANSLATION_URL,
                    "extension": [
                        {"url": "lang", "valueCode": "en"},
                        {"url": "content", "valueString": defn.name.en},
                    ],
                }
            ]
        },
        "status": "active",
        "experimental": False,
        "publisher": PUBLISHER,
        "description": defn.description or defn.name.en,
        "useContext": [
            {
                "code": {"system": USAGE_CONTEXT_SYSTEM, "code": "program"},
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "https://qcpulse.org/fhir/CodeSystem/indicator-group",
                            "code": defn.effective_group,
                        }
                    ]
                },
            }
        ],
        "jurisdiction": [_coding("urn:iso:std:iso:3166", "CN")],
        "relatedArtifact": _related(defn),
        "scoring": _coding(SCORING_SYSTEM, _scoring(defn)),
        "improvementNotation": _coding(IMPROVEMENT_SYSTEM, improvement_code(defn)),
        "group": [
            {
                # The MeasureReport's group code is the same (measure_report.py).
                "code": {"text": defn.name.en},
                "population": [
                    {
                        "code": _coding(POPULATION_SYSTEM, code),
                        "criteria": _criteria(defn, written, code),
                    }
                    for code in POPULATION_CODES
                ],
            }
        ],
    }
    if defn.target is not None:
        out["extension"].append({"url": f"{EXT_BASE}/default-target", "valueDecimal": defn.target})
    if year is not None:
        out["date"] = f"{year}-01-01"
        out["effectivePeriod"] = {"start": f"{year}-01-01", "end": f"{year}-12-31"}
        out["topic"] = [{"text": f"{year} catalogue"}]
    return out


# -- search ----------------------------------------------------------------------------

#: Search parameters understood by ``GET /fhir/Measure``; ``catalogue`` is qcpulse's.
SEARCH_PARAMS = ("_id", "url", "name", "title", "status", "version", "catalogue")
#: Result parameters and formats accepted (``_format`` only as JSON).
CONTROL_PARAMS = ("_count", "_offset", "_summary", "_format", "_pretty")
DEFAULT_COUNT = 100
MAX_COUNT = 1000
_STRING_MODIFIERS = ("", "exact", "contains")


@dataclass(frozen=True, slots=True)
class Search:
    """Parsed ``GET /fhir/Measure`` parameters."""

    filters: tuple[tuple[str, str, tuple[str, ...]], ...]
    catalogue: str | None
    count: int
    offset: int
    summary_count: bool
    #: The parameters used, for the Bundle's ``self`` link.
    used: tuple[tuple[str, str], ...]


def lenient(prefer: str | None) -> bool:
    """``Prefer: handling=lenient``: unknown parameters are ignored, not refused."""
    if not prefer:
        return False
    return any(p.strip().replace(" ", "") == "handling=lenient" for p in prefer.split(","))


def _unknown(name: str, allowed: Sequence[str]) -> InvalidInputError:
    known = ", ".join(allowed)
    text = (
        f"unknown or unsupported parameter '{name}' (supported: {known}); "
        "send 'Prefer: handling=lenient' to have unknown parameters ignored"
    )
    return InvalidInputError(text, issues=[Issue("not-supported", text, (name,))])


def _int_param(name: str, raw: str, low: int, high: int) -> int:
    if not raw.isdigit() or not low <= int(raw) <= high:
        text = f"{name} must be an integer from {low} to {high}, not '{raw}'"
        raise InvalidInputError(text, issues=[Issue("value", text, (name,))])
    return int(raw)


def check_format(raw: str) -> None:
    if raw not in ("json", "application/json", "application/fhir+json"):
        text = f"_format '{raw}' is not supported: this server answers JSON only"
        raise InvalidInputError(text, issues=[Issue("not-supported", text, ("_format",))])


def parse_search(params: Sequence[tuple[str, str]], *, is_lenient: bool) -> Search:
    filters: list[tuple[str, str, tuple[str, ...]]] = []
    catalogue = None
    count, offset, summary_count = DEFAULT_COUNT, 0, False
    used: list[tuple[str, str]] = []
    for key, raw in params:
        name, _, modifier = key.partition(":")
        if name in SEARCH_PARAMS:
            ok = modifier in _STRING_MODIFIERS if name in ("name", "title") else not modifier
            if not ok:
                if is_lenient:
                    continue
                raise _unknown(key, SEARCH_PARAMS + CONTROL_PARAMS)
            if name == "catalogue":
                if raw not in ("2025", "2026", "all"):
                    text = f"catalogue must be 2025, 2026 or all, not '{raw}'"
                    raise InvalidInputError(text, issues=[Issue("value", text, ("catalogue",))])
                catalogue = raw
            else:
                filters.append((name, modifier, tuple(v for v in raw.split(",") if v)))
        elif name == "_count" and not modifier:
            count = _int_param("_count", raw, 0, MAX_COUNT)
        elif name == "_offset" and not modifier:
            offset = _int_param("_offset", raw, 0, 10**6)
        elif name == "_summary" and not modifier:
            if raw not in ("count", "false"):
                text = f"_summary '{raw}' is not supported (count or false)"
                raise InvalidInputError(text, issues=[Issue("not-supported", text, ("_summary",))])
            summary_count = raw == "count"
        elif name == "_format" and not modifier:
            check_format(raw)
            continue
        elif name == "_pretty" and not modifier:
            continue
        else:
            if is_lenient:
                continue
            raise _unknown(key, SEARCH_PARAMS + CONTROL_PARAMS)
        used.append((key, raw))
    return Search(tuple(filters), catalogue, count, offset, summary_count, tuple(used))


def _string_match(value: str, wanted: str, modifier: str) -> bool:
    """FHIR string search: case-insensitive starts-with; ``:exact``, ``:contains``."""
    if modifier == "exact":
        return value == wanted
    if modifier == "contains":
        return wanted.casefold() in value.casefold()
    return value.casefold().startswith(wanted.casefold())


def _canonical_match(defn: IndicatorDefinition, wanted: str) -> bool:
    url, _, version = wanted.partition("|")
    return url == measure_url(defn.code) and (not version or version == defn.version)


def matches(defn: IndicatorDefinition, name: str, modifier: str, values: Sequence[str]) -> bool:
    """Values of one parameter are alternatives (OR); parameters combine with AND."""
    match name:
        case "_id":
            return defn.code in values
        case "url":
            return any(_canonical_match(defn, v) for v in values)
        case "name":
            return any(_string_match(fhir_name(defn.code), v, modifier) for v in values)
        case "title":
            return any(
                _string_match(defn.name.zh, v, modifier) or _string_match(defn.name.en, v, modifier)
                for v in values
            )
        case "status":
            return "active" in values
        case "version":
            return defn.version in values
    raise AssertionError(name)


def search(definitions: Iterable[IndicatorDefinition], query: Search) -> list[IndicatorDefinition]:
    return [
        d
        for d in definitions
        if all(matches(d, name, modifier, values) for name, modifier, values in query.filters)
    ]


# -- $evaluate-measure -----------------------------------------------------------------

ReportType = Literal["summary", "subject-list"]
#: The operation's parameters (FHIR R4 Measure-evaluate-measure) and qcpulse's ``department``.
EVALUATE_PARAMS = (
    "periodStart",
    "periodEnd",
    "measure",
    "reportType",
    "subject",
    "practitioner",
    "lastReceivedOn",
    "department",
)
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
#: Cases in one subject-list report; a longer period is refused (narrow it).
SUBJECT_LIST_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class Evaluation:
    start: date
    end: date
    report_type: ReportType
    department: str | None
    measure: str | None


def _bad(
    name: str, text: str, code: Literal["value", "required", "not-supported"] = "value"
) -> InvalidInputError:
    return InvalidInputError(text, issues=[Issue(code, text, (name,))])


def parse_period_date(name: str, raw: str, *, end: bool) -> date:
    """A FHIR ``date`` (``2026``, ``2026-03``, ``2026-03-02``): the start of the period
    it implies for ``periodStart``, its end for ``periodEnd``, as the operation says."""
    m = _DATE.match(raw)
    if m is None:
        raise _bad(name, f"{name} must be a date (YYYY, YYYY-MM or YYYY-MM-DD), not '{raw}'")
    year, month, day = int(m.group(1)), m.group(2), m.group(3)
    try:
        if day is not None:
            return date(year, int(month or 1), int(day))
        if month is not None:
            last = calendar.monthrange(year, int(month))[1] if end else 1
            return date(year, int(month), last)
        return date(year, 12, 31) if end else date(year, 1, 1)
    except ValueError:
        raise _bad(name, f"{name} '{raw}' is not a valid date") from None


def parameters_body(body: Any) -> list[tuple[str, str]]:
    """``(name, value)`` pairs of a ``Parameters`` resource: primitive values only."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise _bad("resourceType", "the body must be a FHIR Parameters resource")
    out: list[tuple[str, str]] = []
    for i, p in enumerate(body.get("parameter") or []):
        where = f"Parameters.parameter[{i}]"
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise _bad(where, f"{where} has no name", "required")
        values = [k for k in p if k.startswith("value")]
        if len(values) != 1 or not isinstance(p[values[0]], str):
            raise _bad(
                where, f"{where} ('{p['name']}') needs one primitive value (valueDate, valueCode…)"
            )
        out.append((p["name"], p[values[0]]))
    return out


def parse_evaluate(params: Sequence[tuple[str, str]], *, is_lenient: bool) -> Evaluation:
    given: dict[str, str] = {}
    for name, raw in params:
        if name in ("_format", "_pretty"):
            if name == "_format":
                check_format(raw)
            continue
        if name not in EVALUATE_PARAMS:
            if is_lenient:
                continue
            raise _unknown(name, EVALUATE_PARAMS)
        if name in given:
            raise _bad(name, f"parameter '{name}' given more than once")
        given[name] = raw
    for name in ("subject", "practitioner", "lastReceivedOn"):
        if name in given:
            raise _bad(
                name,
                f"'{name}' is not supported: qcpulse evaluates a measure for the whole "
                "tenant (reportType summary or subject-list), optionally one department",
                "not-supported",
            )
    for name in ("periodStart", "periodEnd"):
        if not given.get(name):
            raise _bad(
                name, f"{name} is required (a date: YYYY, YYYY-MM or YYYY-MM-DD)", "required"
            )
    start = parse_period_date("periodStart", given["periodStart"], end=False)
    end = parse_period_date("periodEnd", given["periodEnd"], end=True)
    if end < start:
        raise _bad("periodEnd", f"periodEnd ({end}) is before periodStart ({start})")
    if (end - start).days > 366 * 20:
        raise _bad("periodEnd", "the period may span at most 20 years")
    raw_type = given.get("reportType", "summary")
    report_type: ReportType
    if raw_type in ("summary", "population"):
        report_type = "summary"  # ``population`` is R4's word for a summary report
    elif raw_type == "subject-list":
        report_type = "subject-list"
    elif raw_type in ("subject", "individual"):
        raise _bad(
            "reportType",
            f"reportType '{raw_type}' (one patient's report) is not supported; "
            "use summary or subject-list",
            "not-supported",
        )
    else:
        raise _bad("reportType", f"reportType must be summary or subject-list, not '{raw_type}'")
    department = given.get("department") or None
    return Evaluation(start, end, report_type, department, given.get("measure") or None)


def _members(kind: str, status: str) -> tuple[str, ...]:
    """The populations a case of ``status`` belongs to (as ``measure_report`` counts)."""
    if status == "numerator":
        base = ("initial-population", "numerator")
        return base + (("denominator",) if kind == "proportion" else ())
    if status == "denominator":
        return ("initial-population", "denominator")
    if status == "excluded":
        return ("initial-population", "denominator-exclusion")
    return ()


def subject_lists(
    session: Session,
    tenant_id: str,
    defn: IndicatorDefinition,
    start: date,
    end: date,
    departments: Sequence[str] | None,
) -> dict[str, list[dict[str, Any]]]:
    """For each population, the ``List.entry`` items of its decided cases in the period:
    the patient of a patient-level case, else the episode's Encounter; the case key
    (which tells two cases of one episode apart) in an extension."""
    if defn.kind == "manual":
        text = (
            f"indicator '{defn.code}' is entered as monthly totals: it has no subjects; "
            "ask for reportType=summary"
        )
        raise UnprocessableError(text, issues=[Issue("not-supported", text, ("reportType",))])
    query = (
        sa.select(CaseRow.encounter_id, CaseRow.key, CaseRow.patient_id, CaseRow.status)
        .where(
            CaseRow.tenant_id == tenant_id,
            CaseRow.indicator == defn.code,
            CaseRow.period_date >= start,
            CaseRow.period_date <= end,
            CaseRow.status.in_(("numerator", "denominator", "excluded")),
        )
        .order_by(CaseRow.period_date, CaseRow.encounter_id, CaseRow.key)
        .limit(SUBJECT_LIST_LIMIT + 1)
    )
    if departments is not None:
        query = query.where(CaseRow.department.in_(list(departments)))
    rows = session.execute(query).all()
    if len(rows) > SUBJECT_LIST_LIMIT:
        text = f"more than {SUBJECT_LIST_LIMIT} cases in the period: ask for a shorter one"
        raise UnprocessableError(text, issues=[Issue("too-costly", text, ("periodEnd",))])
    lists: dict[str, list[dict[str, Any]]] = {code: [] for code in POPULATION_CODES}
    kind = _scoring(defn)
    for encounter_id, key, patient_id, status in rows:
        subject = f"Patient/{patient_id}" if patient_id else f"Encounter/{encounter_id}"
        entry = {
            "extension": [{"url": f"{EXT_BASE}/case-key", "valueString": key}],
            "item": {"reference": subject},
        }
        for code in _members(kind, status):
            lists[code].append(entry)
    return lists
