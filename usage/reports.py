"""The usage report: executions' own figures grouped by day, agent, model or
user (DESIGN.md section 11), for the API and the admin alike.

Every execution counts its own row (`requests`, `input_tokens`,
`output_tokens`, `cost_usd`), so a delegation tree is counted once. Dates are
UTC calendar days; `to` is inclusive.

Public surface:
    GROUPS                               the group_by values
    ReportQuery(group_by, start, end)    a validated query (`parse`)
    parse(params, today) -> ReportQuery  raises ValueError with a message
    report(executions, query) -> {"results": [...], "total": {...}}
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate

from sessions_app.models import AgentExecution
from usage.pricing import usd_string

GROUPS = ("day", "agent", "model", "user")

_KEYS = {"agent": "agent_id", "model": "model", "user": "user_id"}


@dataclass(frozen=True)
class ReportQuery:
    group_by: str
    start: dt.date
    end: dt.date  # inclusive


def month_of(today: dt.date) -> tuple[dt.date, dt.date]:
    start = today.replace(day=1)
    following = (start + dt.timedelta(days=32)).replace(day=1)
    return start, following - dt.timedelta(days=1)


def _date(params: Any, name: str, default: dt.date) -> dt.date:
    value = params.get(name)
    if value is None:
        return default
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{name} must be an ISO date (YYYY-MM-DD).") from None


def parse(params: Any, today: dt.date) -> ReportQuery:
    # A parameter that is present must be valid, the empty string included
    # (as for the list filters of `core.filters`).
    group_by = params.get("group_by", "day")
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}.")
    first, last = month_of(today)
    start, end = _date(params, "from", first), _date(params, "to", last)
    if start > end:
        raise ValueError("from must not be after to.")
    return ReportQuery(group_by, start, end)


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    cost: Decimal | None = row["cost_usd"]
    return {
        "executions": row["executions"],
        "requests": row["requests"],
        "input_tokens": row["input_tokens"],
        "output_tokens": row["output_tokens"],
        "cost_usd": usd_string(cost),
    }


_SUMS = {
    "executions": Count("pk"),
    "requests": Coalesce(Sum("requests"), 0),
    "input_tokens": Coalesce(Sum("input_tokens"), 0),
    "output_tokens": Coalesce(Sum("output_tokens"), 0),
    "cost_usd": Sum("cost_usd"),
}


def report(executions: QuerySet[AgentExecution], query: ReportQuery) -> dict[str, Any]:
    start = dt.datetime.combine(query.start, dt.time.min, tzinfo=dt.UTC)
    rows = executions.filter(created_at__gte=start).order_by()
    if query.end < dt.date.max:  # `to` is the last date there is: no end
        end = dt.datetime.combine(
            query.end + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC
        )
        rows = rows.filter(created_at__lt=end)
    if query.group_by == "day":
        grouped = rows.annotate(key=TruncDate("created_at", tzinfo=dt.UTC))
    else:
        grouped = rows.annotate(key=_key(query.group_by))
    results = [
        {"key": _key_text(row["key"]), **_figures(row)}
        for row in grouped.values("key").annotate(**_SUMS).order_by("key")
    ]
    return {"results": results, "total": _figures(rows.aggregate(**_SUMS))}


def _key(group_by: str) -> Any:
    return F(_KEYS[group_by])


def _key_text(value: Any) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    return "" if value is None else str(value)
