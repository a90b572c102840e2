"""manual indicator values and their audit, target profiles, catalogue years, key permissions

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "manual_values",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("indicator", sa.String(length=64), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("numerator", sa.Integer(), nullable=False),
        sa.Column("denominator", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("entered_by", sa.String(length=32), nullable=False),
        sa.Column("entered_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "indicator", "month", "department", name=op.f("pk_manual_values")
        ),
    )
    op.create_table(
        "manual_value_audit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("indicator", sa.String(length=64), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("entered_by", sa.String(length=32), nullable=False),
        sa.Column("entered_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("previous_numerator", sa.Integer(), nullable=True),
        sa.Column("previous_denominator", sa.Integer(), nullable=True),
        sa.Column("previous_note", sa.Text(), nullable=True),
        sa.Column("numerator", sa.Integer(), nullable=False),
        sa.Column("denominator", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_manual_value_audit")),
    )
    op.create_index(
        "ix_manual_audit_value",
        "manual_value_audit",
        ["tenant_id", "indicator", "month", "department"],
    )
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("target_profile", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("catalogue", sa.String(length=8), nullable=True))
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("permissions", shared.db.JSONDoc(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("permissions")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("catalogue")
        batch.drop_column("target_profile")
    op.drop_index("ix_manual_audit_value", table_name="manual_value_audit")
    op.drop_table("manual_value_audit")
    op.drop_table("manual_values")
