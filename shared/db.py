"""Database engine, sessions, ORM base and column types.

Engines are built by :func:`create_engine_for` when the app starts, never at import.
The edge (a request dependency or a worker's wrapper) owns the transaction: services
only ``flush``.
"""

from __future__ import annotations

import hashlib
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (which has no zones) too."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JSONDoc(TypeDecorator[Any]):
    """JSON stored as text via orjson (compact, fast) on every backend; JSONB is not
    needed because nothing queries inside these documents."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else orjson.dumps(value).decode()

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else orjson.loads(value)


def normalize_url(url: str) -> str:
    """Accept plain URLs and pick our drivers: psycopg 3 for PostgreSQL, pysqlite for SQLite."""
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_engine_for(url: str, *, echo: bool = False) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            echo=echo,
            hide_parameters=True,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_serializer=lambda v: orjson.dumps(v).decode(),
        )
        _configure_sqlite(engine)
        return engine
    # hide_parameters: an error's message must never carry FHIR bodies into the logs.
    engine = sa.create_engine(url, echo=echo, pool_size=10, max_overflow=20, hide_parameters=True)
    ping_when_idle(engine)
    return engine


#: A pooled connection idle longer than this is pinged before it is handed out.
PING_AFTER_IDLE_S = 10.0
_CHECKED_IN = "qcpulse_checked_in"


def ping_when_idle(engine: Engine, after: float = PING_AFTER_IDLE_S) -> None:
    """Pessimistic disconnect handling, paid only by connections that sat idle.

    ``pool_pre_ping`` pings on every checkout: a round trip before every transaction,
    4 % of request-thread time in the PostgreSQL ingest profile (docs/PERFORMANCE.md).
    A busy server checks connections in and out within milliseconds, and a connection
    that just finished a transaction is known alive; one that sat idle may have been
    dropped by a restart or a firewall, so it is pinged, and a failed ping makes the
    pool discard it and connect afresh (``DisconnectionError``), as pre-ping would."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get(_CHECKED_IN)
        if checked_in is None or time.monotonic() - checked_in <= after:
            return  # new, or back from a transaction a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise sa.exc.DisconnectionError(f"idle connection failed its ping: {exc}") from exc


def _configure_sqlite(engine: Engine) -> None:
    in_memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy issue BEGIN itself so that BEGIN IMMEDIATE below takes the write
        # lock at the start of every transaction: no deadlocked upgrades from read to write.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    # SQLite has one writer. Without a gate, a writer that finds the lock taken polls
    # in SQLite's busy handler, sleeping up to 100 ms between tries, and a busy process
    # overtakes it again and again: the slowest writes of a loaded server waited
    # seconds (docs/PERFORMANCE.md). This process's writers queue on a lock instead and
    # the next one starts the moment the last one ends; writers in other processes
    # still meet the busy handler, as before.
    gate = _WRITE_GATES[engine] = threading.Lock()

    def _release(info: dict[str, Any]) -> None:
        if info.pop(_GATE_HELD, False):
            gate.release()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READONLY_OPTION):
            conn.exec_driver_sql("BEGIN")
            return
        # A gate that is somehow never released must not stop every writer: after
        # the busy timeout, go on to SQLite's own locking.
        if gate.acquire(timeout=_BUSY_TIMEOUT_S):
            conn.info[_GATE_HELD] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(conn.info)
            raise

    # Fired just before COMMIT / ROLLBACK: the next writer's BEGIN IMMEDIATE meets the
    # lock for the instant the COMMIT takes, and SQLite's first retry is after 1 ms.
    # An invalidated connection has no info to read (reading it would reconnect); the
    # pool's check-in below releases for it.
    def _on_end(conn: Any) -> None:
        if not conn.invalidated:
            _release(conn.info)

    event.listen(engine, "commit", _on_end)
    event.listen(engine, "rollback", _on_end)

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        _release(record.info)  # a connection given back mid-transaction


_GATE_HELD = "qcpulse_write_gate"
_BUSY_TIMEOUT_S = 30
_WRITE_GATES: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()


def write_gate(engine: Engine) -> threading.Lock | None:
    """The lock this process's SQLite writers queue on (None on PostgreSQL)."""
    return _WRITE_GATES.get(engine)


READONLY_OPTION = "qcpulse_readonly"


def make_session_factory(engine: Engine, *, readonly: bool = False) -> sessionmaker[Session]:
    """Sessions for writes, or (``readonly``) for reads that must not queue behind the
    SQLite write lock; on PostgreSQL both are the same."""
    bind = engine.execution_options(**{READONLY_OPTION: True}) if readonly else engine
    return sessionmaker(bind=bind, expire_on_commit=False, autoflush=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_postgres(session_or_engine: Session | Engine) -> bool:
    bind = (
        session_or_engine.get_bind()
        if isinstance(session_or_engine, Session)
        else session_or_engine
    )
    return bind.dialect.name == "postgresql"


_ADVISORY_LOCKS = sa.text(
    "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:ids AS bigint[])) AS k"
)


def advisory_locks(session: Session, names: Iterable[str]) -> None:
    """On PostgreSQL, take a transaction-scoped advisory lock per name, in one sorted
    order, so that writers of the same things queue instead of interleaving (and two
    writers never deadlock). A no-op on SQLite, which has one writer anyway."""
    if session.get_bind().dialect.name != "postgresql":
        return
    ids = sorted(
        {
            int.from_bytes(hashlib.blake2b(n.encode(), digest_size=8).digest(), "big", signed=True)
            for n in names
        }
    )
    if ids:
        session.execute(_ADVISORY_LOCKS, {"ids": ids})
