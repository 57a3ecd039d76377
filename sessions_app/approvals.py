"""Tool calls that wait for a person: what is pending, what was decided, and
what expired.

Public surface:
    APPROVAL_EXPIRED                         what an expired call answers the model
    WAITING_ON, WAITING_ACTION               the deferral metadata of a delegating call
                                             whose child waits for approval, and the
                                             `actions` key its paused parent stores
    Pause, pause_of(requests, now)           what a pausing run stores: its own pending
                                             calls (each with its edit rights and the
                                             deadline), the children it waits on, its deadline
    waiting_entry(child, **placement)        what a parent stores of a child it waits on
    deadline_of(entry), waiting_on(execution_id)
                                             a waiting child's deadline; the children a
                                             paused execution waits on
    pending_approvals(execution_id, user_id) -> (root execution, requests of its tree)
    parse_decisions(requests, decisions)     -> list[services.Decision]
    deferred_results(decisions)              -> DeferredToolResults for the resumed run
    resume_results(execution_id)             the same, read back for a resumed execution:
                                             its kept decisions, its children approved to go on
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

One turn, one tree: a delegated child whose tool needs approval pauses with
its own `state` event listing its calls, and every level above it pauses too,
its delegating call deferred with `WAITING_ON` (the child's id) and its
`state` event listing `actions.waiting_on` instead of requests. The tree's
pending calls are those of all its paused executions; a decision names the
root or any of them, answers all of them at once, and resumes the tree from
the root: each delegating call runs again and continues its child
(`sessions_app.delegation`), which reads its decisions back here. The root's
deadline is the earliest of the tree's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
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


#: The deferral metadata of a delegating call whose child waits for approval.
WAITING_ON = "delegated_execution"
#: The `actions` key of a pausing level's `state` event naming those children.
WAITING_ACTION = "waiting_on"


@dataclass
class Pause:
    """What a run that ends with deferred calls stores."""

    #: Its own calls waiting for a person (`approval_requests`).
    pending: list[dict[str, Any]]
    #: Its delegating calls whose child waits: `{tool_call_id, tool_name, execution}`.
    waiting_on: list[dict[str, Any]] = field(default_factory=list)
    deadline: dt.datetime | None = None


def pause_of(requests: DeferredToolRequests, now: dt.datetime | None = None) -> Pause:
    """A pausing run's own pending calls, the children it waits on, and its
    deadline: the earliest of its own calls' and its children's.

    Each request says when it expires (the run's deadline), whether its
    arguments may be edited and, if so, their JSON schema.
    """
    now = now or timezone.now()
    own, waiting_on, deadlines = [], [], []
    for call in requests.approvals:
        meta = requests.metadata.get(call.tool_call_id) or {}
        if meta.get(WAITING_ON):
            entry = {
                "tool_call_id": call.tool_call_id,
                "tool_name": call.tool_name,
                "execution": meta[WAITING_ON],
                "expires_at": meta.get("expires_at"),
            }
            waiting_on.append(entry)
            if (child_deadline := deadline_of(entry)) is not None:
                deadlines.append(child_deadline)
        else:
            own.append(call)
    pending = []
    for call in own:
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
    return Pause(pending, waiting_on, deadline)


def waiting_entry(child: AgentExecution, **placement: str) -> dict[str, Any]:
    """What a paused parent stores of a child it waits on (and a delegating
    call's deferral carries as `WAITING_ON` metadata)."""
    expires = child.approval_expires_at
    return {
        **placement,
        "execution": str(child.pk),
        "expires_at": expires.isoformat() if expires else None,
    }


def deadline_of(entry: dict[str, Any]) -> dt.datetime | None:
    """The deadline of a waiting child, as its parent stored it."""
    expires = entry.get("expires_at")
    return dt.datetime.fromisoformat(expires) if expires else None


def waiting_on(execution_id: Any) -> list[dict[str, Any]]:
    """The children a paused execution waits on, as its pause stored them."""
    return list(_pause_actions(execution_id).get(WAITING_ACTION, []))


def pending_approvals(
    execution_id: Any, user_id: Any
) -> tuple[AgentExecution, list[dict[str, Any]]]:
    """The root of a paused turn of one of the user's sessions, and the
    pending calls of its whole tree (each naming its `execution`).

    `execution_id` is the root or any paused execution of its tree (a
    delegated child waiting for approval). Only the session's user decides:
    anyone else's execution is not found.
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
    if execution.parent_id is not None:
        execution = AgentExecution.objects.get(pk=execution.root_id or execution.pk)
        if execution.status != AgentExecution.Status.AWAITING_APPROVAL:
            raise TurnRejected(
                "not_awaiting_approval",
                f"The turn is {execution.status}, not awaiting approval.",
                409,
            )
    if execution.approval_expires_at and execution.approval_expires_at <= (
        timezone.now()
    ):
        raise _expired()
    return execution, _tree_requests(execution.pk)


def _tree_requests(root_id: Any) -> list[dict[str, Any]]:
    """The pending calls of every paused execution of a turn's tree."""
    paused = AgentExecution.objects.filter(
        root_id=root_id, status=AgentExecution.Status.AWAITING_APPROVAL
    ).order_by("-depth", "created_at")
    return [
        {**request, "execution": str(pk)}
        for pk in paused.values_list("pk", flat=True)
        for request in _pause_actions(pk).get("approval_requests", [])
    ]


def _pause_actions(execution_id: Any) -> dict[str, Any]:
    """The `actions` of the execution's latest pause: its system `state`
    event that lists calls waiting for a person or children waiting on one."""
    rows = (
        Event.objects.filter(
            execution_id=execution_id,
            kind=Event.Kind.STATE,
            author=Event.Author.SYSTEM,
        )
        .order_by("-sequence_number")
        .values_list("actions", flat=True)
    )
    for actions in rows.iterator():
        if actions and ("approval_requests" in actions or WAITING_ACTION in actions):
            return dict(actions)
    return {}


def resume_results(execution_id: Any) -> DeferredToolResults:
    """What a resumed execution's run is given, read back from the database:
    the decisions kept on its own pending calls, and its delegating calls
    approved to run again (each continues its waiting child)."""
    actions = _pause_actions(execution_id)
    own = [r["tool_call_id"] for r in actions.get("approval_requests", [])]
    kept = ApprovalDecision.objects.filter(
        execution_id=execution_id, tool_call_id__in=own
    )
    results = deferred_results(
        [
            services.Decision(
                tool_call_id=d.tool_call_id,
                tool_name=d.tool_name,
                args=d.args,
                decision=d.decision,
                message=d.message,
                edited_args=d.edited_args,
            )
            for d in kept
        ]
    )
    for waiting in actions.get(WAITING_ACTION, []):
        # A workflow's waiting step has no call: the workflow resumes at it.
        if waiting.get("tool_call_id"):
            results.approvals[waiting["tool_call_id"]] = ToolApproved()
    return results


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
        execution_id=request.get("execution", ""),
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
) -> list[tuple[services.Resumed, DeferredToolResults]]:
    """Claims every paused turn whose deadline has passed, denying its calls as
    expired (those of its delegated children too); returns what the runner resumes.

    The claim is `services.execution_resume`'s conditional update, so when
    several processes sweep at once each turn is claimed by one of them.
    """
    now = now or timezone.now()
    due = AgentExecution.objects.filter(
        status=AgentExecution.Status.AWAITING_APPROVAL,
        approval_expires_at__lte=now,
        parent__isnull=True,
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
                execution_id=r["execution"],
            )
            for r in _tree_requests(execution_id)
        ]
        try:
            resumed = services.execution_resume(
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
        claimed.append((resumed, resume_results(execution_id)))
    return claimed


def decisions_of(execution: AgentExecution) -> QuerySet[ApprovalDecision]:
    """The decisions kept for an execution, in the order they were taken."""
    return ApprovalDecision.objects.filter(execution=execution).order_by(
        "decided_at", "tool_call_id"
    )
