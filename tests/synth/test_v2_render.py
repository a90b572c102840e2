"""qcpulse.synth.v2: a FHIR Bundle rendered as v2 maps back to the same indicator content.

"Indicator content" is what ingest reads from a resource (``services.ingest.mapping``:
the episode fields of an Encounter, the fact of every other resource) plus the
Patient's gender, birth date and death. Each test renders, parses the messages with
the adapter's own parser and mapping, and compares that content resource by resource,
allowing only the differences qcpulse/synth/v2.py documents.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qcpulse.synth.v2 import Rendered, render_bundle, v2_coding_system
from services.hl7v2.mapping import CODING_SYSTEMS, to_transaction
from services.hl7v2.message import Mapped
from services.hl7v2.parse import parse_message, read_envelope
from services.ingest.mapping import map_encounter, map_fact
from tests.fhir_factories import (
    ACT,
    ICD10_CN,
    condition,
    encounter,
    patient,
    procedure,
    stemi_visit,
    transaction,
)
from tests.synth._helpers import final_state, sample

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 3, 2, 4, 30, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ATC = "http://www.whocc.no/atc"
UCUM = "http://unitsofmeasure.org"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
SETTINGS = (
    "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
    "http://terminology.hl7.org/CodeSystem/medication-admin-category",
)

JSON = dict[str, Any]


# -- helpers ---------------------------------------------------------------------------


def render(bundle: JSON, at: datetime = AT, prefix: str = "t") -> Rendered:
    return render_bundle(bundle, facility="SHXH", control_prefix=prefix, message_time=at)


def mapped(rendered: Rendered) -> list[Mapped]:
    out = []
    for raw in rendered.messages:
        envelope = read_envelope(raw)
        out.append(to_transaction(parse_message(raw, envelope), SHANGHAI))
    return out


def written(rendered: Rendered) -> dict[str, JSON]:
    """``Type/id`` → what the messages write (the last message wins)."""
    return {e["request"]["url"]: e["resource"] for m in mapped(rendered) for e in m.entries}


def resolved(bundle: JSON) -> dict[str, JSON]:
    """``Type/id`` → each resource of the Bundle with fullUrl references as ``Type/id``."""
    urls = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle["entry"]
        if "fullUrl" in e and "resource" in e
    }

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, dict):
            out = {k: walk(v) for k, v in node.items()}
            if node.get("reference") in urls:
                out["reference"] = urls[node["reference"]]
            return out
        return node

    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}": walk(e["resource"])
        for e in bundle["entry"]
        if "resource" in e
    }


def view(resource: JSON) -> Any:
    """The indicator content of one resource, with the documented v2 losses applied."""
    rtype = resource["resourceType"]
    if rtype == "Patient":
        died = resource.get("deceasedDateTime")
        return (
            resource.get("gender"),
            resource.get("birthDate"),
            datetime.fromisoformat(died) if died else None,
            bool(died or resource.get("deceasedBoolean")),
        )
    if rtype == "Encounter":
        if resource.get("status") == "entered-in-error":  # comes back as A11 cancelled
            resource = {**resource, "status": "cancelled"}
        return map_encounter(resource, SHANGHAI)
    mf = map_fact(resource, SHANGHAI)
    if mf is None:
        return None
    fact = mf.fact
    categories = frozenset(fact.categories)
    status = fact.status
    if rtype in ("Observation", "DiagnosticReport") and status in ("amended", "appended"):
        status = "corrected"
    if rtype == "Condition":
        status = status or "active"
        categories = frozenset(c for c in categories if c.code != "encounter-diagnosis")
    if rtype in ("MedicationRequest", "MedicationAdministration"):
        # The care setting is lost (the Encounter class says it); a discharge
        # prescription is not a setting and must survive.
        categories = frozenset(
            c
            for c in categories
            if c.system not in SETTINGS or c.code not in ("inpatient", "outpatient", "community")
        )
    if rtype == "DiagnosticReport":
        categories = frozenset()  # compared as a subset in ``same``
    return (replace(fact, status=status, categories=()), categories, mf.encounter_id, mf.patient_id)


def same(original: JSON, back: JSON) -> None:
    assert view(back) == view(original), (original, back)
    if original["resourceType"] == "DiagnosticReport":
        before = map_fact(original, SHANGHAI)
        after = map_fact(back, SHANGHAI)
        assert (before is None) == (after is None)
        if before is not None and after is not None:
            assert set(before.fact.categories) <= set(after.fact.categories)


def assert_round_trip(bundle: JSON, at: datetime = AT) -> tuple[Rendered, dict[str, JSON]]:
    """Every entry is either written by the messages, unchanged in content and id, or
    in ``rest``; the messages write nothing else but extra DiagnosticReports."""
    rendered = render(bundle, at)
    back = written(rendered)
    originals = resolved(bundle)
    rest = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in rendered.rest
        if "resource" in e
    }
    for key, original in originals.items():
        if key in rest:
            continue
        assert key in back, f"{key} is neither rendered nor in rest"
        same(original, back[key])
    extra = set(back) - set(originals)
    # An ADT without the Bundle's Patient still writes one (PID-3 only): see
    # test_factory_stemi_visit_and_a_missing_patient.
    assert all(k.startswith(("DiagnosticReport/", "Patient/")) for k in extra), extra
    return rendered, back


def segments(raw: bytes) -> list[list[str]]:
    return [s.split("|") for s in raw.decode().split("\r") if s]


# -- the example and the factories ------------------------------------------------------


def test_stemi_example_is_one_adt_with_its_diagnosis_and_pci():
    bundle = json.loads((ROOT / "examples" / "stemi-visit.json").read_text(encoding="utf-8"))
    rendered, back = assert_round_trip(bundle)
    assert rendered.rest == []
    assert len(rendered.messages) == 1
    segs = segments(rendered.messages[0])
    assert [s[0] for s in segs] == ["MSH", "EVN", "PID", "PV1", "DG1", "PR1"]
    assert "|".join(segs[0]) == (
        "MSH|^~\\&|HIS|SHXH|QCPULSE|QCPULSE|20260302123000+0800||ADT^A04^ADT_A01|t-1|P|2.5"
        "||||||UNICODE UTF-8"
    )
    assert rendered.messages[0].endswith(b"\r") and b"\n" not in rendered.messages[0]
    assert segs[2][3] == "pat-0001^^^^MR"
    pv1 = segs[3]
    assert pv1[2] == "E" and pv1[10] == "emergency^急诊科" and pv1[19] == "enc-0001"
    assert pv1[44] == "20260302100000+0800"
    assert segs[4][3] == "I21.000x001^急性前壁ST段抬高型心肌梗死^2.16.156.10011.2.3.3.11"
    assert segs[5][7] == "45"
    assert back["Procedure/pr-0001"]["performedPeriod"]["end"] == "2026-03-02T11:55:00+08:00"
    assert back["Patient/pat-0001"]["name"][0]["text"] == "王建国"


@pytest.mark.parametrize(
    ("enc", "event", "pv1_2"),
    [
        (encounter(), "A04", "E"),
        (encounter(cls="AMB"), "A04", "O"),
        (encounter(cls="IMP"), "A01", "I"),
        (encounter(cls="IMP", end="2026-03-05T09:00:00+08:00"), "A03", "I"),
        ({**encounter(), "status": "cancelled"}, "A11", "E"),
        ({**encounter(), "status": "entered-in-error"}, "A11", "E"),
    ],
)
def test_encounter_events(enc, event, pv1_2):
    bundle = transaction(patient(), enc, condition(), procedure())
    rendered, back = assert_round_trip(bundle)
    assert rendered.rest == []
    (message,) = rendered.messages
    segs = segments(message)
    assert segs[0][8].startswith(f"ADT^{event}^") and segs[1][1] == event
    assert segs[3][2] == pv1_2
    if event == "A03":
        assert segs[3][45] == "20260305090000+0800"
        assert back["Encounter/e1"]["period"]["end"] == "2026-03-05T09:00:00+08:00"


def test_factory_stemi_visit_and_a_missing_patient():
    assert_round_trip(stemi_visit())
    rendered, back = assert_round_trip(transaction(encounter(eid="e2", pid="p9")))
    assert segments(rendered.messages[0])[2][3] == "p9^^^^MR"
    assert back["Encounter/e2"]["subject"] == {"reference": "Patient/p9"}
    # The mapping writes a Patient from every ADT's PID: without the Patient in the
    # Bundle it has only its identifier, and replaces a stored Patient's name, gender
    # and birth date (a hazard of the mapping, reported; the renderer follows the brief).
    assert set(back["Patient/p9"]) == {"resourceType", "id", "identifier"}


def test_diagnoses_of_a_visit_outside_the_bundle_go_to_rest():
    """An A08 with PV1-19 only would rewrite the stored Encounter without its class,
    department, discharge and status: such Conditions and Procedures are FHIR."""
    bundle = transaction(patient(), condition(eid="old"), procedure(eid="old"))
    rendered = render(bundle)
    assert rendered.messages == []
    assert sorted(e["request"]["url"] for e in rendered.rest) == [
        "Condition/c1",
        "Patient/p1",
        "Procedure/pr1",
    ]


def test_what_v2_cannot_carry_goes_to_rest_with_references_rewritten():
    qc = "https://qcpulse.org/fhir/CodeSystem/qc"
    mdt = {**procedure(prid="pr2"), "code": {"coding": [{"system": qc, "code": "preop-mdt"}]}}
    running = {**procedure(prid="pr3"), "status": "in-progress"}
    notice = {
        "resourceType": "Communication",
        "id": "n1",
        "status": "completed",
        "subject": {"reference": "urn:uuid:Patient-p1"},
        "about": [{"reference": "urn:uuid:Observation-obs-1"}],
        "sent": "2026-03-02T10:40:00+08:00",
    }
    obs = observation("obs-1")
    org = {"resourceType": "Organization", "id": "emergency", "name": "急诊科"}
    bundle = transaction(patient(), encounter(), mdt, running, obs, notice, org)
    bundle["entry"].append({"request": {"method": "DELETE", "url": "Observation/obs-0"}})
    rendered, _ = assert_round_trip(bundle)
    rest = {e["request"]["url"]: e for e in rendered.rest}
    assert set(rest) == {
        "Procedure/pr2",
        "Procedure/pr3",
        "Communication/n1",
        "Organization/emergency",
        "Observation/obs-0",
    }
    assert rest["Communication/n1"]["resource"]["about"] == [{"reference": "Observation/obs-1"}]
    assert rest["Communication/n1"]["resource"]["subject"] == {"reference": "Patient/p1"}


# -- results and orders -----------------------------------------------------------------


def observation(oid: str, **extra: Any) -> JSON:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"system": OBS_CAT, "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": "2524-7", "display": "乳酸"}]},
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "effectiveDateTime": "2026-03-02T10:20:00+08:00",
        "issued": "2026-03-02T10:55:00+08:00",
        "valueQuantity": {"value": 4.2, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
        "interpretation": [{"coding": [{"system": INTERP, "code": "H"}]}],
        **extra,
    }


def results_bundle() -> JSON:
    ct = {"coding": [{"system": LOINC, "code": "30799-1", "display": "CT head"}]}
    image = observation(
        "obs-7",
        category=[{"coding": [{"system": OBS_CAT, "code": "imaging"}]}],
        code=ct,
        valueQuantity=None,
        valueString="左侧大脑中动脉高密度征|疑似^急性~脑梗死\\复查",
        interpretation=[{"coding": [{"system": INTERP, "code": "AA"}]}],
        status="amended",
    )
    del image["valueQuantity"]
    report = {
        "resourceType": "DiagnosticReport",
        "id": "dr-1",
        "status": "final",
        "category": [{"coding": [{"system": V2_0074, "code": "RAD"}]}],
        "code": ct,
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "effectiveDateTime": "2026-03-02T10:30:00+08:00",
        "issued": "2026-03-02T10:50:00+08:00",
        "result": [{"reference": "Observation/obs-7"}],
        "conclusion": "急性脑梗死\n建议复查",
    }
    own = observation(
        "dr-1-2",
        category=[{"coding": [{"system": OBS_CAT, "code": "imaging"}]}],
        issued="2026-03-02T10:50:00+08:00",
        code=ct,
    )
    culture = observation(
        "obs-8",
        status="registered",
        code={"coding": [{"system": LOINC, "code": "600-7"}]},
        issued=None,
        interpretation=None,
    )
    for key in ("issued", "interpretation", "valueQuantity"):
        culture.pop(key)
    coded = observation(
        "obs-9",
        status="entered-in-error",
        valueQuantity=None,
        valueCodeableConcept={"coding": [{"system": SNOMED, "code": "10828004"}]},
    )
    del coded["valueQuantity"]
    less = observation(
        "obs-10", valueQuantity={"value": 0.00001, "comparator": "<", "unit": "ng/mL"}
    )
    return transaction(patient(), observation("obs-6"), image, report, own, culture, coded, less)


def test_results_keep_ids_codes_times_flags_and_categories():
    rendered, back = assert_round_trip(results_bundle())
    # No ADT carries the Patient, so it is posted as FHIR.
    assert [e["request"]["url"] for e in rendered.rest] == ["Patient/p1"]
    assert back["Observation/obs-7"]["valueString"] == (
        "左侧大脑中动脉高密度征|疑似^急性~脑梗死\\复查"
    )
    assert back["Observation/obs-7"]["status"] == "corrected"
    assert back["Observation/dr-1-2"]["issued"] == "2026-03-02T10:50:00+08:00"
    assert back["DiagnosticReport/dr-1"]["result"] == [{"reference": "Observation/dr-1-2"}]
    assert back["DiagnosticReport/dr-1"]["conclusion"] == "急性脑梗死\n建议复查"
    assert back["Observation/obs-10"]["valueQuantity"]["comparator"] == "<"
    obr = [s for m in rendered.messages for s in segments(m) if s[0] == "OBR"]
    assert {s[3] for s in obr} == {"dr-1", "obs"}  # obs-6…obs-10 share a filler number
    assert {s[24] for s in obr} == {"RAD", "LAB"}


def med_bundle() -> JSON:
    iv = {"coding": [{"system": SNOMED, "code": "47625008", "display": "静脉"}]}
    drug = {"coding": [{"system": ATC, "code": "J01DD04", "display": "头孢曲松"}]}
    setting = [{"coding": [{"system": SETTINGS[0], "code": "inpatient"}]}]
    base = {"subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"}}
    requests = [
        {
            "resourceType": "MedicationRequest",
            "id": f"mr{k}",
            "status": status,
            "intent": "order",
            "category": setting,
            "medicationCodeableConcept": drug,
            "authoredOn": "2026-03-02T10:10:00+08:00",
            "dosageInstruction": [
                {"route": iv, "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "g"}}]}
            ],
            **base,
        }
        for k, status in enumerate(("active", "completed", "on-hold", "stopped", "cancelled"))
    ]
    given = [
        {
            "resourceType": "MedicationAdministration",
            "id": aid,
            "status": status,
            "medicationCodeableConcept": drug,
            "subject": base["subject"],
            "context": base["encounter"],
            "request": {"reference": "MedicationRequest/mr0"},
            **timing,
            "dosage": {"route": iv, "dose": {"value": 2, "unit": "g"}},
        }
        for aid, status, timing in (
            ("mr0-1-1", "completed", {"effectiveDateTime": "2026-03-02T10:30:00+08:00"}),
            (
                "medadm-000001-02",
                "in-progress",
                {"effectivePeriod": {"start": "2026-03-02T11:00:00+08:00"}},
            ),
            (
                "medadm-000001-03",
                "completed",
                {
                    "effectivePeriod": {
                        "start": "2026-03-02T12:00:00+08:00",
                        "end": "2026-03-02T12:30:00+08:00",
                    }
                },
            ),
            ("medadm-000001-04", "not-done", {"effectiveDateTime": "2026-03-02T13:00:00+08:00"}),
            (
                "medadm-000001-05",
                "entered-in-error",
                {"effectiveDateTime": "2026-03-02T14:00:00+08:00"},
            ),
        )
    ]
    orders = [
        {
            "resourceType": "ServiceRequest",
            "id": f"sr{k}",
            "status": status,
            "intent": "order",
            "code": {"coding": [{"system": LOINC, "code": "30799-1"}]},
            "authoredOn": "2026-03-02T10:05:00+08:00",
            **base,
        }
        for k, status in enumerate(("active", "completed", "on-hold", "revoked"))
    ]
    return transaction(encounter(), *requests, *given, *orders)


def test_orders_and_administrations():
    rendered, back = assert_round_trip(med_bundle())
    assert rendered.rest == []
    kinds = [read_envelope(m).message_type for m in rendered.messages]
    assert kinds == ["ADT^A04", "ORM^O01", "RDE^O11", "RAS^O17"]
    assert back["MedicationAdministration/mr0-1-1"]["request"] == {
        "reference": "MedicationRequest/mr0"
    }
    assert back["MedicationRequest/mr0"]["dosageInstruction"][0]["route"]["coding"][0] == {
        "system": SNOMED,
        "code": "47625008",
        "display": "静脉",
    }
    control_ids = [read_envelope(m).control_id for m in rendered.messages]
    assert control_ids == ["t-1", "t-2", "t-3", "t-4"]


def test_prophylaxis_and_local_systems_are_not_lost():
    qc = "https://qcpulse.org/fhir/CodeSystem/qc"
    bundle = med_bundle()
    for e in bundle["entry"]:
        r = e["resource"]
        if r["id"] == "mr1":
            r["category"] = [*r["category"], {"coding": [{"system": qc, "code": "prophylaxis"}]}]
        if r["id"] == "mr0-1-1":
            r["reasonCode"] = [{"coding": [{"system": qc, "code": "prophylaxis"}]}]
    rendered, _ = assert_round_trip(bundle)
    assert {e["request"]["url"] for e in rendered.rest} == {
        "MedicationRequest/mr1",
        "MedicationAdministration/mr0-1-1",
    }


# -- coding systems, text, times -------------------------------------------------------


def test_coding_system_names_invert_the_mapping_table():
    assert v2_coding_system("http://hl7.org/fhir/sid/icd-10") == "I10"
    assert v2_coding_system(LOINC) == "LN"
    assert v2_coding_system(ICD10_CN) == "2.16.156.10011.2.3.3.11"
    assert v2_coding_system("http://terminology.hl7.org/CodeSystem/v2-0074") == "HL70074"
    assert v2_coding_system("https://qcpulse.org/fhir/CodeSystem/hl7v2/99LOCAL") == "99LOCAL"
    assert v2_coding_system("https://qcpulse.org/fhir/CodeSystem/qc") == "qc"
    assert v2_coding_system("") == "L"
    for uri in set(CODING_SYSTEMS.values()):
        assert CODING_SYSTEMS[v2_coding_system(uri)] == uri


text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("|^~&\\"),
    min_size=1,
    max_size=30,
).filter(lambda s: s == s.strip())


@settings(max_examples=60, deadline=None)
@given(
    code=text,
    display=text,
    value=text,
    minutes=st.integers(min_value=-10_000_000, max_value=10_000_000),
)
def test_any_text_and_time_survives(code, display, value, minutes):
    moment = datetime(2026, 3, 2, tzinfo=UTC).timestamp() + minutes * 60
    effective = datetime.fromtimestamp(moment, UTC).isoformat()
    obs = observation(
        "o-1",
        code={"coding": [{"system": LOINC, "code": code, "display": display}]},
        valueString=value,
        effectiveDateTime=effective,
    )
    del obs["valueQuantity"]
    _, back = assert_round_trip(transaction(obs))
    result = back["Observation/o-1"]
    assert result["code"]["coding"][0] == {"system": LOINC, "code": code, "display": display}
    assert result["valueString"] == value


# -- the generator's stream --------------------------------------------------------------


def test_generated_stream_replayed_as_v2_ends_in_the_same_state():
    """Every bundle of a generated feed as v2 messages (+ rest as FHIR), applied in order,
    leaves each resource with the indicator content the FHIR feed leaves."""
    sends = sample("small", 3.0, 3)
    state: dict[str, JSON] = {}
    kinds: set[str] = set()
    for send in sends:
        rendered, _ = assert_round_trip(send.bundle, send.at)
        for raw in rendered.messages:
            kinds.add(read_envelope(raw).message_type.split("^")[0])
        for m in mapped(rendered):
            for e in m.entries:
                state[e["request"]["url"]] = e["resource"]
        for e in rendered.rest:
            if e["request"]["method"] == "DELETE":
                state.pop(e["request"]["url"], None)
            else:
                state[e["request"]["url"]] = e["resource"]
    assert kinds == {"ADT", "ORU", "RDE", "RAS"}
    expected = final_state(sends)
    for key, resource in expected.items():
        assert key in state, key
        same(resource, state[key])
    assert all(k.startswith("DiagnosticReport/") for k in set(state) - set(expected))


def test_naive_message_time_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        render(stemi_visit(), datetime(2026, 3, 2, 12))


def test_class_coding_from_the_factories_uses_the_act_code_system():
    back = written(render(stemi_visit()))
    assert back["Encounter/e1"]["class"]["system"] == ACT
