"""Migrations: they build exactly the models' schema, and carry data forward."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from qcpulse import schema
from shared.db import create_engine_for


def test_migrations_build_exactly_the_models(engine):
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []


def test_0005_names_departments_from_stored_episodes(tmp_path):
    engine = create_engine_for(f"sqlite:///{tmp_path / 'upgrade.db'}")
    try:
        schema.migrate(engine, "0004")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO episodes (tenant_id, encounter_id, department, department_name)"
                    " VALUES ('H1', 'e1', 'ED', '急诊科'), ('H1', 'e2', 'ED', NULL),"
                    " ('H1', 'e3', 'ICU', NULL), ('H2', 'e1', 'ED', 'Emergency')"
                )
            )
        schema.migrate(engine)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT tenant_id, code, name FROM departments")).all()
        assert sorted(rows, key=str) == sorted(
            [("H1", "ED", "急诊科"), ("H1", "ICU", None), ("H2", "ED", "Emergency")], key=str
        )
    finally:
        engine.dispose()
