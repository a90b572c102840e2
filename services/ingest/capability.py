"""The CapabilityStatement served at ``/fhir/metadata``."""

from __future__ import annotations

from typing import Any

from services.ingest.mapping import MAPPED_TYPES


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
                ],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }
