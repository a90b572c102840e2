"""Ingest: FHIR R4 endpoints, the versioned resource store, episodes and facts.

Other services may import only what is listed here.
"""

from services.ingest.readmodel import (
    department_names,
    episode_ids,
    load_episodes,
    tenants_with_data,
)
from services.ingest.router import api_router, router

__all__ = [
    "api_router",
    "department_names",
    "episode_ids",
    "load_episodes",
    "router",
    "tenants_with_data",
]
