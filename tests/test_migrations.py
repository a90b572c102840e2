"""Migrations: they build exactly the models' schema, and carry data forward."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
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


def test_0009_keeps_clear_secrets_readable_and_keys_without_expiry(tmp_path):
    """0009 encrypts nothing (it has no key): clear secrets stay as they were, readable,
    until a start with QCPULSE_SECRET_KEY seals them (tests/alerts/test_secrets_at_rest)."""
    engine = create_engine_for(f"sqlite:///{tmp_path / 'upgrade.db'}")
    try:
        schema.migrate(engine, "0008")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO tenants (id, name, timezone, created_at)"
                    " VALUES ('H1', 'h', 'UTC', '2026-01-01')"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO api_keys (id, tenant_id, role, name, key_hash, created_at)"
                    " VALUES ('k1', 'H1', 'admin', '', 'abc', '2026-01-01')"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO alert_subscriptions (id, tenant_id, url, secret, events,"
                    " indicators, departments, description, enabled, created_at, updated_at)"
                    " VALUES ('sub_1', 'H1', 'http://x', 'whsec_clear', '[\"*\"]', '[\"*\"]',"
                    " '[\"*\"]', '', 1, '2026-01-01', '2026-01-01')"
                )
            )
        schema.migrate(engine)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT secret FROM alert_subscriptions")).scalar() == (
                "whsec_clear"
            )
            assert conn.execute(sa.text("SELECT expires_at FROM api_keys")).scalar() is None
        columns = {c["name"]: c for c in sa.inspect(engine).get_columns("alert_subscriptions")}
        assert columns["secret"]["type"].length == 400
        config = schema.alembic_config(engine)  # and back
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0008")
        assert "expires_at" not in {c["name"] for c in sa.inspect(engine).get_columns("api_keys")}
    finally:
        engine.dispose()


def test_0011_adds_and_drops_the_audit_log(tmp_path):
    engine = create_engine_for(f"sqlite:///{tmp_path / 'audit.db'}")
    try:
        schema.migrate(engine, "0010")
        assert "audit_log" not in sa.inspect(engine).get_table_names()
        schema.migrate(engine)
        assert "audit_log" in sa.inspect(engine).get_table_names()
        config = schema.alembic_config(engine)
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0010")
        assert "audit_log" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
