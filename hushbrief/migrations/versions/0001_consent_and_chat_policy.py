"""Opt-in flags and chat policy overrides.

Revision ID: 0001
Revises:
Create Date: 2025-11-27

Both tables key rows by 32-byte HMAC-SHA256 hashes of chat and user identifiers;
nothing else about a chat or a member is stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consent",
        sa.Column("chat_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("user_hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("chat_hash", "user_hash", name="pk_consent"),
    )
    op.create_index("ix_consent_user_hash", "consent", ["user_hash"])
    op.create_table(
        "chat_policy",
        sa.Column("chat_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("summaries", sa.Boolean(), nullable=True),
        sa.Column("who", sa.String(16), nullable=True),
        sa.Column("consent", sa.String(16), nullable=True),
        sa.Column("delivery", sa.String(16), nullable=True),
        sa.Column("processing", sa.String(16), nullable=True),
        sa.Column("max_messages", sa.Integer(), nullable=True),
        sa.Column("max_span", sa.Integer(), nullable=True),
        sa.Column("buffer_messages", sa.Integer(), nullable=True),
        sa.Column("buffer_ttl", sa.Integer(), nullable=True),
        sa.Column("chat_rate", sa.Integer(), nullable=True),
        sa.Column("member_rate", sa.Integer(), nullable=True),
        sa.Column("redact", sa.Boolean(), nullable=True),
        sa.Column("length", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("chat_hash", name="pk_chat_policy"),
    )


def downgrade() -> None:
    op.drop_table("chat_policy")
    op.drop_index("ix_consent_user_hash", table_name="consent")
    op.drop_table("consent")
