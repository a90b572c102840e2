"""Keys of the two hospital tenants that are members of the test region."""

from __future__ import annotations

import pytest

from shared.auth import Role
from shared.runtime import Runtime
from tests.conftest import OTHER_TENANT, TENANT, make_key


def _keys(runtime: Runtime, role: Role) -> dict[str, dict[str, str]]:
    return {
        t: {"Authorization": f"Bearer {make_key(runtime, role, t)}"} for t in (TENANT, OTHER_TENANT)
    }


@pytest.fixture
def tenant_keys(runtime: Runtime) -> dict[str, dict[str, str]]:
    """Ingest keys by tenant."""
    return _keys(runtime, Role.INGEST)


@pytest.fixture
def readers(runtime: Runtime) -> dict[str, dict[str, str]]:
    return _keys(runtime, Role.READER)
