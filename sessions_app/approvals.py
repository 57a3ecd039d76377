"""Tool calls that wait for a person: what is pending, and what was decided.

Public surface:
    pending_approvals(execution_id, user_id) -> (execution, requests)
    parse_decisions(requests, decisions) -> DeferredToolResults

A paused turn's pending calls are the `approval_requests` of its last
system `state` event; a decision is `true`, `false` or
`{"approved": bool, "message": str}` per `tool_call_id`, and every pending
call must be decided. Refusals are `TurnRejected`.
"""

from __future__ import annotations

from typing import Any

from pydantic_ai import DeferredToolResults, ToolDenied

from config.validation import is_uuid
from sessions_app.models import AgentExecution, Event
from sessions_app.services import TurnRejected


def pending_approvals(
    execution_id: Any, user_id: Any
) -> tuple[AgentExecution, list[dict[str, Any]]]:
    execution = (
        AgentExecution.objects.filter(pk=execution_id, user_id=user_id).first()
        if is_uuid(execution_id)
        else None
    )
    if execution is None:
        raise TurnRejected("not_found", "No such execution.", 404)
    if execution.status != AgentExecution.Status.AWAITING_APPROVAL:
        raise TurnRejected(
            "not_awaiting_approval",
            f"The execution is {execution.status}, not awaiting approval.",
            409,
        )
    state = (
        Event.objects.filter(
            execution_id=execution.pk, kind=Event.Kind.STATE, author=Event.Author.SYSTEM
        )
        .order_by("-sequence_number")
        .first()
    )
    requests = ((state.actions or {}) if state else {}).get("approval_requests", [])
    return execution, list(requests)


def parse_decisions(
    requests: list[dict[str, Any]], decisions: Any
) -> DeferredToolResults:
    """Validates decisions against the pending calls."""
    if not isinstance(decisions, dict) or not decisions:
        raise TurnRejected(
            "invalid_approval",
            "decisions must map each pending tool_call_id to a decision.",
        )
    pending_ids = {r["tool_call_id"] for r in requests}
    unknown = sorted(set(decisions) - pending_ids)
    missing = sorted(pending_ids - set(decisions))
    if unknown or missing:
        raise TurnRejected(
            "invalid_approval",
            "decide exactly the pending tool calls "
            f"(unknown: {unknown}, missing: {missing}).",
        )
    approvals: dict[str, Any] = {}
    for call_id, decision in decisions.items():
        if isinstance(decision, bool):
            approvals[call_id] = decision
        elif isinstance(decision, dict) and isinstance(decision.get("approved"), bool):
            message = decision.get("message")
            if message is not None and not isinstance(message, str):
                raise TurnRejected(
                    "invalid_approval", "a denial message must be a string."
                )
            approvals[call_id] = (
                True
                if decision["approved"]
                else ToolDenied(message or "The user denied this call.")
            )
        else:
            raise TurnRejected(
                "invalid_approval",
                'a decision is true, false or {"approved": bool, "message": str}.',
            )
    return DeferredToolResults(approvals=approvals)
