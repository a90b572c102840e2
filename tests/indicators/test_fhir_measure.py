"""FHIR Measure resources and ``$evaluate-measure`` (docs/MEASURES.md): every
definition as a valid R4 Measure, the searchset, reads, and the operation against the
indicator API's own MeasureReport over STEMI and VTE episodes posted through ``/fhir``."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.measure import Measure
from fhir.resources.R4B.measurereport import MeasureReport
from fhir.resources.R4B.operationoutcome import OperationOutcome

from qcpulse.app import create_app
from services.indicators.measure import FHIR_ID, build_measure
from services.indicators.worker import catalogue_for, drain
from services.ingest.validation import validate_resource
from shared.auth import Role, create_key
from shared.runtime import Runtime
from tests.conftest import OTHER_TENANT, make_key
from tests.fhir_factories import condition, encounter, patient, procedure, transaction

JSON = dict[str, Any]
CATALOGUE = catalogue_for(None)
DEFINITIONS = CATALOGUE.definitions()
QC = "https://qcpulse.org/fhir/CodeSystem/qc"
MARCH = {"periodStart": "2026-03-01", "periodEnd": "2026-03-31"}
RANGE = {"from": "2026-03-01", "to": "2026-03-31"}
STEMI = "PIT-2026-23"
VTE = "NIT-2026-III-A"


def _defn(code: str) -> Any:
    found = CATALOGUE.get(code)
    assert found is not None
    return found


def _population(report: JSON) -> dict[str, int]:
    return {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}


def _outcome(r: Any, status: int) -> JSON:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    body: JSON = r.json()
    OperationOutcome.model_validate(body)
    return body


def stemi(n: int, pci_minutes: int | None, *, dept: str = "emergency", day: int = 2) -> JSON:
    start = f"2026-03-{day:02d}T08:00:00+08:00"
    resources = [
        patient(f"p{n}"),
        encounter(f"e{n}", f"p{n}", start=start, dept=dept, dept_name=dept),
        condition(f"c{n}", f"e{n}", f"p{n}", onset=start),
    ]
    if pci_minutes is not None:
        h, m = divmod(8 * 60 + pci_minutes, 60)
        at = f"2026-03-{day:02d}T{h:02d}:{m:02d}:00+08:00"
        resources.append(procedure(f"pr{n}", f"e{n}", f"p{n}", start=at))
    return transaction(*resources)


def vte(n: int, assessed_after_hours: int | None, *, dept: str) -> JSON:
    """An adult inpatient admitted 26 h before the frozen clock: decided at drain."""
    pid, eid = f"vp{n}", f"ve{n}"
    resources = [
        patient(pid),
        encounter(eid, pid, cls="IMP", start="2026-03-01T08:00:00+08:00", dept=dept),
    ]
    if assessed_after_hours is not None:
        resources.append(
            {
                "resourceType": "RiskAssessment",
                "id": f"ra{n}",
                "status": "final",
                "code": {"coding": [{"system": QC, "code": "vte-risk"}]},
                "subject": {"reference": f"Patient/{pid}"},
                "encounter": {"reference": f"Encounter/{eid}"},
                "occurrenceDateTime": f"2026-03-01T{8 + assessed_after_hours:02d}:00:00+08:00",
            }
        )
    return transaction(*resources)


@pytest.fixture
def keys(runtime: Runtime) -> dict[str, dict[str, str]]:
    with runtime.write() as session:
        _, limited = create_key(session, "H0001", Role.READER, departments=["emergency"])
    secrets = {
        "admin": make_key(runtime, Role.ADMIN),
        "reader": make_key(runtime, Role.READER),
        "limited": limited,
        "ingest": make_key(runtime, Role.INGEST),
        "other": make_key(runtime, Role.ADMIN, OTHER_TENANT),
    }
    return {name: {"Authorization": f"Bearer {s}"} for name, s in secrets.items()}


@pytest.fixture
def loaded(app_client: TestClient, runtime: Runtime, keys: dict[str, dict[str, str]]) -> TestClient:
    """STEMI: emergency 2 in time, 1 late; cardiology 1 late, 1 still open without PCI
    (pending). VTE: in each department one assessed in time (+2 h, +6 h), one never."""
    bundles = [
        stemi(1, 60),
        stemi(2, 85, day=3),
        stemi(3, 120, day=20),
        stemi(4, 100, dept="cardiology", day=5),
        stemi(5, None, dept="cardiology", day=6),
        vte(1, 2, dept="emergency"),
        vte(2, None, dept="emergency"),
        vte(3, 6, dept="cardiology"),
        vte(4, None, dept="cardiology"),
    ]
    for bundle in bundles:
        r = app_client.post("/fhir", json=bundle, headers=keys["ingest"])
        assert r.status_code == 200, r.text
    drain(runtime)
    return app_client


# -- the Measure resources ----------------------------------------------------------


def test_the_whole_catalogue_is_served() -> None:
    assert len(DEFINITIONS) >= 107


@pytest.mark.parametrize("defn", DEFINITIONS, ids=lambda d: d.code)
def test_every_definition_is_a_valid_measure(defn: Any) -> None:
    resource = build_measure(defn)
    Measure.model_validate(resource)
    assert validate_resource(resource) == []  # the project's own ingest validation too
    assert FHIR_ID.match(defn.code) and resource["id"] == defn.code
    assert resource["url"] == f"https://qcpulse.org/fhir/Measure/{defn.code}"
    assert resource["version"] == defn.version
    assert resource["title"] == defn.name.zh
    translation = resource["_title"]["extension"][0]["extension"]
    assert {"url": "content", "valueString": defn.name.en} in translation
    scoring = resource["scoring"]["coding"][0]["code"]
    if defn.kind == "manual":
        assert scoring == ("proportion" if defn.unit == "percent" else "ratio")
    else:
        assert scoring == defn.kind
    notation = resource["improvementNotation"]["coding"][0]["code"]
    assert notation == ("increase" if defn.direction == "higher_is_better" else "decrease")
    citation = resource["relatedArtifact"][0]
    assert citation["type"] == "citation" and citation["citation"] == defn.source
    codes = [p["code"]["coding"][0]["code"] for p in resource["group"][0]["population"]]
    assert codes == ["initial-population", "denominator", "numerator", "denominator-exclusion"]
    for p in resource["group"][0]["population"]:
        assert p["criteria"]["language"] == "text/x-qcpulse" and p["criteria"]["expression"]
    year = defn.effective_catalogue
    if year is None:
        assert "effectivePeriod" not in resource
    else:
        assert resource["effectivePeriod"] == {"start": f"{year}-01-01", "end": f"{year}-12-31"}


def test_criteria_quote_the_definition_with_its_value_sets() -> None:
    resource = build_measure(_defn(STEMI))
    by_code = {
        p["code"]["coding"][0]["code"]: p["criteria"]["expression"]
        for p in resource["group"][0]["population"]
    }
    assert "window: 90m" in by_code["numerator"] and "primary-pci:" in by_code["numerator"]
    assert "stemi:" in by_code["initial-population"] and "I21.0" in by_code["initial-population"]
    assert "window" not in by_code["initial-population"]
    assert {"type": "predecessor", "resource": "https://qcpulse.org/fhir/Measure/PIT-2025-24"} in (
        resource["relatedArtifact"]
    )


def test_read_a_measure(app_client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    r = app_client.get(f"/fhir/Measure/{STEMI}", headers=keys["reader"])
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert r.json() == build_measure(_defn(STEMI))
    Measure.model_validate(r.json())
    # Definitions hold no patient data: an ingest key reads them too, any year's.
    r = app_client.get("/fhir/Measure/PIT-2025-24", headers=keys["ingest"])
    assert r.status_code == 200 and r.json()["effectivePeriod"]["start"] == "2025-01-01"


def test_unknown_measure_is_a_404_outcome(
    app_client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    body = _outcome(app_client.get("/fhir/Measure/NOPE-1", headers=keys["reader"]), 404)
    assert body["issue"][0]["code"] == "not-found"


def test_measures_need_a_key(app_client: TestClient) -> None:
    assert _outcome(app_client.get("/fhir/Measure"), 401)["issue"][0]["code"] == "login"
    _outcome(app_client.get(f"/fhir/Measure/{STEMI}"), 401)


def test_measures_are_read_only(app_client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    resource = build_measure(_defn(STEMI))
    r = app_client.put(f"/fhir/Measure/{STEMI}", json=resource, headers=keys["ingest"])
    assert _outcome(r, 405)["issue"][0]["code"] == "not-supported"
    _outcome(app_client.post("/fhir/Measure", json=resource, headers=keys["ingest"]), 405)
    _outcome(app_client.delete(f"/fhir/Measure/{STEMI}", headers=keys["admin"]), 405)
    assert app_client.get(f"/fhir/Measure/{STEMI}", headers=keys["reader"]).json() == resource


def test_capability_statement_lists_measure(app_client: TestClient) -> None:
    body = app_client.get("/fhir/metadata").json()
    CapabilityStatement.model_validate(body)
    [entry] = [r for r in body["rest"][0]["resource"] if r["type"] == "Measure"]
    assert {i["code"] for i in entry["interaction"]} == {"read", "search-type"}
    assert entry["operation"][0]["name"] == "evaluate-measure"
    assert {p["name"] for p in entry["searchParam"]} >= {"url", "name", "status"}


# -- search ---------------------------------------------------------------------------


def _search(client: TestClient, headers: dict[str, str], **params: Any) -> JSON:
    r = client.get("/fhir/Measure", params=params, headers=headers)
    assert r.status_code == 200, r.text
    body: JSON = r.json()
    Bundle.model_validate(body)
    assert body["type"] == "searchset"
    return body


def _ids(bundle: JSON) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


class TestSearch:
    def test_default_is_the_tenants_catalogue(
        self, app_client: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        body = _search(app_client, keys["reader"], _count=1000)
        listed = app_client.get("/api/v1/indicators", headers=keys["reader"]).json()
        assert _ids(body) == [i["code"] for i in listed]
        assert body["total"] == len(listed)
        for entry in body["entry"]:
            Measure.model_validate(entry["resource"])
            assert entry["fullUrl"].endswith(f"/fhir/Measure/{entry['resource']['id']}")

    def test_another_year_or_all(
        self, app_client: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        all_ = _search(app_client, keys["reader"], catalogue="all", _count=1000)
        assert _ids(all_) == [d.code for d in DEFINITIONS]
        old = _search(app_client, keys["reader"], catalogue="2025", _count=1000)
        assert "PIT-2025-24" in _ids(old) and STEMI not in _ids(old)

    def test_by_url_with_and_without_version(
        self, app_client: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        url = f"https://qcpulse.org/fhir/Measure/{STEMI}"
        assert _ids(_search(app_client, keys["reader"], url=url)) == [STEMI]
        assert _ids(_search(app_client, keys["reader"], url=f"{url}|2026.1")) == [STEMI]
        assert _ids(_search(app_client, keys["reader"], url=f"{url}|1999.1")) == []

    def test_by_name_title_status_and_id(
        self, app_client: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        h = keys["reader"]
        starts = _ids(_search(app_client, h, name="pit_2026_2", _count=1000))
        assert starts and all(c.startswith("PIT-2026-2") for c in starts)
        assert _ids(_search(app_client, h, **{"name:exact": "PIT_2026_23"})) == [STEMI]
        assert _ids(_search(app_client, h, **{"name:exact": "pit_2026_23"})) == []
        assert STEMI in _ids(_search(app_client, h, **{"title:contains": "直接PCI"}))
        assert STEMI in _ids(_search(app_client, h, **{"title:contains": "door-to-primary"}))
        assert _search(app_client, h, status="retired")["total"] == 0
        active = _search(app_client, h, status="active", _count=1000)
        assert active["total"] == _search(app_client, h)["total"]
        both = _ids(_search(app_client, h, _id=f"{STEMI},{VTE}"))
        assert both == sorted([STEMI, VTE])
        # Parameters combine with AND.
        assert _ids(_search(app_client, h, _id=STEMI, status="retired")) == []

    def test_count_pages_with_links(
        self, app_client: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        h = keys["reader"]
        whole = _ids(_search(app_client, h, _count=1000))
        first = _search(app_client, h, _count=10)
        assert _ids(first) == whole[:10] and first["total"] == len(whole)
        links = {link["relation"]: link["url"] for link in first["link"]}
        assert "_offset=10" in links["next"] and "_count=10" in links["next"]
        path = links["next"].split("testserver", 1)[1]
        second = app_client.get(path, headers=h).json()
        assert _ids(second) == whole[10:20]
        assert _search(app_client, h, _summary="count")["total"] == len(whole)
        assert "entry" not in _search(app_client, h, _summary="count")

    def test_unknown_parameter_is_refused_unless_lenient(
        self, app_client: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        r = app_client.get("/fhir/Measure", params={"topic": "x"}, headers=keys["reader"])
        body = _outcome(r, 400)
        assert body["issue"][0]["code"] == "not-supported" and "topic" in str(body)
        _outcome(
            app_client.get("/fhir/Measure", params={"name:below": "x"}, headers=keys["reader"]),
            400,
        )
        lenient = {**keys["reader"], "Prefer": "handling=lenient"}
        r = app_client.get("/fhir/Measure", params={"topic": "x", "_id": STEMI}, headers=lenient)
        assert r.status_code == 200 and _ids(r.json()) == [STEMI]
        assert "topic" not in r.json()["link"][0]["url"]

    def test_bad_control_values(
        self, app_client: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        for params in ({"_count": "x"}, {"_count": "5000"}, {"_format": "xml"}, {"catalogue": "1"}):
            _outcome(app_client.get("/fhir/Measure", params=params, headers=keys["reader"]), 400)


# -- $evaluate-measure ---------------------------------------------------------------


def _evaluate(client: TestClient, headers: dict[str, str], code: str, **params: Any) -> Any:
    return client.get(f"/fhir/Measure/{code}/$evaluate-measure", params=params, headers=headers)


def _api_report(client: TestClient, headers: dict[str, str], code: str, **params: Any) -> JSON:
    r = client.get(f"/api/v1/indicators/{code}/measure-report", params=params, headers=headers)
    assert r.status_code == 200, r.text
    body: JSON = r.json()
    return body


def _cases(client: TestClient, headers: dict[str, str], code: str, **params: Any) -> list[JSON]:
    r = client.get(
        f"/api/v1/indicators/{code}/cases", params={**params, "limit": 1000}, headers=headers
    )
    assert r.status_code == 200, r.text
    cases: list[JSON] = r.json()["cases"]
    return cases


class TestSummary:
    @pytest.mark.parametrize("code", [STEMI, VTE, "STEMI-REPERFUSION"])
    def test_equals_the_measure_report_endpoint(
        self, loaded: TestClient, keys: dict[str, dict[str, str]], code: str
    ) -> None:
        r = _evaluate(loaded, keys["reader"], code, **MARCH, reportType="summary")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/fhir+json")
        MeasureReport.model_validate(r.json())
        assert r.json() == _api_report(loaded, keys["reader"], code, **RANGE)
        assert _evaluate(loaded, keys["reader"], code, **MARCH).json() == r.json()  # default

    def test_counts_by_hand(self, loaded: TestClient, keys: dict[str, dict[str, str]]) -> None:
        stemi_report = _evaluate(loaded, keys["reader"], STEMI, **MARCH).json()
        assert _population(stemi_report) == {
            "initial-population": 4,
            "denominator": 4,
            "numerator": 2,
            "denominator-exclusion": 0,
        }
        vte_report = _evaluate(loaded, keys["reader"], VTE, **MARCH).json()
        assert _population(vte_report)["numerator"] == 2
        assert _population(vte_report)["denominator"] == 4

    def test_post_with_a_parameters_body(
        self, loaded: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        body = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "periodStart", "valueDate": "2026-03-01"},
                {"name": "periodEnd", "valueDate": "2026-03-31"},
                {"name": "reportType", "valueCode": "summary"},
            ],
        }
        r = loaded.post(
            f"/fhir/Measure/{STEMI}/$evaluate-measure",
            json=body,
            headers={**keys["reader"], "Content-Type": "application/fhir+json"},
        )
        assert r.status_code == 200, r.text
        assert r.json() == _api_report(loaded, keys["reader"], STEMI, **RANGE)
        # POST with the parameters in the query is the same operation.
        r = loaded.post(
            f"/fhir/Measure/{STEMI}/$evaluate-measure", params=MARCH, headers=keys["reader"]
        )
        assert r.status_code == 200 and r.json() == _api_report(
            loaded, keys["reader"], STEMI, **RANGE
        )

    def test_partial_dates_mean_the_whole_period(
        self, loaded: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        month = _evaluate(loaded, keys["reader"], STEMI, periodStart="2026-03", periodEnd="2026-03")
        assert month.json() == _api_report(loaded, keys["reader"], STEMI, **RANGE)
        year = _evaluate(loaded, keys["reader"], STEMI, periodStart="2026", periodEnd="2026")
        assert year.json() == _api_report(
            loaded, keys["reader"], STEMI, **{"from": "2026-01-01", "to": "2026-12-31"}
        )
        assert year.json()["period"]["end"] == "2026-12-31T23:59:59+08:00"

    def test_department_parameter(
        self, loaded: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        r = _evaluate(loaded, keys["reader"], STEMI, **MARCH, department="cardiology")
        assert r.json() == _api_report(
            loaded, keys["reader"], STEMI, **RANGE, department="cardiology"
        )
        assert _population(r.json())["denominator"] == 1
        # A limited key counts its departments only, and may not ask for another.
        limited = _evaluate(loaded, keys["limited"], STEMI, **MARCH).json()
        assert _population(limited)["denominator"] == 3
        r = _evaluate(loaded, keys["limited"], STEMI, **MARCH, department="cardiology")
        assert _outcome(r, 403)["issue"][0]["code"] == "forbidden"

    def test_type_level_operation_with_a_measure_parameter(
        self, loaded: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        expected = _api_report(loaded, keys["reader"], STEMI, **RANGE)
        for measure in (STEMI, f"https://qcpulse.org/fhir/Measure/{STEMI}|2026.1"):
            r = loaded.get(
                "/fhir/Measure/$evaluate-measure",
                params={**MARCH, "measure": measure},
                headers=keys["reader"],
            )
            assert r.status_code == 200, r.text
            assert r.json() == expected
        _outcome(
            loaded.get("/fhir/Measure/$evaluate-measure", params=MARCH, headers=keys["reader"]),
            400,
        )

    def test_a_manual_indicator_reports_its_entered_values(
        self, app_client: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        r = app_client.put(
            "/api/v1/indicators/NIT-2026-VIII/manual/2026-03",
            json={"numerator": 45, "denominator": 50},
            headers=keys["admin"],
        )
        assert r.status_code == 200, r.text
        report = _evaluate(app_client, keys["reader"], "NIT-2026-VIII", **MARCH).json()
        assert report == _api_report(app_client, keys["reader"], "NIT-2026-VIII", **RANGE)
        assert _population(report)["numerator"] == 45
        r = _evaluate(
            app_client, keys["reader"], "NIT-2026-VIII", **MARCH, reportType="subject-list"
        )
        assert _outcome(r, 422)["issue"][0]["code"] == "not-supported"


class TestSubjectList:
    @pytest.mark.parametrize("code", [STEMI, VTE])
    def test_lists_exactly_the_cases_subjects(
        self, loaded: TestClient, keys: dict[str, dict[str, str]], code: str
    ) -> None:
        r = _evaluate(loaded, keys["reader"], code, **MARCH, reportType="subject-list")
        assert r.status_code == 200, r.text
        report = r.json()
        MeasureReport.model_validate(report)
        assert report["type"] == "subject-list"
        summary = _api_report(loaded, keys["reader"], code, **RANGE)
        assert _population(report) == _population(summary)
        # Apart from the type and the lists, it is the summary.
        stripped = {k: v for k, v in report.items() if k not in ("type", "contained", "group")}
        assert stripped == {k: v for k, v in summary.items() if k not in ("type", "group")}
        lists = {c["id"]: c for c in report["contained"]}
        for population in report["group"][0]["population"]:
            ref = population["subjectResults"]["reference"]
            items = [e["item"]["reference"] for e in lists[ref[1:]].get("entry", [])]
            assert len(items) == population["count"]
        numerator = {
            c["episode"] for c in _cases(loaded, keys["reader"], code, **RANGE, status="numerator")
        }
        denominator_only = {
            c["episode"]
            for c in _cases(loaded, keys["reader"], code, **RANGE, status="denominator")
        }
        items_of = {
            code: {e["item"]["reference"] for e in lists[code].get("entry", [])} for code in lists
        }
        assert items_of["numerator"] == numerator and numerator
        assert items_of["denominator"] == numerator | denominator_only
        assert items_of["initial-population"] == numerator | denominator_only
        assert items_of["denominator-exclusion"] == set()
        assert "emptyReason" in lists["denominator-exclusion"]

    def test_stemi_subjects_by_hand(
        self, loaded: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        report = _evaluate(loaded, keys["reader"], STEMI, **MARCH, reportType="subject-list")
        lists = {c["id"]: c for c in report.json()["contained"]}
        numerator = [e["item"]["reference"] for e in lists["numerator"]["entry"]]
        assert numerator == ["Encounter/e1", "Encounter/e2"]  # the pending e5 is in no list
        denominator = sorted(e["item"]["reference"] for e in lists["denominator"]["entry"])
        assert denominator == ["Encounter/e1", "Encounter/e2", "Encounter/e3", "Encounter/e4"]

    def test_a_limited_key_sees_its_departments_subjects_only(
        self, loaded: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        r = _evaluate(loaded, keys["limited"], STEMI, **MARCH, reportType="subject-list")
        assert r.status_code == 200, r.text
        lists = {c["id"]: c for c in r.json()["contained"]}
        denominator = sorted(e["item"]["reference"] for e in lists["denominator"]["entry"])
        assert denominator == ["Encounter/e1", "Encounter/e2", "Encounter/e3"]
        assert _population(r.json())["denominator"] == 3
        # Each subject is readable by the same key at /fhir, as the lists promise.
        for ref in denominator:
            assert loaded.get(f"/fhir/{ref}", headers=keys["limited"]).status_code == 200
        assert loaded.get("/fhir/Encounter/e4", headers=keys["limited"]).status_code == 404
        r = _evaluate(
            loaded,
            keys["limited"],
            STEMI,
            **MARCH,
            reportType="subject-list",
            department="cardiology",
        )
        _outcome(r, 403)

    def test_post_subject_list(self, loaded: TestClient, keys: dict[str, dict[str, str]]) -> None:
        body = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "periodStart", "valueDate": "2026-03-01"},
                {"name": "periodEnd", "valueDate": "2026-03-31"},
                {"name": "reportType", "valueCode": "subject-list"},
                {"name": "department", "valueString": "cardiology"},
            ],
        }
        r = loaded.post(f"/fhir/Measure/{VTE}/$evaluate-measure", json=body, headers=keys["admin"])
        assert r.status_code == 200, r.text
        lists = {c["id"]: c for c in r.json()["contained"]}
        assert {e["item"]["reference"] for e in lists["denominator"]["entry"]} == {
            "Encounter/ve3",
            "Encounter/ve4",
        }
        assert [e["item"]["reference"] for e in lists["numerator"]["entry"]] == ["Encounter/ve3"]

    def test_only_keys_that_read_cases_get_it(
        self, loaded: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        for report_type in ("summary", "subject-list"):
            r = _evaluate(loaded, keys["ingest"], STEMI, **MARCH, reportType=report_type)
            assert _outcome(r, 403)["issue"][0]["code"] == "forbidden"
        # Another tenant's key sees its own (empty) tenant.
        r = _evaluate(loaded, keys["other"], STEMI, **MARCH, reportType="subject-list")
        assert r.status_code == 200 and _population(r.json())["initial-population"] == 0
        assert "entry" not in r.json()["contained"][0]


class TestErrors:
    @pytest.mark.parametrize(
        ("params", "fragment"),
        [
            ({"periodEnd": "2026-03-31"}, "periodStart is required"),
            ({"periodStart": "2026-03-01"}, "periodEnd is required"),
            ({**MARCH, "periodStart": "2026-13-01"}, "not a valid date"),
            ({**MARCH, "periodStart": "01/03/2026"}, "must be a date"),
            ({**MARCH, "periodEnd": "2026-03-01T00:00:00"}, "must be a date"),
            ({"periodStart": "2026-03-31", "periodEnd": "2026-03-01"}, "before periodStart"),
            ({"periodStart": "1990", "periodEnd": "2026"}, "20 years"),
            ({**MARCH, "reportType": "subject"}, "not supported"),
            ({**MARCH, "reportType": "individual"}, "not supported"),
            ({**MARCH, "reportType": "everything"}, "summary or subject-list"),
            ({**MARCH, "subject": "Patient/p1"}, "'subject' is not supported"),
            ({**MARCH, "practitioner": "Practitioner/x"}, "'practitioner' is not supported"),
            ({**MARCH, "lastReceivedOn": "2026-03-01"}, "'lastReceivedOn' is not supported"),
            ({**MARCH, "measure": "NIT-2026-II"}, "is not Measure/PIT-2026-23"),
            ({**MARCH, "colour": "blue"}, "unknown or unsupported parameter 'colour'"),
            ({**MARCH, "_format": "xml"}, "JSON only"),
        ],
    )
    def test_bad_parameters_are_400_outcomes(
        self,
        app_client: TestClient,
        keys: dict[str, dict[str, str]],
        params: dict[str, str],
        fragment: str,
    ) -> None:
        body = _outcome(_evaluate(app_client, keys["reader"], STEMI, **params), 400)
        assert fragment in body["issue"][0]["diagnostics"]

    def test_repeated_parameter(
        self, app_client: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        r = app_client.post(
            f"/fhir/Measure/{STEMI}/$evaluate-measure",
            params=MARCH,
            json={
                "resourceType": "Parameters",
                "parameter": [{"name": "periodStart", "valueDate": "2026-02-01"}],
            },
            headers=keys["reader"],
        )
        assert "more than once" in _outcome(r, 400)["issue"][0]["diagnostics"]

    def test_unknown_parameter_ignored_when_lenient(
        self, app_client: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        r = _evaluate(
            app_client, {**keys["reader"], "Prefer": "handling=lenient"}, STEMI, **MARCH, colour="x"
        )
        assert r.status_code == 200, r.text

    @pytest.mark.parametrize(
        "body",
        [
            b"{not json",
            b'{"resourceType": "Patient"}',
            b'{"resourceType": "Parameters", "parameter": [{"valueDate": "2026-03-01"}]}',
            b'{"resourceType": "Parameters", "parameter": [{"name": "periodStart"}]}',
        ],
    )
    def test_bad_bodies(
        self, app_client: TestClient, keys: dict[str, dict[str, str]], body: bytes
    ) -> None:
        r = app_client.post(
            f"/fhir/Measure/{STEMI}/$evaluate-measure",
            content=body,
            headers={**keys["reader"], "Content-Type": "application/fhir+json"},
        )
        _outcome(r, 400)

    def test_unknown_measure_and_no_key(
        self, app_client: TestClient, keys: dict[str, dict[str, str]]
    ) -> None:
        _outcome(_evaluate(app_client, keys["reader"], "NOPE-1", **MARCH), 404)
        r = app_client.get(f"/fhir/Measure/{STEMI}/$evaluate-measure", params=MARCH)
        _outcome(r, 401)


# -- a real FHIR client ------------------------------------------------------------------


@pytest.fixture
def served(loaded: TestClient, runtime: Runtime) -> Iterator[str]:
    """The app on a real port (a FHIR client speaks HTTP), on the same database."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(runtime=runtime, run_workers=False),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/fhir"
    server.should_exit = True
    thread.join(timeout=10)


def test_driven_by_fhirpy(served: str, keys: dict[str, dict[str, str]]) -> None:
    """fhirpy (a FHIR client library, not a project dependency: skipped when absent)
    searches, pages, reads and runs the operation as it would against any server."""
    fhirpy = pytest.importorskip("fhirpy")
    reader = keys["reader"]["Authorization"]
    client = fhirpy.SyncFHIRClient(served, authorization=reader)
    measures = client.resources("Measure").search(name="PIT_2026").limit(7).fetch_all()
    codes = [m["id"] for m in measures]
    expected = [d.code for d in DEFINITIONS if d.code in CATALOGUE.reported("2026")]
    assert codes == [c for c in expected if c.startswith("PIT-2026")]  # followed next links
    stemi_measure = client.reference("Measure", STEMI).to_resource()
    assert stemi_measure["url"] == f"https://qcpulse.org/fhir/Measure/{STEMI}"
    Measure.model_validate(stemi_measure.serialize())
    # fhirpy's count() adds its own ``_totalMethod``: refused, unless asked leniently.
    with pytest.raises(fhirpy.base.exceptions.OperationOutcome):
        client.resources("Measure").search(status="active").count()
    lenient = fhirpy.SyncFHIRClient(
        served, authorization=reader, extra_headers={"Prefer": "handling=lenient"}
    )
    assert lenient.resources("Measure").search(status="active").count() == len(expected)
    report = client.reference("Measure", STEMI).execute(
        "$evaluate-measure", method="get", params={**MARCH, "reportType": "subject-list"}
    )
    MeasureReport.model_validate(report)
    assert report["type"] == "subject-list" and _population(report)["numerator"] == 2
    posted = client.reference("Measure", STEMI).execute(
        "$evaluate-measure",
        data={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "periodStart", "valueDate": "2026-03-01"},
                {"name": "periodEnd", "valueDate": "2026-03-31"},
            ],
        },
    )
    assert posted["type"] == "summary" and _population(posted)["denominator"] == 4
    with pytest.raises(fhirpy.base.exceptions.ResourceNotFound):
        client.reference("Measure", "NOPE-1").to_resource()


def test_an_evaluation_is_audited(loaded: TestClient, keys: dict[str, dict[str, str]]) -> None:
    r = _evaluate(loaded, keys["admin"], STEMI, **MARCH, reportType="subject-list")
    assert r.status_code == 200
    events = loaded.get("/api/v1/audit", params={"action": "read"}, headers=keys["admin"])
    assert events.status_code == 200, events.text
    assert any("$evaluate-measure" in e["resource"] for e in events.json()["entries"])
