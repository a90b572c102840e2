"""Ingest: FHIR R4 endpoints, the versioned resource store, episodes and facts.

Other services may import only what is listed here.
"""

from services.ingest.bundles import apply_transaction, lock_resources
from services.ingest.readmodel import (
    Chain,
    current_resource,
    department_names,
    episode_ids,
    load_chains,
    load_episodes,
    patient_encounter_ids,
    patients_encounter_ids,
    tenants_with_data,
)
from services.ingest.router import api_router, router

__all__ = [
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
]
