"""Response bodies of the ingest service's REST endpoint (the FHIR endpoints answer
FHIR resources: ``shared.openapi.FHIRResource``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Finding(BaseModel):
    """How many records have one data-quality problem, and the first ``limit`` of them
    by id, each ``{"resource": "Type/id", …}``."""

    count: int
    examples: list[dict[str, Any]]


class UnlinkedResource(BaseModel):
    resource: str
    reason: str
    encounter: str | None


class DataQuality(BaseModel):
    """``GET /api/v1/data-quality``: counts by resource type of what reached no episode
    (``unlinked``) or is stored but not mapped (``unmapped``), the first of them, and
    the findings of ``services.ingest.quality`` by name."""

    unlinked: dict[str, int]
    unmapped: dict[str, int]
    unlinked_resources: list[UnlinkedResource]
    discharged_without_end: Finding
    discharged_without_disposition: Finding
    episodes_without_patient: Finding
    patients_without_identifier: Finding
    unknown_units: Finding
    part_of_not_received: Finding
    part_of_cycles: Finding = Field(description="each example names the cycle's encounters")
