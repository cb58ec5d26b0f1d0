"""The newest verified transparency-log checkpoint.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Size and root hash of the newest checkpoint the bot verified, per configured log,
so that a log which later shows a different history (a fork) is caught.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "log_checkpoint",
        sa.Column("log_id", sa.String(32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("log_id", name="pk_log_checkpoint"),
    )


def downgrade() -> None:
    op.drop_table("log_checkpoint")
