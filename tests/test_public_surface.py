"""Each service's public surface is its __init__, and services meet only there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import services.alerts
import services.hl7v2
import services.indicators
import services.ingest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("ingest", "indicators", "alerts", "hl7v2")

EXPECTED = {
    services.ingest: {
        "Chain",
        "api_router",
        "apply_transaction",
        "current_resource",
        "department_names",
        "episode_ids",
        "load_chains",
        "load_episodes",
        "lock_resources",
        "patient_encounter_ids",
        "patients_encounter_ids",
        "router",
        "tenants_with_data",
    },
    services.indicators: {
        "Catalogue",
        "IndicatorDefinition",
        "RateStatus",
        "VerifyReport",
        "catalogue_for",
        "handlers",
        "month_status",
        "profiles_for",
        "recompute",
        "reported_codes",
        "router",
        "timers",
        "verify",
    },
    services.alerts: {
        "ResealReport",
        "handlers",
        "loops",
        "reseal_all",
        "router",
        "seal_weak_secrets",
        "start_workers",
    },
    services.hl7v2: {
        "Answer",
        "MllpListener",
        "Replayed",
        "api_router",
        "receive",
        "replay",
        "router",
    },
}


@pytest.mark.parametrize("package", list(EXPECTED), ids=lambda p: p.__name__)
def test_exported_members(package):
    assert set(package.__all__) == EXPECTED[package]
    for name in package.__all__:
        assert hasattr(package, name)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_others_only_through_their_init(service):
    offending = []
    for path in sorted((ROOT / "services" / service).rglob("*.py")):
        for module in imports_of(path):
            parts = module.split(".")
            if parts[0] == "services" and len(parts) > 1 and parts[1] != service and len(parts) > 2:
                offending.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offending == []


def test_shared_imports_no_service():
    offending = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted((ROOT / "shared").rglob("*.py"))
        for module in imports_of(path)
        if module.split(".")[0] == "services"
    ]
    assert offending == []
