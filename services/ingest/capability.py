"""The CapabilityStatement served at ``/fhir/metadata``."""

from __future__ import annotations

from typing import Any

from services.ingest.mapping import MAPPED_TYPES

#: The indicator definitions as read-only Measures (services/indicators/measure_router.py).
MEASURE: dict[str, Any] = {
    "type": "Measure",
    "interaction": [{"code": "read"}, {"code": "search-type"}],
    "searchParam": [
        {"name": name, "type": kind}
        for name, kind in (
            ("_id", "token"),
            ("url", "uri"),
            ("name", "string"),
            ("title", "string"),
            ("status", "token"),
            ("version", "token"),
        )
    ],
    "operation": [
        {
            "name": "evaluate-measure",
            "definition": "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure",
            "documentation": (
                "reportType summary or subject-list; periodStart and periodEnd dates; "
                "department (qcpulse) narrows to one department"
            ),
        }
    ],
}


def capability_statement() -> dict[str, Any]:
    interactions = [
        {"code": c} for c in ("read", "vread", "update", "create", "delete", "history-instance")
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "software": {"name": "qcpulse", "version": "0.1.0"},
        "implementation": {"description": "qcpulse FHIR R4 ingest"},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Transaction and batch Bundles at the base; PUT with client ids is the "
                    "normal path. Mapped types feed quality indicators; other valid types "
                    "are stored and reported as unmapped."
                ),
                "security": {
                    "cors": False,
                    "description": "Authorization: Bearer <key>; a key belongs to one tenant.",
                },
                "resource": [
                    {
                        "type": rtype,
                        "versioning": "versioned",
                        "readHistory": True,
                        "updateCreate": True,
                        "interaction": interactions,
                    }
                    for rtype in sorted(MAPPED_TYPES)
                ]
                + [MEASURE],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }
