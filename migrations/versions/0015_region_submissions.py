"""region_submission_keys, region_submissions: federated members' MeasureReports

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.db

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "region_submission_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("region_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["region_id", "member_id"],
            ["region_members.region_id", "region_members.member_id"],
            name=op.f("fk_region_submission_keys_region_id_region_members"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_region_submission_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_region_submission_keys_key_hash")),
    )
    op.create_table(
        "region_submissions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("region_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=True),
        sa.Column("numerator", sa.Integer(), nullable=False),
        sa.Column("denominator", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("received_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("report", shared.db.JSONDoc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_region_submissions")),
    )
    op.create_index(
        "ix_region_submissions_region_id",
        "region_submissions",
        ["region_id", "member_id", "code", "month", "department", "version"],
    )
    op.create_table(
        "region_submission_state",
        sa.Column("region_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("submitted_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "region_id",
            "tenant_id",
            "code",
            "month",
            "department",
            name=op.f("pk_region_submission_state"),
        ),
    )


def downgrade() -> None:
    op.drop_table("region_submission_state")
    op.drop_index("ix_region_submissions_region_id", table_name="region_submissions")
    op.drop_table("region_submissions")
    op.drop_table("region_submission_keys")
