"""hl7v2: sources, message log, resource clock

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hl7_messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.String(length=32), nullable=False),
        sa.Column("control_id", sa.String(length=200), nullable=True),
        sa.Column("accepted_control_id", sa.String(length=200), nullable=True),
        sa.Column("message_type", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=16), nullable=True),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("peer", sa.String(length=64), nullable=True),
        sa.Column("received_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=2), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("ack", sa.Text(), nullable=True),
        sa.Column("written", shared.db.JSONDoc(), nullable=False),
        sa.Column("stale", shared.db.JSONDoc(), nullable=False),
        sa.Column("replayed_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_messages")),
        sa.UniqueConstraint(
            "tenant_id",
            "source_id",
            "accepted_control_id",
            name=op.f("uq_hl7_messages_tenant_id_source_id_accepted_control_id"),
        ),
    )
    with op.batch_alter_table("hl7_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_hl7_messages_tenant_status", ["tenant_id", "status", "id"], unique=False
        )

    op.create_table(
        "hl7_resource_clock",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("message_time", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.PrimaryKeyConstraint("tenant_id", "type", "id", name=op.f("pk_hl7_resource_clock")),
    )
    op.create_table(
        "hl7_sources",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("facility", sa.String(length=200), nullable=False),
        sa.Column("application", sa.String(length=200), nullable=False),
        sa.Column("networks", shared.db.JSONDoc(), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_hl7_sources_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_sources")),
        sa.UniqueConstraint(
            "facility", "application", name=op.f("uq_hl7_sources_facility_application")
        ),
    )
    with op.batch_alter_table("hl7_sources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hl7_sources_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hl7_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hl7_sources_tenant_id"))

    op.drop_table("hl7_sources")
    op.drop_table("hl7_resource_clock")
    with op.batch_alter_table("hl7_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_hl7_messages_tenant_status")

    op.drop_table("hl7_messages")
