"""A FHIR transaction Bundle → the HL7 v2.5 ER7 messages a hospital's engine would send.

The inverse of ``services.hl7v2.mapping`` for test data, the bench and the demo: the
messages map back (through ``parse_message`` and ``to_transaction``) to the same
indicator-relevant content — codes and systems, times, statuses, categories,
interpretation, patient and encounter ids, department, class — and every resource
the messages write keeps the id it has in the Bundle, so references from other
resources and from later Bundles (``Communication.about``, a DELETE, a correction)
still name it.

What v2 cannot carry without changing that content goes to :attr:`Rendered.rest`,
to be posted as FHIR after the messages:

* resource types v2 has no segment for (Communication, RiskAssessment, AdverseEvent,
  Organization, …), DELETE entries, and a Patient no ADT message of this Bundle
  carries (only ADT messages write the Patient);
* a Condition or Procedure whose Encounter is not in the Bundle: an ``ADT^A08`` with
  a PV1 that holds only PV1-19 would rewrite the Encounter without class,
  department, discharge and status (the mapping inherits only ``period.start``);
* an Encounter with ``partOf`` or ``priority``, or a discharge disposition outside
  table 0112 (PV1-36 comes back as a v2-0112 code, so FHIR's ``exp`` would no
  longer say the patient died); a MedicationRequest/Administration whose category
  is more than the care setting (a ``discharge`` prescription);
* a resource with a coding system that does not survive the trip (a vendor or
  qcpulse URI that would come back as ``…/CodeSystem/hl7v2/{name}``, a coding
  without system), more than two codings in one concept, a status, category,
  ``reasonCode`` or time the mapping has no place for, a time the mapping would
  invent (an Encounter without arrival, a Condition with neither onset nor
  recorded date, an order without ``authoredOn``), or an id the mapping cannot
  reproduce (an Observation id must end in ``-{digits}``, a MedicationAdministration
  id in ``-{digits}-{digits}``: the mapping names them ``{order}-{OBX-1}`` and
  ``{order}-{RXA-1}-{RXA-2}``).

Known, deliberate differences: ``amended``/``appended`` results come back
``corrected`` (table 0085/0123 have no such code), an ``entered-in-error`` Encounter
comes back ``cancelled`` (A11; both void the episode), a Condition gains the
``encounter-diagnosis`` category and ``clinicalStatus`` ``active`` when it had
none, a DiagnosticReport gains the observation-category next to its v2-0074 section,
MedicationRequest/MedicationAdministration lose their care-setting category
(inpatient/outpatient, which the Encounter class already says), a
MedicationAdministration whose id does not start with its request's id loses
``request``, and a DiagnosticReport loses ``result``. Every OBR becomes a
DiagnosticReport: Observations without one in the Bundle are sent under an OBR
whose filler number is their id without the last ``-{digits}``, which therefore
appears as an extra DiagnosticReport.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from services.hl7v2.mapping import (
    CODING_SYSTEMS,
    CONDITION_CATEGORY,
    CONDITION_CLINICAL,
    CONDITION_VERIFICATION,
    DIAGNOSTIC_SERVICE,
    INTERPRETATION,
    LOCAL_SYSTEM,
    OBSERVATION_CATEGORY,
    OID,
    SERVICE_CATEGORY,
    UCUM,
    V2_TABLE,
    system_uri,
)

JSON = dict[str, Any]

__all__ = ["Rendered", "render_bundle", "v2_coding_system"]

_SHANGHAI = ZoneInfo("Asia/Shanghai")
_MED_REQUEST_SETTING = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
_MED_ADMIN_SETTING = "http://terminology.hl7.org/CodeSystem/medication-admin-category"
_SETTINGS = frozenset({"inpatient", "outpatient", "community"})

#: FHIR system → its v2 name: the mapping's table inverted (the first name wins).
_V2_NAMES: dict[str, str] = {}
for _name, _uri in CODING_SYSTEMS.items():
    _V2_NAMES.setdefault(_uri, _name)

_TABLE = re.compile(r"\d{4}")
_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")
_OBSERVATION_ID = re.compile(r"(.+)-(\d+)")
_ADMINISTRATION_ID = re.compile(r"(.+)-(\d+)-(\d+)")
_ESCAPES = {
    "\\": "\\E\\",
    "|": "\\F\\",
    "^": "\\S\\",
    "&": "\\T\\",
    "~": "\\R\\",
    "\r": "\\.br\\",
    "\n": "\\.br\\",
}

_CLASS = {"EMER": "E", "IMP": "I", "AMB": "O", "PRENC": "P"}
_GENDER = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
#: Encounter.status → ADT trigger (class decides A01/A04 for an open visit).
_OPEN = frozenset({"in-progress", "arrived", "triaged", "onleave"})
_STRUCTURE = {
    "A01": "ADT_A01",
    "A03": "ADT_A03",
    "A04": "ADT_A01",
    "A05": "ADT_A05",
    "A11": "ADT_A09",
}
_SECTION = {"imaging": "RAD", "laboratory": "LAB", "procedure": "EC"}
_OBSERVATION_STATUS = {
    "final": "F",
    "corrected": "C",
    "amended": "C",
    "preliminary": "P",
    "registered": "R",
    "entered-in-error": "D",
    "cancelled": "X",
}
_REPORT_STATUS = {
    "final": "F",
    "corrected": "C",
    "amended": "C",
    "appended": "C",
    "partial": "A",
    "preliminary": "P",
    "registered": "R",
    "cancelled": "X",
}
#: Order status → (ORC-1, ORC-5).
_MEDICATION_ORDER = {
    "active": ("NW", ""),
    "completed": ("SC", "CM"),
    "on-hold": ("HD", "HD"),
    "stopped": ("DC", "DC"),
    "cancelled": ("CA", "CA"),
}
_SERVICE_ORDER = {
    "active": ("NW", ""),
    "completed": ("SC", "CM"),
    "on-hold": ("HD", "HD"),
    "revoked": ("CA", "CA"),
}
_ADMINISTRATION_STATUS = {
    "completed": ("CP", ""),
    "in-progress": ("PA", ""),
    "not-done": ("NA", ""),
    "entered-in-error": ("", "D"),
}


@dataclass(frozen=True)
class Rendered:
    #: ER7 messages (UTF-8, segments ended by ``\r``), in the order to send.
    messages: list[bytes]
    #: Bundle entries v2 cannot carry, to post as FHIR after the messages; references
    #: to the Bundle's other entries are rewritten as ``Type/id``.
    rest: list[JSON]


def v2_coding_system(uri: str) -> str:
    """A FHIR system as a v2 coding system name (CWE-3): the mapping's table inverted,
    an OID for ``urn:oid:``, ``HL7nnnn`` for a v2 table, else the URI's last segment
    (``L`` when there is none)."""
    if uri in _V2_NAMES:
        return _V2_NAMES[uri]
    if uri.startswith("urn:oid:") and OID.fullmatch(uri[8:]):
        return uri[8:]
    if uri.startswith(V2_TABLE) and _TABLE.fullmatch(uri[len(V2_TABLE) :]):
        return "HL7" + uri[len(V2_TABLE) :]
    if uri.startswith(LOCAL_SYSTEM) and uri[len(LOCAL_SYSTEM) :]:
        return unquote(uri[len(LOCAL_SYSTEM) :])
    return re.split(r"[/:#]", uri.rstrip("/"))[-1] or "L"


def _round_trips(uri: Any) -> bool:
    return isinstance(uri, str) and bool(uri) and system_uri(v2_coding_system(uri)) == uri


def _esc(text: str) -> str:
    return "".join(_ESCAPES.get(c, c) for c in text.replace("\r\n", "\n"))


def _comp(*parts: str) -> str:
    """Components, each escaped; trailing empty ones dropped."""
    return "^".join(_esc(p) for p in parts).rstrip("^")


def _segment(name: str, values: dict[int, str]) -> str:
    last = max((k for k, v in values.items() if v), default=0)
    first = 2 if name == "MSH" else 1
    return f"{name}|" + "|".join(values.get(i, "") for i in range(first, last + 1))


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        return str(value)
    return format(Decimal(repr(value)), "f")


def _codings(concept: Any) -> list[JSON]:
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding") or () if isinstance(c, dict)]


def _all_codings(concepts: Any) -> list[JSON]:
    if isinstance(concepts, list):
        return [c for item in concepts for c in _codings(item)]
    return _codings(concepts)


def _cwe(concept: Any) -> str | None:
    """CE/CWE from a CodeableConcept (two codings at most: components 1–3 and 4–6);
    None when v2 cannot carry it unchanged, ``""`` when there is nothing."""
    if concept is None:
        return ""
    if not isinstance(concept, dict):
        return None
    codings = [c for c in _codings(concept) if c.get("code")]
    if len(codings) > 2:
        return None
    parts: list[str] = []
    for coding in codings:
        code, system = coding.get("code"), coding.get("system")
        if not isinstance(code, str) or code != code.strip() or not _round_trips(system):
            return None
        display = coding.get("display")
        parts += [code, display if isinstance(display, str) else "", v2_coding_system(str(system))]
    if not parts:
        text = concept.get("text")
        return _comp("", text) if isinstance(text, str) else ""
    return _comp(*parts)


def _status_code(concept: Any, system: str) -> set[str] | None:
    """The codes of a status concept, None when a coding has another system."""
    codes: set[str] = set()
    for coding in _codings(concept):
        if coding.get("system") != system:
            return None
        codes.add(str(coding.get("code")))
    return codes


class _Skip(Exception):
    """This resource goes to ``rest``."""


def _need(condition: bool) -> None:
    if not condition:
        raise _Skip


@dataclass(slots=True)
class _Obr:
    """One OBR and its OBX rows (``(set id, fields, notes)``)."""

    patient: str
    visit: str | None
    values: dict[int, str]
    notes: list[str]
    rows: list[tuple[dict[int, str], list[str]]] = field(default_factory=list)
    section: str = ""
    issued: str = ""
    effective: str = ""
    statuses: list[str] = field(default_factory=list)


class _Renderer:
    def __init__(
        self,
        bundle: JSON,
        *,
        facility: str,
        application: str,
        control_prefix: str,
        message_time: datetime,
        tz: ZoneInfo,
    ) -> None:
        if message_time.tzinfo is None or message_time.utcoffset() is None:
            raise ValueError("message_time must be timezone-aware")
        self.tz = tz
        self.facility = facility
        self.application = application
        self.prefix = control_prefix
        self.entries: list[JSON] = [e for e in bundle.get("entry") or () if isinstance(e, dict)]
        self.by_url: dict[str, tuple[str, str]] = {}
        self.by_key: dict[tuple[str, str], int] = {}
        for i, e in enumerate(self.entries):
            r = e.get("resource")
            if isinstance(r, dict) and isinstance(r.get("id"), str):
                key = (str(r.get("resourceType")), r["id"])
                self.by_key.setdefault(key, i)
                if isinstance(e.get("fullUrl"), str):
                    self.by_url[e["fullUrl"]] = key
        self.now = self.ts(message_time.isoformat()) or ""
        self.consumed: set[int] = set()
        self.messages: list[bytes] = []

    # -- values ---------------------------------------------------------------------

    def ts(self, value: Any) -> str | None:
        """FHIR date/dateTime/instant → v2 DTM in ``tz`` (``YYYYMMDDHHMMSS+ZZZZ``)."""
        if not isinstance(value, str) or not value:
            return None
        if "T" not in value:
            return value.replace("-", "") if _DATE.fullmatch(value) else None
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.tz)
        local = moment.astimezone(self.tz)
        text = local.strftime("%Y%m%d%H%M%S")
        fraction = f"{local.microsecond:06d}"[:4].rstrip("0")
        return text + (f".{fraction}" if fraction else "") + local.strftime("%z")

    def time(self, value: Any, *, required: bool = False, clock: bool = False) -> str:
        """A time that must survive: absent → ``""`` (or skip when required), unreadable
        → skip; ``clock``: must have a time of day (an instant)."""
        if value is None:
            _need(not required)
            return ""
        text = self.ts(value)
        _need(text is not None and (not clock or len(text) > 8))
        return text or ""

    def target(self, ref: Any, expected: str) -> str | None:
        """The id a reference names: a fullUrl of the Bundle, ``Type/id`` (relative or
        absolute), or a bare id."""
        if isinstance(ref, dict):
            ref = ref.get("reference")
        if not isinstance(ref, str) or not ref:
            return None
        key = self.by_url.get(ref)
        if key is None:
            if ref.startswith(("urn:", "#")):
                return None
            parts = ref.split("?")[0].rstrip("/").split("/")
            if len(parts) >= 4 and parts[-2] == "_history":
                parts = parts[:-2]
            key = (parts[-2], parts[-1]) if len(parts) >= 2 else (expected, parts[0])
        return key[1] if key[0] == expected and key[1] else None

    def resource(self, rtype: str, rid: str | None) -> JSON | None:
        index = self.by_key.get((rtype, rid or ""))
        return None if index is None else self.entries[index]["resource"]

    def subject(self, resource: JSON) -> str:
        patient = self.target(resource.get("subject"), "Patient")
        _need(patient is not None)
        return patient or ""

    def visit(self, resource: JSON, key: str = "encounter") -> str | None:
        ref = resource.get(key)
        if ref is None:
            return None
        visit = self.target(ref, "Encounter")
        _need(visit is not None)
        return visit

    def concept(self, value: Any, *, required: bool = False) -> str:
        text = _cwe(value)
        _need(text is not None and (bool(text) or not required))
        return text or ""

    # -- messages ---------------------------------------------------------------------

    def emit(self, kind: str, segments: list[str]) -> None:
        n = len(self.messages) + 1
        msh = _segment(
            "MSH",
            {
                2: "^~\\&",
                3: _comp(self.application),
                4: _comp(self.facility),
                5: "QCPULSE",
                6: "QCPULSE",
                7: self.now,
                9: kind,
                10: _esc(f"{self.prefix}-{n}"),
                11: "P",
                12: "2.5",
                18: "UNICODE UTF-8",
            },
        )
        self.messages.append(("\r".join([msh, *segments]) + "\r").encode("utf-8"))

    def pid(self, patient_id: str) -> tuple[str, bool]:
        """The PID, and whether it carries the Bundle's Patient."""
        values = {1: "1", 3: _comp(patient_id, "", "", "", "MR")}
        patient = self.resource("Patient", patient_id)
        if patient is None:
            return _segment("PID", values), False
        names = [n for n in patient.get("name") or () if isinstance(n, dict)]
        if names:
            family = names[0].get("family") or ""
            given = [g for g in names[0].get("given") or () if isinstance(g, str)]
            if not family and not given:
                family = names[0].get("text") or ""
            values[5] = _comp(str(family), *given[:2])
        birth = self.ts(patient.get("birthDate"))
        if birth:
            values[7] = birth[:8]
        values[8] = _GENDER.get(str(patient.get("gender")), "")
        died = self.ts(patient.get("deceasedDateTime"))
        if died:
            values[29] = died
            values[30] = "Y"
        elif isinstance(patient.get("deceasedBoolean"), bool):
            values[30] = "Y" if patient["deceasedBoolean"] else "N"
        return _segment("PID", values), True

    @staticmethod
    def thin_pv1(visit: str | None) -> list[str]:
        return [_segment("PV1", {1: "1", 19: _esc(visit)})] if visit else []

    def entries_of(self, rtype: str) -> Iterator[tuple[int, JSON]]:
        for i, e in enumerate(self.entries):
            r = e.get("resource")
            method = (e.get("request") or {}).get("method", "PUT")
            if (
                isinstance(r, dict)
                and r.get("resourceType") == rtype
                and isinstance(r.get("id"), str)
                and method in ("PUT", "POST")
                and i not in self.consumed
            ):
                yield i, r

    # -- ADT ------------------------------------------------------------------------------

    def adt(self, encounter: JSON) -> tuple[str, list[str], str]:
        eid = encounter["id"]
        patient = self.subject(encounter)
        status = encounter.get("status")
        cls = encounter.get("class")
        cls_code = cls.get("code") if isinstance(cls, dict) else None
        _need(cls_code is None or cls_code in _CLASS)
        if status in ("cancelled", "entered-in-error"):
            event = "A11"
        elif status == "finished":
            event = "A03"
        elif status == "planned":
            event = "A05"
        elif status in _OPEN:
            event = "A01" if cls_code == "IMP" else "A04"
        else:
            raise _Skip
        period = encounter.get("period") or {}
        start = self.time(period.get("start"), required=True)
        end = self.time(period.get("end"), required=event == "A03")
        values = {1: "1", 2: _CLASS.get(str(cls_code), ""), 19: _esc(eid), 44: start, 45: end}
        provider = encounter.get("serviceProvider")
        if provider is not None:
            department = self.target(provider, "Organization")
            _need(department is not None)
            display = provider.get("display") if isinstance(provider, dict) else None
            values[10] = _comp(department or "", display if isinstance(display, str) else "")
        # PV1-36 comes back in table 0112: a disposition in another system (FHIR's
        # discharge-disposition, whose ``exp`` says the patient died) would not.
        disposition = (encounter.get("hospitalization") or {}).get("dischargeDisposition")
        _need(all(c.get("system") == V2_TABLE + "0112" for c in _codings(disposition)))
        codes = [c.get("code") for c in _codings(disposition) if c.get("code")]
        if codes:
            values[36] = _esc(str(codes[0]))
        # No PV1 field carries the encounter a visit is part of, or its priority.
        _need("partOf" not in encounter and "priority" not in encounter)
        return event, [_segment("PV1", values)], patient

    def dg1(self, condition: JSON, n: int, visit: str, patient: str) -> str:
        _need(self.subject(condition) == patient and self.visit(condition) == visit)
        verification = _status_code(condition.get("verificationStatus"), CONDITION_VERIFICATION)
        deleted = verification == {"entered-in-error"}
        _need(deleted or (verification is not None and verification <= {"confirmed"}))
        clinical = _status_code(condition.get("clinicalStatus"), CONDITION_CLINICAL)
        _need(deleted or (clinical is not None and clinical <= {"active"}))
        diagnosis_type = ""
        for coding in _all_codings(condition.get("category")):
            if coding.get("system") == V2_TABLE + "0052" and not diagnosis_type:
                diagnosis_type = str(coding.get("code") or "")
            else:
                _need(
                    coding.get("system") == CONDITION_CATEGORY
                    and coding.get("code") == "encounter-diagnosis"
                )
        _need(not any(k.startswith("onset") and k != "onsetDateTime" for k in condition))
        onset = self.time(condition.get("onsetDateTime"))
        recorded = self.time(condition.get("recordedDate"))
        _need(bool(onset or recorded))
        values = {
            1: str(n),
            3: self.concept(condition.get("code"), required=True),
            5: onset,
            6: _esc(diagnosis_type),
            19: recorded,
            20: _esc(condition["id"]),
            21: "D" if deleted else "",
        }
        return _segment("DG1", values)

    def pr1(self, procedure: JSON, n: int, visit: str, patient: str) -> str:
        _need(self.subject(procedure) == patient and self.visit(procedure) == visit)
        _need(procedure.get("status") == "completed")
        functional = ""
        category = procedure.get("category")
        if category is not None:
            codings = _codings(category)
            _need(len(codings) == 1 and codings[0].get("system") == V2_TABLE + "0230")
            functional = str(codings[0].get("code") or "")
        minutes = ""
        if "performedPeriod" in procedure:
            period = procedure["performedPeriod"] or {}
            start = self.time(period.get("start"), required=True)
            if period.get("end") is not None:
                _need(len(start) > 8 and len(self.time(period["end"])) > 8)
                began = datetime.fromisoformat(str(period["start"]).replace("Z", "+00:00"))
                ended = datetime.fromisoformat(str(period["end"]).replace("Z", "+00:00"))
                seconds = (ended - began).total_seconds()
                _need(seconds >= 0 and seconds % 60 == 0)
                minutes = str(int(seconds // 60))
        else:
            start = self.time(procedure.get("performedDateTime"), required=True)
        values = {
            1: str(n),
            3: self.concept(procedure.get("code"), required=True),
            5: start,
            6: _esc(functional),
            7: minutes,
            19: _esc(procedure["id"]),
        }
        return _segment("PR1", values)

    def render_encounters(self) -> None:
        for index, encounter in list(self.entries_of("Encounter")):
            try:
                event, pv1, patient = self.adt(encounter)
            except _Skip:
                continue
            body: list[str] = []
            used: list[int] = []
            for rtype, build in (("Condition", self.dg1), ("Procedure", self.pr1)):
                n = 0
                for i, r in self.entries_of(rtype):
                    if self.target(r.get("encounter"), "Encounter") != encounter["id"]:
                        continue
                    try:
                        segment = build(r, n + 1, encounter["id"], patient)
                    except _Skip:
                        continue
                    n += 1
                    body.append(segment)
                    used.append(i)
            pid, carried = self.pid(patient)
            evn = _segment("EVN", {1: event, 2: self.now})
            self.emit(f"ADT^{event}^{_STRUCTURE[event]}", [evn, pid, *pv1, *body])
            self.consumed.update([index, *used])
            if carried:
                self.consumed.add(self.by_key[("Patient", patient)])

    # -- orders -----------------------------------------------------------------------------

    def routes(self, dosages: list[Any]) -> str:
        """RXR-1 from the first dosage; a route on any other cannot be carried."""
        routes = [d.get("route") for d in dosages if isinstance(d, dict)]
        _need(all(r is None for r in routes[1:]))
        return self.concept(routes[0] if routes else None)

    def setting_only(self, resource: JSON, system: str | None) -> None:
        """Only a care-setting category, which the Encounter class already says (a
        ``discharge`` prescription, 出院带药, is more than a setting)."""
        _need("reasonCode" not in resource and "reasonReference" not in resource)
        _need(
            all(
                c.get("system") == system and c.get("code") in _SETTINGS
                for c in _all_codings(resource.get("category"))
            )
        )

    def medication_request(self, request: JSON) -> list[str]:
        self.setting_only(request, _MED_REQUEST_SETTING)
        _need(request.get("status") in _MEDICATION_ORDER)
        control, order_status = _MEDICATION_ORDER[request["status"]]
        dosages = list(request.get("dosageInstruction") or ())
        dose: JSON = {}
        if dosages and isinstance(dosages[0], dict):
            rates = dosages[0].get("doseAndRate") or [{}]
            dose = (rates[0] or {}).get("doseQuantity") or {}
        orc = {
            1: control,
            2: _esc(request["id"]),
            5: order_status,
            9: self.time(request.get("authoredOn"), required=True),
        }
        rxe = {
            2: self.concept(request.get("medicationCodeableConcept"), required=True),
            3: _number(dose.get("value")) or "",
            5: _comp(str(dose.get("unit") or "")),
        }
        route = self.routes(dosages)
        out = [_segment("ORC", orc), _segment("RXE", rxe)]
        return out + ([_segment("RXR", {1: route})] if route else [])

    def administration(self, given: JSON) -> list[str]:
        self.setting_only(given, _MED_ADMIN_SETTING)
        shape = _ADMINISTRATION_ID.fullmatch(given["id"])
        _need(shape is not None and given.get("status") in _ADMINISTRATION_STATUS)
        assert shape is not None
        order, give, sub = shape.groups()
        completion, action = _ADMINISTRATION_STATUS[given["status"]]
        if "effectivePeriod" in given:
            period = given["effectivePeriod"] or {}
            start = self.time(period.get("start"), required=True)
            end = self.time(period.get("end"))
        else:
            start, end = self.time(given.get("effectiveDateTime"), required=True), ""
        dosage = given.get("dosage") or {}
        dose = dosage.get("dose") or {}
        requested = self.target(given.get("request"), "MedicationRequest")
        orc = {1: "RE", 2: _esc(order)} if requested == order else {1: "RE", 3: _esc(order)}
        rxa = {
            1: give,
            2: sub,
            3: start,
            4: end,
            5: self.concept(given.get("medicationCodeableConcept"), required=True),
            6: _number(dose.get("value")) or "0",
            7: _comp(str(dose.get("unit") or "")),
            20: completion,
            21: action,
        }
        route = self.concept(dosage.get("route"))
        out = [_segment("ORC", orc), _segment("RXA", rxa)]
        return out + ([_segment("RXR", {1: route})] if route else [])

    def service_request(self, request: JSON) -> list[str]:
        self.setting_only(request, None)
        _need(request.get("status") in _SERVICE_ORDER)
        control, order_status = _SERVICE_ORDER[request["status"]]
        orc = {
            1: control,
            2: _esc(request["id"]),
            5: order_status,
            9: self.time(request.get("authoredOn"), required=True),
        }
        code = self.concept(request.get("code"))
        out = [_segment("ORC", orc)]
        return out + ([_segment("OBR", {1: "1", 2: _esc(request["id"]), 4: code})] if code else [])

    def render_orders(self, *rtypes: str) -> None:
        kinds = {
            "ServiceRequest": ("ORM^O01^ORM_O01", self.service_request, "encounter"),
            "MedicationRequest": ("RDE^O11^RDE_O11", self.medication_request, "encounter"),
            "MedicationAdministration": ("RAS^O17^RAS_O17", self.administration, "context"),
        }
        for rtype in rtypes:
            kind, build, link = kinds[rtype]
            groups: dict[tuple[str, str | None], list[tuple[int, list[str]]]] = {}
            for i, r in list(self.entries_of(rtype)):
                try:
                    key = (self.subject(r), self.visit(r, link))
                    segments = build(r)
                except _Skip:
                    continue
                groups.setdefault(key, []).append((i, segments))
            for (patient, visit), orders in groups.items():
                pid, _ = self.pid(patient)
                body = [s for _, segs in orders for s in segs]
                self.emit(kind, [pid, *self.thin_pv1(visit), *body])
                self.consumed.update(i for i, _ in orders)

    # -- results ------------------------------------------------------------------------

    def report_obr(self, report: JSON) -> _Obr:
        _need("conclusionCode" not in report and report.get("status") in _REPORT_STATUS)
        patient, visit = self.subject(report), self.visit(report)
        sections, categories = set(), set()
        for coding in _all_codings(report.get("category")):
            system, code = coding.get("system"), str(coding.get("code"))
            if system == DIAGNOSTIC_SERVICE:
                sections.add(code)
            else:
                _need(system == OBSERVATION_CATEGORY and code in _SECTION)
                categories.add(code)
        _need(len(sections) <= 1 and len(categories) <= 1)
        section = next(iter(sections), "") or _SECTION.get(next(iter(categories), ""), "")
        _need(not categories or SERVICE_CATEGORY.get(section) in categories)
        effective = self.effective(report)
        issued = self.time(report.get("issued"), clock=True)
        based = [self.target(b, "ServiceRequest") for b in report.get("basedOn") or ()]
        values = {
            1: "1",
            2: _esc(next((b for b in based if b), "")),
            3: _esc(report["id"]),
            4: self.concept(report.get("code"), required=True),
            7: effective,
            22: issued,
            24: _esc(section),
            25: _REPORT_STATUS[report["status"]],
        }
        conclusion = report.get("conclusion")
        notes = [conclusion] if isinstance(conclusion, str) and conclusion else []
        return _Obr(patient, visit, values, notes, section=section, issued=issued)

    def effective(self, resource: JSON) -> str:
        if "effectivePeriod" in resource:
            period = resource["effectivePeriod"] or {}
            _need(period.get("end") is None)
            return self.time(period.get("start"), required=True)
        if "effectiveInstant" in resource:
            return self.time(resource["effectiveInstant"])
        return self.time(resource.get("effectiveDateTime"))

    def value(self, observation: JSON) -> tuple[str, str, str]:
        """(OBX-2, OBX-5, OBX-6)."""
        keys = [k for k in observation if k.startswith("value")]
        _need(len(keys) <= 1)
        if not keys:
            return "", "", ""
        value = observation[keys[0]]
        match keys[0]:
            case "valueQuantity":
                number = _number(value.get("value")) if isinstance(value, dict) else None
                _need(number is not None)
                assert isinstance(value, dict)
                code, unit = value.get("code"), value.get("unit")
                if value.get("system") == UCUM and code:
                    units = _comp(str(code), str(unit or ""), "UCUM")
                else:
                    units = _comp(str(code or unit or ""))
                comparator = value.get("comparator")
                if comparator:
                    _need(comparator in ("<", ">", "<=", ">="))
                    return "SN", _comp(str(comparator), number or ""), units
                return "NM", _esc(number or ""), units
            case "valueString":
                _need(isinstance(value, str))
                lines = str(value).replace("\r\n", "\n").split("\n")
                _need(all(lines))
                return ("ST" if len(lines) == 1 else "TX"), "~".join(map(_esc, lines)), ""
            case "valueCodeableConcept":
                return "CWE", self.concept(value, required=True), ""
            case "valueDateTime":
                return "DTM", self.time(value, required=True), ""
        raise _Skip

    def observation_row(self, observation: JSON) -> tuple[str, _Obr, dict[int, str], list[str]]:
        """The filler number the id needs, a standalone OBR for it, the OBX and notes."""
        shape = _OBSERVATION_ID.fullmatch(observation["id"])
        _need(shape is not None and observation.get("status") in _OBSERVATION_STATUS)
        assert shape is not None
        order, set_id = shape.groups()
        patient, visit = self.subject(observation), self.visit(observation)
        categories = set()
        for coding in _all_codings(observation.get("category")):
            _need(coding.get("system") == OBSERVATION_CATEGORY and coding.get("code") in _SECTION)
            categories.add(str(coding.get("code")))
        _need(len(categories) <= 1)
        section = _SECTION.get(next(iter(categories), ""), "")
        flags = []
        for coding in _all_codings(observation.get("interpretation")):
            _need(coding.get("system") == INTERPRETATION and bool(coding.get("code")))
            flags.append(_esc(str(coding["code"])))
        value_type, value, units = self.value(observation)
        code = self.concept(observation.get("code"), required=True)
        effective = self.effective(observation)
        issued = self.time(observation.get("issued"), clock=True)
        obx = {
            1: set_id,
            2: value_type,
            3: code,
            5: value,
            6: units,
            8: "~".join(flags),
            11: _OBSERVATION_STATUS[observation["status"]],
            14: effective,
        }
        notes = [n["text"] for n in observation.get("note") or () if isinstance(n, dict)]
        _need(all(isinstance(n, str) and n for n in notes))
        standalone = _Obr(
            patient,
            visit,
            {1: "1", 3: _esc(order), 4: code, 22: issued, 24: section},
            [],
            section=section,
            issued=issued,
            effective=effective,
            statuses=[observation["status"]],
        )
        return order, standalone, obx, notes

    def render_results(self) -> None:
        obrs: dict[tuple[str, ...], _Obr] = {}
        reports: dict[str, tuple[str, ...]] = {}
        used: dict[tuple[str, ...], list[int]] = {}
        rejected_reports: set[str] = set()
        for i, report in list(self.entries_of("DiagnosticReport")):
            try:
                obr = self.report_obr(report)
            except _Skip:
                rejected_reports.add(report["id"])
                continue
            key: tuple[str, ...] = ("report", report["id"])
            obrs[key], reports[report["id"]], used[key] = obr, key, [i]
        for i, observation in list(self.entries_of("Observation")):
            try:
                order, alone, obx, notes = self.observation_row(observation)
            except _Skip:
                continue
            if order in rejected_reports:
                continue
            key = reports.get(order) or (
                "alone",
                order,
                alone.patient,
                alone.visit or "",
                alone.section,
                alone.issued,
            )
            group = obrs.get(key)
            if group is None:
                group = obrs[key] = alone
                used[key] = []
            elif key[0] == "alone":
                group.statuses.append(alone.statuses[0])
                group.effective = group.effective and alone.effective
            if key[0] == "report" and (
                (group.patient, group.visit, group.section, group.issued)
                != (alone.patient, alone.visit, alone.section, alone.issued)
                or (not obx[14] and group.values.get(7))
            ):
                continue  # it would take the report's category, issued or effective
            group.rows.append((obx, notes))
            used[key].append(i)
        for key, obr in obrs.items():
            if key[0] == "alone":
                # OBR-7 only when it can never stand in for a missing OBX-14.
                obr.values[7] = obr.rows[0][0][14] if obr.effective else ""
                void = all(s in ("cancelled", "entered-in-error") for s in obr.statuses)
                obr.values[25] = "X" if void else _REPORT_STATUS.get(obr.statuses[0], "F")
            segments = [_segment("OBR", obr.values)]
            segments += [_segment("NTE", {1: "1", 3: _note(n)}) for n in obr.notes]
            for obx, notes in obr.rows:
                segments.append(_segment("OBX", obx))
                segments += [
                    _segment("NTE", {1: str(k), 3: _note(n)}) for k, n in enumerate(notes, 1)
                ]
            pid, _ = self.pid(obr.patient)
            self.emit("ORU^R01^ORU_R01", [pid, *self.thin_pv1(obr.visit), *segments])
            self.consumed.update(used[key])

    # -- the rest ----------------------------------------------------------------------

    def rewrite(self, node: Any) -> Any:
        """References to the Bundle's entries as ``Type/id``: the messages wrote some of
        them, so a fullUrl would no longer resolve."""
        if isinstance(node, list):
            return [self.rewrite(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {k: self.rewrite(v) for k, v in node.items()}
        ref = node.get("reference")
        if isinstance(ref, str) and ref in self.by_url:
            rtype, rid = self.by_url[ref]
            out["reference"] = f"{rtype}/{rid}"
        return out

    def rest(self) -> list[JSON]:
        out = []
        for i, e in enumerate(self.entries):
            if i in self.consumed:
                continue
            e = dict(e)
            if isinstance(e.get("resource"), dict):
                e["resource"] = self.rewrite(e["resource"])
            out.append(e)
        return out


def _note(text: str) -> str:
    return "~".join(_esc(line) for line in text.replace("\r\n", "\n").split("\n") if line)


def render_bundle(
    bundle: JSON,
    *,
    facility: str,
    application: str = "HIS",
    control_prefix: str,
    message_time: datetime,
    tz: ZoneInfo = _SHANGHAI,
) -> Rendered:
    """``bundle`` as v2 messages (ADT per Encounter with its DG1/PR1, then ORM, RDE,
    ORU, RAS) and the entries they cannot carry. MSH-7 is ``message_time``; MSH-10
    is ``{control_prefix}-{n}``, so ``control_prefix`` must be unique per Bundle (a
    repeated control id is answered with the first ACK and not applied)."""
    r = _Renderer(
        bundle,
        facility=facility,
        application=application,
        control_prefix=control_prefix,
        message_time=message_time,
        tz=tz,
    )
    r.render_encounters()
    r.render_orders("ServiceRequest", "MedicationRequest")
    r.render_results()
    r.render_orders("MedicationAdministration")
    return Rendered(messages=r.messages, rest=r.rest())
