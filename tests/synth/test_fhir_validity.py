"""Every bundle and resource is valid FHIR R4 (R4B models) and shaped like engine output."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from fhir.resources.R4B import get_fhir_model_class

from qcpulse.synth.codes import ACT_CODE, QC
from tests.synth._helpers import sample

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
UUID_URN = re.compile(
    r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)

# fhir.resources checks structure, not required bindings: these are the R4 value sets.
STATUSES = {
    "Encounter": {"planned", "arrived", "triaged", "in-progress", "onleave", "finished",
                  "cancelled", "entered-in-error", "unknown"},
    "Procedure": {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
                  "entered-in-error", "unknown"},
    "MedicationAdministration": {"in-progress", "not-done", "on-hold", "completed",
                                 "entered-in-error", "stopped", "unknown"},
    "MedicationRequest": {"active", "on-hold", "cancelled", "completed", "entered-in-error",
                          "stopped", "draft", "unknown"},
    "Observation": {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                    "entered-in-error", "unknown"},
    "DiagnosticReport": {"registered", "partial", "preliminary", "final", "amended",
                         "corrected", "appended", "cancelled", "entered-in-error", "unknown"},
    "ServiceRequest": {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error",
                       "unknown"},
    "Communication": {"preparation", "in-progress", "not-done", "on-hold", "stopped",
                      "completed", "entered-in-error", "unknown"},
    "RiskAssessment": {"registered", "preliminary", "final", "amended", "corrected",
                       "cancelled", "entered-in-error", "unknown"},
}  # fmt: skip


@pytest.fixture(scope="module")
def sends():
    return sample("small", 3.0, 3)


class TestValidates:
    def test_every_bundle_and_resource_validates_with_r4b(self, sends):
        failures: Counter[str] = Counter()
        resources = 0
        for send in sends:
            try:
                get_fhir_model_class("Bundle").model_validate(send.bundle)
            except Exception as exc:
                failures[f"Bundle: {exc}"[:300]] += 1
            # The Bundle model does not validate entry resources deeply: do each.
            for entry in send.bundle["entry"]:
                resource = entry.get("resource")
                if resource is None:
                    continue
                resources += 1
                try:
                    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
                except Exception as exc:
                    failures[f"{resource['resourceType']}: {exc}"[:300]] += 1
        assert resources > 3000
        assert not failures, failures.most_common(5)

    def test_every_mapped_resource_type_occurs(self, sends):
        types = {
            e["resource"]["resourceType"]
            for s in sends
            for e in s.bundle["entry"]
            if "resource" in e
        }
        assert types == {
            "Organization", "Patient", "Encounter", "Condition", "Procedure", "MedicationRequest",
            "MedicationAdministration", "Observation", "DiagnosticReport", "Communication",
            "ServiceRequest", "AdverseEvent", "RiskAssessment",
        }  # fmt: skip

    def test_validation_would_catch_a_broken_resource(self, sends):
        encounter = next(
            e["resource"]
            for s in sends
            for e in s.bundle["entry"]
            if e.get("resource", {}).get("resourceType") == "Encounter"
        )
        broken = {**encounter, "period": {"start": "yesterday"}}
        with pytest.raises(ValueError, match="period"):
            get_fhir_model_class("Encounter").model_validate(broken)

    def test_statuses_are_in_the_r4_value_sets(self, sends):
        bad = Counter()
        for send in sends:
            for entry in send.bundle["entry"]:
                r = entry.get("resource")
                if (
                    r
                    and r["resourceType"] in STATUSES
                    and r["status"] not in STATUSES[r["resourceType"]]
                ):
                    bad[(r["resourceType"], r["status"])] += 1
        assert not bad

    def test_condition_in_error_has_no_clinical_status(self, sends):
        # Invariant con-5; the R4B models do not check invariants.
        for send in sends:
            for entry in send.bundle["entry"]:
                r = entry.get("resource") or {}
                if r.get("resourceType") == "Condition":
                    code = r["verificationStatus"]["coding"][0]["code"]
                    assert code != "entered-in-error" or "clinicalStatus" not in r


class TestEngineShape:
    def test_bundles_are_transactions_or_batches_of_2_to_15_entries(self, sends):
        types = Counter(s.bundle["type"] for s in sends)
        assert set(types) == {"transaction", "batch"}
        assert types["batch"] < types["transaction"] / 5
        for s in sends:
            if s.note != "directory":
                assert 2 <= len(s.bundle["entry"]) <= 15, s.bundle["id"]

    def test_entries_are_puts_with_client_ids_or_deletes(self, sends):
        methods = Counter()
        for s in sends:
            for entry in s.bundle["entry"]:
                request = entry["request"]
                methods[request["method"]] += 1
                if request["method"] == "DELETE":
                    assert "resource" not in entry
                    assert re.fullmatch(r"[A-Z][A-Za-z]+/[A-Za-z0-9\-.]+", request["url"])
                    continue
                r = entry["resource"]
                assert request["method"] == "PUT"
                assert request["url"] == f"{r['resourceType']}/{r['id']}"
                assert FHIR_ID.match(r["id"])
                full = entry["fullUrl"]
                assert UUID_URN.match(full) or full.endswith("/" + request["url"]), full
        assert set(methods) == {"PUT", "DELETE"}

    def test_fullurls_are_mostly_uuids_some_absolute(self, sends):
        kinds = Counter(
            "uuid" if e["fullUrl"].startswith("urn:uuid:") else "absolute"
            for s in sends
            for e in s.bundle["entry"]
            if "fullUrl" in e and s.note != "directory"
        )
        assert kinds["uuid"] > kinds["absolute"] > 0

    def test_ids_follow_the_tenant_pattern(self, sends):
        encounters = {
            e["resource"]["id"]
            for s in sends
            for e in s.bundle["entry"]
            if e.get("resource", {}).get("resourceType") == "Encounter"
        }
        assert encounters
        assert all(re.fullmatch(r"H0001-enc-\d{6}(-\d+)?", i) for i in encounters)

    def test_encounters_use_act_codes_and_name_their_department(self, sends):
        directory = next(s for s in sends if s.note == "directory")
        orgs = {e["resource"]["id"]: e["resource"]["name"] for e in directory.bundle["entry"]}
        classes = Counter()
        for s in sends:
            for e in s.bundle["entry"]:
                r = e.get("resource") or {}
                if r.get("resourceType") != "Encounter":
                    continue
                assert r["class"]["system"] == ACT_CODE
                classes[r["class"]["code"]] += 1
                ref = r["serviceProvider"]["reference"]
                code = ref.removeprefix("Organization/")
                assert orgs[code] == r["serviceProvider"]["display"]
                assert re.search(r"[\u4e00-\u9fff]", r["serviceProvider"]["display"])
        assert set(classes) == {"EMER", "IMP", "AMB"}
        assert set(orgs) >= {"ED", "CARD", "NEURO", "ICU", "PSY", "GS", "ORTH", "GM", "RAD"}

    def test_patients_have_chinese_names_and_an_mrn(self, sends):
        patients = {
            e["resource"]["id"]: e["resource"]
            for s in sends
            for e in s.bundle["entry"]
            if e.get("resource", {}).get("resourceType") == "Patient"
        }
        assert len(patients) > 50
        for p in patients.values():
            name = p["name"][0]
            assert re.fullmatch(r"[\u4e00-\u9fff]{2,4}", name["text"])
            assert name["text"] == name["family"] + "".join(name["given"])
            assert p["identifier"][0]["system"].endswith("/sid/mrn")
            assert p["gender"] in ("male", "female")
        assert len({p["name"][0]["family"] for p in patients.values()}) > 15

    def test_qc_codes_only_from_the_catalogue(self, sends):
        known = {
            "vte-risk", "bleeding-risk", "vte-mechanical-prophylaxis", "surgery-level-4",
            "preop-mdt", "unplanned-reoperation", "psych-risk", "prophylaxis",
        }  # fmt: skip
        found = set()

        def walk(node):
            if isinstance(node, dict):
                if node.get("system") == QC:
                    found.add(node["code"])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        for s in sends:
            walk(s.bundle)
        assert found <= known
        assert len(found) >= 6
