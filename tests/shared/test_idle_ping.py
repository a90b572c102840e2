"""A pooled PostgreSQL connection that sat idle is pinged before use, so one dropped
meanwhile (a restart, a firewall) is replaced instead of failing the request; one
that just came back from a transaction is used without a round trip."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shared.db import ping_when_idle


@pytest.fixture
def pg(engine: Engine) -> Engine:
    if engine.dialect.name != "postgresql":
        pytest.skip("pinging applies to PostgreSQL's pool (SQLite has no server to lose)")
    return engine


def _pool_of_one(engine: Engine, after: float) -> Engine:
    small = sa.create_engine(engine.url, pool_size=1, max_overflow=0)
    ping_when_idle(small, after=after)
    return small


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(sa.text("SELECT pg_backend_pid()")))


def _terminate(engine: Engine, pid: int) -> None:
    with engine.connect() as conn:
        # With a timeout (PostgreSQL 14+) it answers once the backend has exited.
        assert conn.scalar(sa.text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid})


def test_an_idle_connection_dropped_by_the_server_is_replaced(pg):
    small = _pool_of_one(pg, after=0.0)
    try:
        first = _backend_pid(small)
        _terminate(pg, first)
        assert _backend_pid(small) != first  # pinged, discarded, connected afresh
    finally:
        small.dispose()


def test_without_the_ping_the_dropped_connection_fails_the_next_use(pg):
    """The control: the same drop with the connection counted as fresh."""
    small = _pool_of_one(pg, after=3600.0)
    try:
        _terminate(pg, _backend_pid(small))
        with pytest.raises(sa.exc.OperationalError):
            _backend_pid(small)
        assert _backend_pid(small)  # the pool was invalidated: the next use reconnects
    finally:
        small.dispose()


def _count_pings(engine: Engine) -> list[object]:
    pings: list[object] = []
    original = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return original(dbapi_connection)

    engine.dialect.do_ping = counted  # type: ignore[method-assign]
    return pings


def test_a_busy_connection_is_not_pinged_and_an_idle_one_is(pg):
    busy, idle = _pool_of_one(pg, after=3600.0), _pool_of_one(pg, after=0.0)
    try:
        busy_pings, idle_pings = _count_pings(busy), _count_pings(idle)
        for _ in range(3):
            _backend_pid(busy)
            _backend_pid(idle)
        assert busy_pings == []
        assert len(idle_pings) == 2  # every checkout but the first (a new connection)
    finally:
        busy.dispose()
        idle.dispose()
