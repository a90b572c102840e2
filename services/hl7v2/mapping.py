"""A parsed v2 message → the entries of one FHIR transaction (docs/HL7V2.md, "Mapping").

Pure: no database, no clock. The walk goes through the segments once, in order,
keeping the context v2 expresses by position (the patient of the PID, the visit of
the PV1, the order of the ORC, the report of the OBR, the observation an NTE
follows) and builds one resource per segment that carries one. Every problem is
collected, so an ``AE`` names all of them at once.

Only ADT messages write Patient and Encounter: the HIS owns the patient and the
visit. Results, orders and pharmacy messages *reference* them by PID-3 and PV1-19,
so an ORU whose PV1 is thinner than the ADT's cannot overwrite the visit (its arrival
time, its department) with less.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from services.hl7v2.errors import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE,
    TABLE_VALUE_NOT_FOUND,
    V2Issue,
    V2Rejected,
)
from services.hl7v2.message import Mapped, ParsedMessage
from services.hl7v2.parse import Segment, parse_instant, parse_ts, parse_ts_datetime, segments

JSON = dict[str, Any]

LOCAL_SYSTEM = "https://qcpulse.org/fhir/CodeSystem/hl7v2/"
NAMING_SYSTEM = "https://qcpulse.org/fhir/NamingSystem/hl7v2/"
V2_TABLE = "http://terminology.hl7.org/CodeSystem/v2-"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
UCUM = "http://unitsofmeasure.org"

_ICD10 = "http://hl7.org/fhir/sid/icd-10"
_ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
_ICD9CM = "http://hl7.org/fhir/sid/icd-9-cm"
_LOINC = "http://loinc.org"
_SNOMED = "http://snomed.info/sct"
_ATC = "http://www.whocc.no/atc"

#: CWE-3 (HL7 table 0396 and the variants engines send) → FHIR system.
CODING_SYSTEMS: dict[str, str] = {
    **dict.fromkeys(("I10", "ICD10", "ICD-10"), _ICD10),
    **dict.fromkeys(("I10C", "ICD10CM", "ICD-10-CM"), _ICD10CM),
    **dict.fromkeys(("I9C", "I9CP", "I9", "ICD9CM", "ICD9CM3", "ICD-9-CM", "ICD-9-CM-3"), _ICD9CM),
    **dict.fromkeys(("LN", "LOINC"), _LOINC),
    **dict.fromkeys(("SCT", "SNM", "SNOMED", "SNOMEDCT", "SNOMED-CT"), _SNOMED),
    **dict.fromkeys(("WC", "ATC"), _ATC),
}
#: An ISO OID, as CWE-3 or CX.4.2 may carry one.
OID = re.compile(r"[0-2](\.(0|[1-9]\d*))+")
_HL7_TABLE = re.compile(r"HL7(\d{4})")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

#: PV1-2 patient class → Encounter.class (v3-ActCode).
PATIENT_CLASS = {
    "E": ("EMER", "emergency"),
    "I": ("IMP", "inpatient encounter"),
    "B": ("IMP", "inpatient encounter"),
    "O": ("AMB", "ambulatory"),
    "R": ("AMB", "ambulatory"),
    "C": ("AMB", "ambulatory"),
    "P": ("PRENC", "pre-admission"),
}
GENDER = {"M": "male", "F": "female", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}

#: ADT events whose own time is the visit's start when PV1-44 is not sent.
ADMIT_EVENTS = frozenset({"A01", "A04", "A05", "A06", "A07"})
ENCOUNTER_STATUS = {
    "A01": "in-progress",
    "A02": "in-progress",
    "A04": "in-progress",
    "A06": "in-progress",
    "A07": "in-progress",
    "A12": "in-progress",
    "A13": "in-progress",
    "A03": "finished",
    "A05": "planned",
    "A11": "cancelled",
}

#: OBR-24 diagnostic service section → observation-category.
SERVICE_CATEGORY = {
    **dict.fromkeys(
        ("RAD", "RX", "RUS", "CUS", "OUS", "VUS", "CT", "NMR", "NMS", "XRC", "MR", "US"),
        "imaging",
    ),
    **dict.fromkeys(
        (
            *("LAB", "CH", "HM", "MB", "MCB", "MYC", "SR", "IMM", "BLB", "BG", "CG"),
            *("GE", "TX", "VR", "CP", "SP", "OSL"),
        ),
        "laboratory",
    ),
    **dict.fromkeys(("EC", "CTH", "PF"), "procedure"),
}
#: OBR-25 result status (table 0123) → DiagnosticReport.status.
REPORT_STATUS = {
    "F": "final",
    "C": "corrected",
    "A": "partial",
    "P": "preliminary",
    "R": "registered",
    "S": "registered",
    "I": "registered",
    "O": "registered",
    "X": "cancelled",
}
#: OBX-11 observation result status (table 0085) → Observation.status.
OBSERVATION_STATUS = {
    "F": "final",
    "U": "final",
    "C": "corrected",
    "P": "preliminary",
    "S": "preliminary",
    "R": "registered",
    "I": "registered",
    "O": "registered",
    "D": "entered-in-error",
    "W": "entered-in-error",
    "X": "cancelled",
    "N": "cancelled",
}
#: RXA-20 completion status (table 0322) → MedicationAdministration.status.
ADMINISTRATION_STATUS = {
    "CP": "completed",
    "PA": "in-progress",
    "RE": "not-done",
    "NA": "not-done",
}
_ORDER_CANCELLED = frozenset({"CA", "OC", "CR"})
_ORDER_STOPPED = frozenset({"DC", "OD", "DR"})


def fhir_id(value: str) -> str:
    """The value itself when it is a valid FHIR id, else ``h`` + 40 hex digits of its
    SHA-256: deterministic, so the same identifier always names the same resource."""
    value = value.strip()
    if _FHIR_ID.fullmatch(value):
        return value
    return "h" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:40]


def system_uri(name: str) -> str:
    """A v2 coding system name (CWE-3) as a FHIR system URI."""
    name = name.strip()
    known = CODING_SYSTEMS.get(name.upper())
    if known is not None:
        return known
    if OID.fullmatch(name):
        return f"urn:oid:{name}"
    table = _HL7_TABLE.fullmatch(name.upper())
    if table is not None:
        return V2_TABLE + table.group(1)
    return LOCAL_SYSTEM + quote(name or "L", safe="-._~")


def entry(resource: JSON) -> JSON:
    """A PUT entry: the id is the message's, so a re-send updates the same resource."""
    return {
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
    }


def _ref(rtype: str, rid: str | None) -> JSON | None:
    return {"reference": f"{rtype}/{rid}"} if rid else None


def _prune(resource: JSON) -> JSON:
    """Drop elements left empty: FHIR forbids empty values."""
    return {k: v for k, v in resource.items() if v not in (None, "", [], {})}


@dataclass(slots=True)
class _Order:
    placer: str = ""
    filler: str = ""
    control: str = ""  # ORC-1
    status: str = ""  # ORC-5
    authored: str | None = None  # ORC-9
    request: JSON | None = None  # the ServiceRequest/MedicationRequest being built


@dataclass(slots=True)
class _Report:
    resource: JSON
    category: str | None
    effective: str | None
    issued: str | None
    observations: list[JSON] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Walk:
    """The state of one pass over the segments."""

    def __init__(self, parsed: ParsedMessage, tz: ZoneInfo) -> None:
        self.env = parsed.envelope
        self.tz = tz
        self.code = self.env.message_code or ""
        self.event = self.env.trigger or ""
        self.issues: list[V2Issue] = []
        self.notes: list[str] = []
        self.resources: list[JSON] = []
        self.inherit: dict[tuple[str, str], tuple[str, ...]] = {}
        self.patient: str | None = None
        self.visit: str | None = None
        self.evn: Segment | None = None
        self.order: _Order | None = None
        self.report: _Report | None = None
        self.last_observation: JSON | None = None
        self.last_request_segment: str | None = None
        self.merge: tuple[str, str] | None = None
        self.message_time = self._message_time()
        self.msh_time = parse_ts(self.env.message_time or "", tz) if self.message_time else None

    # -- problems and values ------------------------------------------------------------

    def problem(
        self,
        seg: Segment | str,
        code: int,
        text: str,
        fld: int | None = None,
        comp: int | None = None,
    ) -> None:
        if isinstance(seg, Segment):
            self.issues.append(V2Issue("AE", code, text, seg.id, seg.sequence, fld, comp))
        else:
            self.issues.append(V2Issue("AE", code, text, seg, 1 if fld else None, fld, comp))

    def required(self, seg: Segment, fld: int, what: str, comp: int = 1) -> str:
        value = seg.get(fld, comp).strip()
        if not value:
            self.problem(seg, REQUIRED_FIELD_MISSING, f"{seg.id}-{fld} ({what}) is required", fld)
        return value

    def _message_time(self) -> datetime | None:
        try:
            moment = parse_ts_datetime(self.env.message_time or "", self.tz)
        except ValueError as exc:
            self.problem("MSH", DATA_TYPE_ERROR, str(exc), 7)
            return None
        if moment is None:
            self.problem(
                "MSH", REQUIRED_FIELD_MISSING, "MSH-7 (date/time of message) is required", 7
            )
        return moment

    def time(self, seg: Segment, fld: int, *, instant: bool = False) -> str | None:
        raw = seg.get(fld)
        try:
            return parse_instant(raw, self.tz) if instant else parse_ts(raw, self.tz)
        except ValueError as exc:
            self.problem(seg, DATA_TYPE_ERROR, f"{seg.id}-{fld}: {exc}", fld, 1)
            return None

    def codeable(self, seg: Segment, fld: int, rep: int = 1) -> JSON | None:
        """CE/CWE/CNE: components 1–3 and the alternate 4–6, each as a coding."""
        codings: list[JSON] = []
        for first in (1, 4):
            code = seg.get(fld, first, rep=rep).strip()
            display = seg.get(fld, first + 1, rep=rep).strip()
            if code:
                codings.append(
                    _prune(
                        {
                            "system": system_uri(seg.get(fld, first + 2, rep=rep)),
                            "code": code,
                            "display": display,
                        }
                    )
                )
        text = seg.get(fld, 2, rep=rep).strip()
        if not codings:
            return {"text": text} if text else None
        return _prune({"coding": codings, "text": text})

    def table_coding(self, table: str, code: str, display: str = "") -> JSON:
        return {"coding": [_prune({"system": V2_TABLE + table, "code": code, "display": display})]}

    # -- the walk -------------------------------------------------------------------------

    def run(self, segs: Iterable[Segment]) -> None:
        segs = list(segs)
        handlers = {
            "EVN": self.on_evn,
            "PID": self.on_pid,
            "PV1": self.on_pv1,
            "MRG": self.on_mrg,
            "DG1": self.on_dg1,
            "PR1": self.on_pr1,
            "ORC": self.on_orc,
            "OBR": self.on_obr,
            "OBX": self.on_obx,
            "NTE": self.on_nte,
            "RXE": self.on_rxe,
            "RXA": self.on_rxa,
            "RXR": self.on_rxr,
        }
        # The PID and PV1 name the patient and visit every later segment belongs to,
        # wherever a DG1 or PR1 sits: read them first.
        for seg in segs:
            if seg.id == "PID" and self.patient is None:
                self.patient = self.patient_id(seg)
            elif seg.id == "PV1" and self.visit is None:
                self.visit = fhir_id(seg.get(19)) if seg.get(19).strip() else None
        if self.patient is None and not any(s.id == "PID" for s in segs):
            self.problem("PID", SEGMENT_SEQUENCE, "a PID segment is required")
        for seg in segs:
            handler = handlers.get(seg.id)
            if handler is not None:
                handler(seg)
        self.close_report()
        if self.code == "ADT" and self.event != "A40" and not any(s.id == "PV1" for s in segs):
            self.problem("PV1", SEGMENT_SEQUENCE, f"ADT^{self.event} needs a PV1 segment")
        if self.event == "A40" and self.merge is None:
            self.problem("MRG", SEGMENT_SEQUENCE, "ADT^A40 needs an MRG segment")

    def add(self, resource: JSON) -> JSON:
        resource = _prune(resource)
        self.resources.append(resource)
        return resource

    # -- ADT ------------------------------------------------------------------------------

    def on_evn(self, seg: Segment) -> None:
        self.evn = seg

    def patient_id(self, seg: Segment) -> str | None:
        # Positions of the repetitions that carry a value (an engine may send ``~X``).
        reps = (
            [i for i in range(1, len(seg.fields[3]) + 1) if seg.get(3, 1, rep=i).strip()]
            if len(seg.fields) > 3
            else []
        )
        chosen = next((i for i in reps if seg.get(3, 5, rep=i) == "MR"), reps[0] if reps else 1)
        value = seg.get(3, 1, rep=chosen).strip() if reps else ""
        return fhir_id(value) if value else None

    def on_pid(self, seg: Segment) -> None:
        if seg.sequence > 1:
            self.problem(seg, SEGMENT_SEQUENCE, "one patient per message")
            return
        if self.patient is None:
            self.required(seg, 3, "patient identifier list")
            return
        if self.code != "ADT":
            return
        identifiers = []
        for i in range(1, len(seg.fields[3]) + 1):
            value = seg.get(3, 1, rep=i).strip()
            if not value:
                continue
            oid, oid_type = seg.get(3, 4, 2, rep=i), seg.get(3, 4, 3, rep=i)
            namespace = seg.get(3, 4, 1, rep=i) or seg.get(3, 5, rep=i) or "MR"
            id_type = seg.get(3, 5, rep=i)
            identifiers.append(
                _prune(
                    {
                        "system": f"urn:oid:{oid}"
                        if oid and oid_type.upper() == "ISO"
                        else NAMING_SYSTEM + quote(namespace, safe="-._~"),
                        "value": value,
                        "type": self.table_coding("0203", id_type) if id_type else None,
                    }
                )
            )
        family, given = (
            seg.get(5, 1).strip(),
            [g for g in (seg.get(5, 2).strip(), seg.get(5, 3).strip()) if g],
        )
        name = None
        if family or given:
            cjk = _CJK.search(family + "".join(given)) is not None
            text = family + "".join(given) if cjk else " ".join([*given, family]).strip()
            name = [_prune({"family": family, "given": given, "text": text})]
        gender_code = seg.get(8).strip().upper()
        gender = GENDER.get(gender_code)
        if gender_code and gender is None:
            self.problem(
                seg, TABLE_VALUE_NOT_FOUND, f"PID-8 {gender_code!r} is not in table 0001", 8
            )
        birth = self.time(seg, 7)
        deceased_at = self.time(seg, 29)
        self.add(
            {
                "resourceType": "Patient",
                "id": self.patient,
                "identifier": identifiers,
                "name": name,
                "gender": gender,
                "birthDate": birth[:10] if birth else None,
                "deceasedDateTime": deceased_at,
                "deceasedBoolean": True
                if not deceased_at and seg.get(30).strip().upper() == "Y"
                else None,
            }
        )

    def on_mrg(self, seg: Segment) -> None:
        old = self.required(seg, 1, "prior patient identifier list")
        if old and self.patient:
            self.merge = (fhir_id(old), self.patient)

    def event_time(self) -> str | None:
        if self.evn is not None:
            for fld in (6, 2):
                value = self.time(self.evn, fld)
                if value:
                    return value
        return self.msh_time

    def on_pv1(self, seg: Segment) -> None:
        if seg.sequence > 1:
            self.problem(seg, SEGMENT_SEQUENCE, "one visit per message")
            return
        if self.code != "ADT":
            return
        if self.event == "A40":
            return
        if self.visit is None:
            self.required(seg, 19, "visit number")
            return
        patient_class = seg.get(2).strip().upper()
        enc_class = PATIENT_CLASS.get(patient_class)
        if patient_class and enc_class is None:
            self.notes.append(f"PV1-2 {patient_class!r}: no Encounter.class")
        department, department_name = seg.get(10, 1).strip(), seg.get(10, 2).strip()
        if not department:
            department, department_name = seg.get(3, 1).strip(), seg.get(3, 9).strip()
        start, end = self.time(seg, 44), self.time(seg, 45)
        if not start:
            start = self.event_time()
            if self.event not in ADMIT_EVENTS:
                # A transfer or discharge without PV1-44: the visit keeps the arrival
                # an earlier message gave it (docs/HL7V2.md, PV1 → Encounter).
                self.inherit[("Encounter", self.visit)] = ("period.start",)
        if self.event == "A03" and not end:
            end = self.event_time()
        status = ENCOUNTER_STATUS.get(self.event)
        if self.event == "A08":
            status = "finished" if end else "in-progress"
        if status in ("in-progress", "planned"):
            end = None
        disposition = seg.get(36).strip()
        self.add(
            {
                "resourceType": "Encounter",
                "id": self.visit,
                "identifier": [
                    _prune({"system": NAMING_SYSTEM + "visit", "value": seg.get(19).strip()})
                ],
                "status": status,
                "class": {"system": ACT_CODE, "code": enc_class[0], "display": enc_class[1]}
                if enc_class
                else None,
                "subject": _ref("Patient", self.patient),
                "period": _prune({"start": start, "end": end}),
                "hospitalization": {"dischargeDisposition": self.table_coding("0112", disposition)}
                if disposition
                else None,
                "serviceProvider": _prune(
                    {"reference": f"Organization/{fhir_id(department)}", "display": department_name}
                )
                if department
                else None,
            }
        )

    def needs_visit(self, seg: Segment, what: str) -> str | None:
        if self.visit is None:
            self.problem(
                seg,
                REQUIRED_FIELD_MISSING,
                f"a {seg.id} without {what} needs PV1-19 (visit number)",
            )
        return self.visit

    def on_dg1(self, seg: Segment) -> None:
        own = seg.get(20).strip()
        rid = fhir_id(own) if own else None
        if rid is None and (visit := self.needs_visit(seg, "DG1-20")):
            rid = fhir_id(f"{visit}-dg{seg.get(1).strip() or seg.sequence}")
        code = self.codeable(seg, 3)
        if code is None:
            self.required(seg, 3, "diagnosis code")
        elif "text" not in code and seg.get(4).strip():
            code["text"] = seg.get(4).strip()
        if rid is None or code is None:
            return
        diagnosis_type = seg.get(6).strip()
        category = [{"system": CONDITION_CATEGORY, "code": "encounter-diagnosis"}]
        if diagnosis_type:
            category.append({"system": V2_TABLE + "0052", "code": diagnosis_type})
        deleted = seg.get(21).strip().upper() == "D"
        self.add(
            {
                "resourceType": "Condition",
                "id": rid,
                "clinicalStatus": None
                if deleted
                else {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
                "verificationStatus": {
                    "coding": [
                        {
                            "system": CONDITION_VERIFICATION,
                            "code": "entered-in-error" if deleted else "confirmed",
                        }
                    ]
                },
                "category": [{"coding": category}],
                "code": code,
                "subject": _ref("Patient", self.patient),
                "encounter": _ref("Encounter", self.visit),
                "onsetDateTime": self.time(seg, 5),
                "recordedDate": self.time(seg, 19) or self.msh_time,
            }
        )

    def on_pr1(self, seg: Segment) -> None:
        own = seg.get(19).strip()
        rid = fhir_id(own) if own else None
        if rid is None and (visit := self.needs_visit(seg, "PR1-19")):
            rid = fhir_id(f"{visit}-pr{seg.get(1).strip() or seg.sequence}")
        code = self.codeable(seg, 3)
        if code is None:
            self.required(seg, 3, "procedure code")
        start = self.time(seg, 5)
        if not start and not seg.get(5).strip():
            self.required(seg, 5, "procedure date/time")
        minutes = seg.get(7).strip()
        end = None
        if minutes:
            if not minutes.isdigit():
                self.problem(seg, DATA_TYPE_ERROR, f"PR1-7 {minutes!r} is not minutes", 7)
            elif start:
                moment = parse_ts_datetime(seg.get(5), self.tz)
                if moment is not None:
                    end = (moment + timedelta(minutes=int(minutes))).astimezone(self.tz).isoformat()
        if rid is None or code is None or not start:
            return
        functional = seg.get(6).strip()
        self.add(
            {
                "resourceType": "Procedure",
                "id": rid,
                "status": "completed",
                "category": self.table_coding("0230", functional) if functional else None,
                "code": code,
                "subject": _ref("Patient", self.patient),
                "encounter": _ref("Encounter", self.visit),
                "performedDateTime": start if end is None else None,
                "performedPeriod": {"start": start, "end": end} if end else None,
            }
        )

    # -- orders ---------------------------------------------------------------------------

    def on_orc(self, seg: Segment) -> None:
        self.close_report()
        self.order = _Order(
            placer=seg.get(2).strip(),
            filler=seg.get(3).strip(),
            control=seg.get(1).strip().upper(),
            status=seg.get(5).strip().upper(),
            authored=self.time(seg, 9),
        )
        self.last_request_segment = None
        if self.code in ("ORM", "OMG"):
            rid = self.order.placer or self.order.filler
            if not rid:
                self.problem(
                    seg, REQUIRED_FIELD_MISSING, "ORC-2 (placer order number) is required", 2
                )
                return
            self.service_request(self.order, rid)

    def service_request(self, order: _Order, rid: str) -> JSON:
        """The ServiceRequest an order group (ORC, or an OBR alone) stands for."""
        order.request = request = self.add(
            {
                "resourceType": "ServiceRequest",
                "id": fhir_id(rid),
                "status": self.service_status(order),
                "intent": "order",
                "subject": _ref("Patient", self.patient),
                "encounter": _ref("Encounter", self.visit),
                "authoredOn": order.authored or self.msh_time,
            }
        )
        return request

    @staticmethod
    def service_status(order: _Order) -> str:
        if order.control in _ORDER_CANCELLED | _ORDER_STOPPED:
            return "revoked"
        return {"CM": "completed", "CA": "revoked", "DC": "revoked", "HD": "on-hold"}.get(
            order.status, "active"
        )

    def on_obr(self, seg: Segment) -> None:
        order = self.order
        if self.code in ("ORM", "OMG"):
            request = order.request if order is not None else None
            if request is None:
                rid = seg.get(2).strip() or seg.get(3).strip()
                if order is None:
                    order = self.order = _Order(
                        placer=seg.get(2).strip(), filler=seg.get(3).strip()
                    )
                if not rid:
                    self.problem(
                        seg, REQUIRED_FIELD_MISSING, "OBR-2 (placer order number) is required", 2
                    )
                    return
                request = self.service_request(order, rid)
            code = self.codeable(seg, 4)
            if code is None:
                self.required(seg, 4, "universal service identifier")
            else:
                request["code"] = code
            return
        if self.code != "ORU":
            return
        self.close_report()
        rid = (
            seg.get(3).strip()
            or seg.get(2).strip()
            or (order.filler if order else "")
            or (order.placer if order else "")
        )
        if not rid:
            self.problem(seg, REQUIRED_FIELD_MISSING, "OBR-3 (filler order number) is required", 3)
        code = self.codeable(seg, 4)
        if code is None:
            self.required(seg, 4, "universal service identifier")
        status_code = seg.get(25).strip().upper()
        status = REPORT_STATUS.get(status_code or "F")
        if status is None:
            self.problem(
                seg, TABLE_VALUE_NOT_FOUND, f"OBR-25 {status_code!r} is not in table 0123", 25
            )
        section = seg.get(24).strip().upper()
        category = SERVICE_CATEGORY.get(section)
        effective = self.time(seg, 7)
        issued = self.time(seg, 22, instant=True)
        if seg.get(22).strip() and issued is None and not self.issues:
            self.notes.append("OBR-22 has no time of day: the report has no issued instant")
        if not rid or code is None or status is None:
            self.report = None
            return
        categories = [
            c
            for c in (
                {"coding": [{"system": OBSERVATION_CATEGORY, "code": category}]}
                if category
                else None,
                {"coding": [{"system": DIAGNOSTIC_SERVICE, "code": section}]} if section else None,
            )
            if c
        ]
        self.report = _Report(
            resource={
                "resourceType": "DiagnosticReport",
                "id": fhir_id(rid),
                "status": status,
                "category": categories,
                "code": code,
                "subject": _ref("Patient", self.patient),
                "encounter": _ref("Encounter", self.visit),
                "effectiveDateTime": effective,
                "issued": issued,
            },
            category=category,
            effective=effective,
            issued=issued,
        )
        self.last_observation = None

    def close_report(self) -> None:
        report, self.report = self.report, None
        self.last_observation = None
        if report is None:
            return
        report.resource["result"] = [
            {"reference": f"Observation/{o['id']}"} for o in report.observations
        ]
        report.resource["conclusion"] = "\n".join(report.notes)
        self.add(report.resource)
        for observation in report.observations:
            self.add(observation)

    def on_obx(self, seg: Segment) -> None:
        if self.code != "ORU":
            return  # an OBX in an order carries order details, not results
        report = self.report
        if report is None:
            if not any(i.segment == "OBR" for i in self.issues):
                self.problem(seg, SEGMENT_SEQUENCE, "an OBX must follow its OBR")
            return
        set_id = seg.get(1).strip() or str(len(report.observations) + 1)
        sub_id = seg.get(4).strip()
        raw_id = f"{report.resource['id']}-{set_id}" + (f".{sub_id}" if sub_id else "")
        code = self.codeable(seg, 3)
        if code is None:
            self.required(seg, 3, "observation identifier")
        status_code = seg.get(11).strip().upper()
        status = OBSERVATION_STATUS.get(status_code)
        if not status_code:
            self.required(seg, 11, "observation result status")
        elif status is None:
            self.problem(
                seg, TABLE_VALUE_NOT_FOUND, f"OBX-11 {status_code!r} is not in table 0085", 11
            )
        value = self.value(seg)
        interpretation = [
            {"coding": [{"system": INTERPRETATION, "code": flag}]}
            for i in range(1, (len(seg.fields[8]) if len(seg.fields) > 8 else 0) + 1)
            if (flag := seg.get(8, rep=i).strip())
        ]
        if code is None or status is None:
            return
        observation = {
            "resourceType": "Observation",
            "id": fhir_id(raw_id),
            "status": status,
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": report.category}]}]
            if report.category
            else None,
            "code": code,
            "subject": _ref("Patient", self.patient),
            "encounter": _ref("Encounter", self.visit),
            "effectiveDateTime": self.time(seg, 14) or report.effective,
            "issued": report.issued,
            "interpretation": interpretation,
            **value,
        }
        report.observations.append(observation)
        self.last_observation = observation

    def value(self, seg: Segment) -> JSON:
        value_type = seg.get(2).strip().upper()
        if not any(any(any(c) for c in r) for r in seg.reps(5)):
            return {}
        unit = seg.get(6, 1).strip()
        quantity_unit = (
            {"unit": unit, "system": UCUM, "code": unit}
            if unit and seg.get(6, 3).strip().upper() == "UCUM"
            else {"unit": unit}
            if unit
            else {}
        )
        match value_type:
            case "NM":
                text = seg.get(5).strip()
                if not _DECIMAL.fullmatch(text):
                    self.problem(seg, DATA_TYPE_ERROR, f"OBX-5 {text!r} is not a number (NM)", 5)
                    return {}
                return {"valueQuantity": {"value": _number(text), **quantity_unit}}
            case "SN":
                comparator, number = seg.get(5, 1).strip(), seg.get(5, 2).strip()
                if (
                    comparator in ("", "=", "<", ">", "<=", ">=")
                    and _DECIMAL.fullmatch(number)
                    and not seg.get(5, 3).strip()
                ):
                    quantity = {"value": _number(number), **quantity_unit}
                    if comparator not in ("", "="):
                        quantity["comparator"] = comparator
                    return {"valueQuantity": quantity}
                return {"valueString": seg.text(5)}
            case "CE" | "CWE" | "CNE":
                concept = self.codeable(seg, 5)
                return {"valueCodeableConcept": concept} if concept else {}
            case "TS" | "DTM" | "DT":
                moment = self.time(seg, 5)
                return {"valueDateTime": moment} if moment else {}
            case "ST" | "TX" | "FT" | "":
                texts = [seg.text(5, rep=i) for i in range(1, len(seg.fields[5]) + 1)]
                return {"valueString": "\n".join(t for t in texts if t)}
        self.notes.append(f"OBX[{seg.sequence}]-2 {value_type!r}: value not mapped")
        return {}

    def on_nte(self, seg: Segment) -> None:
        count = len(seg.fields[3]) if len(seg.fields) > 3 else 0
        texts = [seg.text(3, rep=i) for i in range(1, count + 1)]
        text = "\n".join(t for t in texts if t)
        if not text:
            return
        if self.last_observation is not None:
            self.last_observation.setdefault("note", []).append({"text": text})
        elif self.report is not None:
            self.report.notes.append(text)

    # -- pharmacy ---------------------------------------------------------------------------

    def order_id(self, seg: Segment) -> str | None:
        order = self.order
        rid = (order.placer or order.filler) if order else ""
        if not rid:
            self.problem(
                seg,
                REQUIRED_FIELD_MISSING,
                f"a {seg.id} needs its ORC with ORC-2 (placer order number)",
            )
            return None
        return rid

    def on_rxe(self, seg: Segment) -> None:
        if self.code != "RDE":
            return
        rid = self.order_id(seg)
        medication = self.codeable(seg, 2)
        if medication is None:
            self.required(seg, 2, "give code")
        if rid is None or medication is None or self.order is None:
            return
        order = self.order
        if order.control in _ORDER_CANCELLED:
            status = "cancelled"
        elif order.control in _ORDER_STOPPED:
            status = "stopped"
        else:
            status = {"CM": "completed", "HD": "on-hold", "CA": "cancelled", "DC": "stopped"}.get(
                order.status, "active"
            )
        dose = seg.get(3).strip()
        dose_unit = seg.get(5, 1).strip()
        dosage: JSON = {}
        if dose and _DECIMAL.fullmatch(dose):
            dosage["doseAndRate"] = [
                {"doseQuantity": _prune({"value": _number(dose), "unit": dose_unit})}
            ]
        elif dose:
            self.problem(seg, DATA_TYPE_ERROR, f"RXE-3 {dose!r} is not a number", 3)
        order.request = self.add(
            {
                "resourceType": "MedicationRequest",
                "id": fhir_id(rid),
                "status": status,
                "intent": "order",
                "medicationCodeableConcept": medication,
                "subject": _ref("Patient", self.patient),
                "encounter": _ref("Encounter", self.visit),
                "authoredOn": order.authored or self.msh_time,
                "dosageInstruction": [dosage] if dosage else None,
            }
        )
        self.last_request_segment = "RXE"

    def on_rxa(self, seg: Segment) -> None:
        if self.code != "RAS":
            return
        rid = self.order_id(seg)
        medication = self.codeable(seg, 5)
        if medication is None:
            self.required(seg, 5, "administered code")
        start = self.time(seg, 3)
        if not start and not seg.get(3).strip():
            self.required(seg, 3, "date/time start of administration")
        end = self.time(seg, 4)
        status_code = seg.get(20).strip().upper()
        status = ADMINISTRATION_STATUS.get(status_code or "CP")
        if status is None:
            self.problem(
                seg, TABLE_VALUE_NOT_FOUND, f"RXA-20 {status_code!r} is not in table 0322", 20
            )
        if seg.get(21).strip().upper() == "D":
            status = "entered-in-error"
        if rid is None or medication is None or not start or status is None or self.order is None:
            return
        amount, unit = seg.get(6).strip(), seg.get(7, 1).strip()
        dosage: JSON = {}
        if amount and _DECIMAL.fullmatch(amount) and float(amount) != 0:
            dosage["dose"] = _prune({"value": _number(amount), "unit": unit})
        sub = f"{seg.get(1).strip() or 0}-{seg.get(2).strip() or seg.sequence}"
        self.order.request = self.add(
            {
                "resourceType": "MedicationAdministration",
                "id": fhir_id(f"{rid}-{sub}"),
                "status": status,
                "medicationCodeableConcept": medication,
                "subject": _ref("Patient", self.patient),
                "context": _ref("Encounter", self.visit),
                "effectiveDateTime": start if not end else None,
                "effectivePeriod": {"start": start, "end": end} if end else None,
                "request": _ref("MedicationRequest", fhir_id(self.order.placer))
                if self.order.placer
                else None,
                "dosage": dosage or None,
            }
        )
        self.last_request_segment = "RXA"

    def on_rxr(self, seg: Segment) -> None:
        request = self.order.request if self.order else None
        route = self.codeable(seg, 1)
        if request is None or route is None or self.last_request_segment is None:
            return
        if request["resourceType"] == "MedicationRequest":
            dosages = request.setdefault("dosageInstruction", [{}])
            dosages[0].setdefault("route", route)
        elif request["resourceType"] == "MedicationAdministration":
            request.setdefault("dosage", {}).setdefault("route", route)


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def to_transaction(parsed: ParsedMessage, tz: ZoneInfo) -> Mapped:
    """One message → the PUT entries of one transaction; ``V2Rejected`` (``AE``) naming
    every content error when there is any."""
    walk = _Walk(parsed, tz)
    walk.run(segments(parsed))
    if walk.issues:
        raise V2Rejected(walk.issues)
    if walk.message_time is None:  # reported above; for the type checker
        raise V2Rejected([V2Issue("AE", REQUIRED_FIELD_MISSING, "MSH-7 is required", "MSH", 1, 7)])
    return Mapped(
        entries=[entry(r) for r in walk.resources],
        message_time=walk.message_time,
        visit_id=walk.visit,
        merge=walk.merge,
        notes=walk.notes,
        inherit=walk.inherit,
    )
