"""Budgets: what each one has spent, and the allowances turns reserve from them.

A turn reserves, as it opens and in the same transaction, an allowance from
every `block` budget covering it (its user's, its agent's, the global ones):
the smallest of the budget's remainder (limit minus the period's spend minus
the reservations of queued and running turns) and `AGENTRY_TURN_RESERVATION`
tokens (for a USD limit, the price of that many tokens at the model's dearest
rate). The budget rows are locked (`select_for_update`) for that transaction,
so two turns never reserve the same remainder. The smallest allowance is the
turn's `total_tokens_limit`. A budget with nothing left refuses the turn with
`budget_exceeded` (nothing is stored). `warn` budgets already used up put a
`budget_warning` on the execution instead.

Spend is counted from executions' own columns (`input_tokens + output_tokens`,
`cost_usd`) created in the budget's period; `usage.accounting` writes them,
and drops the turn's reservations, as the turn ends.

Public surface:
    BudgetExceeded                 the refusal (a TurnRejected, 429, with details)
    period_bounds(period, now)     (start, resets_at) of a calendar period, UTC
    budget_status(budget, now)     spent/reserved/remaining figures of one budget
    open_with_reservations(open_turn, **turn_open_kwargs)
                                   opens a turn inside the reserving transaction
    usage_limits(limits, execution_id)
                                   a run's UsageLimits bounded by its allowance
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from sessions_app.db import run_db
from sessions_app.models import AgentExecution
from sessions_app.services import TurnRejected, turn_conflict
from usage import allowances
from usage.models import Budget, BudgetReservation
from usage.pricing import MTOK, Rates, rates_for, usd_string


class BudgetExceeded(TurnRejected):
    def __init__(self, status: BudgetStatus) -> None:
        budget = status.budget
        super().__init__(
            "budget_exceeded",
            f"The {budget.get_period_display().lower()} budget "
            f"({budget.get_scope_display().lower()}) is used up"
            + (f" until {status.resets_at.isoformat()}." if status.resets_at else "."),
            429,
        )
        self.details = status.refusal_details()


def period_bounds(
    period: str, now: dt.datetime
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The current calendar period (UTC) as (start, end); None for `total`."""
    now = now.astimezone(dt.UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == Budget.Period.DAY:
        return day, day + dt.timedelta(days=1)
    if period == Budget.Period.WEEK:
        start = day - dt.timedelta(days=day.weekday())  # ISO weeks start on Monday
        return start, start + dt.timedelta(days=7)
    if period == Budget.Period.MONTH:
        start = day.replace(day=1)
        following = (start + dt.timedelta(days=32)).replace(day=1)
        return start, following
    return None, None


def _covered(budget: Budget) -> QuerySet[AgentExecution]:
    executions = AgentExecution.objects.all()
    if budget.scope == Budget.Scope.USER:
        return executions.filter(user_id=budget.user_id)
    if budget.scope == Budget.Scope.AGENT:
        return executions.filter(agent_id=budget.agent_id)
    return executions


@dataclass
class BudgetStatus:
    budget: Budget
    spent_tokens: int
    spent_usd: Decimal
    reserved_tokens: int
    reserved_usd: Decimal
    resets_at: dt.datetime | None

    @property
    def remaining_tokens(self) -> int | None:
        limit = self.budget.limit_tokens
        if limit is None:
            return None
        return limit - self.spent_tokens - self.reserved_tokens

    @property
    def remaining_usd(self) -> Decimal | None:
        limit = self.budget.limit_usd
        if limit is None:
            return None
        return limit - self.spent_usd - self.reserved_usd

    @property
    def used_up(self) -> bool:
        tokens, usd = self.remaining_tokens, self.remaining_usd
        return (tokens is not None and tokens <= 0) or (usd is not None and usd <= 0)

    def refusal_details(self) -> dict[str, Any]:
        return {
            "budget": str(self.budget.pk),
            "remaining_usd": usd_string(self.remaining_usd),
            "remaining_tokens": self.remaining_tokens,
            "resets_at": self.resets_at.isoformat() if self.resets_at else None,
        }

    def allowance(self, rates: Rates | None) -> tuple[int, Decimal | None]:
        """(tokens, usd) this budget can give a new turn on a model with `rates`."""
        tokens = settings.AGENTRY_TURN_RESERVATION
        if self.remaining_tokens is not None:
            tokens = min(tokens, self.remaining_tokens)
        usd = None
        remaining_usd = self.remaining_usd
        if remaining_usd is not None:
            if remaining_usd <= 0:
                return 0, Decimal(0)
            if rates is not None and rates.highest > 0:
                usd = min(remaining_usd, tokens * rates.highest / MTOK)
                tokens = min(tokens, int(usd * MTOK / rates.highest))
            # A model with no known price costs nothing a USD limit can count.
        return max(0, tokens), usd


def budget_status(budget: Budget, now: dt.datetime | None = None) -> BudgetStatus:
    start, resets_at = period_bounds(budget.period, now or timezone.now())
    executions = _covered(budget)
    if start is not None:
        executions = executions.filter(created_at__gte=start)
    spent = executions.aggregate(
        tokens=Coalesce(Sum(F("input_tokens") + F("output_tokens")), 0),
        usd=Sum("cost_usd"),
    )
    reserved = BudgetReservation.objects.filter(
        budget=budget, execution__status__in=AgentExecution.ACTIVE_STATUSES
    ).aggregate(tokens=Coalesce(Sum("tokens"), 0), usd=Sum("usd"))
    return BudgetStatus(
        budget=budget,
        spent_tokens=int(spent["tokens"]),
        spent_usd=spent["usd"] or Decimal(0),
        reserved_tokens=int(reserved["tokens"]),
        reserved_usd=reserved["usd"] or Decimal(0),
        resets_at=resets_at,
    )


def covering(user_id: Any, agent_id: Any) -> QuerySet[Budget]:
    return Budget.objects.filter(
        Q(scope=Budget.Scope.GLOBAL)
        | Q(scope=Budget.Scope.USER, user_id=user_id)
        | Q(scope=Budget.Scope.AGENT, agent_id=agent_id)
    )


def open_with_reservations(open_turn: Any, **kwargs: Any) -> Any:
    """`open_turn(**kwargs)` (`services.turn_open`) inside the transaction that
    locks the covering budgets and reserves the new turn's allowance.

    Raises BudgetExceeded when a `block` budget has nothing left, unless the
    message repeats a stored one (then the stored turn is returned).
    """
    session = kwargs["session"]
    try:
        return _open_reserving(open_turn, **kwargs, in_caller_transaction=True)
    except IntegrityError:
        # The unique indexes refused the turn; the transaction rolled back.
        return turn_conflict(session.pk, kwargs.get("client_message_id", ""))


def _open_reserving(open_turn: Any, **kwargs: Any) -> Any:
    session = kwargs["session"]
    user_id = kwargs["user_id"]
    with transaction.atomic():
        # Ordered locks: two openers never wait on each other crosswise.
        budgets = list(
            covering(user_id, session.agent_id).select_for_update().order_by("pk")
        )
        if not budgets:
            opened = open_turn(**kwargs)
            if not opened.duplicate:
                allowances.keep(opened.execution.pk, None)
            return opened
        now = timezone.now()
        statuses = [budget_status(b, now) for b in budgets]
        blocking = [s for s in statuses if s.budget.on_exceed == Budget.OnExceed.BLOCK]
        rates = rates_for(kwargs["model"]) if blocking else None
        taken = [(s, *s.allowance(rates)) for s in blocking]
        refused = next((s for s, tokens, _ in taken if tokens <= 0), None)
        if refused is not None:
            if (
                kwargs.get("client_message_id")
                and AgentExecution.objects.filter(
                    session_id=session.pk, client_message_id=kwargs["client_message_id"]
                ).exists()
            ):
                return open_turn(**kwargs)  # a repeat: answered with its stored turn
            raise BudgetExceeded(refused)
        opened = open_turn(**kwargs)
        if opened.duplicate:
            return opened
        execution = opened.execution
        BudgetReservation.objects.bulk_create(
            BudgetReservation(budget=s.budget, execution=execution, tokens=t, usd=u)
            for s, t, u in taken
        )
        allowances.keep(execution.pk, min((t for _, t, _ in taken), default=None))
        warnings = [
            s.refusal_details()
            for s in statuses
            if s.budget.on_exceed == Budget.OnExceed.WARN and s.used_up
        ]
        if warnings:
            execution.budget_warning = warnings
            AgentExecution.objects.filter(pk=execution.pk).update(
                budget_warning=warnings
            )
        return opened


def _allowance_now(execution_id: str) -> int | None:
    """The allowance of a turn that opened in another process (a worker runs
    it, or took it over): its reservation; for a turn resuming after an
    approval, what its covering `block` budgets have left now (read, not
    reserved)."""
    reserved = list(
        BudgetReservation.objects.filter(execution_id=execution_id).values_list(
            "tokens", flat=True
        )
    )
    if reserved:
        return min(reserved)
    execution = (
        AgentExecution.objects.filter(pk=execution_id)
        .values("user_id", "agent_id", "model")
        .first()
    )
    if execution is None:
        return None
    blocking = covering(execution["user_id"], execution["agent_id"]).filter(
        on_exceed=Budget.OnExceed.BLOCK
    )
    budgets = list(blocking)
    if not budgets:
        return None
    rates = rates_for(execution["model"])
    # Nothing left still lets the resumed run make its one overshooting request.
    return max(1, min(budget_status(b).allowance(rates)[0] for b in budgets))


async def usage_limits(limits: Any, execution_id: str) -> Any:
    """`limits` (pydantic-ai UsageLimits) with `total_tokens_limit` at most
    the turn's allowance."""
    allowance = allowances.take(execution_id)
    if allowance == allowances.UNKNOWN:
        allowance = await run_db(_allowance_now, execution_id)
    if allowance is None:
        return limits
    current = limits.total_tokens_limit
    limits.total_tokens_limit = (
        allowance if current is None else min(current, allowance)
    )
    return limits
