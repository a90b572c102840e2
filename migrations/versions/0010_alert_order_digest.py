"""alert order and alert fatigue: the order of the change a watched case last applied,
a tenant's breach grace, digest subscriptions and their queue

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_watched_cases") as batch:
        batch.add_column(
            sa.Column("first_seen_at", shared.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(
            sa.Column(
                "applied_order",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                nullable=True,
            )
        )
    # Plain ALTER TABLE (SQLite >= 3.35 drops columns too): a batch would re-create
    # these tables, which other tables' rows reference.
    op.add_column("tenants", sa.Column("alert_grace_seconds", sa.Integer(), nullable=True))
    op.add_column("alert_subscriptions", sa.Column("digest_seconds", sa.Integer(), nullable=True))
    op.create_table(
        "alert_digest_items",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("alert_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_alert_digest_items_alert_id_alerts")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["alert_subscriptions.id"],
            name=op.f("fk_alert_digest_items_subscription_id_alert_subscriptions"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_alert_digest_items_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_digest_items")),
        sa.UniqueConstraint(
            "subscription_id",
            "alert_id",
            name=op.f("uq_alert_digest_items_subscription_id_alert_id"),
        ),
    )
    with op.batch_alter_table("alert_digest_items") as batch:
        batch.create_index(
            "ix_alert_digest_items_due",
            ["subscription_id", "department", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("alert_digest_items") as batch:
        batch.drop_index("ix_alert_digest_items_due")
    op.drop_table("alert_digest_items")
    op.drop_column("alert_subscriptions", "digest_seconds")
    op.drop_column("tenants", "alert_grace_seconds")
    with op.batch_alter_table("alert_watched_cases") as batch:
        batch.drop_column("applied_order")
        batch.drop_column("first_seen_at")
