"""Emphasis concentration per iteration and divergence as data.

``scalars.ess_fraction`` and ``scalars.max_share``: how concentrated a batch's normalised
weights were (effective sample size as a fraction of the batch, and the largest single
example's share of the batch's unit of gradient). ``runs.diverged_at`` and
``runs.divergence``: the iteration at which a run diverged and the measured figures behind it,
so that nothing has to parse them back out of the error text.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("scalars", sa.Column("ess_fraction", sa.Float(), nullable=True))
    op.add_column("scalars", sa.Column("max_share", sa.Float(), nullable=True))
    op.add_column("runs", sa.Column("diverged_at", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("divergence", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("divergence")
        batch.drop_column("diverged_at")
    with op.batch_alter_table("scalars") as batch:
        batch.drop_column("max_share")
        batch.drop_column("ess_fraction")
