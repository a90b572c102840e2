"""Department-limited keys on every path that shows patient-level data
(services/ingest/access.py): FHIR reads and history, data quality, the console
timeline, case lists. A role × department × tenant matrix over those routes."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.auth import Role, create_key
from shared.runtime import Runtime
from tests.conftest import OTHER_TENANT, TENANT, make_key
from tests.fhir_factories import encounter, patient
from tests.ingest.helpers import observation

JSON = dict[str, Any]


def _put(client: TestClient, headers: dict[str, str], *resources: JSON) -> None:
    for resource in resources:
        r = client.put(
            f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource, headers=headers
        )
        assert r.status_code in (200, 201), r.text


def _bad_unit(oid: str, eid: str | None, pid: str) -> JSON:
    res = observation(oid, eid, pid)
    res["valueQuantity"] = {"value": 5.8, "unit": "bogus"}
    return res


@pytest.fixture
def keys(runtime: Runtime) -> dict[str, dict[str, str]]:
    with runtime.write() as session:
        _, limited = create_key(session, TENANT, Role.READER, departments=["emergency"])
    secrets = {
        "admin": make_key(runtime, Role.ADMIN),
        "reader": make_key(runtime, Role.READER),
        "limited": limited,
        "ingest": make_key(runtime, Role.INGEST),
        "other": make_key(runtime, Role.ADMIN, OTHER_TENANT),
    }
    return {name: {"Authorization": f"Bearer {s}"} for name, s in secrets.items()}


@pytest.fixture
def data(app_client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    """Patient p1 seen in emergency (e1), p2 in cardiology only (e2), p3 in both
    (e3 emergency, e4 cardiology); an Observation in each, one linked to nothing, and
    the Organization of a department."""
    _put(
        app_client,
        keys["ingest"],
        {"resourceType": "Organization", "id": "emergency", "name": "急诊科"},
        patient("p1"),
        patient("p2"),
        patient("p3"),
        encounter("e1", "p1", dept="emergency"),
        encounter("e2", "p2", dept="cardiology", dept_name="心内科"),
        encounter("e3", "p3", dept="emergency"),
        encounter("e4", "p3", dept="cardiology", dept_name="心内科"),
        _bad_unit("o1", "e1", "p1"),
        _bad_unit("o2", "e2", "p2"),
        _bad_unit("o3", None, "p1"),
    )


#: resource → visible to the emergency-only reader.
VISIBLE_TO_LIMITED = {
    "Encounter/e1": True,
    "Encounter/e2": False,
    "Encounter/e3": True,
    "Encounter/e4": False,
    "Patient/p1": True,
    "Patient/p2": False,
    "Patient/p3": True,  # one of its episodes is in emergency
    "Observation/o1": True,
    "Observation/o2": False,
    "Observation/o3": False,  # linked to no episode: unlimited keys only
    "Organization/emergency": False,  # no episode: unlimited keys only
}
FHIR_PATHS = ("/fhir/{ref}", "/fhir/{ref}/_history", "/fhir/{ref}/_history/1")


@pytest.mark.usefixtures("data")
@pytest.mark.parametrize("template", FHIR_PATHS)
def test_fhir_reads_matrix(
    app_client: TestClient, keys: dict[str, dict[str, str]], template: str
) -> None:
    for ref, limited_sees in VISIBLE_TO_LIMITED.items():
        path = template.format(ref=ref)
        expected = {
            "admin": 200,
            "reader": 200,
            "ingest": 200,
            "limited": 200 if limited_sees else 404,
            "other": 404,
        }
        got = {who: app_client.get(path, headers=h).status_code for who, h in keys.items()}
        assert got == expected, path


@pytest.mark.usefixtures("data")
def test_hidden_is_answered_like_another_tenants(
    app_client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    """Same status and same shape as an unknown id: existence does not leak."""
    hidden = app_client.get("/fhir/Encounter/e2", headers=keys["limited"])
    unknown = app_client.get("/fhir/Encounter/nope", headers=keys["limited"])
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.headers["content-type"] == unknown.headers["content-type"]
    assert hidden.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"]
    assert "e2" in hidden.json()["issue"][0]["diagnostics"]  # its own id only


@pytest.mark.usefixtures("data")
def test_api_reads_matrix(app_client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    code = "PIT-2026-23"
    cases = f"/api/v1/indicators/{code}/cases"
    expected: dict[str, dict[str, int]] = {
        "/console/api/timeline?episode=Encounter/e1": {
            "admin": 200, "reader": 200, "limited": 200, "ingest": 403, "other": 404,
        },
        "/console/api/timeline?episode=Encounter/e2": {
            "admin": 200, "reader": 200, "limited": 404, "ingest": 403, "other": 404,
        },
        f"{cases}?department=emergency": {
            "admin": 200, "reader": 200, "limited": 200, "ingest": 403, "other": 200,
        },
        f"{cases}?department=cardiology": {
            "admin": 200, "reader": 200, "limited": 403, "ingest": 403, "other": 200,
        },
        "/api/v1/data-quality": {
            "admin": 200, "reader": 200, "limited": 200, "ingest": 403, "other": 200,
        },
    }  # fmt: skip
    for path, want in expected.items():
        got = {who: app_client.get(path, headers=h).status_code for who, h in keys.items()}
        assert got == want, path


@pytest.mark.usefixtures("data")
def test_data_quality_limited_to_departments(
    app_client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    full = app_client.get("/api/v1/data-quality", headers=keys["reader"]).json()
    limited = app_client.get("/api/v1/data-quality", headers=keys["limited"]).json()

    def refs(body: JSON, name: str) -> set[str]:
        return {e["resource"] for e in body[name]["examples"]}

    # The unlimited reader sees every department and the unlinked Observation.
    assert refs(full, "unknown_units") == {"Observation/o1", "Observation/o2", "Observation/o3"}
    assert full["unlinked"] == {"Observation": 1}
    assert [i["resource"] for i in full["unlinked_resources"]] == ["Observation/o3"]
    assert refs(full, "patients_without_identifier") == {"Patient/p1", "Patient/p2", "Patient/p3"}
    assert refs(full, "discharged_without_end") == set()

    assert refs(limited, "unknown_units") == {"Observation/o1"}
    assert limited["unknown_units"]["count"] == 1
    assert limited["unlinked"] == {} and limited["unmapped"] == {}
    assert limited["unlinked_resources"] == []
    assert refs(limited, "patients_without_identifier") == {"Patient/p1", "Patient/p3"}
    assert limited["patients_without_identifier"]["count"] == 2


@pytest.mark.usefixtures("data")
def test_data_quality_encounter_findings_limited(
    app_client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    """Episode findings (here: partOf an encounter not received) by department."""
    e5 = encounter("e5", "p1", dept="emergency")
    e6 = encounter("e6", "p2", dept="cardiology", dept_name="心内科")
    e5["partOf"] = {"reference": "Encounter/gone1"}
    e6["partOf"] = {"reference": "Encounter/gone2"}
    _put(app_client, keys["ingest"], e5, e6)

    def refs(headers: dict[str, str]) -> set[str]:
        body = app_client.get("/api/v1/data-quality", headers=headers).json()
        return {e["resource"] for e in body["part_of_not_received"]["examples"]}

    assert refs(keys["reader"]) == {"Encounter/e5", "Encounter/e6"}
    assert refs(keys["limited"]) == {"Encounter/e5"}
