"""Retry counter: runs.retries and claims.retry.

``dm retry`` starts a run's attempts over at 1; without a counter the claims audit showed
attempt 1 twice for one run. Existing rows get 0 (never retried as far as anyone can tell).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both backends: NOT NULL is allowed with a constant default.
    op.add_column("runs", sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("claims", sa.Column("retry", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("claims") as batch:
        batch.drop_column("retry")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("retries")
