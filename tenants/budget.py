"""Token budgets: reserve prompt + max_tokens atomically before admission, settle afterwards.

A reservation is one conditional UPDATE per budget (`used + reserved + n <= tokens`), all in
one transaction: PostgreSQL re-checks the condition after waiting for the row lock and SQLite
serializes writers, so N concurrent requests can never hold more than the budget between them.
Settling moves the reservation to `used` with the tokens actually consumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tenants.database import Database
from tenants.errors import Invalid, RegistryError
from tenants.models import BudgetCounter, UsageBudget
from tenants.models.base import utcnow
from tenants.tenant_service import load_tenant

Period = Literal["day", "month"]
PERIODS: tuple[Period, ...] = ("day", "month")
_COUNTERS = BudgetCounter.__table__


@dataclass(frozen=True, slots=True)
class BudgetView:
    tenant_id: str
    key_id: str | None  # None: the whole tenant
    period: Period
    tokens: int

    @property
    def label(self) -> str:
        who = f"key {self.key_id}" if self.key_id else "tenant"
        adjective = "daily" if self.period == "day" else "monthly"
        return f"{adjective} token budget of the {who} ({self.tokens} tokens)"


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    budget: BudgetView
    period_start: date
    used: int
    reserved: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """Tokens held on each budget period a request counts toward, until settled."""

    tenant_id: str
    tokens: int
    holds: tuple[tuple[str, str, date], ...]  # (scope, period, period_start)


class BudgetExceeded(RegistryError):
    """The request does not fit in a budget (HTTP 429, naming the budget)."""

    def __init__(self, budget: BudgetView, left: int, wanted: int) -> None:
        super().__init__(f"The {budget.label} is exhausted for this period: {max(left, 0)} "
                         f"tokens left, this request needs up to {wanted}.")
        self.budget = budget


def period_start(period: str, today: date) -> date:
    return today if period == "day" else today.replace(day=1)


class BudgetService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def set(self, tenant_id: str, period: str, tokens: int | None,
            key_id: str | None = None) -> BudgetView | None:
        """Create or change a budget; `tokens=None` removes it."""
        if period not in PERIODS:
            raise Invalid(f"period must be one of {', '.join(PERIODS)}")
        if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int)
                                   or tokens <= 0):
            raise Invalid("tokens must be a positive integer")
        scope = key_id or ""
        with self.db.session() as session:
            load_tenant(session, tenant_id)
            row = session.get(UsageBudget, (tenant_id, scope, period))
            if tokens is None:
                if row is not None:
                    session.delete(row)
                return None
            if row is None:
                session.add(UsageBudget(tenant_id=tenant_id, scope=scope, period=period,
                                        tokens=tokens))
            else:
                row.tokens = tokens
        return BudgetView(tenant_id, key_id, period, tokens)  # type: ignore[arg-type]

    def list(self, tenant_id: str) -> list[BudgetView]:
        with self.db.session() as session:
            rows = session.scalars(select(UsageBudget).where(UsageBudget.tenant_id == tenant_id)
                                   .order_by(UsageBudget.scope, UsageBudget.period))
            return [_view(r) for r in rows]

    def status(self, tenant_id: str, today: date | None = None) -> list[BudgetStatus]:
        today = today or utcnow().date()
        out = []
        with self.db.session() as session:
            for budget in self.list(tenant_id):
                start = period_start(budget.period, today)
                row = session.get(BudgetCounter, (tenant_id, budget.key_id or "", budget.period,
                                                  start))
                out.append(BudgetStatus(budget, start, row.used if row else 0,
                                        row.reserved if row else 0))
        return out

    def reserve(self, tenant_id: str, key_id: str | None, tokens: int,
                today: date | None = None) -> Reservation | None:
        """Hold `tokens` on every budget of the tenant and of the key, or raise BudgetExceeded
        holding nothing. None when no budget applies."""
        assert tokens >= 0
        today = today or utcnow().date()
        with self.db.session() as session:
            scopes = ["", key_id] if key_id else [""]
            budgets = list(session.scalars(
                select(UsageBudget).where(UsageBudget.tenant_id == tenant_id,
                                          UsageBudget.scope.in_(scopes))
                .order_by(UsageBudget.scope, UsageBudget.period)))
            if not budgets:
                return None
            holds = []
            for budget in budgets:
                start = period_start(budget.period, today)
                _ensure_counter(session, tenant_id, budget.scope, budget.period, start)
                pk = _pk(tenant_id, budget.scope, budget.period, start)
                taken = session.execute(
                    update(_COUNTERS).where(*pk).where(
                        _COUNTERS.c.used + _COUNTERS.c.reserved + tokens <= budget.tokens)
                    .values(reserved=_COUNTERS.c.reserved + tokens))
                if taken.rowcount != 1:  # type: ignore[attr-defined]
                    used, reserved = session.execute(
                        select(_COUNTERS.c.used, _COUNTERS.c.reserved).where(*pk)).one()
                    raise BudgetExceeded(_view(budget), budget.tokens - used - reserved, tokens)
                holds.append((budget.scope, budget.period, start))
            return Reservation(tenant_id, tokens, tuple(holds))

    def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """Release the hold and count what the request actually consumed."""
        assert used_tokens >= 0
        with self.db.session() as session:
            for scope, period, start in reservation.holds:
                session.execute(
                    update(_COUNTERS).where(*_pk(reservation.tenant_id, scope, period, start))
                    .values(reserved=_COUNTERS.c.reserved - reservation.tokens,
                            used=_COUNTERS.c.used + used_tokens))

    def reset(self, tenant_id: str) -> None:
        """Forget the tenant's counters (its budgets stay)."""
        with self.db.session() as session:
            session.execute(delete(_COUNTERS).where(_COUNTERS.c.tenant_id == tenant_id))


def _pk(tenant_id: str, scope: str, period: str, start: date) -> tuple[object, ...]:
    c = _COUNTERS.c
    return (c.tenant_id == tenant_id, c.scope == scope, c.period == period,
            c.period_start == start)


def _ensure_counter(session: Session, tenant_id: str, scope: str, period: str,
                    start: date) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(_COUNTERS).values(
        tenant_id=tenant_id, scope=scope, period=period, period_start=start, reserved=0, used=0,
    ).on_conflict_do_nothing())


def _view(row: UsageBudget) -> BudgetView:
    return BudgetView(row.tenant_id, row.scope or None, row.period, row.tokens)  # type: ignore[arg-type]
