"""Audit records name every reused KV block: [[block_id, owner namespace hex], ...].

Nullable so records appended before this revision keep their stored (and hashed) shape: NULL
means "written before block ids were recorded", and the hash input omits the field then.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 05:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reused_block_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.drop_column("reused_block_ids")
