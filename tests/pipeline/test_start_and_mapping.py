"""Start-up checks and mapping rules that cross ingest and indicators."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from qcpulse.app import prepare
from services.indicators.definitions import DefinitionError
from services.indicators.worker import catalogue_for
from services.ingest.mapping import map_fact
from shared.runtime import Runtime

TZ = ZoneInfo("Asia/Shanghai")


def test_a_bad_definition_file_stops_the_start(tmp_path: Path, runtime: Runtime):
    (tmp_path / "X-BAD.yaml").write_text("code: X-BAD\nnot_a_field: 1\n", encoding="utf-8")
    bad = Runtime(
        settings=runtime.settings.model_copy(update={"indicators_dir": tmp_path}),
        engine=runtime.engine,
        clock=runtime.clock,
    )
    catalogue_for.cache_clear()
    with pytest.raises(DefinitionError, match=r"X-BAD\.yaml"):
        prepare(bad)
    catalogue_for.cache_clear()


def test_a_toml_definition_is_read(tmp_path: Path):
    (tmp_path / "H-STEMI-TOML.toml").write_text(
        'extends = "PIT-2026-23"\ncode = "H-STEMI-TOML"\n[clock]\nwindow = "120m"\n',
        encoding="utf-8",
    )
    catalogue_for.cache_clear()
    try:
        definition = catalogue_for(tmp_path).get("H-STEMI-TOML")
    finally:
        catalogue_for.cache_clear()
    assert definition is not None and definition.window_minutes == 120


@pytest.mark.parametrize(
    ("resource", "counts"),
    [
        (
            {
                "resourceType": "MedicationRequest",
                "id": "m",
                "status": "cancelled",
                "intent": "order",
                "medicationCodeableConcept": {
                    "coding": [{"system": "http://www.whocc.no/atc", "code": "J01DD04"}]
                },
                "subject": {"reference": "Patient/p"},
                "authoredOn": "2026-03-02T10:00:00+08:00",
            },
            False,
        ),
        (
            {
                "resourceType": "MedicationRequest",
                "id": "m",
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {
                    "coding": [{"system": "http://www.whocc.no/atc", "code": "J01DD04"}]
                },
                "subject": {"reference": "Patient/p"},
                "authoredOn": "2026-03-02T10:00:00+08:00",
            },
            True,
        ),
        (
            {
                "resourceType": "Observation",
                "id": "o",
                "status": "cancelled",
                "code": {"coding": [{"system": "http://loinc.org", "code": "600-7"}]},
            },
            False,
        ),
        (
            {
                "resourceType": "Observation",
                "id": "o",
                "status": "preliminary",
                "code": {"coding": [{"system": "http://loinc.org", "code": "600-7"}]},
            },
            True,
        ),
        (
            {
                "resourceType": "Procedure",
                "id": "p",
                "status": "not-done",
                "subject": {"reference": "Patient/p"},
            },
            False,
        ),
    ],
)
def test_resources_that_did_not_happen_give_no_fact(resource, counts):
    assert (map_fact(resource, TZ) is not None) is counts
