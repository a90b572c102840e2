"""Small factories for FHIR resources as integration engines send them."""

from __future__ import annotations

from typing import Any

ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ICD10_CN = "urn:oid:2.16.156.10011.2.3.3.11"
ICD9CM3_CN = "urn:oid:2.16.156.10011.2.3.3.12"

JSON = dict[str, Any]


def patient(pid: str = "p1", birth: str = "1962-05-01", name: str = "张三") -> JSON:
    return {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"text": name}],
        "gender": "male",
        "birthDate": birth,
    }


def encounter(
    eid: str = "e1",
    pid: str = "p1",
    *,
    cls: str = "EMER",
    start: str = "2026-03-02T10:00:00+08:00",
    end: str | None = None,
    dept: str = "emergency",
    dept_name: str = "急诊科",
) -> JSON:
    period: JSON = {"start": start}
    if end:
        period["end"] = end
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished" if end else "in-progress",
        "class": {"system": ACT, "code": cls},
        "subject": {"reference": f"Patient/{pid}"},
        "period": period,
        "serviceProvider": {"reference": f"Organization/{dept}", "display": dept_name},
    }


def condition(
    cid: str = "c1",
    eid: str = "e1",
    pid: str = "p1",
    *,
    code: str = "I21.000x001",
    system: str = ICD10_CN,
    onset: str = "2026-03-02T10:00:00+08:00",
) -> JSON:
    return {
        "resourceType": "Condition",
        "id": cid,
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "onsetDateTime": onset,
    }


def procedure(
    prid: str = "pr1",
    eid: str = "e1",
    pid: str = "p1",
    *,
    code: str = "00.6600",
    system: str = ICD9CM3_CN,
    start: str = "2026-03-02T11:10:00+08:00",
    status: str = "completed",
) -> JSON:
    return {
        "resourceType": "Procedure",
        "id": prid,
        "status": status,
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "performedDateTime": start,
    }


def transaction(*resources: JSON, btype: str = "transaction") -> JSON:
    return {
        "resourceType": "Bundle",
        "type": btype,
        "entry": [
            {
                "fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def stemi_visit() -> JSON:
    return transaction(patient(), encounter(), condition(), procedure())
