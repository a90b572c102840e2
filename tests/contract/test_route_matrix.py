"""Role × tenant × department: every route of the app (``app.routes``, so a new route
without a row here fails ``test_every_route_has_a_row``) called by each principal, with
the status class it must answer:

* ``none``: no key → 401;
* ``ingest``, ``reader``, ``admin``: the tenant's keys of each role → allowed or 403;
* ``limited``: a reader limited to ``emergency`` → another department's patient-level
  data answered as absent (404) or refused when asked for by name (403);
* ``other``: an admin key of another tenant → the tenant's resources answered 404 (as
  absent, never 403: nothing leaks that they exist), its own collections allowed.

``OK`` is any 2xx; a number is that status exactly. Rows run in one seeded tenant;
a row that consumes what it acts on (a delete, a revocation) makes a fresh target for
each principal (``prepare``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from qcpulse.app import create_app
from shared.auth import Role, create_key
from shared.runtime import Runtime
from tests.contract.seed import (
    COMPUTED,
    LIMITED_DEPARTMENT,
    MANUAL,
    OTHER_DEPARTMENT,
    Seeded,
    new_import_job,
    seed,
)
from tests.fhir_factories import patient, transaction

OK = "2xx"
PRINCIPALS = ("none", "ingest", "reader", "limited", "other", "admin")
Expect = dict[str, int | str]


def api_read(**over: int | str) -> Expect:
    """``api:read``: readers (limited or not) and admins; another tenant's key reads
    its own tenant."""
    return {
        "none": 401,
        "ingest": 403,
        "reader": OK,
        "limited": OK,
        "other": OK,
        "admin": OK,
    } | over


def admin_only(**over: int | str) -> Expect:
    return {
        "none": 401,
        "ingest": 403,
        "reader": 403,
        "limited": 403,
        "other": OK,
        "admin": OK,
    } | over


def fhir_read(**over: int | str) -> Expect:
    """``fhir:read``: every role; the tenant's resources are another tenant's 404."""
    return {
        "none": 401,
        "ingest": OK,
        "reader": OK,
        "limited": OK,
        "other": 404,
        "admin": OK,
    } | over


def fhir_write(**over: int | str) -> Expect:
    """``fhir:write``: ingest and admin keys, each into its own tenant."""
    return {
        "none": 401,
        "ingest": OK,
        "reader": 403,
        "limited": 403,
        "other": OK,
        "admin": OK,
    } | over


def public(**over: int | str) -> Expect:
    return dict.fromkeys(PRINCIPALS, OK) | over


def region_only() -> Expect:
    """``region:read``: a region's key only (services/regions); no tenant key."""
    return {"none": 401} | dict.fromkeys(PRINCIPALS[1:], 403)


@dataclass
class Ctx:
    runtime: Runtime
    client: TestClient
    data: Seeded
    counter: Iterator[int] = field(default_factory=itertools.count)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.data.keys[who]}"}


Prepare = Callable[[Ctx], dict[str, str]]


@dataclass(frozen=True)
class Row:
    method: str
    template: str
    url: str
    expect: Expect
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Fresh values for ``url`` (and ``json``'s strings) before each principal's call.
    prepare: Prepare | None = None
    #: Principals whose allowed call is not made, and why (a never-ending stream).
    not_called: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.method} {self.url}"


def _fresh_patient(ctx: Ctx) -> dict[str, str]:
    pid = f"del{next(ctx.counter)}"
    r = ctx.client.put(f"/fhir/Patient/{pid}", json=patient(pid), headers=ctx.headers("ingest"))
    assert r.status_code == 201, r.text
    return {"pid": pid}


def _fresh_job(ctx: Ctx) -> dict[str, str]:
    return {"job": new_import_job(ctx.client, ctx.headers("ingest"))}


def _fresh_key(ctx: Ctx) -> dict[str, str]:
    with ctx.runtime.write() as session:
        row, _ = create_key(session, "H0001", Role.READER, name="to revoke")
    return {"key": row.id}


def _fresh_subscription(ctx: Ctx) -> dict[str, str]:
    r = ctx.client.post(
        "/api/v1/subscriptions",
        json={"url": "https://alerts.example.org/other", "events": ["case.breached"]},
        headers=ctx.headers("admin"),
    )
    assert r.status_code == 201, r.text
    return {"sub": r.json()["id"]}


def _fresh_source(ctx: Ctx) -> dict[str, str]:
    r = ctx.client.post(
        "/api/v1/hl7/sources",
        json={"facility": f"LIS{next(ctx.counter)}"},
        headers=ctx.headers("admin"),
    )
    assert r.status_code == 201, r.text
    return {"source": r.json()["id"]}


def _unique_facility(ctx: Ctx) -> dict[str, str]:
    return {"facility": f"RIS{next(ctx.counter)}"}


RANGE = "from=2026-03-01&to=2026-03-31"
ER7 = (
    "MSH|^~\\&|HIS|H0001|QCP|QCP|20260302100000||ADT^A04^ADT_A01|MSG1|P|2.5\r"
    "PID|1||P1^^^H0001^MR||张^三||19620501|M\r"
    "PV1|1|E|emergency\r"
).encode()
EVALUATE = f"periodStart=2026-03-01&periodEnd=2026-03-31&measure={COMPUTED}"
# A 405 after the key is checked: Measure resources are read-only definitions.
READ_ONLY = fhir_read(ingest=405, reader=405, limited=405, other=405, admin=405)

ROWS: list[Row] = [
    # -- outside the API: no key -----------------------------------------------------
    Row("GET", "/openapi.json", "/openapi.json", public()),
    Row("GET", "/health", "/health", public()),
    Row("GET", "/ready", "/ready", public()),
    Row("GET", "/metrics", "/metrics", public()),
    Row("GET", "/", "/", public()),
    Row("GET", "/console/static/{path:path}", "/console/static/favicon.svg", public()),
    Row("GET", "/docs", "/docs", public()),
    Row("GET", "/redoc", "/redoc", public()),
    Row("GET", "/fhir/metadata", "/fhir/metadata", public()),
    # -- FHIR ----------------------------------------------------------------------
    Row("POST", "/fhir", "/fhir", fhir_write(), json=transaction(patient("pm"))),
    Row("PUT", "/fhir/{rtype}/{rid}", "/fhir/Patient/pm2", fhir_write(), json=patient("pm2")),
    Row("POST", "/fhir/{rtype}", "/fhir/Patient", fhir_write(), json=patient("x")),
    Row(
        "DELETE",
        "/fhir/{rtype}/{rid}",
        "/fhir/Patient/{pid}",
        fhir_write(other=404),
        prepare=_fresh_patient,
    ),
    # e1 is in the limited reader's department, e3 in another one.
    Row("GET", "/fhir/{rtype}/{rid}", "/fhir/Encounter/e1", fhir_read()),
    Row("GET", "/fhir/{rtype}/{rid}", "/fhir/Encounter/e3", fhir_read(limited=404)),
    Row(
        "GET", "/fhir/{rtype}/{rid}/_history", "/fhir/Encounter/e3/_history", fhir_read(limited=404)
    ),
    Row(
        "GET",
        "/fhir/{rtype}/{rid}/_history/{vid}",
        "/fhir/Encounter/e3/_history/1",
        fhir_read(limited=404),
    ),
    Row(
        "POST",
        "/fhir/$import",
        "/fhir/$import",
        fhir_write(),
        content=b'{"resourceType": "Patient", "id": "imp2"}\n',
        headers={"Content-Type": "application/fhir+ndjson"},
    ),
    Row(
        "GET", "/fhir/$import-status/{job_id}", "/fhir/$import-status/{job}", fhir_write(other=404)
    ),
    Row(
        "DELETE",
        "/fhir/$import-status/{job_id}",
        "/fhir/$import-status/{job}",
        fhir_write(other=404),
        prepare=_fresh_job,
    ),
    # Measures are definitions (no patient data): every FHIR reader, every tenant.
    Row("GET", "/fhir/Measure", "/fhir/Measure", fhir_read(other=OK)),
    Row("GET", "/fhir/Measure/{code}", f"/fhir/Measure/{COMPUTED}", fhir_read(other=OK)),
    Row("POST", "/fhir/Measure", "/fhir/Measure", READ_ONLY, json={"resourceType": "Measure"}),
    Row("PUT", "/fhir/Measure/{code}", f"/fhir/Measure/{COMPUTED}", READ_ONLY, json={}),
    Row("DELETE", "/fhir/Measure/{code}", f"/fhir/Measure/{COMPUTED}", READ_ONLY),
    # A MeasureReport is the indicator API's: api:read.
    Row(
        "GET",
        "/fhir/Measure/$evaluate-measure",
        f"/fhir/Measure/$evaluate-measure?{EVALUATE}",
        api_read(),
    ),
    Row(
        "POST",
        "/fhir/Measure/$evaluate-measure",
        f"/fhir/Measure/$evaluate-measure?{EVALUATE}",
        api_read(),
    ),
    Row(
        "GET",
        "/fhir/Measure/{code}/$evaluate-measure",
        f"/fhir/Measure/{COMPUTED}/$evaluate-measure?periodStart=2026-03-01&periodEnd=2026-03-31",
        api_read(),
    ),
    Row(
        "POST",
        "/fhir/Measure/{code}/$evaluate-measure",
        f"/fhir/Measure/{COMPUTED}/$evaluate-measure?periodStart=2026-03-01&periodEnd=2026-03-31",
        api_read(),
    ),
    Row(
        "GET",
        "/fhir/Measure/{code}/$evaluate-measure",
        f"/fhir/Measure/{COMPUTED}/$evaluate-measure?periodStart=2026-03-01&periodEnd=2026-03-31"
        f"&department={OTHER_DEPARTMENT}",
        api_read(limited=403),
    ),
    # -- HL7 v2 --------------------------------------------------------------------
    Row(
        "POST",
        "/hl7v2",
        "/hl7v2",
        fhir_write(),
        content=ER7,
        headers={"Content-Type": "x-application/hl7-v2+er7"},
    ),
    Row(
        "POST",
        "/api/v1/hl7/sources",
        "/api/v1/hl7/sources",
        admin_only(),
        json={"facility": "{facility}"},
        prepare=_unique_facility,
    ),
    Row("GET", "/api/v1/hl7/sources", "/api/v1/hl7/sources", admin_only()),
    Row(
        "DELETE",
        "/api/v1/hl7/sources/{source_id}",
        "/api/v1/hl7/sources/{source}",
        admin_only(other=404),
        prepare=_fresh_source,
    ),
    Row("GET", "/api/v1/hl7/messages", "/api/v1/hl7/messages", admin_only()),
    # -- keys and audit ------------------------------------------------------------
    Row("POST", "/api/v1/keys", "/api/v1/keys", admin_only(), json={"role": "reader"}),
    Row("GET", "/api/v1/keys", "/api/v1/keys", admin_only()),
    Row(
        "DELETE",
        "/api/v1/keys/{key_id}",
        "/api/v1/keys/{key}",
        admin_only(other=404),
        prepare=_fresh_key,
    ),
    Row("GET", "/api/v1/audit", "/api/v1/audit", admin_only()),
    # -- indicators ----------------------------------------------------------------
    Row("GET", "/api/v1/data-quality", "/api/v1/data-quality", api_read()),
    Row("GET", "/api/v1/indicators", "/api/v1/indicators", api_read()),
    Row("GET", "/api/v1/indicators/{code}", f"/api/v1/indicators/{COMPUTED}", api_read()),
    Row(
        "GET",
        "/api/v1/indicators/{code}/value",
        f"/api/v1/indicators/{COMPUTED}/value?{RANGE}",
        api_read(),
    ),
    Row(
        "GET",
        "/api/v1/indicators/{code}/value",
        f"/api/v1/indicators/{COMPUTED}/value?{RANGE}&department={OTHER_DEPARTMENT}",
        api_read(limited=403),
    ),
    Row(
        "GET",
        "/api/v1/indicators/{code}/series",
        f"/api/v1/indicators/{COMPUTED}/series",
        api_read(),
    ),
    Row(
        "GET",
        "/api/v1/indicators/{code}/series",
        f"/api/v1/indicators/{COMPUTED}/series?department={OTHER_DEPARTMENT}&format=csv",
        api_read(limited=403),
    ),
    Row(
        "GET",
        "/api/v1/indicators/{code}/breakdown",
        f"/api/v1/indicators/{COMPUTED}/breakdown?{RANGE}",
        api_read(),
    ),
    Row(
        "GET", "/api/v1/indicators/{code}/cases", f"/api/v1/indicators/{COMPUTED}/cases", api_read()
    ),
    Row(
        "GET",
        "/api/v1/indicators/{code}/cases",
        f"/api/v1/indicators/{COMPUTED}/cases?department={OTHER_DEPARTMENT}",
        api_read(limited=403),
    ),
    Row(
        "GET",
        "/api/v1/indicators/{code}/measure-report",
        f"/api/v1/indicators/{COMPUTED}/measure-report?{RANGE}",
        api_read(),
    ),
    Row(
        "PUT",
        "/api/v1/indicators/{code}/target",
        f"/api/v1/indicators/{COMPUTED}/target",
        admin_only(),
        json={"target": 0.8},
    ),
    Row(
        "PUT",
        "/api/v1/code-maps/{system:path}",
        "/api/v1/code-maps/urn:local:px",
        admin_only(),
        json={"mappings": []},
    ),
    Row("GET", "/api/v1/code-maps", "/api/v1/code-maps", api_read()),
    # Admins, and readers granted "manual" (none of these readers is).
    Row(
        "PUT",
        "/api/v1/indicators/{code}/manual/{month}",
        f"/api/v1/indicators/{MANUAL}/manual/2026-01",
        admin_only(),
        json={"numerator": 1, "denominator": 4, "department": LIMITED_DEPARTMENT},
    ),
    Row(
        "GET", "/api/v1/indicators/{code}/manual", f"/api/v1/indicators/{MANUAL}/manual", api_read()
    ),
    Row("GET", "/api/v1/target-profiles", "/api/v1/target-profiles", api_read()),
    Row("GET", "/api/v1/tenant", "/api/v1/tenant", api_read()),
    Row("PUT", "/api/v1/tenant", "/api/v1/tenant", admin_only(), json={"catalogue": "2026"}),
    Row("GET", "/api/v1/bulletins/{month}", "/api/v1/bulletins/2026-02", api_read()),
    Row("GET", "/api/v1/bulletins/{month}.xlsx", "/api/v1/bulletins/2026-02.xlsx", api_read()),
    Row("GET", "/api/v1/bulletins/{month}.pdf", "/api/v1/bulletins/2026-02.pdf", api_read()),
    # -- alerts --------------------------------------------------------------------
    Row(
        "POST",
        "/api/v1/subscriptions",
        "/api/v1/subscriptions",
        admin_only(),
        json={"url": "https://alerts.example.org/x", "events": ["*"]},
    ),
    Row("GET", "/api/v1/subscriptions", "/api/v1/subscriptions", admin_only()),
    Row(
        "GET",
        "/api/v1/subscriptions/{sub_id}",
        "/api/v1/subscriptions/{sub}",
        admin_only(other=404),
    ),
    Row(
        "PATCH",
        "/api/v1/subscriptions/{sub_id}",
        "/api/v1/subscriptions/{sub}",
        admin_only(other=404),
        json={"description": "changed"},
    ),
    Row(
        "DELETE",
        "/api/v1/subscriptions/{sub_id}",
        "/api/v1/subscriptions/{sub}",
        admin_only(other=404),
        prepare=_fresh_subscription,
    ),
    Row(
        "POST",
        "/api/v1/subscriptions/{sub_id}/test",
        "/api/v1/subscriptions/{sub}/test",
        admin_only(other=404),
    ),
    Row(
        "GET",
        "/api/v1/subscriptions/{sub_id}/deliveries",
        "/api/v1/subscriptions/{sub}/deliveries",
        admin_only(other=404),
    ),
    Row(
        "GET",
        "/api/v1/deliveries/{delivery_id}",
        "/api/v1/deliveries/{delivery}",
        admin_only(other=404),
    ),
    # Only dead deliveries are retried: the seeded one is pending (409 once allowed).
    Row(
        "POST",
        "/api/v1/deliveries/{delivery_id}/retry",
        "/api/v1/deliveries/{delivery}/retry",
        admin_only(other=404, admin=409),
    ),
    Row("GET", "/api/v1/alerts", "/api/v1/alerts", api_read()),
    Row(
        "GET",
        "/api/v1/alerts",
        f"/api/v1/alerts?department={OTHER_DEPARTMENT}",
        api_read(limited=403),
    ),
    # Allowed, the stream never ends: only the refusals (answered before it) are called.
    Row(
        "GET",
        "/api/v1/alerts/stream",
        "/api/v1/alerts/stream",
        api_read(),
        not_called=("reader", "limited", "other", "admin"),
    ),
    # The seeded alert is an emergency case's: the limited key's department.
    Row("GET", "/api/v1/alerts/{alert_id}", "/api/v1/alerts/{alert}", api_read(other=404)),
    Row("POST", "/api/v1/alerts/{alert_id}/ack", "/api/v1/alerts/{alert}/ack", api_read(other=404)),
    # -- regions: a region's keys only ---------------------------------------------
    # A member's submission is authenticated with a submission key, never an API key.
    Row(
        "POST",
        "/api/v1/regions/{region}/submissions",
        "/api/v1/regions/R01/submissions",
        dict.fromkeys(PRINCIPALS, 401),
        json={"resourceType": "Bundle"},
        headers={"Content-Type": "application/fhir+json"},
    ),
    Row("GET", "/api/v1/regions/{region_id}", "/api/v1/regions/R01", region_only()),
    Row(
        "GET",
        "/api/v1/regions/{region_id}/indicators",
        "/api/v1/regions/R01/indicators",
        region_only(),
    ),
    Row(
        "GET",
        "/api/v1/regions/{region_id}/indicators/{code}/league",
        f"/api/v1/regions/R01/indicators/{COMPUTED}/league",
        region_only(),
    ),
    Row(
        "GET",
        "/api/v1/regions/{region_id}/indicators/{code}/league.csv",
        f"/api/v1/regions/R01/indicators/{COMPUTED}/league.csv",
        region_only(),
    ),
    Row(
        "GET",
        "/api/v1/regions/{region_id}/indicators/{code}/series",
        f"/api/v1/regions/R01/indicators/{COMPUTED}/series",
        region_only(),
    ),
    Row(
        "GET",
        "/api/v1/regions/{region}/bulletins/{month}",
        "/api/v1/regions/R01/bulletins/2026-02",
        region_only(),
    ),
    Row(
        "GET",
        "/api/v1/regions/{region}/bulletins/{month}.xlsx",
        "/api/v1/regions/R01/bulletins/2026-02.xlsx",
        region_only(),
    ),
    Row(
        "GET",
        "/api/v1/regions/{region}/bulletins/{month}.pdf",
        "/api/v1/regions/R01/bulletins/2026-02.pdf",
        region_only(),
    ),
    # -- the console's reads -------------------------------------------------------
    Row("GET", "/console/api/session", "/console/api/session", api_read()),
    Row(
        "GET",
        "/console/api/timeline",
        "/console/api/timeline?episode=Encounter/e3",
        api_read(limited=404, other=404),
    ),
]


def app_routes() -> set[tuple[str, str]]:
    """Every (method, path) the app answers, HEAD aside (Starlette adds it to GETs)."""
    app = create_app(run_workers=False)
    found = set()
    for context in iter_route_contexts(app.routes):
        for method in getattr(context, "methods", None) or ():
            if method != "HEAD":
                found.add((method, context.path))
    return found


def test_every_route_has_a_row() -> None:
    covered = {(row.method, row.template) for row in ROWS}
    missing = sorted(app_routes() - covered)
    stale = sorted(covered - app_routes())
    assert not missing, f"routes without a row in ROWS: {missing}"
    assert not stale, f"rows for routes the app does not have: {stale}"


def test_every_row_names_every_principal() -> None:
    for row in ROWS:
        assert set(row.expect) == set(PRINCIPALS), row.id


@pytest.fixture(scope="module")
def ctx(engine: Any) -> Iterator[Ctx]:
    from tests.contract.test_openapi_contract import fresh_runtime

    with fresh_runtime(engine) as runtime:
        app = create_app(runtime=runtime, run_workers=False)
        with TestClient(app) as client:
            yield Ctx(runtime, client, seed(runtime, client))


def _matches(expected: int | str, status: int) -> bool:
    return 200 <= status < 300 if expected == OK else status == expected


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_matrix(row: Row, ctx: Ctx) -> None:
    data = ctx.data
    assert data.alert is not None, "the seed raised no alert"
    answers: dict[str, int] = {}
    for who in PRINCIPALS:
        if who in row.not_called:
            continue
        values = {
            "sub": data.subscription,
            "source": data.source,
            "delivery": data.delivery,
            "alert": data.alert,
            "job": data.job,
        }
        if row.prepare is not None:
            values |= row.prepare(ctx)
        url = row.url.format(**values) if "{" in row.url else row.url
        body = row.json
        if isinstance(body, dict):
            body = {k: v.format(**values) if isinstance(v, str) else v for k, v in body.items()}
        headers = dict(row.headers)
        if who != "none":
            headers |= ctx.headers(who)
        r = ctx.client.request(row.method, url, json=body, content=row.content, headers=headers)
        answers[who] = r.status_code
        if r.status_code == 401:
            assert r.headers.get("www-authenticate") == "Bearer" or row.template.endswith(
                "/submissions"
            ), (who, r.text)
    wrong = {
        who: (answers[who], row.expect[who])
        for who in answers
        if not _matches(row.expect[who], answers[who])
    }
    assert not wrong, f"{row.id}: (answered, expected) {wrong}"
