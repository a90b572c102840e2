"""Schemathesis against the ASGI app (docs/CONTRACT.md): every operation of
``/openapi.json``, with an admin, a reader and an ingest key, every check on; any
finding fails the test.

One test per operation and key, over a tenant seeded once per key (tests/contract/
seed.py) and emptied at the end. The figures (operations, cases, findings) are printed
in the terminal summary (tests/contract/conftest.py): they go into docs/CONTRACT.md.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from sqlalchemy.engine import Engine

from qcpulse.app import create_app
from shared.auth import ensure_tenant
from shared.clock import FrozenClock
from shared.runtime import Runtime
from shared.settings import Settings
from tests.conftest import OTHER_TENANT, T0, TENANT, _empty
from tests.contract.seed import Seeded, seed

#: Examples per operation and key: bounded so that the three runs take a few minutes
#: on 2 cores under SQLite (schemathesis adds its coverage-phase cases to these).
MAX_EXAMPLES = 10

#: Operations not fuzzed, and why. Nothing else is left out.
EXCLUDED = {
    # A server-sent event stream never ends: a client (and schemathesis) would wait
    # for its last byte forever. Its key, role and parameter checks are those of
    # GET /api/v1/alerts (fuzzed); tests/alerts test the stream's events.
    ("GET", "/api/v1/alerts/stream"): "a never-ending text/event-stream",
    # The route checks each mapping against the code systems it knows (CodeMap) and
    # answers 422 for an unknown target system; no JSON schema can say which systems
    # those are, so schemathesis' "schema-valid request rejected" (ST202) fires on
    # random systems. tests/pipeline and tests/indicators cover the route itself.
    ("PUT", "/api/v1/code-maps/{system}"): "semantic 422 for unknown target systems",
}

#: What a check is told of an operation, and why; every other check is on as is.
BY_DESIGN: list[dict[str, Any]] = [
    # Measure resources are read-only (the catalogue's definitions): every write answers
    # 405 with ``Allow: GET``, the valid requests too. The routes exist so that the
    # generic /fhir/{rtype} routes do not store a Measure.
    *(
        {
            "include-name": name,
            "checks": {"positive_data_acceptance": {"expected-statuses": [401, 403, 405, 429]}},
        }
        for name in (
            "POST /fhir/Measure",
            "PUT /fhir/Measure/{code}",
            "DELETE /fhir/Measure/{code}",
        )
    ),
    # /fhir/$import-status/0 also matches /fhir/{rtype}/{rid} (rtype "$import-status"),
    # whose PUT answers it (400, unknown resource type): ``Allow`` names that PUT too.
    # Schemathesis's own unspecified-method probes count such sibling templates; its
    # ``Allow`` check (ST205) does not.
    {
        "include-path": "/fhir/$import-status/{job_id}",
        "checks": {"allow_header_conformance": {"enabled": False}},
    },
]

ROLES = ("admin", "reader", "ingest")

NDJSON_TYPES = ("application/fhir+ndjson", "application/ndjson", "application/x-ndjson")


@schemathesis.serializer(*NDJSON_TYPES)
def _ndjson(ctx: Any, value: Any) -> bytes | None:
    """``POST /fhir/$import``'s ndjson: text on the wire. A value that is not a string
    (schemathesis's "incorrect type") has no text form: the body is left out."""
    if isinstance(value, bytes):
        return value
    return value.encode() if isinstance(value, str) else None


#: The app fuzzed: built once (the schema is read at import); the runtime it answers
#: with is set by ``seeded`` (no lifespan: no workers, no start-up migration).
APP = create_app(run_workers=False)

schema = schemathesis.openapi.from_asgi(
    "/openapi.json", APP, config=SchemathesisConfig.from_dict({"operations": BY_DESIGN})
)
for _method, _path in EXCLUDED:
    schema = schema.exclude(method=_method, path=_path)

FIGURES: collections.Counter[str] = collections.Counter()
OPERATIONS: set[tuple[str, str]] = set()


@contextlib.contextmanager
def fresh_runtime(engine: Engine) -> Iterator[Runtime]:
    """A runtime over an emptied database with the two test tenants, emptied again
    after: for a module's worth of tests on one seed (conftest's ``runtime`` is one
    test's)."""
    settings_ = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        rate_limit_per_minute=10**9,  # neither the fuzzer nor the matrix tests rate limits
    )
    runtime = Runtime(settings=settings_, engine=engine, clock=FrozenClock(T0))
    _empty(engine)
    with runtime.write() as session:
        ensure_tenant(session, TENANT, name="示例医院", timezone="Asia/Shanghai")
        ensure_tenant(session, OTHER_TENANT, name="Other hospital", timezone="Asia/Shanghai")
    try:
        yield runtime
    finally:
        runtime.stop.set()
        _empty(engine)


@pytest.fixture(scope="module", params=ROLES)
def seeded(request: pytest.FixtureRequest, engine: Engine) -> Iterator[tuple[str, Seeded]]:
    """A seeded tenant (and another one) for one key's run, emptied after it."""
    with fresh_runtime(engine) as runtime:
        APP.state.runtime = runtime
        yield str(request.param), seed(runtime, TestClient(APP))


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_openapi_contract(case: schemathesis.Case, seeded: tuple[str, Seeded]) -> None:
    role, data = seeded
    OPERATIONS.add((case.operation.method.upper(), case.operation.path))
    FIGURES["cases"] += 1
    case.call_and_validate(headers={"Authorization": f"Bearer {data.keys[role]}"})
