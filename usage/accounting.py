"""A finished (or paused) execution's spend: its costed `usage` and its own
figures in the columns budgets and reports add up.

`usage` keeps every counter of the run (`requests`, `input_tokens`,
`output_tokens`, `cache_read_tokens`, `cache_write_tokens`, `tool_calls`) with
`cost_usd` (a decimal string, 12 places, or null without a known price) and
`priced`. An execution that delegated work counts its whole tree in `usage`
(its children's runs share its usage, and so its limits); its columns hold its
own figures only, `usage` minus its direct children's `usage`, so that any sum
over rows counts every execution of a tree once.

Public surface:
    TOKEN_KEYS              the counters of a run's usage
    settle_reads()          annotations for the finishing read that spare `settle`
                            the statements a turn without children or
                            reservations does not need
    settle(execution)       fills cost and columns on the (locked) execution,
                            drops its reservations; returns the fields to save
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Exists, OuterRef

from sessions_app.models import AgentExecution
from usage import allowances
from usage.models import BudgetReservation
from usage.pricing import cost_of, usd_string

TOKEN_KEYS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "tool_calls",
)

SETTLED_FIELDS = (
    "usage",
    "requests",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "priced",
)


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def settle_reads() -> dict[str, Any]:
    """Annotations for the finishing read of an execution: whether it has
    children and reservations, so `settle` reads and deletes only what exists
    (most turns delegate nothing and reserve from no budget)."""
    return {
        "has_children": Exists(AgentExecution.objects.filter(parent_id=OuterRef("pk"))),
        "has_reservations": Exists(
            BudgetReservation.objects.filter(execution_id=OuterRef("pk"))
        ),
    }


def settle(execution: AgentExecution) -> tuple[str, ...]:
    """Called by `services.execution_finish` inside its transaction (on the
    execution read with `settle_reads()`, or without: then every step runs)."""
    usage = dict(execution.usage or {})
    children = (
        list(
            AgentExecution.objects.filter(parent_id=execution.pk).values_list(
                "usage", flat=True
            )
        )
        if getattr(execution, "has_children", True)
        else []
    )
    own = {
        key: max(0, _count(usage, key) - sum(_count(c or {}, key) for c in children))
        for key in TOKEN_KEYS
    }
    own_cost = cost_of(execution.model or "", own)
    execution.requests = own["requests"]
    execution.input_tokens = own["input_tokens"]
    execution.output_tokens = own["output_tokens"]
    execution.cost_usd = own_cost
    execution.priced = own_cost is not None
    # The tree's cost: this execution's own plus what its children's usage says.
    costs = [own_cost] + [_decimal((c or {}).get("cost_usd")) for c in children]
    known = [c for c in costs if c is not None]
    tree_priced = execution.priced and all(
        (c or {}).get("priced") is True for c in children
    )
    for key in TOKEN_KEYS:
        usage[key] = _count(usage, key)
    usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
    usage["cost_usd"] = usd_string(sum(known, Decimal(0))) if known else None
    usage["priced"] = tree_priced
    execution.usage = usage
    # Only a turn's root holds reservations (`budgets.open_with_reservations`
    # opens roots alone), and its finishing read says whether it has any.
    if execution.parent_id is None and getattr(execution, "has_reservations", True):
        BudgetReservation.objects.filter(execution_id=execution.pk).delete()
    allowances.forget(execution.pk)
    return SETTLED_FIELDS


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None
