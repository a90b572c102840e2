"""One episode's record, and the integration engine that ships it.

Pathways (``pathways.py``) decide *what happens* to a patient; the :class:`Chart`
turns that into FHIR resources and into the messages a real engine would emit:
several bundles per episode as care is documented, the Patient repeated in every
bundle (engines map each HL7 v2 PID segment to a Patient), an occasional bundle
that overtakes the registration message, retries of an unacknowledged bundle,
corrections and retractions. Those quirks are the point: ingest and the indicator
engine must give the same answer whatever the engine does, so the stream has to
contain them at realistic rates.

Rules that keep the stream coherent, because a real engine keeps them too: a
resource dict is never mutated after it was sent (a new version is a new dict);
versions of one resource are sent in clinical order; a retry goes out before the
next bundle of the same episode (engines deliver in order per patient); nothing
is sent before the patient arrived.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any, Literal

from qcpulse.synth import codes as c
from qcpulse.synth.clock import fhir_time, floor_minute, minutes
from qcpulse.synth.config import Department, HospitalConfig
from qcpulse.synth.people import Person, patient_resource
from qcpulse.synth.send import Note, Send

Resource = dict[str, Any]
EncounterClass = Literal["EMER", "IMP", "AMB"]
RiskLevel = Literal["low", "moderate", "high"]

_CLASS_DISPLAY: dict[EncounterClass, str] = {
    "EMER": "emergency",
    "IMP": "inpatient encounter",
    "AMB": "ambulatory",
}
_RISK_DISPLAY: dict[RiskLevel, str] = {"low": "低危", "moderate": "中危", "high": "高危"}
_ABBR = {
    "Condition": "cond",
    "Procedure": "proc",
    "MedicationRequest": "medreq",
    "MedicationAdministration": "medadm",
    "Observation": "obs",
    "DiagnosticReport": "dr",
    "ServiceRequest": "sr",
    "Communication": "comm",
    "RiskAssessment": "ra",
    "AdverseEvent": "ae",
}


@dataclass(slots=True)
class _Entry:
    method: Literal["PUT", "DELETE"]
    rtype: str
    rid: str
    resource: Resource | None


@dataclass(slots=True)
class _Member:
    """A finished member of the patient's journey: its Encounter id and its messages."""

    encounter_id: str
    messages: list[_Message]
    initial: _Message | None
    root: bool


@dataclass(slots=True)
class _Message:
    at: datetime
    note: Note
    entries: list[_Entry]
    order: float

    def keys(self) -> set[str]:
        return {f"{e.rtype}/{e.rid}" for e in self.entries}


def mrn_system(config: HospitalConfig) -> str:
    return f"{config.fhir_base}/sid/mrn"


def directory_resources(config: HospitalConfig) -> list[Resource]:
    """The hospital and its 科室 as Organizations, the targets of serviceProvider."""
    hospital: Resource = {
        "resourceType": "Organization",
        "id": config.tenant,
        "active": True,
        "type": [c.concept(c.ORGANIZATION_TYPE, "prov", "Healthcare Provider")],
        "name": config.name,
    }
    out = [hospital]
    for d in config.departments:
        out.append(
            {
                "resourceType": "Organization",
                "id": d.code,
                "active": True,
                "type": [c.concept(c.ORGANIZATION_TYPE, "dept", "Hospital Department")],
                "name": d.name,
                "alias": [d.name_en],
                "partOf": {"reference": f"Organization/{config.tenant}", "display": config.name},
            }
        )
    return out


def directory_bundle(config: HospitalConfig, at: datetime) -> Resource:
    entries = [
        {
            "fullUrl": f"{config.fhir_base}/Organization/{r['id']}",
            "resource": r,
            "request": {"method": "PUT", "url": f"Organization/{r['id']}"},
        }
        for r in directory_resources(config)
    ]
    return {
        "resourceType": "Bundle",
        "id": f"{config.tenant}-msg-directory",
        "type": "transaction",
        "timestamp": fhir_time(at),
        "entry": entries,
    }


class Chart:
    """Builds one journey's resources and queues the messages that carry them.

    A journey is usually one Encounter. It may hold more: an ED visit and the ward
    stay it became (:meth:`transfer`, a chain through ``Encounter.partOf``), or later
    episodes of the same patient (:meth:`readmit`: a readmission, next month's
    dialysis). Each Encounter is a *member* with its own messages and registration;
    resource ids are unique across the journey. ``arrival`` is the journey's door
    time until :meth:`readmit` moves it to the new episode's arrival; ``start`` is
    the current member's ``period.start``.
    """

    def __init__(
        self,
        *,
        config: HospitalConfig,
        rng: Random,
        number: int,
        person: Person,
        department: Department,
        encounter_class: EncounterClass,
        arrival: datetime,
    ) -> None:
        self.cfg = config
        self.rng = rng
        self.number = number
        self.person = person
        self.department = department
        self.encounter_class = encounter_class
        self.arrival = arrival
        self.start = arrival
        self.encounter_id = f"{config.tenant}-enc-{number:06d}"
        self.root_id = self.encounter_id
        #: The ward an ED visit becomes (set by the stream for chained journeys).
        self.ward: tuple[Department, EncounterClass] | None = None
        #: The ED system exports its visits late: the root may reach qcpulse after
        #: the ward stay that is ``partOf`` it.
        self.late_root = False
        self.part_of: str | None = None
        self.priority: tuple[str, str] | None = None
        self.who_icd10 = rng.random() < config.who_icd10_rate
        self.patient: Resource = patient_resource(person, mrn_system=mrn_system(config))
        self.patient_ref = {
            "reference": f"Patient/{person.patient_id}",
            "display": person.full_name,
        }
        self.encounter_ref = {"reference": f"Encounter/{self.encounter_id}"}
        self.department_ref = {
            "reference": f"Organization/{department.code}",
            "display": department.name,
        }
        radiology = config.department("radiology")
        self.radiology_ref = {
            "reference": f"Organization/{radiology.code}",
            "display": radiology.name,
        }
        self.encounter: Resource | None = None
        self.discharged_at: datetime | None = None
        self.deceased = False
        self._counters: dict[str, int] = {}
        self._messages: list[_Message] = []
        self._initial: _Message | None = None
        self._start_fix: datetime | None = None
        self._death_sent: datetime | None = None
        self._died_at: datetime | None = None
        self._deceased_patient: Resource | None = None
        self._done: list[_Member] = []
        self._member_count = 1
        self._bundle_count = 0

    # -- small helpers -------------------------------------------------------------

    def age(self) -> int:
        return self.person.age_on(self.arrival.date())

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def after(self, at: datetime, lo_min: float, hi_min: float) -> datetime:
        """A charted time ``lo``–``hi`` minutes after ``at``, to the minute."""
        return floor_minute(at + minutes(self.rng.uniform(lo_min, hi_min)))

    def new_id(self, abbr: str) -> str:
        k = self._counters.get(abbr, 0) + 1
        self._counters[abbr] = k
        return f"{self.cfg.tenant}-{abbr}-{self.number:06d}-{k:02d}"

    def _diagnosis_code(self, dx: c.Dx) -> Resource:
        if self.who_icd10:
            return c.concept(c.ICD10_WHO, dx.who, dx.name)
        return c.concept(c.ICD10_CN, dx.cn, dx.name)

    # -- resources -------------------------------------------------------------------

    def encounter_version(
        self,
        *,
        status: str,
        start: str,
        end: datetime | None = None,
        disposition: tuple[str, str] | None = None,
    ) -> Resource:
        number_system = "inpatient-no" if self.encounter_class == "IMP" else "visit-no"
        suffix = f"-{self._member_count}" if self._member_count > 1 else ""
        period: Resource = {"start": start}
        if end is not None:
            period["end"] = fhir_time(end)
        enc: Resource = {
            "resourceType": "Encounter",
            "id": self.encounter_id,
            "identifier": [
                {
                    "system": f"{self.cfg.fhir_base}/sid/{number_system}",
                    "value": f"{self.encounter_class[0]}{self.number:08d}{suffix}",
                }
            ],
            "status": status,
            "class": c.coding(
                c.ACT_CODE, self.encounter_class, _CLASS_DISPLAY[self.encounter_class]
            ),
        }
        if self.priority is not None:
            enc["priority"] = c.concept(c.ACT_PRIORITY, *self.priority)
        enc["subject"] = self.patient_ref
        enc["period"] = period
        if self.part_of is not None:
            enc["partOf"] = {"reference": f"Encounter/{self.part_of}"}
        enc["serviceProvider"] = self.department_ref
        if disposition is not None:
            enc["hospitalization"] = {
                "dischargeDisposition": c.concept(c.DISCHARGE_DISPOSITION, *disposition)
            }
        return enc

    def condition(
        self,
        dx: c.Dx,
        *,
        recorded: datetime,
        onset: datetime | None = None,
        category: str = "encounter-diagnosis",
    ) -> Resource:
        res: Resource = {
            "resourceType": "Condition",
            "id": self.new_id("cond"),
            "clinicalStatus": c.concept(c.CONDITION_CLINICAL, "active"),
            "verificationStatus": c.concept(c.CONDITION_VERIFICATION, "confirmed"),
            "category": [c.concept(c.CONDITION_CATEGORY, category)],
            "code": self._diagnosis_code(dx),
            "subject": self.patient_ref,
            "encounter": self.encounter_ref,
        }
        if onset is not None:
            res["onsetDateTime"] = fhir_time(onset)
        res["recordedDate"] = fhir_time(recorded)
        return res

    def admission_diagnosis(self, dx: c.Dx, *, onset: datetime | None = None) -> Resource:
        """The diagnosis on the admission slip (入院证), recorded when the patient registers."""
        return self.condition(dx, recorded=floor_minute(self.start), onset=onset)

    def recode(self, condition: Resource, dx: c.Dx) -> Resource:
        return {**condition, "code": self._diagnosis_code(dx)}

    def procedure(
        self,
        code: Resource,
        *,
        start: datetime,
        end: datetime | None = None,
        category: Resource | None = None,
        status: str = "completed",
        running: bool = False,
    ) -> Resource:
        """``running``: started and not yet finished (``in-progress``, open period)."""
        res: Resource = {
            "resourceType": "Procedure",
            "id": self.new_id("proc"),
            "status": "in-progress" if running else status,
        }
        if category is not None:
            res["category"] = category
        res["code"] = code
        res["subject"] = self.patient_ref
        res["encounter"] = self.encounter_ref
        if running:
            res["performedPeriod"] = {"start": fhir_time(start)}
        elif end is None:
            res["performedDateTime"] = fhir_time(start)
        else:
            res["performedPeriod"] = {"start": fhir_time(start), "end": fhir_time(end)}
        res["performer"] = [{"actor": self.department_ref}]
        return res

    def _drug_concept(self, drug: c.Drug) -> Resource:
        return c.concept(c.ATC, drug.atc, drug.name)

    def _dose(self, drug: c.Drug, amount: float | None) -> Resource:
        return {
            "value": drug.dose if amount is None else amount,
            "unit": drug.unit,
            "system": c.UCUM,
            "code": drug.unit,
        }

    def medication_request(
        self,
        drug: c.Drug,
        *,
        authored: datetime,
        prophylaxis: bool = False,
        status: str = "active",
        route: tuple[str, str] | None = None,
        setting: str | None = None,
        dose: float | None = None,
    ) -> Resource:
        """``setting``: the medicationrequest-category code (``discharge`` for 出院带药);
        by default the care setting of the Encounter."""
        setting = setting or ("inpatient" if self.encounter_class == "IMP" else "outpatient")
        category = [c.concept(c.MED_REQUEST_CATEGORY, setting)]
        if prophylaxis:
            category.append(c.concept(c.QC, "prophylaxis", "预防用药"))
        rt = route or drug.route
        return {
            "resourceType": "MedicationRequest",
            "id": self.new_id("medreq"),
            "status": status,
            "intent": "order",
            "category": category,
            "medicationCodeableConcept": self._drug_concept(drug),
            "subject": self.patient_ref,
            "encounter": self.encounter_ref,
            "authoredOn": fhir_time(authored),
            "dosageInstruction": [
                {
                    "text": f"{drug.name} {drug.dose if dose is None else dose:g}{drug.unit}",
                    "route": c.concept(c.SNOMED, rt[0], rt[1]),
                    "doseAndRate": [{"doseQuantity": self._dose(drug, dose)}],
                }
            ],
        }

    def administration(
        self,
        drug: c.Drug,
        *,
        at: datetime,
        end: datetime | None = None,
        request: Resource | None = None,
        prophylaxis: bool = False,
        amount: float | None = None,
        route: tuple[str, str] | None = None,
        running: bool = False,
    ) -> Resource:
        """``running``: an infusion still going, charted with an open period."""
        rt = route or drug.route
        res: Resource = {
            "resourceType": "MedicationAdministration",
            "id": self.new_id("medadm"),
            "status": "in-progress" if running else "completed",
            "category": c.concept(
                c.MED_ADMIN_CATEGORY,
                "inpatient" if self.encounter_class == "IMP" else "outpatient",
            ),
            "medicationCodeableConcept": self._drug_concept(drug),
            "subject": self.patient_ref,
            # R4 names the encounter link of an administration ``context``.
            "context": self.encounter_ref,
        }
        if running:
            res["effectivePeriod"] = {"start": fhir_time(at)}
        elif end is None:
            res["effectiveDateTime"] = fhir_time(at)
        else:
            res["effectivePeriod"] = {"start": fhir_time(at), "end": fhir_time(end)}
        if prophylaxis:
            res["reasonCode"] = [c.concept(c.QC, "prophylaxis", "预防用药")]
        if request is not None:
            res["request"] = {"reference": f"MedicationRequest/{request['id']}"}
        res["dosage"] = {
            "route": c.concept(c.SNOMED, rt[0], rt[1]),
            "dose": self._dose(drug, amount),
        }
        return res

    def lab(
        self,
        lab: c.Lab,
        value: float,
        *,
        collected: datetime,
        issued: datetime,
        unit: str | None = None,
        scale: float = 1.0,
        decimals: int | None = None,
    ) -> Resource:
        """``unit``, ``scale``, ``decimals``: the result as a LIS reports it in another
        unit (``value`` and the reference range are already multiplied by ``scale``)."""
        value = round(value, lab.decimals if decimals is None else decimals)
        low = round(lab.low * scale, lab.decimals if decimals is None else decimals)
        high = round(lab.high * scale, lab.decimals if decimals is None else decimals)
        unit = unit or lab.unit
        flag = "H" if value > high else "L" if value < low else "N"
        return {
            "resourceType": "Observation",
            "id": self.new_id("obs"),
            "status": "final",
            "category": [c.concept(c.OBS_CATEGORY, "laboratory", "Laboratory")],
            "code": c.concept(c.LOINC, lab.loinc, lab.name),
            "subject": self.patient_ref,
            "encounter": self.encounter_ref,
            "effectiveDateTime": fhir_time(collected),
            "issued": fhir_time(issued),
            "valueQuantity": {
                "value": value,
                "unit": unit,
                "system": c.UCUM,
                "code": unit,
            },
            "interpretation": [c.concept(c.INTERPRETATION, flag)],
            "referenceRange": [
                {
                    "low": {"value": low, "unit": unit, "system": c.UCUM, "code": unit},
                    "high": {"value": high, "unit": unit, "system": c.UCUM, "code": unit},
                }
            ],
        }

    def culture(self, test: tuple[str, str], *, collected: datetime) -> Resource:
        """A culture as the LIS registers it at specimen collection (no result yet)."""
        return {
            "resourceType": "Observation",
            "id": self.new_id("obs"),
            "status": "registered",
            "category": [c.concept(c.OBS_CATEGORY, "laboratory", "Laboratory")],
            "code": c.concept(c.LOINC, test[0], test[1]),
            "subject": self.patient_ref,
            "encounter": self.encounter_ref,
            "effectiveDateTime": fhir_time(collected),
        }

    def culture_result(self, registered: Resource, *, issued: datetime) -> Resource:
        growth = self.rng.choice(c.CULTURE_RESULTS)
        return {
            **registered,
            "status": "final",
            "issued": fhir_time(issued),
            "valueString": growth,
            "interpretation": [
                c.concept(c.INTERPRETATION, "N" if growth == c.CULTURE_RESULTS[0] else "POS")
            ],
        }

    def ecg(self, *, at: datetime, finding: str) -> Resource:
        return {
            "resourceType": "Observation",
            "id": self.new_id("obs"),
            "status": "final",
            "category": [c.concept(c.OBS_CATEGORY, "procedure", "Procedure")],
            "code": c.concept(c.LOINC, c.ECG[0], c.ECG[1]),
            "subject": self.patient_ref,
            "encounter": self.encounter_ref,
            "effectiveDateTime": fhir_time(at),
            "issued": fhir_time(at + minutes(3)),
            "valueString": finding,
        }

    def service_request(self, study: c.Imaging, *, authored: datetime) -> Resource:
        return {
            "resourceType": "ServiceRequest",
            "id": self.new_id("sr"),
            "status": "active",
            "intent": "order",
            "category": [c.concept(c.SNOMED, "363679005", "Imaging")],
            "code": c.concept(c.LOINC, study.loinc, study.name),
            "subject": self.patient_ref,
            "encounter": self.encounter_ref,
            "authoredOn": fhir_time(authored),
            "performer": [self.radiology_ref],
        }

    def imaging(
        self,
        study: c.Imaging,
        *,
        performed: datetime,
        issued: datetime,
        finding: str,
        interpretation: str,
    ) -> Resource:
        return {
            "resourceType": "Observation",
            "id": self.new_id("obs"),
            "status": "final",
            "category": [c.concept(c.OBS_CATEGORY, "imaging", "Imaging")],
            "code": c.concept(c.LOINC, study.loinc, study.name),
            "subject": self.patient_ref,
            "encounter": self.encounter_ref,
            "effectiveDateTime": fhir_time(performed),
            "issued": fhir_time(issued),
            "performer": [self.radiology_ref],
            "valueString": finding,
            "interpretation": [c.concept(c.INTERPRETATION, interpretation)],
        }

    def imaging_report(
        self,
        study: c.Imaging,
        *,
        observation: Resource,
        order: Resource | None,
        performed: datetime,
        issued: datetime,
    ) -> Resource:
        res: Resource = {
            "resourceType": "DiagnosticReport",
            "id": self.new_id("dr"),
        }
        if order is not None:
            res["basedOn"] = [{"reference": f"ServiceRequest/{order['id']}"}]
        res.update(
            {
                "status": "final",
                "category": [c.concept(c.DIAGNOSTIC_SERVICE, "RAD", "Radiology")],
                "code": c.concept(c.LOINC, study.loinc, study.name),
                "subject": self.patient_ref,
                "encounter": self.encounter_ref,
                "effectiveDateTime": fhir_time(performed),
                "issued": fhir_time(issued),
                "performer": [self.radiology_ref],
                "result": [{"reference": f"Observation/{observation['id']}"}],
                "conclusion": observation["valueString"],
            }
        )
        return res

    def critical_notice(
        self,
        observation: Resource,
        *,
        sent: datetime,
        with_encounter: bool,
    ) -> Resource:
        res: Resource = {
            "resourceType": "Communication",
            "id": self.new_id("comm"),
            "status": "completed",
            "category": [c.concept(c.COMMUNICATION_CATEGORY, "alert", "Alert")],
            "priority": "stat",
            "subject": self.patient_ref,
            "about": [{"reference": f"Observation/{observation['id']}"}],
        }
        if with_encounter:
            res["encounter"] = self.encounter_ref
        res.update(
            {
                "sent": fhir_time(sent),
                "received": fhir_time(sent + minutes(self.rng.randint(0, 3))),
                "recipient": [self.department_ref],
                "sender": self.radiology_ref,
                "payload": [
                    {
                        "contentString": (
                            f"放射科危急值：{observation['valueString']}，已电话通知临床医生"
                        )
                    }
                ],
            }
        )
        return res

    def risk(
        self,
        code: str,
        display: str,
        *,
        at: datetime,
        level: RiskLevel,
        outcome: str,
        method: str | None = None,
    ) -> Resource:
        res: Resource = {
            "resourceType": "RiskAssessment",
            "id": self.new_id("ra"),
            "status": "final",
        }
        if method is not None:
            res["method"] = {"text": method}
        res.update(
            {
                "code": c.concept(c.QC, code, display),
                "subject": self.patient_ref,
                "encounter": self.encounter_ref,
                "occurrenceDateTime": fhir_time(at),
                "prediction": [
                    {
                        "outcome": {"text": outcome},
                        "qualitativeRisk": c.concept(
                            c.RISK_PROBABILITY, level, _RISK_DISPLAY[level]
                        ),
                    }
                ],
            }
        )
        return res

    def adverse_event(self, *, at: datetime, recorded: datetime) -> Resource:
        system, code, name, category = self.rng.choice(c.ADVERSE_EVENTS)
        event: Resource = c.concept(system, code, name) if system and code else {"text": name}
        actual = self.chance(0.8)
        serious = self.chance(0.15)
        return {
            "resourceType": "AdverseEvent",
            "id": self.new_id("ae"),
            "actuality": "actual" if actual else "potential",
            "category": [c.concept(c.AE_CATEGORY, category)],
            "event": event,
            "subject": self.patient_ref,
            "encounter": self.encounter_ref,
            "date": fhir_time(at),
            "recordedDate": fhir_time(recorded),
            "seriousness": c.concept(c.AE_SERIOUSNESS, "serious" if serious else "non-serious"),
            "severity": c.concept(
                c.AE_SEVERITY, "severe" if serious else self.rng.choice(("mild", "moderate"))
            ),
            "recorder": self.department_ref,
        }

    # -- messages ----------------------------------------------------------------------

    def _queue(self, at: datetime, note: Note, entries: list[_Entry]) -> _Message:
        # Nothing is documented before it happened: a bundle leaves no earlier than
        # the latest time its resources state (pathways aim for that; this enforces it).
        stated = max((_latest_time(e.resource) for e in entries if e.resource), default="")
        if stated and datetime.fromisoformat(stated) > at:
            at = datetime.fromisoformat(stated) + timedelta(seconds=self.rng.randint(10, 300))
        at = max(at, self.start).astimezone(UTC).replace(microsecond=0)
        msg = _Message(at=at, note=note, entries=entries, order=float(len(self._messages)))
        self._messages.append(msg)
        return msg

    def send(self, at: datetime, *resources: Resource, note: Note = "update") -> None:
        """Queue one bundle sent at ``at``: the Patient, then ``resources`` as PUTs."""
        if not 1 <= len(resources) <= 14:
            raise ValueError("a bundle carries 1–14 resources besides the Patient")
        self._queue(at, note, [_Entry("PUT", r["resourceType"], r["id"], r) for r in resources])

    def admit(self, *resources: Resource, start_error_min: float = 0.0) -> None:
        """The registration/admission bundle: Encounter in progress plus ``resources``.

        A positive ``start_error_min`` charts the arrival that much late (the
        registration clerk's clock, not triage); a later correction fixes it.
        """
        charted = fhir_time(floor_minute(self.start + minutes(start_error_min)))
        self.encounter = self.encounter_version(status="in-progress", start=charted)
        entries = [_Entry("PUT", "Encounter", self.encounter_id, self.encounter)]
        entries.extend(_Entry("PUT", r["resourceType"], r["id"], r) for r in resources)
        at = self.after(self.start, 1, 6) + timedelta(seconds=self.rng.randrange(60))
        self._initial = self._queue(at, "initial", entries)
        self._initial.order = -1.0  # ties with bumped messages: registration goes first
        if start_error_min > 0:
            self._start_fix = self.after(self.start, 60, 600)

    def _fix_start(self, at: datetime) -> None:
        assert self.encounter is not None
        self._start_fix = None
        period = {**self.encounter["period"], "start": fhir_time(floor_minute(self.start))}
        self.encounter = {**self.encounter, "period": period}
        self.send(at, self.encounter, note="correction")

    def discharge(
        self,
        at: datetime,
        *resources: Resource,
        disposition: tuple[str, str] | None = ("home", "Home"),
        died: bool = False,
        died_at: datetime | None = None,
    ) -> None:
        """Finish the Encounter at ``at``; the discharge bundle follows some minutes later.

        ``died``: the master index records the death (``Patient.deceasedDateTime``,
        ``died_at`` or else the discharge time) from this bundle on, whatever the
        disposition says.
        """
        assert self.encounter is not None, "admit() before discharge()"
        at = floor_minute(at)
        sent = self.after(at, 2, 90)
        if self._start_fix is not None and self._start_fix < sent:
            self._fix_start(self._start_fix)
        enc = self.encounter_version(
            status="finished",
            start=self.encounter["period"]["start"],
            end=at,
            disposition=disposition,
        )
        self.encounter = enc
        self.discharged_at = at
        self.send(sent, enc, *resources, note="discharge")
        if died:
            self.deceased = True
            self._death_sent = self._messages[-1].at
            self._died_at = floor_minute(died_at or at)
        if self._start_fix is not None:
            self._fix_start(self.after(sent, 30, 2880))

    def dies_later(self, at: datetime) -> None:
        """The patient dies at ``at``, after discharge; the master index learns it a day
        or two later and the engine re-sends the last Encounter with the Patient."""
        assert self.encounter is not None
        assert self.discharged_at is not None
        self.deceased = True
        self._died_at = floor_minute(at)
        self.send(self.after(at, 6 * 60, 2 * 1440), self.encounter)
        self._death_sent = self._messages[-1].at

    def _begin_member(
        self,
        at: datetime,
        department: Department,
        encounter_class: EncounterClass,
        *,
        part_of: str | None,
        priority: tuple[str, str] | None,
    ) -> None:
        if self._start_fix is not None:
            self._fix_start(self._start_fix)
        self._done.append(
            _Member(
                self.encounter_id,
                self._messages,
                self._initial,
                root=self.encounter_id == self.root_id,
            )
        )
        self._messages = []
        self._initial = None
        self._member_count += 1
        self.encounter_id = f"{self.root_id}-{self._member_count}"
        self.encounter_ref = {"reference": f"Encounter/{self.encounter_id}"}
        self.department = department
        self.department_ref = {
            "reference": f"Organization/{department.code}",
            "display": department.name,
        }
        self.encounter_class = encounter_class
        self.encounter = None
        self.discharged_at = None
        self.start = floor_minute(at)
        self.part_of = part_of
        self.priority = priority

    def transfer(
        self, at: datetime, *dxs: c.Dx, priority: tuple[str, str] | None = None
    ) -> list[Resource]:
        """The ED visit ends at ``at`` and becomes a ward stay ``partOf`` it (收入院).

        The ED Encounter is finished without a disposition (the patient did not leave
        the hospital); the ward Encounter is registered with ``dxs`` as its admission
        diagnoses, which are returned.
        """
        assert self.ward is not None, "transfer() needs a chained journey"
        assert self.encounter is not None
        assert self.discharged_at is None
        department, encounter_class = self.ward
        self.ward = None
        at = floor_minute(at)
        self.discharge(at, disposition=None)
        self._begin_member(
            at, department, encounter_class, part_of=self.encounter_id, priority=priority
        )
        conditions = [self.admission_diagnosis(dx) for dx in dxs]
        self.admit(*conditions)
        return conditions

    @property
    def chained(self) -> bool:
        """An ED visit that will become a ward stay (:meth:`transfer` still to come)."""
        return self.ward is not None

    def readmit(
        self,
        at: datetime,
        department: Department,
        encounter_class: EncounterClass,
        *dxs: c.Dx,
        priority: tuple[str, str] | None = None,
    ) -> list[Resource]:
        """A later episode of the same patient arriving at ``at`` (the new ``arrival``),
        registered with ``dxs`` as admission diagnoses (returned)."""
        assert self.discharged_at is not None, "discharge() before readmit()"
        self._begin_member(at, department, encounter_class, part_of=None, priority=priority)
        self.arrival = self.start
        conditions = [self.admission_diagnosis(dx) for dx in dxs]
        self.admit(*conditions)
        return conditions

    def icd9(self, code: tuple[str, str]) -> Resource:
        """An ICD-9-CM-3 procedure code: 国临版, or the WHO code on older interfaces."""
        code_cn, name = code
        if self.who_icd10:
            return c.concept(c.ICD9CM_WHO, code_cn[:5], name)
        return c.concept(c.ICD9CM3_CN, code_cn, name)

    def correct(self, at: datetime, new_version: Resource) -> None:
        self.send(at, new_version, note="correction")

    def finished(self, running: Resource, end: datetime) -> Resource:
        """The completed version of an in-progress infusion or procedure."""
        key = (
            "effectivePeriod"
            if running["resourceType"] == "MedicationAdministration"
            else ("performedPeriod")
        )
        return {**running, "status": "completed", key: {**running[key], "end": fhir_time(end)}}

    def retract(self, at: datetime, resource: Resource, *, delete: bool = False) -> None:
        """Withdraw ``resource``: a DELETE, or a version marked entered-in-error."""
        rtype, rid = resource["resourceType"], resource["id"]
        # AdverseEvent has no status in R4, so a DELETE is the only way to withdraw it.
        if delete or rtype == "AdverseEvent":
            self._queue(at, "retraction", [_Entry("DELETE", rtype, rid, None)])
            return
        self.send(at, entered_in_error(resource), note="retraction")

    def maybe_duplicate(self, resource: Resource, sent: datetime) -> None:
        """An engine bug seen in practice: the same fact twice under two ids, one withdrawn later.

        Sent as its own bundle shortly after the original, then retracted hours
        later; counts must not change either way.
        """
        if not self.chance(self.cfg.retraction_rate):
            return
        dup = {**resource, "id": self.new_id(_ABBR[resource["resourceType"]])}
        self.send(sent + minutes(self.rng.uniform(1, 30)), dup)
        self.retract(self.after(sent, 60, 2880), dup, delete=self.chance(0.4))

    def maybe_withdraw(self, resource: Resource, sent: datetime) -> bool:
        """Documented on the wrong patient and withdrawn: the fact never happened."""
        if not self.chance(self.cfg.retraction_rate / 2):
            return False
        self.retract(self.after(sent, 30, 1440), resource, delete=self.chance(0.3))
        return True

    # -- the engine ----------------------------------------------------------------------

    def finish(self) -> list[Send]:
        """Bundles for this journey, ordered by send time, with the engine's quirks applied."""
        if self._initial is None:
            raise RuntimeError("pathway never admitted the patient")
        if self._start_fix is not None:
            self._fix_start(self._start_fix)
        current = _Member(
            self.encounter_id,
            self._messages,
            self._initial,
            root=self.encounter_id == self.root_id,
        )
        members = [*self._done, current]
        for member in members:
            if member.initial is None:
                raise RuntimeError(f"{member.encounter_id} was never registered")
            self._engine_order(member)
        if self.late_root and len(members) > 1 and members[1].initial is not None:
            # The ED system's visits reach the engine in a later batch: every message
            # of the root moves behind the ward stay's registration, in order.
            root = members[0]
            assert root.initial is not None
            first = min(m.at for m in root.messages)
            target = members[1].initial.at + minutes(self.rng.uniform(5, 240))
            if target > first:
                shift = target - first
                for m in root.messages:
                    m.at = (m.at + shift).replace(microsecond=0)
        out: list[tuple[datetime, int, Send]] = []
        for member in members:
            for send in self._member_sends(member):
                out.append((send.at, len(out), send))
        out.sort(key=lambda t: (t[0], t[1]))
        return [send for _, _, send in out]

    def _engine_order(self, member: _Member) -> None:
        initial = member.initial
        assert initial is not None
        others = [m for m in member.messages if m is not initial]
        delayed = bool(others) and self.chance(self.cfg.early_rate)
        if delayed:
            self._delay_registration(initial, others)
        for m in others:
            if m.at < initial.at:
                if delayed and m.note == "update":
                    m.note = "early"
                else:
                    m.at = initial.at

    def _member_sends(self, member: _Member) -> list[Send]:
        ordered = sorted(member.messages, key=lambda m: (m.at, m.order))
        bundles = []
        for m in ordered:
            bundles.append(self._bundle(m, self._bundle_count))
            self._bundle_count += 1
        timeline: list[tuple[datetime, float, Note, Resource]] = []
        for k, (m, b) in enumerate(zip(ordered, bundles, strict=True)):
            timeline.append((m.at, float(k), m.note, b))
            if self.chance(self.cfg.resend_rate):
                retry = m.at + timedelta(seconds=self.rng.randint(20, 600))
                if k + 1 < len(ordered):
                    retry = min(retry, ordered[k + 1].at)
                timeline.append((retry, k + 0.5, "resend", b))
        timeline.sort(key=lambda t: (t[0], t[1]))
        return [
            Send(at=at, bundle=b, episode=member.encounter_id, note=note)
            for at, _, note, b in timeline
        ]

    def _delay_registration(self, initial: _Message, others: list[_Message]) -> None:
        """Hold the registration message so that some care data overtakes it."""
        first = min(others, key=lambda m: (m.at, m.order))
        target = first.at + minutes(self.rng.uniform(3, 90))
        keys = initial.keys()
        clashes = [m.at for m in others if (m.keys() & keys) or m.note != "update"]
        latest = min(clashes, default=target) - timedelta(seconds=30)
        if latest > first.at:
            initial.at = min(target, latest).replace(microsecond=0)

    def _patient_at(self, at: datetime) -> Resource:
        """The Patient as the master index knows it when a bundle leaves: every bundle
        carries it (an engine maps each PID segment), deceased from the death on."""
        if self._death_sent is None or at < self._death_sent:
            return self.patient
        if self._deceased_patient is None:
            assert self._died_at is not None
            died = fhir_time(self._died_at)
            self._deceased_patient = {**self.patient, "deceasedDateTime": died}
        return self._deceased_patient

    def _bundle(self, msg: _Message, k: int) -> Resource:
        rng = self.rng
        absolute = rng.random() < self.cfg.absolute_fullurl_rate
        kind = "batch" if rng.random() < self.cfg.batch_rate else "transaction"
        patient = self._patient_at(msg.at)
        entries: list[Resource] = []
        for e in [_Entry("PUT", "Patient", patient["id"], patient), *msg.entries]:
            url = f"{e.rtype}/{e.rid}"
            if e.method == "DELETE":
                entries.append({"request": {"method": "DELETE", "url": url}})
                continue
            full = (
                f"{self.cfg.fhir_base}/{url}"
                if absolute
                else f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
            )
            entries.append(
                {"fullUrl": full, "resource": e.resource, "request": {"method": "PUT", "url": url}}
            )
        return {
            "resourceType": "Bundle",
            "id": f"{self.cfg.tenant}-msg-{self.number:06d}-{k:03d}",
            "type": kind,
            "timestamp": fhir_time(msg.at),
            "entry": entries,
        }


_TIME_KEYS = (
    "effectiveDateTime",
    "performedDateTime",
    "occurrenceDateTime",
    "issued",
    "sent",
    "received",
    "date",
    "recordedDate",
    "authoredOn",
)
_PERIOD_KEYS = ("period", "performedPeriod", "effectivePeriod")


def _latest_time(resource: Resource) -> str:
    """The latest clinical time a resource states (all are ``+08:00`` strings, so they
    compare as text)."""
    latest = ""
    for key in _TIME_KEYS:
        value = resource.get(key)
        if value is not None and value > latest:
            latest = value
    for key in _PERIOD_KEYS:
        period = resource.get(key)
        if period is not None:
            for value in (period.get("start"), period.get("end")):
                if value is not None and value > latest:
                    latest = value
    return latest


def entered_in_error(resource: Resource) -> Resource:
    """The version of ``resource`` that withdraws it (Condition has no status field)."""
    if resource["resourceType"] == "Condition":
        out = {k: v for k, v in resource.items() if k != "clinicalStatus"}
        out["verificationStatus"] = c.concept(c.CONDITION_VERIFICATION, "entered-in-error")
        return out
    return {**resource, "status": "entered-in-error"}
