"""episode chains, dispositions and patient-level cases

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("episodes") as batch:
        batch.add_column(sa.Column("part_of", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("priority", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("disposition_system", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("disposition_code", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("deceased_at", shared.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.create_index("ix_episodes_part_of", ["tenant_id", "part_of"])
    with op.batch_alter_table("indicator_cases") as batch:
        batch.add_column(sa.Column("patient_id", sa.String(length=64), nullable=True))
        batch.create_index("ix_cases_patient", ["tenant_id", "patient_id"])
    op.create_table(
        "indicator_units",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("encounter_id", sa.String(length=64), nullable=False),
        sa.Column("root_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "encounter_id"),
    )
    op.create_index("ix_units_patient", "indicator_units", ["tenant_id", "patient_id"])


def downgrade() -> None:
    op.drop_index("ix_units_patient", table_name="indicator_units")
    op.drop_table("indicator_units")
    with op.batch_alter_table("indicator_cases") as batch:
        batch.drop_index("ix_cases_patient")
        batch.drop_column("patient_id")
    with op.batch_alter_table("episodes") as batch:
        batch.drop_index("ix_episodes_part_of")
        for column in ("deceased_at", "disposition_code", "disposition_system", "priority"):
            batch.drop_column(column)
        batch.drop_column("part_of")
