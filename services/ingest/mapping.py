"""FHIR R4 resource → episode fields and clinical facts. Pure functions on validated JSON.

The rules follow docs/INDICATORS.md ("Fact times"): each mapped resource yields at
most one :class:`~shared.clinical.Fact`, timed by its clinical event (not by when it
was sent). ``entered-in-error`` resources, and resources whose status says the thing
did not happen (``not-done``, ``cancelled``, ``revoked``, ``draft``: see
``DID_NOT_HAPPEN``), yield none: they retract whatever their earlier versions said.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from shared.clinical import (
    FACT_KIND_BY_TYPE,
    UNASSIGNED_DEPARTMENT,
    Coding,
    Fact,
    FactKind,
)

JSON = dict[str, Any]

RETRACTED_STATUSES = frozenset({"entered-in-error"})
#: Statuses that say the thing did not happen (or never will): such a resource
#: contributes no fact. A cancelled order does not start an antibiotic clock; a
#: cancelled culture is no specimen. Preliminary results do count: they are acted on.
DID_NOT_HAPPEN: dict[str, frozenset[str]] = {
    "Procedure": frozenset({"not-done"}),
    "MedicationAdministration": frozenset({"not-done"}),
    "MedicationRequest": frozenset({"cancelled", "draft"}),
    "Observation": frozenset({"cancelled"}),
    "DiagnosticReport": frozenset({"cancelled"}),
    "Communication": frozenset({"not-done"}),
    "ServiceRequest": frozenset({"revoked", "draft"}),
    "RiskAssessment": frozenset({"cancelled"}),
}
MAPPED_TYPES = frozenset({"Patient", "Encounter", *FACT_KIND_BY_TYPE})


def parse_datetime(value: Any, tz: ZoneInfo) -> datetime | None:
    """FHIR date/dateTime/instant → aware UTC. Dates without a time mean local midnight."""
    if not isinstance(value, str) or not value:
        return None
    try:
        if "T" in value:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=tz)
            return dt.astimezone(UTC)
        parts = [int(p) for p in value.split("-")]
        d = date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
        return datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC)
    except (ValueError, IndexError):
        return None


def parse_date(value: Any) -> date | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parts = [int(p) for p in value[:10].split("-")]
        return date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    except (ValueError, IndexError):
        return None


def reference_target(ref: Any) -> tuple[str, str] | None:
    """``Type/id`` (relative or absolute, with or without ``_history``) → (Type, id)."""
    if isinstance(ref, dict):
        ref = ref.get("reference")
    if not isinstance(ref, str) or not ref or ref.startswith(("#", "urn:")):
        return None
    parts = ref.split("?")[0].rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-2][:1].isupper():
        return None
    return parts[-2], parts[-1]


def link_targets(resource: Any) -> list[tuple[str, str]]:
    """The resources a fact may join its episode through (a Communication ``about``
    an Observation): its writer locks them too, so that it and a concurrent writer of
    the target see each other's rows (docs/DECISIONS.md, "Late links")."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Communication":
        return []
    about = resource.get("about")
    if not isinstance(about, list):
        return []
    return [t for ref in about if (t := reference_target(ref)) is not None]


def reference_id(ref: Any, expected_type: str) -> str | None:
    target = reference_target(ref)
    if target is None or target[0] != expected_type:
        return None
    return target[1]


def codings(concept: Any) -> tuple[Coding, ...]:
    """Codings of one CodeableConcept, or of a list of them."""
    if isinstance(concept, list):
        return tuple(c for item in concept for c in codings(item))
    if not isinstance(concept, dict):
        return ()
    return tuple(
        Coding(system=str(c.get("system", "")), code=str(c["code"]))
        for c in concept.get("coding", ())
        if isinstance(c, dict) and c.get("code") is not None
    )


@dataclass(frozen=True, slots=True)
class EpisodeFields:
    encounter_id: str
    status: str | None
    class_code: str | None
    department: str
    department_name: str | None
    patient_id: str | None
    arrival: datetime | None
    discharge: datetime | None
    #: ``Encounter.partOf``: the encounter whose episode this one joins.
    part_of: str | None = None
    #: ``Encounter.priority`` (v3-ActPriority code: EL, EM, UR …).
    priority: str | None = None
    #: ``Encounter.hospitalization.dischargeDisposition``, first coding.
    disposition: Coding | None = None


def patient_fields(resource: JSON, tz: ZoneInfo) -> tuple[date | None, datetime | None]:
    """``Patient.birthDate`` and ``Patient.deceasedDateTime`` (``deceasedBoolean`` says
    nothing about when, so it is not a time of death)."""
    return parse_date(resource.get("birthDate")), parse_datetime(
        resource.get("deceasedDateTime"), tz
    )


def map_encounter(resource: JSON, tz: ZoneInfo) -> EpisodeFields | None:
    """None when the Encounter is retracted (``entered-in-error``)."""
    status = resource.get("status")
    if status in RETRACTED_STATUSES:
        return None
    enc_class = resource.get("class")
    provider = resource.get("serviceProvider") or {}
    period = resource.get("period") or {}
    department = reference_id(provider, "Organization") or UNASSIGNED_DEPARTMENT
    hospitalization = resource.get("hospitalization") or {}
    disposition = codings(hospitalization.get("dischargeDisposition"))
    priority = codings(resource.get("priority"))
    part_of = reference_id(resource.get("partOf"), "Encounter")
    return EpisodeFields(
        encounter_id=str(resource["id"]),
        status=status,
        class_code=enc_class.get("code") if isinstance(enc_class, dict) else None,
        department=department,
        department_name=provider.get("display") if isinstance(provider, dict) else None,
        patient_id=reference_id(resource.get("subject"), "Patient"),
        arrival=parse_datetime(period.get("start"), tz),
        discharge=parse_datetime(period.get("end"), tz) if status == "finished" else None,
        part_of=part_of if part_of != resource["id"] else None,
        priority=priority[0].code if priority else None,
        disposition=disposition[0] if disposition else None,
    )


@dataclass(frozen=True, slots=True)
class MappedFact:
    fact: Fact
    encounter_id: str | None
    patient_id: str | None
    #: ``Type/id`` this resource joins an episode through when it names no encounter.
    link_ref: str | None


def _start(resource: JSON, prefix: str, tz: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    """``{prefix}DateTime`` or ``{prefix}Period.start``; and ``{prefix}Period.end``."""
    period = resource.get(f"{prefix}Period") or {}
    start = parse_datetime(resource.get(f"{prefix}DateTime"), tz) or parse_datetime(
        period.get("start"), tz
    )
    return start, parse_datetime(period.get("end"), tz)


def _route_of_request(resource: JSON) -> tuple[Coding, ...]:
    return tuple(
        c for d in resource.get("dosageInstruction") or () for c in codings(d.get("route"))
    )


def map_fact(resource: JSON, tz: ZoneInfo) -> MappedFact | None:
    """The fact a resource contributes, or None (unmapped type, or retracted)."""
    rtype = resource.get("resourceType")
    kind = FACT_KIND_BY_TYPE.get(str(rtype))
    if kind is None:
        return None
    status = resource.get("status")
    if status in RETRACTED_STATUSES or status in DID_NOT_HAPPEN.get(str(rtype), ()):
        return None
    if kind is FactKind.CONDITION:
        verification = {c.code for c in codings(resource.get("verificationStatus"))}
        if "entered-in-error" in verification or "refuted" in verification:
            return None
        status = next(iter(c.code for c in codings(resource.get("clinicalStatus"))), None)

    t: datetime | None = None
    end: datetime | None = None
    issued: datetime | None = None
    codes: tuple[Coding, ...] = codings(resource.get("code"))
    route: tuple[Coding, ...] = ()
    interpretation: tuple[Coding, ...] = ()
    value: float | None = None
    unit: str | None = None
    about: tuple[str, ...] = ()
    actuality: str | None = None
    encounter_ref: Any = resource.get("encounter")

    match kind:
        case FactKind.CONDITION:
            t = parse_datetime(resource.get("onsetDateTime"), tz) or parse_datetime(
                resource.get("recordedDate"), tz
            )
        case FactKind.PROCEDURE:
            t, end = _start(resource, "performed", tz)
        case FactKind.MEDICATION_REQUEST:
            t = parse_datetime(resource.get("authoredOn"), tz)
            codes = codings(resource.get("medicationCodeableConcept"))
            route = _route_of_request(resource)
        case FactKind.MEDICATION_ADMINISTRATION:
            t, end = _start(resource, "effective", tz)
            codes = codings(resource.get("medicationCodeableConcept"))
            route = codings((resource.get("dosage") or {}).get("route"))
            # R4 links an administration to its encounter with ``context``.
            encounter_ref = resource.get("context") or encounter_ref
        case FactKind.OBSERVATION:
            t, end = _start(resource, "effective", tz)
            t = t or parse_datetime(resource.get("effectiveInstant"), tz)
            issued = parse_datetime(resource.get("issued"), tz)
            interpretation = codings(resource.get("interpretation"))
            quantity = resource.get("valueQuantity")
            if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
                value = float(quantity["value"])
                unit = quantity.get("code") or quantity.get("unit")
        case FactKind.DIAGNOSTIC_REPORT:
            t, end = _start(resource, "effective", tz)
            issued = parse_datetime(resource.get("issued"), tz)
            interpretation = codings(resource.get("conclusionCode"))
        case FactKind.COMMUNICATION:
            t = parse_datetime(resource.get("sent"), tz)
            issued = parse_datetime(resource.get("received"), tz)
            about = tuple(
                f"{target[0]}/{target[1]}"
                for ref in resource.get("about") or ()
                if (target := reference_target(ref)) is not None
            )
            codes = codings(resource.get("reasonCode"))
        case FactKind.SERVICE_REQUEST:
            t = parse_datetime(resource.get("authoredOn"), tz)
        case FactKind.ADVERSE_EVENT:
            t = parse_datetime(resource.get("date"), tz) or parse_datetime(
                resource.get("recordedDate"), tz
            )
            codes = codings(resource.get("event"))
            actuality = resource.get("actuality")
        case FactKind.RISK_ASSESSMENT:
            t = parse_datetime(resource.get("occurrenceDateTime"), tz)
            if t is None:
                t, _ = _start(resource, "occurrence", tz)
            interpretation = tuple(
                c
                for p in resource.get("prediction") or ()
                for c in codings(p.get("qualitativeRisk"))
            )

    categories = codings(resource.get("category"))
    reasons = codings(resource.get("reasonCode")) if kind is not FactKind.COMMUNICATION else ()
    fact = Fact(
        resource_type=str(rtype),
        resource_id=str(resource["id"]),
        kind=kind,
        status=status,
        time=t,
        end_time=end,
        issued=issued,
        codes=codes,
        categories=categories,
        route=route,
        interpretation=interpretation,
        reasons=reasons,
        value=value,
        unit=unit,
        about=about,
        actuality=actuality,
    )
    encounter_id = reference_id(encounter_ref, "Encounter")
    patient_ref = resource.get("subject") or resource.get("patient")
    return MappedFact(
        fact=fact,
        encounter_id=encounter_id,
        patient_id=reference_id(patient_ref, "Patient"),
        link_ref=about[0] if encounter_id is None and about else None,
    )


def _dt(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _codes(values: tuple[Coding, ...]) -> list[list[str]]:
    return [[c.system, c.code] for c in values]


def fact_to_json(fact: Fact) -> JSON:
    return {
        "status": fact.status,
        "time": _dt(fact.time),
        "end_time": _dt(fact.end_time),
        "issued": _dt(fact.issued),
        "codes": _codes(fact.codes),
        "categories": _codes(fact.categories),
        "route": _codes(fact.route),
        "interpretation": _codes(fact.interpretation),
        "reasons": _codes(fact.reasons),
        "value": fact.value,
        "unit": fact.unit,
        "about": list(fact.about),
        "actuality": fact.actuality,
    }


def _pdt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


#: Codes repeat across facts (a hospital sends a few thousand distinct ones): one
#: shared immutable Coding each, instead of a new object per fact per evaluation.
_coding = lru_cache(maxsize=8192)(Coding)


def _pcodes(values: list[list[str]]) -> tuple[Coding, ...]:
    if not values:
        return ()
    return tuple(_coding(s, c) for s, c in values)


def fact_from_json(resource_type: str, resource_id: str, kind: str, data: JSON) -> Fact:
    return Fact(
        resource_type=resource_type,
        resource_id=resource_id,
        kind=FactKind(kind),
        status=data.get("status"),
        time=_pdt(data.get("time")),
        end_time=_pdt(data.get("end_time")),
        issued=_pdt(data.get("issued")),
        codes=_pcodes(data.get("codes", [])),
        categories=_pcodes(data.get("categories", [])),
        route=_pcodes(data.get("route", [])),
        interpretation=_pcodes(data.get("interpretation", [])),
        reasons=_pcodes(data.get("reasons", [])),
        value=data.get("value"),
        unit=data.get("unit"),
        about=tuple(data.get("about", [])),
        actuality=data.get("actuality"),
    )
