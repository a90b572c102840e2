"""Test fixtures: a real database (SQLite file, or PostgreSQL from
QCPULSE_TEST_DATABASE_URL / testcontainers), migrated once by Alembic, emptied after
each test; an app wired to a frozen clock; keys for each role."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from qcpulse import schema
from qcpulse.app import create_app
from shared.auth import Role, create_key, ensure_tenant
from shared.clock import FrozenClock
from shared.db import create_engine_for
from shared.runtime import Runtime
from shared.settings import Settings

TENANT = "H0001"
OTHER_TENANT = "H0002"
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai


def _postgres_url() -> str | None:
    url = os.environ.get("QCPULSE_TEST_DATABASE_URL")
    if url:
        return url
    if os.environ.get("QCPULSE_TEST_BACKEND") == "postgresql":
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-not-found]

        container = PostgresContainer("postgres:16-alpine")
        container.start()
        return str(container.get_connection_url())
    return None


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    url = _postgres_url()
    if url is None:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'qcpulse-test.db'}"
    eng = create_engine_for(url)
    # A PostgreSQL that cannot be reached fails the run here; it is never skipped.
    with eng.begin() as conn:
        if eng.dialect.name == "postgresql":
            conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    schema.migrate(eng)
    yield eng
    eng.dispose()


def _empty(eng: Engine) -> None:
    tables = [t.name for t in reversed(schema.metadata.sorted_tables)]
    with eng.begin() as conn:
        if eng.dialect.name == "postgresql":
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in tables:
                conn.execute(sa.text(f"DELETE FROM {name}"))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def settings(engine: Engine) -> Settings:
    return Settings(database_url=engine.url.render_as_string(hide_password=False))


@pytest.fixture
def runtime(engine: Engine, settings: Settings, clock: FrozenClock) -> Iterator[Runtime]:
    rt = Runtime(settings=settings, engine=engine, clock=clock)
    with rt.write() as session:
        ensure_tenant(session, TENANT, name="示例医院", timezone="Asia/Shanghai")
        ensure_tenant(session, OTHER_TENANT, name="Other hospital", timezone="Asia/Shanghai")
    yield rt
    rt.stop.set()
    _empty(engine)


@pytest.fixture
def app_client(runtime: Runtime) -> Iterator[TestClient]:
    app = create_app(runtime=runtime, run_workers=False)
    with TestClient(app) as client:
        yield client


def make_key(runtime: Runtime, role: Role, tenant: str = TENANT) -> str:
    with runtime.write() as session:
        _, secret = create_key(session, tenant, role, name=f"test {role}")
    return secret


@pytest.fixture
def ingest_headers(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(runtime, Role.INGEST)}"}


@pytest.fixture
def reader_headers(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(runtime, Role.READER)}"}


@pytest.fixture
def admin_headers(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(runtime, Role.ADMIN)}"}


@pytest.fixture
def other_ingest_headers(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(runtime, Role.INGEST, OTHER_TENANT)}"}
