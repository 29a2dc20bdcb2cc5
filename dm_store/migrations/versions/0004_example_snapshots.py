"""Per-example statistics: one snapshot of every training example's statistics per evaluation.

``example_snapshots``: (run, evaluation iteration) → the arrays of ``dm_core.example_stats``
(confidence, variability, aum, forgetting, first_learned, last_p, share, label_quality) as one
``.npz`` blob, deleted with the run and past a checkpoint like the other per-iteration rows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "example_snapshots",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE",
                                name="fk_example_snapshots_run_id_runs"),
        sa.PrimaryKeyConstraint("run_id", "iteration", name="pk_example_snapshots"),
    )


def downgrade() -> None:
    op.drop_table("example_snapshots")
