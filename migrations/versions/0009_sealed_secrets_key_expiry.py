"""sealed webhook secrets (a wider column), API key expiry

The migration does not encrypt: it has no key (see ``services/alerts/sealing.py``).
Rows stay readable in clear; the next ``qcpulse serve`` with ``QCPULSE_SECRET_KEY``
set, or ``qcpulse rotate-secrets``, seals them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.db

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_subscriptions") as batch:
        batch.alter_column(
            "secret",
            existing_type=sa.String(length=100),
            type_=sa.String(length=400),
            existing_nullable=False,
        )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("expires_at", shared.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    # A sealed secret does not fit the old column, and the old code could not open it:
    # run a server of this version with the key to read them before going back.
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires_at")
    with op.batch_alter_table("alert_subscriptions") as batch:
        batch.alter_column(
            "secret",
            existing_type=sa.String(length=400),
            type_=sa.String(length=100),
            existing_nullable=False,
        )
