"""A region-reader key reads aggregates of its own region and nothing else: a role ×
path matrix over every route of the app outside ``/api/v1/regions``. Each answers the
region key 403 (or 404), and the hospital's own key passes its authorization (2xx on
the reads whose data the test holds)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qcpulse.app import create_app
from shared.auth import Role
from shared.runtime import Runtime
from tests.conftest import make_key
from tests.regions.helpers import CODE, make_region, post_episodes

#: Routes that answer without a key (probes, the console's static pages and docs, the
#: FHIR CapabilityStatement): none shows data.
PUBLIC = {
    "/openapi.json", "/health", "/ready", "/metrics", "/", "/console/static/{path:path}",
    "/docs", "/redoc", "/fhir/metadata", "/console/api/session",
}  # fmt: skip
#: Path parameter → a value the test's data holds (a Patient, STEMI's code, a month).
VALUES = {"rtype": "Patient", "rid": "p1", "vid": "1", "code": CODE, "month": "2026-03"}
#: Where a route needs another value: manual indicators are entered, not counted.
MANUAL = {"code": "NIT-2026-X"}
PATH_VALUES = {
    "/api/v1/indicators/{code}/manual": MANUAL,
    "/api/v1/indicators/{code}/manual/{month}": MANUAL,
}
#: Query strings some reads need.
PERIOD = "?periodStart=2026-03-01&periodEnd=2026-03-31"
QUERIES = {
    "/console/api/timeline": "?episode=Encounter/e1",
    "/fhir/Measure/$evaluate-measure": PERIOD + f"&measure={CODE}",
    "/fhir/Measure/{code}/$evaluate-measure": PERIOD,
}
#: Never ends for an authorized key: only the refusal is checked.
STREAMS = {"/api/v1/alerts/stream"}


def routes(app: Any) -> Iterator[tuple[str, str]]:
    def walk(items: Any) -> Iterator[Any]:
        for r in items:
            if hasattr(r, "effective_route_contexts"):
                yield from r.effective_route_contexts()
            else:
                yield r

    for route in walk(app.routes):
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                yield method, route.path


def concrete(path: str) -> str:
    out = path
    for part in path.split("{")[1:]:
        name = part.split("}")[0]
        key = name.split(":")[0]
        value = PATH_VALUES.get(path, {}).get(key) or VALUES.get(key, "x")
        out = out.replace("{" + name + "}", value)
    return out + QUERIES.get(path, "")


@pytest.fixture
def matrix(app_client: TestClient, runtime: Runtime, tenant_keys) -> dict[str, dict[str, str]]:
    post_episodes(app_client, runtime, tenant_keys)
    return {
        "region": {"Authorization": f"Bearer {make_region(runtime)}"},
        "tenant": {"Authorization": f"Bearer {make_key(runtime, Role.ADMIN)}"},
    }


def test_every_tenant_route_refuses_a_region_key(app_client, runtime, matrix):
    app = create_app(runtime=runtime, run_workers=False)
    checked = []
    # Reads first: the writes (DELETE /fhir/Patient/p1 among them) change the data.
    for method, path in sorted(routes(app), key=lambda mp: mp[0] != "GET"):
        if path.startswith("/api/v1/regions/") or path in PUBLIC:
            continue
        url = concrete(path)
        r = app_client.request(method, url, headers=matrix["region"])
        assert r.status_code in (403, 404), (method, path, r.status_code, r.text[:200])
        assert "张三" not in r.text  # the patient's name: no patient data in any answer
        checked.append((method, path))
        if path in STREAMS:
            continue
        r = app_client.request(method, url, headers=matrix["tenant"])
        assert r.status_code not in (401, 403), (method, path, r.status_code, r.text[:200])
        if method == "GET" and all(
            n.split("}")[0].split(":")[0] in VALUES for n in path.split("{")[1:]
        ):
            assert 200 <= r.status_code < 300, (method, path, r.status_code, r.text[:200])
    # The matrix covers the patient-level reads and the writes.
    for must in [
        ("GET", "/fhir/{rtype}/{rid}"),
        ("GET", "/fhir/{rtype}/{rid}/_history"),
        ("GET", "/api/v1/indicators/{code}/cases"),
        ("GET", "/console/api/timeline"),
        ("GET", "/api/v1/indicators/{code}/value"),
        ("POST", "/fhir"),
        ("PUT", "/fhir/{rtype}/{rid}"),
        ("POST", "/api/v1/keys"),
    ]:
        assert must in checked, must


def test_public_routes_are_the_known_ones(app_client, runtime):
    """A new route that answers without a key must be added to PUBLIC on purpose."""
    app = create_app(runtime=runtime, run_workers=False)
    public = set()
    for method, path in routes(app):
        if method != "GET" or path.startswith("/api/v1/regions/") or path in STREAMS:
            continue
        if app_client.get(concrete(path)).status_code != 401:
            public.add(path)
    assert public <= PUBLIC, public - PUBLIC
