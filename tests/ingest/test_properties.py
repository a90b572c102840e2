"""Property-based tests of the resource store.

1. Any order and any duplication of the same set of PUTs, in any grouping into units
   of work, leaves the same current resources (each at version 1), facts, episodes and
   announced episodes.
2. Re-sending versions of one resource: the version count is one plus the number of
   changes between consecutive contents; history keeps each version in order.
3. A rejected transaction leaves every table exactly as it was.

Each example writes under a fresh tenant id, so examples never see each other's rows
(the ``runtime`` fixture empties the database only after the whole test).
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.bundles import process_bundle
from services.ingest.models import ResourceVersion, StoredResource
from shared.errors import AppError
from tests.conftest import OTHER_TENANT
from tests.fhir_factories import condition, encounter, patient, procedure
from tests.ingest.helpers import (
    bundle,
    communication,
    dump_all,
    entry,
    in_unit,
    ingest_snapshot,
    location,
    medication_administration,
    observation,
    outbox_keys,
)

PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Each key has a few contents to choose from; all are valid.
VARIANTS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("Patient", "p1"): [patient("p1"), patient("p1", birth="1970-01-01")],
    ("Patient", "p2"): [patient("p2", birth="1990-07-07")],
    ("Encounter", "e1"): [
        encounter("e1", "p1"),
        encounter("e1", "p1", end="2026-03-03T09:00:00+08:00"),
        {**encounter("e1", "p1"), "status": "entered-in-error"},
    ],
    ("Encounter", "e2"): [
        encounter("e2", "p2", dept="cardiology", dept_name="心内科"),
        encounter("e2", "p1", cls="IMP"),
    ],
    ("Condition", "c1"): [condition("c1", "e1"), condition("c1", "e2", code="I21.100")],
    ("Condition", "c2"): [condition("c2", "e9")],  # its Encounter never arrives
    ("Procedure", "pr1"): [procedure("pr1", "e1"), procedure("pr1", "e1", status="not-done")],
    ("Observation", "o1"): [observation("o1", "e1"), observation("o1", "e2", value=9.1)],
    ("Observation", "o2"): [observation("o2", "e2")],
    ("Communication", "m1"): [
        communication("m1", "Observation/o1"),
        communication("m1", "Observation/o2"),
    ],
    ("Communication", "m2"): [communication("m2", "Observation/o3")],  # dangling link
    ("MedicationAdministration", "ma1"): [
        medication_administration("ma1", "e1"),
        medication_administration("ma1", "e2"),
    ],
    ("Location", "l1"): [location("l1")],
}
KEYS = sorted(VARIANTS)


def fresh_tenant() -> str:
    return "T" + uuid.uuid4().hex[:12]


def put_all(runtime, tenant: str, units: list[list[dict[str, Any]]]) -> None:
    for resources in units:
        in_unit(runtime, tenant, lambda u, rs=resources: [u.put(r) for r in rs])


@st.composite
def chunked(draw, items: list[Any]) -> list[list[Any]]:
    """``items`` split into consecutive non-empty groups (units of work)."""
    if not items:
        return []
    cuts = draw(
        st.sets(st.integers(1, len(items) - 1), max_size=len(items) - 1)
        if len(items) > 1
        else st.just(set())
    )
    bounds = [0, *sorted(cuts), len(items)]
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def shuffled_puts(draw) -> tuple[dict[tuple[str, str], dict[str, Any]], list[list[Any]]]:
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=len(KEYS), unique=True))
    chosen = {k: VARIANTS[k][draw(st.integers(0, len(VARIANTS[k]) - 1))] for k in keys}
    sends = [k for k in keys for _ in range(draw(st.integers(1, 3)))]
    order = draw(st.permutations(sends))
    return chosen, draw(chunked([chosen[k] for k in order]))


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
class TestProperties:
    @PROPERTY_SETTINGS
    @given(case=shuffled_puts())
    def test_order_and_duplicates_do_not_matter(self, runtime, case):
        chosen, units = case
        reference, shuffled = fresh_tenant(), fresh_tenant()
        put_all(runtime, reference, [[chosen[k]] for k in sorted(chosen)])
        put_all(runtime, shuffled, units)

        got, want = ingest_snapshot(runtime, shuffled), ingest_snapshot(runtime, reference)
        assert got["resources"] == want["resources"]
        assert {v for v, *_ in got["resources"].values()} == {1}
        assert len(got["versions"]) == len(chosen)
        assert got["facts"] == want["facts"]
        assert got["episodes"] == want["episodes"]
        assert set(outbox_keys(runtime, shuffled)) == set(outbox_keys(runtime, reference))

    @PROPERTY_SETTINGS
    @given(
        key=st.sampled_from([k for k in KEYS if len(VARIANTS[k]) > 1]),
        data=st.data(),
    )
    def test_versions_count_changes_between_consecutive_contents(self, runtime, key, data):
        n = len(VARIANTS[key])
        picks = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=10))
        units = data.draw(chunked([VARIANTS[key][i] for i in picks]))
        tenant = fresh_tenant()
        put_all(runtime, tenant, units)

        distinct_runs = [p for i, p in enumerate(picks) if i == 0 or p != picks[i - 1]]
        with runtime.read() as session:
            current = session.get(StoredResource, (tenant, *key))
            history = session.scalars(
                sa.select(ResourceVersion)
                .where(ResourceVersion.tenant_id == tenant)
                .order_by(ResourceVersion.version)
            ).all()
        assert current.version == len(distinct_runs)
        assert [v.version for v in history] == list(range(1, len(distinct_runs) + 1))
        strip = lambda body: {k: v for k, v in body.items() if k != "meta"}  # noqa: E731
        assert [strip(v.body) for v in history] == [VARIANTS[key][p] for p in distinct_runs]
        assert strip(current.body) == VARIANTS[key][picks[-1]]

        # Facts and episode are those of the last content alone.
        only_last = fresh_tenant()
        put_all(runtime, only_last, [[VARIANTS[key][picks[-1]]]])
        got, want = ingest_snapshot(runtime, tenant), ingest_snapshot(runtime, only_last)
        assert (got["facts"], got["episodes"]) == (want["facts"], want["episodes"])

    @PROPERTY_SETTINGS
    @given(
        key=st.sampled_from([("Condition", "c1"), ("Encounter", "e1"), ("Patient", "p1")]),
        ops=st.lists(st.one_of(st.just("DELETE"), st.integers(0, 1)), min_size=1, max_size=10),
    )
    def test_deletes_against_a_model(self, runtime, key, ops):
        """Model: identical to current → no version; a change, or content after a
        delete → a version; delete → a version unless already deleted; delete of what
        never existed → 404 and nothing."""
        tenant = fresh_tenant()
        version, current, deleted = 0, None, False
        for op in ops:
            if op == "DELETE":
                if version == 0:
                    with pytest.raises(AppError) as exc:
                        in_unit(runtime, tenant, lambda u: u.delete(*key))
                    assert exc.value.status_code == 404
                    continue
                result = in_unit(runtime, tenant, lambda u: u.delete(*key))
                assert result.status == ("unchanged" if deleted else "deleted")
                if not deleted:
                    version, deleted = version + 1, True
            else:
                resource = VARIANTS[key][op]
                result = in_unit(runtime, tenant, lambda u, r=resource: u.put(r))
                if version == 0 or deleted or current != op:
                    version, current, deleted = version + 1, op, False
                    assert result.status in ("created", "updated")
                else:
                    assert result.status == "unchanged"
            assert result.version == version
        with runtime.read() as session:
            count = session.scalar(
                sa.select(sa.func.count())
                .select_from(ResourceVersion)
                .where(ResourceVersion.tenant_id == tenant)
            )
        assert count == version

    @PROPERTY_SETTINGS
    @given(
        seed=shuffled_puts(),
        data=st.data(),
        bad=st.sampled_from(
            [
                "invalid-value",
                "unknown-element",
                "id-mismatch",
                "unknown-type",
                "foreign-reference",
                "delete-absent",
                "bad-method",
            ]
        ),
    )
    def test_a_rejected_transaction_changes_nothing(self, runtime, seed, data, bad):
        chosen, units = seed
        tenant = fresh_tenant()
        put_all(runtime, tenant, units)

        # Valid entries: new contents for some keys, deletes of some stored ones.
        good = []
        for key in data.draw(st.lists(st.sampled_from(KEYS), max_size=6, unique=True)):
            if key in chosen and data.draw(st.booleans()):
                good.append(entry(VARIANTS[key][0], "DELETE"))
            else:
                good.append(entry(data.draw(st.sampled_from(VARIANTS[key]))))
        position = data.draw(st.integers(0, len(good)))
        good.insert(position, _bad_entry(bad))
        body = bundle(*good)

        before = dump_all(runtime.engine)
        with pytest.raises(AppError) as exc:
            in_unit(runtime, tenant, lambda u: process_bundle(u, body, max_entries=100))
        assert 400 <= exc.value.status_code < 500
        expressions = [e for issue in exc.value.issues for e in issue.expression]
        assert any(e.startswith(f"Bundle.entry[{position}]") for e in expressions), expressions
        assert dump_all(runtime.engine) == before


def _bad_entry(kind: str) -> dict[str, Any]:
    match kind:
        case "invalid-value":
            return entry({**patient("px"), "birthDate": "1962-02-31"})
        case "unknown-element":
            return entry({**condition("cx"), "severityScore": 3})
        case "id-mismatch":
            bad = entry(patient("px"))
            bad["request"]["url"] = "Patient/py"
            return bad
        case "unknown-type":
            return {
                "request": {"method": "PUT", "url": "Widget/w1"},
                "resource": {"resourceType": "Widget", "id": "w1"},
            }
        case "foreign-reference":
            cond = condition("cx")
            cond["encounter"] = {
                "reference": f"https://qcpulse.example/fhir/{OTHER_TENANT}/Encounter/e1"
            }
            return entry(cond)
        case "delete-absent":
            return entry(condition("never-stored"), "DELETE")
        case "bad-method":
            return {"request": {"method": "PATCH", "url": "Patient/p1"}, "resource": patient()}
    raise AssertionError(kind)


def test_chunking_helper_covers_every_item():
    """The strategy above must never drop or reorder sends."""
    from hypothesis import find

    split = find(chunked(list(range(5))), lambda groups: len(groups) == 3)
    assert [x for g in split for x in g] == list(range(5))
