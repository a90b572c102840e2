"""Fixtures for ingest tests: an app with small limits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from qcpulse.app import create_app
from shared.runtime import Runtime

#: Limits small enough to hit in a test.
MAX_ENTRIES = 3
MAX_BODY = 4000
MAX_DEPTH = 12


@pytest.fixture
def limited_client(runtime: Runtime) -> Iterator[TestClient]:
    settings = runtime.settings.model_copy(
        update={
            "max_bundle_entries": MAX_ENTRIES,
            "max_body_bytes": MAX_BODY,
            "max_json_depth": MAX_DEPTH,
        }
    )
    limited = Runtime(settings=settings, engine=runtime.engine, clock=runtime.clock)
    with TestClient(create_app(runtime=limited, run_workers=False)) as client:
        yield client
