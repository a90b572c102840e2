"""A fact that joins its episode through another resource (a Communication ``about``
an Observation) and that resource, written at the same moment by two transactions on
PostgreSQL: whichever commits second must see the other's row, so the Communication
ends up in the Observation's episode in both orders. Without the writer of the
Communication locking its link target, neither transaction sees the other's
uncommitted row and the link is lost until one of them is written again.

SQLite has one writer at a time, so the race cannot happen there and the test runs
only on PostgreSQL (the CI's second pass)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from services.ingest.service import IngestUnit
from tests.conftest import TENANT
from tests.fhir_factories import encounter
from tests.ingest.helpers import SHANGHAI, communication, fact, in_unit, observation

#: Long enough that the second writer has certainly reached its read while the first
#: holds its transaction open; without the fix it commits within milliseconds.
HOLD_SECONDS = 0.8


def _first_holds_open(
    runtime, first: Callable[[IngestUnit], Any], second: Callable[[IngestUnit], Any]
):
    """Run ``first`` in a transaction that stays open (written, not committed) while
    ``second`` runs in another; return when both have committed, and whether
    ``second`` finished before ``first`` committed."""
    written = threading.Event()
    release = threading.Event()
    second_done_at_release: list[bool] = []
    second_done = threading.Event()
    errors: list[BaseException] = []

    def run_first() -> None:
        try:
            with runtime.write() as session:
                unit = IngestUnit(session, TENANT, SHANGHAI, runtime.clock.now())
                first(unit)
                unit.finish()
                written.set()
                release.wait(timeout=10)
                second_done_at_release.append(second_done.is_set())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            written.set()

    def run_second() -> None:
        try:
            written.wait(timeout=10)
            in_unit(runtime, TENANT, second)
            second_done.set()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    a, b = threading.Thread(target=run_first), threading.Thread(target=run_second)
    a.start()
    b.start()
    written.wait(timeout=10)
    second_done.wait(timeout=HOLD_SECONDS)
    release.set()
    a.join(timeout=30)
    b.join(timeout=30)
    assert errors == []
    return second_done_at_release[0]


@pytest.fixture
def postgres_runtime(runtime):
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has a single writer: two transactions cannot interleave")
    in_unit(runtime, TENANT, lambda u: u.put(encounter()))
    return runtime


def test_communication_written_while_its_observation_commits(postgres_runtime):
    waited = _first_holds_open(
        postgres_runtime,
        lambda u: u.put(observation()),
        lambda u: u.put(communication()),
    )
    assert not waited, "the Communication's writer must wait for its link target's"
    comm = fact(postgres_runtime, TENANT, "Communication", "m1")
    assert (comm.encounter_id, comm.link_ref) == ("e1", "Observation/o1")


def test_observation_written_while_its_communication_commits(postgres_runtime):
    waited = _first_holds_open(
        postgres_runtime,
        lambda u: u.put(communication()),
        lambda u: u.put(observation()),
    )
    assert not waited, "the Observation's writer must wait for the Communication's"
    comm = fact(postgres_runtime, TENANT, "Communication", "m1")
    assert (comm.encounter_id, comm.link_ref) == ("e1", "Observation/o1")


def test_link_targets_are_locked_in_a_bundle_too(postgres_runtime):
    """The Bundle path locks the targets with its own keys, in one sorted order."""
    from services.ingest.bundles import process_bundle
    from tests.fhir_factories import transaction

    waited = _first_holds_open(
        postgres_runtime,
        lambda u: u.put(observation()),
        lambda u: process_bundle(u, transaction(communication()), max_entries=10),
    )
    assert not waited
    comm = fact(postgres_runtime, TENANT, "Communication", "m1")
    assert comm.encounter_id == "e1"
