"""Tool calls that wait for a person: what is pending, what was decided, and
what expired.

Public surface:
    APPROVAL_EXPIRED                         what an expired call answers the model
    approval_requests(requests, now)         a pausing turn's pending calls and deadline
    pending_approvals(execution_id, user_id) -> (execution, requests)
    parse_decisions(requests, decisions)     -> list[services.Decision]
    deferred_results(decisions)              -> DeferredToolResults for the resumed run
    claim_expired(now=None)                  paused turns past their deadline, claimed
                                             and resumed as denied (exactly once)
    decisions_of(execution)                  the kept decisions, oldest first

A paused turn's pending calls are the `approval_requests` of its last
system `state` event. A decision is `true`, `false` or
`{"approved": bool, "message"?: str, "args"?: {...}}` per `tool_call_id`, and
every pending call must be decided at once (the run resumes once). Edited
`args` are taken only for a tool entry with `allow_edit`, and only when they
match the JSON schema pydantic-ai holds for the tool's arguments.

Each tool entry has its own `approval_ttl_seconds`; a turn pausing on several
calls gets the earliest of their deadlines (`approval_expires_at`), because it
resumes once: at that deadline every call still undecided is denied as
`approval_expired`. Refusals are `TurnRejected`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic_ai import (
    DeferredToolRequests,
    DeferredToolResults,
    ToolApproved,
    ToolDenied,
)

from agents.models import DEFAULT_APPROVAL_TTL_SECONDS, MAX_APPROVAL_TTL_SECONDS
from core.text import is_invalid_text, is_uuid
from sessions_app import services
from sessions_app.models import AgentExecution, ApprovalDecision, Event
from sessions_app.services import TurnRejected
from sessions_app.turn_events import tool_args

APPROVAL_EXPIRED = (
    "approval_expired: nobody decided on this call before its approval "
    "expired, so it was not run."
)
DEFAULT_DENIAL = "The user denied this call."
MAX_MESSAGE_CHARS = 2000
Choice = ApprovalDecision.Decision


def approval_requests(
    requests: DeferredToolRequests, now: dt.datetime | None = None
) -> tuple[list[dict[str, Any]], dt.datetime]:
    """The pending calls a pausing turn stores, and the turn's deadline.

    Each request says when it expires (the turn's deadline), whether its
    arguments may be edited and, if so, their JSON schema.
    """
    now = now or timezone.now()
    pending, deadlines = [], []
    for call in requests.approvals:
        meta = requests.metadata.get(call.tool_call_id) or {}
        ttl = meta.get("approval_ttl_seconds") or DEFAULT_APPROVAL_TTL_SECONDS
        deadlines.append(now + dt.timedelta(seconds=min(ttl, MAX_APPROVAL_TTL_SECONDS)))
        request = {
            "tool_call_id": call.tool_call_id,
            "tool_name": call.tool_name,
            "args": tool_args(call),
            "allow_edit": bool(meta.get("allow_edit")),
        }
        if request["allow_edit"] and isinstance(meta.get("args_schema"), dict):
            request["args_schema"] = meta["args_schema"]
        pending.append(request)
    deadline = min(deadlines, default=now)
    for request in pending:
        request["expires_at"] = deadline.isoformat().replace("+00:00", "Z")
    return pending, deadline


def pending_approvals(
    execution_id: Any, user_id: Any
) -> tuple[AgentExecution, list[dict[str, Any]]]:
    """A paused execution of one of the user's sessions, and its pending calls.

    Only the session's user decides: anyone else's execution is not found.
    """
    execution = (
        AgentExecution.objects.filter(
            pk=execution_id, user_id=user_id, session__user_id=user_id
        ).first()
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
    if execution.approval_expires_at and execution.approval_expires_at <= (
        timezone.now()
    ):
        raise _expired()
    return execution, _requests_of(execution.pk)


def _requests_of(execution_id: Any) -> list[dict[str, Any]]:
    state = (
        Event.objects.filter(
            execution_id=execution_id,
            kind=Event.Kind.STATE,
            author=Event.Author.SYSTEM,
        )
        .order_by("-sequence_number")
        .first()
    )
    requests = ((state.actions or {}) if state else {}).get("approval_requests", [])
    return list(requests)


def _expired() -> TurnRejected:
    return TurnRejected(
        "approval_expired",
        "The pending tool calls expired before this decision; they are denied.",
        409,
    )


def parse_decisions(
    requests: list[dict[str, Any]], decisions: Any
) -> list[services.Decision]:
    """Validates decisions against the pending calls."""
    if not isinstance(decisions, dict) or not decisions:
        raise TurnRejected(
            "invalid_approval",
            "decisions must map each pending tool_call_id to a decision.",
        )
    by_id = {r["tool_call_id"]: r for r in requests}
    unknown = sorted(set(decisions) - set(by_id))
    missing = sorted(set(by_id) - set(decisions))
    if unknown or missing:
        raise TurnRejected(
            "invalid_approval",
            "decide exactly the pending tool calls "
            f"(unknown: {unknown[:20]}, missing: {missing[:20]}).",
        )
    return [_decision(by_id[call_id], value) for call_id, value in decisions.items()]


def _decision(request: dict[str, Any], value: Any) -> services.Decision:
    if isinstance(value, bool):
        value = {"approved": value}
    if not isinstance(value, dict) or not isinstance(value.get("approved"), bool):
        raise TurnRejected(
            "invalid_approval",
            'a decision is true, false or {"approved": bool, "message": str, '
            '"args": {...}}.',
        )
    extra = sorted(set(value) - {"approved", "message", "args"})
    if extra:
        raise TurnRejected(
            "invalid_approval", f"unknown decision field(s): {', '.join(extra[:10])}."
        )
    message = value.get("message")
    if message is not None and (
        not isinstance(message, str)
        or len(message) > MAX_MESSAGE_CHARS
        or is_invalid_text(message)
    ):
        raise TurnRejected(
            "invalid_approval",
            f"a decision's message is a string of at most {MAX_MESSAGE_CHARS} "
            "characters.",
        )
    edited = value.get("args")
    if edited is not None:
        _check_edit(request, value["approved"], edited)
    return services.Decision(
        tool_call_id=request["tool_call_id"],
        tool_name=request.get("tool_name", ""),
        args=request.get("args"),
        decision=Choice.APPROVED if value["approved"] else Choice.DENIED,
        message=message or ("" if value["approved"] else DEFAULT_DENIAL),
        edited_args=edited,
    )


def _check_edit(request: dict[str, Any], approved: bool, edited: Any) -> None:
    name = request.get("tool_name", "this tool")
    if not request.get("allow_edit"):
        raise TurnRejected(
            "edit_not_allowed",
            f"The arguments of {name} cannot be edited: its tool entry does not "
            "have allow_edit.",
        )
    if not approved:
        raise TurnRejected(
            "invalid_approval", "edited args come only with an approval."
        )
    if not isinstance(edited, dict):
        raise TurnRejected("invalid_args", "edited args must be a JSON object.")
    schema = request.get("args_schema") or {"type": "object"}
    try:
        validator = Draft202012Validator(schema)
        error = next(iter(validator.iter_errors(edited)), None)
    except (SchemaError, RecursionError, ValueError, TypeError):
        error = None
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(the arguments)"
        raise TurnRejected(
            "invalid_args",
            f"The edited arguments of {name} do not match its schema at {where}: "
            f"{error.message[:300]}",
        )


def deferred_results(decisions: list[services.Decision]) -> DeferredToolResults:
    """What the resumed run is given: edited args run in place of the model's."""
    approvals: dict[str, Any] = {}
    for d in decisions:
        if d.approved:
            approvals[d.tool_call_id] = ToolApproved(override_args=d.edited_args)
        else:
            approvals[d.tool_call_id] = ToolDenied(d.message or DEFAULT_DENIAL)
    return DeferredToolResults(approvals=approvals)


def claim_expired(
    now: dt.datetime | None = None,
) -> list[tuple[AgentExecution, Event, DeferredToolResults]]:
    """Claims every paused turn whose deadline has passed, denying its calls as
    expired; returns what the runner resumes.

    The claim is `services.execution_resume`'s conditional update, so when
    several processes sweep at once each turn is claimed by one of them.
    """
    now = now or timezone.now()
    due = AgentExecution.objects.filter(
        status=AgentExecution.Status.AWAITING_APPROVAL, approval_expires_at__lte=now
    ).values_list("pk", flat=True)
    claimed = []
    for execution_id in list(due):
        decisions = [
            services.Decision(
                tool_call_id=r["tool_call_id"],
                tool_name=r.get("tool_name", ""),
                args=r.get("args"),
                decision=Choice.EXPIRED,
                message=APPROVAL_EXPIRED,
            )
            for r in _requests_of(execution_id)
        ]
        try:
            execution, event = services.execution_resume(
                execution_id,
                decided_by=None,
                decisions=decisions,
                via=ApprovalDecision.Via.EXPIRY,
                now=now,
            )
        except (services.NotAwaitingApproval, services.SessionBusy):
            # Decided, abandoned or claimed by another process meanwhile, or a
            # new turn of the session is running (it abandons this one).
            continue
        results = DeferredToolResults(
            approvals={d.tool_call_id: ToolDenied(APPROVAL_EXPIRED) for d in decisions}
        )
        claimed.append((execution, event, results))
    return claimed


def decisions_of(execution: AgentExecution) -> QuerySet[ApprovalDecision]:
    """The decisions kept for an execution, in the order they were taken."""
    return ApprovalDecision.objects.filter(execution=execution).order_by(
        "decided_at", "tool_call_id"
    )
