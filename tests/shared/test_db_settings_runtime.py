"""Column types, URL handling, typed settings that fail fast, and the retrying unit of
work."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError

from shared.db import (
    UTCDateTime,
    create_engine_for,
    make_session_factory,
    normalize_url,
    transaction,
    write_gate,
)
from shared.models import Tenant
from shared.runtime import Runtime
from shared.settings import Settings
from tests.conftest import TENANT


class TestUTCDateTime:
    def test_round_trip_is_aware_utc(self, runtime):
        local = datetime(2026, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=8)))
        with runtime.write() as session:
            session.add(Tenant(id="TZ", name="tz", timezone="UTC", created_at=local))
        with runtime.read() as session:
            created = session.get(Tenant, "TZ").created_at
        assert created == local
        assert created.tzinfo is UTC
        assert created.hour == 2

    def test_naive_datetime_is_refused(self):
        with pytest.raises(ValueError, match="naive"):
            UTCDateTime().process_bind_param(
                datetime(2026, 1, 1), sa.create_engine("sqlite://").dialect
            )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///./x.db", "sqlite:///./x.db"),
    ],
)
def test_normalize_url(url, expected):
    assert normalize_url(url) == expected


class TestSettings:
    @pytest.mark.parametrize("prefix", ["qcpulse", "QC.PULSE", "QC>", "", "9QC"])
    def test_nats_prefix_must_name_streams(self, prefix):
        with pytest.raises(ValidationError):
            Settings(nats_prefix=prefix)

    def test_defaults(self, monkeypatch):
        for name in (
            "QCPULSE_DATABASE_URL",
            "QCPULSE_MAX_BODY_BYTES",
            "QCPULSE_MAX_BUNDLE_ENTRIES",
        ):
            monkeypatch.delenv(name, raising=False)
        s = Settings()
        assert s.max_body_bytes == 10 * 1024 * 1024
        assert s.max_bundle_entries == 5000
        assert s.database_url == "sqlite:///./qcpulse.db"

    def test_limits_come_from_the_environment(self, monkeypatch):
        monkeypatch.setenv("QCPULSE_MAX_BODY_BYTES", "2048")
        monkeypatch.setenv("QCPULSE_MAX_BUNDLE_ENTRIES", "10")
        monkeypatch.setenv("QCPULSE_BOOTSTRAP_ADMIN_KEY", "s3cret")
        s = Settings()
        assert (s.max_body_bytes, s.max_bundle_entries) == (2048, 10)
        assert "s3cret" not in repr(s)

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("QCPULSE_DEFAULT_TIMEZONE", "Mars/Olympus"),
            ("QCPULSE_DATABASE_URL", "mysql://u@h/db"),
            ("QCPULSE_MAX_BODY_BYTES", "0"),
            ("QCPULSE_MAX_BUNDLE_ENTRIES", "lots"),
            ("QCPULSE_BUS", "kafka"),
        ],
    )
    def test_bad_values_fail_fast(self, monkeypatch, name, value):
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError):
            Settings()


def _locked() -> OperationalError:
    return OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))


class TestWriteTx:
    def test_retries_a_busy_database_then_commits(self, runtime):
        attempts: list[int] = []

        def work(session):
            attempts.append(1)
            session.get(Tenant, TENANT).name = f"try {len(attempts)}"
            if len(attempts) < 3:
                raise _locked()
            return "done"

        assert runtime.write_tx(work) == "done"
        assert len(attempts) == 3
        with runtime.read() as session:
            assert session.get(Tenant, TENANT).name == "try 3"

    def test_gives_up_after_the_last_attempt(self, runtime):
        attempts: list[int] = []

        def work(session):
            attempts.append(1)
            raise _locked()

        with pytest.raises(OperationalError):
            runtime.write_tx(work, attempts=2)
        assert len(attempts) == 2

    def test_does_not_retry_other_errors(self, runtime):
        attempts: list[int] = []

        def work(session):
            attempts.append(1)
            raise IntegrityError("INSERT", {}, sqlite3.IntegrityError("NOT NULL failed"))

        with pytest.raises(IntegrityError):
            runtime.write_tx(work)
        assert len(attempts) == 1

    def test_tenant_zone(self, runtime):
        with runtime.read() as session:
            assert str(runtime.tenant_zone(session, TENANT)) == "Asia/Shanghai"
            assert str(runtime.tenant_zone(session, "unknown")) == "Asia/Shanghai"


def test_runtime_from_settings_builds_its_engine(tmp_path):
    rt = Runtime.from_settings(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}"))
    try:
        with rt.engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        rt.close()
    assert rt.stop.is_set()


class TestSQLiteWriteGate:
    """This process's SQLite writers queue on one lock, held from BEGIN to the end of
    the transaction however it ends."""

    @pytest.fixture
    def gate(self, tmp_path):
        engine = create_engine_for(f"sqlite:///{tmp_path / 'gate.db'}")
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        gate = write_gate(engine)
        assert gate is not None and not gate.locked()
        yield engine, gate
        engine.dispose()

    def test_held_for_the_transaction_and_freed_by_commit(self, gate):
        engine, lock = gate
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            assert lock.locked()
        assert not lock.locked()

    def test_freed_by_rollback_and_by_a_connection_closed_mid_transaction(self, gate):
        engine, lock = gate

        def failing_write():
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (1)")
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            failing_write()
        assert not lock.locked()
        conn = engine.connect()
        conn.begin()
        assert lock.locked()
        conn.close()
        assert not lock.locked()

    def test_readers_do_not_take_it(self, gate):
        engine, lock = gate
        with transaction(make_session_factory(engine, readonly=True)) as session:
            session.execute(sa.text("SELECT count(*) FROM t"))
            assert not lock.locked()

    def test_a_second_writer_waits_for_the_first(self, gate):
        engine, _ = gate
        order = []
        first = engine.connect()
        first.begin()
        first.exec_driver_sql("INSERT INTO t VALUES (1)")

        def second():
            with engine.begin() as conn:
                order.append("second")
                conn.exec_driver_sql("INSERT INTO t VALUES (2)")

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=0.5)  # it cannot finish while the first holds the gate
        order.append("first commits")
        first.commit()
        first.close()
        thread.join()
        assert order == ["first commits", "second"]
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT x FROM t ORDER BY x").scalars().all() == [1, 2]


def test_postgresql_has_no_gate(engine):
    if engine.dialect.name == "sqlite":
        assert write_gate(engine) is not None
    else:
        assert write_gate(engine) is None
