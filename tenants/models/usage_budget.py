"""Token budgets per tenant or per key and period, with their reserved/used counters."""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models.base import Base


class UsageBudget(Base):
    __tablename__ = "usage_budgets"
    __table_args__ = (
        CheckConstraint("period IN ('day', 'month')", name="period"),
        CheckConstraint("tokens > 0", name="tokens"),
    )

    tenant_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    """The tenant; deleting it deletes its budgets."""
    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    """'' for the whole tenant, else the API key id the budget applies to."""
    period: Mapped[str] = mapped_column(String(8), primary_key=True)
    """`day` or `month` (UTC calendar periods)."""
    tokens: Mapped[int] = mapped_column(BigInteger)
    """Tokens (prompt + completion) allowed per period."""


class BudgetCounter(Base):
    """What one budget period has used and has reserved for requests still running."""

    __tablename__ = "usage_budget_counters"

    tenant_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    """The tenant."""
    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    """As in `UsageBudget.scope`."""
    period: Mapped[str] = mapped_column(String(8), primary_key=True)
    """As in `UsageBudget.period`."""
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)
    """First UTC day of the period."""
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    """Tokens held by admitted requests that have not settled yet."""
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    """Tokens settled (actually consumed) in the period."""
