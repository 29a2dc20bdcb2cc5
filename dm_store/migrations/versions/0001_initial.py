"""Initial schema: runs, per-iteration scalars/histograms/evals, labels, claims.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Spelt out (not imported from the models): a migration is a frozen record of one schema.
SCALAR_COLUMNS = ("loss", "ce", "lr", "batch_acc", "weight_mean", "weight_var",
                  "p_clean_mean", "p_noisy_mean")
STATUS_CHECK = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("group_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker_id", sa.String(255), nullable=True),
        sa.Column("device", sa.String(64), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("summary", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("checkpoint_path", sa.Text(), nullable=True),
        sa.Column("checkpoint_iteration", sa.Integer(), nullable=True),
        sa.Column("total_iterations", sa.Integer(), nullable=True),
        sa.Column("last_iteration", sa.Integer(), nullable=False),
        sa.Column("last_test_acc", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.CheckConstraint(STATUS_CHECK, name="ck_runs_status"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_runs_status_id", "runs", ["status", "id"])
    op.create_index("ix_runs_group_id", "runs", ["group_id"])

    for table, payload in (
        ("scalars", [*(sa.Column(name, sa.Float(), nullable=True) for name in SCALAR_COLUMNS),
                     sa.Column("extra", sa.JSON(none_as_null=True), nullable=True)]),
        ("histograms", [sa.Column("bins", sa.Integer(), nullable=False),
                        sa.Column("clean", sa.LargeBinary(), nullable=False),
                        sa.Column("noisy", sa.LargeBinary(), nullable=False)]),
        ("evals", [sa.Column("data", sa.JSON(), nullable=False)]),
    ):
        op.create_table(
            table,
            sa.Column("run_id", sa.Integer(), nullable=False),
            sa.Column("iteration", sa.Integer(), nullable=False),
            *payload,
            sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE",
                                    name=f"fk_{table}_run_id_runs"),
            sa.PrimaryKeyConstraint("run_id", "iteration", name=f"pk_{table}"),
        )

    op.create_table(
        "run_labels",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("clean", sa.LargeBinary(), nullable=False),
        sa.Column("noisy", sa.LargeBinary(), nullable=False),
        sa.Column("is_noisy", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE",
                                name="fk_run_labels_run_id_runs"),
        sa.PrimaryKeyConstraint("run_id", "phase", name="pk_run_labels"),
    )

    op.create_table(
        "claims",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(255), nullable=False),
        sa.Column("device", sa.String(64), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE",
                                name="fk_claims_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_claims"),
    )
    op.create_index("ix_claims_run_id", "claims", ["run_id"])


def downgrade() -> None:
    for table in ("claims", "run_labels", "evals", "histograms", "scalars"):
        op.drop_table(table)
    op.drop_index("ix_runs_group_id", table_name="runs")
    op.drop_index("ix_runs_status_id", table_name="runs")
    op.drop_table("runs")
