"""Usage metering: daily rollups, per-tenant cache/rate policy, token budgets, shared rate
buckets, audit archive anchors, and the audit_records indexes for tenant pages and `since`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 05:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    big = sa.BigInteger()
    op.create_table(
        "usage_rollups",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("variant", sa.String(length=80), nullable=False),
        *(sa.Column(name, big, nullable=False) for name in (
            "requests", "rejections", "prompt_tokens", "cached_tokens", "cache_write_tokens",
            "completion_tokens")),
        sa.PrimaryKeyConstraint("tenant_id", "day", "key_id", "variant",
                                name=op.f("pk_usage_rollups")),
    )
    op.create_table(
        "usage_policies",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("cache_retention_s", sa.Integer(), nullable=False),
        sa.Column("no_store", sa.Boolean(), nullable=False),
        sa.Column("rate_count_cached", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE",
                                name=op.f("fk_usage_policies_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_usage_policies")),
    )
    op.create_table(
        "usage_budgets",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("tokens", big, nullable=False),
        sa.CheckConstraint("period IN ('day', 'month')", name=op.f("ck_usage_budgets_period")),
        sa.CheckConstraint("tokens > 0", name=op.f("ck_usage_budgets_tokens")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE",
                                name=op.f("fk_usage_budgets_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", "scope", "period", name=op.f("pk_usage_budgets")),
    )
    op.create_table(
        "usage_budget_counters",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("reserved", big, nullable=False),
        sa.Column("used", big, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE",
                                name=op.f("fk_usage_budget_counters_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", "scope", "period", "period_start",
                                name=op.f("pk_usage_budget_counters")),
    )
    op.create_table(
        "usage_rate_buckets",
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("level", sa.Float(), nullable=False),
        sa.Column("stamp", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_usage_rate_buckets")),
    )
    op.create_table(
        "audit_anchors",
        sa.Column("seq", big, autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("first_seq", big, nullable=False),
        sa.Column("location", sa.String(length=512), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_anchors")),
    )
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.create_index("ix_audit_records_tenant_id_seq", ["tenant_id", "seq"])
        batch_op.create_index("ix_audit_records_created_at", ["created_at"])


def downgrade() -> None:
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_records_created_at")
        batch_op.drop_index("ix_audit_records_tenant_id_seq")
    for table in ("audit_anchors", "usage_rate_buckets", "usage_budget_counters",
                  "usage_budgets", "usage_policies", "usage_rollups"):
        op.drop_table(table)
