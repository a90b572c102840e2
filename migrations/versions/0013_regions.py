"""regions, region_members; api_keys.tenant_id may name a region (region keys)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.db

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "regions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("target_profile", sa.String(length=64), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_regions")),
    )
    op.create_table(
        "region_members",
        sa.Column("region_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["region_id"], ["regions.id"], name=op.f("fk_region_members_region_id_regions")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_region_members_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("region_id", "member_id", name=op.f("pk_region_members")),
    )
    op.create_index(
        op.f("ix_region_members_tenant_id"), "region_members", ["tenant_id"], unique=False
    )
    # A region key carries the region's id where a tenant key carries its tenant's.
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint("fk_api_keys_tenant_id_tenants", type_="foreignkey")


def downgrade() -> None:
    op.execute("DELETE FROM api_keys WHERE tenant_id NOT IN (SELECT id FROM tenants)")
    with op.batch_alter_table("api_keys") as batch:
        batch.create_foreign_key("fk_api_keys_tenant_id_tenants", "tenants", ["tenant_id"], ["id"])
    op.drop_index(op.f("ix_region_members_tenant_id"), table_name="region_members")
    op.drop_table("region_members")
    op.drop_table("regions")
