"""The database's identity: one row holding a random UUID, written once, here.

``database_identity``: (uuid, created_at). A database created afresh, or dropped and created
again, gets a new UUID; a backup keeps the UUID of the database it copies. Workers compare it
with the one they started with before each write (``dm_store.identity``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-14
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    identity = op.create_table(
        "database_identity",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("uuid", name="pk_database_identity"),
    )
    # Inside the upgrade's own locked transaction (dm_store.database.Database.upgrade):
    # however many processes upgrade at once, one row is written, once.
    op.execute(identity.insert().values(uuid=str(uuid.uuid4()),
                                        created_at=sa.func.current_timestamp()))


def downgrade() -> None:
    op.drop_table("database_identity")
