"""departments: code -> label, so reads do not scan episodes for names

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "departments",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "code", name=op.f("pk_departments")),
    )
    # Existing episodes name their departments; which label wins among several was
    # arbitrary before (the largest), and stays so for data already stored.
    op.execute(
        "INSERT INTO departments (tenant_id, code, name) "
        "SELECT tenant_id, department, MAX(department_name) FROM episodes "
        "GROUP BY tenant_id, department"
    )


def downgrade() -> None:
    op.drop_table("departments")
