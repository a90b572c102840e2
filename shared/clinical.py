"""Clinical types shared by ingest (which produces them) and indicators (which reads them).

Ingest maps each stored FHIR resource to at most one :class:`Fact` and each Encounter
to one :class:`Episode`. The indicator evaluator is a pure function of an episode, its
facts and the current time; it yields :class:`Case` values. Nothing here touches the
database: these are the plain values that cross the service boundary.

All datetimes are timezone-aware and normalised to UTC.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo


class FactKind(enum.StrEnum):
    """One kind per mapped FHIR resource type."""

    CONDITION = "condition"
    PROCEDURE = "procedure"
    MEDICATION_REQUEST = "medication_request"
    MEDICATION_ADMINISTRATION = "medication_administration"
    OBSERVATION = "observation"
    DIAGNOSTIC_REPORT = "diagnostic_report"
    COMMUNICATION = "communication"
    SERVICE_REQUEST = "service_request"
    ADVERSE_EVENT = "adverse_event"
    RISK_ASSESSMENT = "risk_assessment"


FACT_KIND_BY_TYPE: dict[str, FactKind] = {
    "Condition": FactKind.CONDITION,
    "Procedure": FactKind.PROCEDURE,
    "MedicationRequest": FactKind.MEDICATION_REQUEST,
    "MedicationAdministration": FactKind.MEDICATION_ADMINISTRATION,
    "Observation": FactKind.OBSERVATION,
    "DiagnosticReport": FactKind.DIAGNOSTIC_REPORT,
    "Communication": FactKind.COMMUNICATION,
    "ServiceRequest": FactKind.SERVICE_REQUEST,
    "AdverseEvent": FactKind.ADVERSE_EVENT,
    "RiskAssessment": FactKind.RISK_ASSESSMENT,
}

UNASSIGNED_DEPARTMENT = "unassigned"


@dataclass(frozen=True, slots=True)
class Coding:
    """A code as sent: the system URI exactly as in the resource, and the code."""

    system: str
    code: str


@dataclass(frozen=True, slots=True)
class Fact:
    """What one resource version says, reduced to what indicators need.

    ``time`` is the fact's clinical time (see docs/INDICATORS.md, "Fact times"):
    Procedure performed start, MedicationAdministration effective start,
    MedicationRequest authoredOn, Observation effective, DiagnosticReport effective,
    Communication sent, Condition onset else recordedDate, AdverseEvent date else
    recordedDate, RiskAssessment occurrence, ServiceRequest authoredOn.
    """

    resource_type: str
    resource_id: str
    kind: FactKind
    status: str | None = None
    time: datetime | None = None
    end_time: datetime | None = None
    #: Observation/DiagnosticReport ``issued`` (result released); Communication ``received``.
    issued: datetime | None = None
    #: Condition/Procedure/Observation ``code``, medication code, AdverseEvent ``event``,
    #: RiskAssessment ``code``, ServiceRequest ``code``.
    codes: tuple[Coding, ...] = ()
    #: ``category`` codings (Procedure has one CodeableConcept, most have a list);
    #: for Condition also ``verificationStatus``/``clinicalStatus`` are *not* here.
    categories: tuple[Coding, ...] = ()
    #: MedicationRequest ``dosageInstruction[].route``, MedicationAdministration ``dosage.route``.
    route: tuple[Coding, ...] = ()
    #: Observation ``interpretation``; RiskAssessment ``prediction[].qualitativeRisk``.
    interpretation: tuple[Coding, ...] = ()
    #: ``reasonCode`` codings (medication prophylaxis is often said there).
    reasons: tuple[Coding, ...] = ()
    #: Observation ``valueQuantity`` value and unit.
    value: float | None = None
    unit: str | None = None
    #: Communication ``about``; references as ``Type/id``.
    about: tuple[str, ...] = ()
    #: AdverseEvent ``actuality``.
    actuality: str | None = None


@dataclass(frozen=True, slots=True)
class Episode:
    """One Encounter and what indicators need to know about it."""

    tenant_id: str
    encounter_id: str
    status: str | None
    #: ``Encounter.class.code`` (v3-ActCode: EMER, IMP, AMB …).
    class_code: str | None
    #: ``Encounter.serviceProvider`` Organization id, or ``unassigned``.
    department: str
    department_name: str | None
    patient_id: str | None
    #: ``Encounter.period.start``.
    arrival: datetime | None
    #: ``Encounter.period.end`` when ``status`` is ``finished``, else None.
    discharge: datetime | None
    #: ``Patient.birthDate`` of the subject, when the Patient is known.
    birth_date: date | None = None
    #: ``Patient.deceasedDateTime`` of the subject.
    deceased_at: datetime | None = None
    #: ``Encounter.partOf``: the encounter this one is part of (one Encounter's view).
    part_of: str | None = None
    #: ``Encounter.priority`` code (v3-ActPriority: EL elective, EM emergency, UR urgent).
    priority: str | None = None
    #: ``Encounter.hospitalization.dischargeDisposition``, first coding.
    disposition: Coding | None = None
    #: An episode chain's encounter ids, root first (``partOf``, docs/INDICATORS.md
    #: "Encounter chains"); a lone Encounter is a chain of one.
    members: tuple[str, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.discharge is None and self.status not in ("cancelled", "entered-in-error")

    def age_at_arrival(self, tz: tzinfo) -> int | None:
        """Age in whole years on the local date of arrival (not the UTC date)."""
        if self.birth_date is None or self.arrival is None:
            return None
        a = self.arrival.astimezone(tz).date()
        b = self.birth_date
        return a.year - b.year - ((a.month, a.day) < (b.month, b.day))


class CaseStatus(enum.StrEnum):
    PENDING = "pending"
    NUMERATOR = "numerator"
    DENOMINATOR = "denominator"
    EXCLUDED = "excluded"


@dataclass(frozen=True, slots=True)
class Case:
    """One unit an indicator counts, as decided at a given moment.

    ``key`` identifies the case within (tenant, indicator, episode): the encounter id for
    per-episode cases, ``Type/id`` of the triggering resource for per-resource cases.
    For ratio indicators the status tells the two case sets apart: ``numerator`` cases
    are events (adverse-event reports), ``denominator`` cases the population (discharges).
    """

    indicator: str
    key: str
    encounter_id: str
    department: str
    status: CaseStatus
    #: Local date (tenant time zone) that files the case into a period.
    period_date: date | None
    clock_start: datetime | None = None
    clock_stop: datetime | None = None
    deadline: datetime | None = None
    #: When a pending case has used its at-risk share of the window.
    at_risk_at: datetime | None = None
    #: When the status may change with no new data (a pending deadline), else None.
    decide_at: datetime | None = None
    #: The patient of a patient-level case (follow-up, patient × month), else None.
    patient_id: str | None = None
    details: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
