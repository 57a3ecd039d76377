"""Where a turn runs: in the web process that accepted it, or on the task queue.

With `AGENTRY_TURN_EXECUTION=inline` (the default) the runner drives every
turn as an asyncio task of the process that accepted it. With `task` the
runner stores the turn as usual, then hands its id to the Django Tasks queue
(`automation.tasks.run_turn`); a `manage.py worker` process claims it and
runs it through the same runner, and its frames reach every client through
the channel layer exactly as an inline turn's do.

Public surface:
    task_mode() -> bool                     whether turns go to the task queue
    enqueue_turn(execution_id, resume=None) queues a stored turn (async)
    wait_until_finished(execution_id)       the execution once a worker ended it (async)
    resume_to_json(results), resume_from_json(data)
                                            a paused turn's decisions across the queue
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from pydantic_ai import DeferredToolResults, ToolApproved, ToolDenied

from sessions_app.db import run_db
from sessions_app.models import AgentExecution

#: The longest pause between two looks at a queued turn's row.
POLL_CEILING_SECONDS = 0.25


def task_mode() -> bool:
    return settings.AGENTRY_TURN_EXECUTION == "task"


async def enqueue_turn(
    execution_id: Any, resume: DeferredToolResults | None = None, *, attempts: int = 0
) -> None:
    """`attempts` is the execution's takeover count now: a worker runs the
    task only while it is unchanged (no other process took the turn over)."""
    from automation.tasks import run_turn

    await run_turn.aenqueue(
        str(execution_id),
        resume_to_json(resume) if resume is not None else None,
        attempts,
    )


async def wait_until_finished(execution_id: Any) -> AgentExecution | None:
    """Polls the execution until it is neither queued nor running; None when
    its session (and so the row) was deleted meanwhile."""
    delay = 0.02
    while True:
        execution = await run_db(AgentExecution.objects.filter(pk=execution_id).first)
        if execution is None or execution.status not in AgentExecution.ACTIVE_STATUSES:
            return execution
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, POLL_CEILING_SECONDS)


def resume_to_json(results: DeferredToolResults) -> dict[str, Any]:
    approvals: dict[str, Any] = {}
    for call_id, decision in results.approvals.items():
        if isinstance(decision, ToolDenied):
            approvals[call_id] = {"approved": False, "message": decision.message}
        elif isinstance(decision, ToolApproved):
            approvals[call_id] = {
                "approved": True,
                "override_args": decision.override_args,
            }
        else:
            approvals[call_id] = {"approved": bool(decision)}
    return {"approvals": approvals}


def resume_from_json(data: dict[str, Any]) -> DeferredToolResults:
    approvals: dict[str, Any] = {}
    for call_id, decision in (data.get("approvals") or {}).items():
        if decision.get("approved"):
            approvals[call_id] = ToolApproved(
                override_args=decision.get("override_args")
            )
        else:
            approvals[call_id] = ToolDenied(decision.get("message") or "Denied.")
    return DeferredToolResults(approvals=approvals)
