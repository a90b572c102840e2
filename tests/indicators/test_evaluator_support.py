"""Builders shared by the evaluator tests (this module holds no tests).

Times are UTC; ``T0`` is 10:00 in Asia/Shanghai so that local and UTC dates agree
unless a test moves to the midnight edge on purpose.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.indicators.evaluator import Catalogue
from services.indicators.valuesets import CODE_SYSTEMS, CodeMap
from shared.clinical import Case, Coding, Episode, Fact, FactKind

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
#: 2026-03-31T16:30Z is 2026-04-01 00:30 in Shanghai.
MIDNIGHT_EDGE = datetime(2026, 3, 31, 16, 30, tzinfo=UTC)

ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10_CN = "urn:oid:2.16.156.10011.2.3.3.11"
ICD9 = "http://hl7.org/fhir/sid/icd-9-cm"
ICD9_CN = "urn:oid:2.16.156.10011.2.3.3.12"
ATC = "http://www.whocc.no/atc"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
QC = "https://qcpulse.org/fhir/CodeSystem/qc"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
LOCAL = "urn:local:his"


def at(minutes: float = 0, *, hours: float = 0, days: float = 0, base: datetime = T0) -> datetime:
    return base + timedelta(minutes=minutes, hours=hours, days=days)


def c(system: str, code: str) -> Coding:
    """A coding; ``system`` may be an alias (its canonical URI is used)."""
    cs = CODE_SYSTEMS.get(system)
    return Coding(cs.uris[0] if cs else system, code)


def episode(
    enc: str = "E1",
    cls: str | None = "IMP",
    *,
    arrival: datetime | None = T0,
    discharge: datetime | None = None,
    status: str | None = None,
    birth: date | None = date(1970, 1, 1),
    dept: str = "D-CARD",
) -> Episode:
    if status is None:
        status = "finished" if discharge is not None else "in-progress"
    return Episode(
        tenant_id="H0001",
        encounter_id=enc,
        status=status,
        class_code=cls,
        department=dept,
        department_name=None,
        patient_id="P1",
        arrival=arrival,
        discharge=discharge,
        birth_date=birth,
    )


def _codes(codes: Coding | Sequence[Coding]) -> tuple[Coding, ...]:
    return (codes,) if isinstance(codes, Coding) else tuple(codes)


def condition(rid: str, code: Coding, time: datetime | None = T0) -> Fact:
    return Fact("Condition", rid, FactKind.CONDITION, time=time, codes=(code,))


def procedure(
    rid: str,
    codes: Coding | Sequence[Coding] = (),
    time: datetime | None = T0,
    *,
    category: Coding | Sequence[Coding] = (),
    status: str = "completed",
) -> Fact:
    return Fact(
        "Procedure",
        rid,
        FactKind.PROCEDURE,
        status=status,
        time=time,
        codes=_codes(codes),
        categories=_codes(category),
    )


def med_admin(
    rid: str,
    code: Coding | None = None,
    time: datetime | None = T0,
    *,
    route: Coding | None = None,
    category: Coding | Sequence[Coding] = (),
    reason: Coding | Sequence[Coding] = (),
    status: str = "completed",
) -> Fact:
    return Fact(
        "MedicationAdministration",
        rid,
        FactKind.MEDICATION_ADMINISTRATION,
        status=status,
        time=time,
        codes=_codes(code) if code else (),
        route=(route,) if route else (),
        categories=_codes(category),
        reasons=_codes(reason),
    )


def med_request(
    rid: str,
    code: Coding | None = None,
    time: datetime | None = T0,
    *,
    route: Coding | None = None,
    category: Coding | Sequence[Coding] = (),
    reason: Coding | Sequence[Coding] = (),
    status: str = "active",
) -> Fact:
    return Fact(
        "MedicationRequest",
        rid,
        FactKind.MEDICATION_REQUEST,
        status=status,
        time=time,
        codes=_codes(code) if code else (),
        route=(route,) if route else (),
        categories=_codes(category),
        reasons=_codes(reason),
    )


def observation(
    rid: str,
    codes: Coding | Sequence[Coding] = (),
    time: datetime | None = T0,
    *,
    issued: datetime | None = None,
    category: Coding | Sequence[Coding] = (),
    interpretation: Coding | Sequence[Coding] = (),
    value: float | None = None,
    status: str = "final",
) -> Fact:
    return Fact(
        "Observation",
        rid,
        FactKind.OBSERVATION,
        status=status,
        time=time,
        issued=issued,
        codes=_codes(codes),
        categories=_codes(category),
        interpretation=_codes(interpretation),
        value=value,
        unit="mmol/L" if value is not None else None,
    )


def critical_image(rid: str, issued: datetime | None, *, time: datetime | None = None) -> Fact:
    return observation(
        rid,
        c("loinc", "24627-2"),
        time if time is not None else issued,
        issued=issued,
        category=c("observation-category", "imaging"),
        interpretation=c("observation-interpretation", "AA"),
    )


def risk(
    rid: str,
    code: str,
    time: datetime | None = T0,
    *,
    level: str | None = None,
    status: str = "final",
) -> Fact:
    return Fact(
        "RiskAssessment",
        rid,
        FactKind.RISK_ASSESSMENT,
        status=status,
        time=time,
        codes=(c("qc", code),),
        interpretation=(c("risk-probability", level),) if level else (),
    )


def communication(
    rid: str, about: str | Sequence[str], time: datetime | None, *, status: str = "completed"
) -> Fact:
    return Fact(
        "Communication",
        rid,
        FactKind.COMMUNICATION,
        status=status,
        time=time,
        about=(about,) if isinstance(about, str) else tuple(about),
    )


def adverse_event(rid: str, time: datetime | None, actuality: str | None = "actual") -> Fact:
    return Fact(
        "AdverseEvent",
        rid,
        FactKind.ADVERSE_EVENT,
        time=time,
        actuality=actuality,
        codes=(c("qc", "fall"),),
    )


@functools.cache
def catalogue() -> Catalogue:
    return Catalogue.load()


def run(
    code: str,
    ep: Episode,
    facts: Sequence[Fact],
    now: datetime,
    *,
    tz: ZoneInfo = SH,
    code_map: CodeMap | None = None,
) -> list[Case]:
    from services.indicators.evaluator import evaluate

    return evaluate(catalogue().indicator(code), ep, facts, now, tz, code_map)


def one(
    code: str,
    ep: Episode,
    facts: Sequence[Fact],
    now: datetime,
    *,
    tz: ZoneInfo = SH,
    code_map: CodeMap | None = None,
) -> Case:
    """The single case the indicator yields; fails the test when there is not exactly one."""
    cases = run(code, ep, facts, now, tz=tz, code_map=code_map)
    assert len(cases) == 1, cases
    return cases[0]
