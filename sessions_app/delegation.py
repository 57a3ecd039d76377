"""One turn, one tree: delegated runs as child executions, and workflow agents.

Public surface:
    Tree                          where a run sits in its turn's tree: the shared
                                  run usage and limits, the chain of agents above it
    Tree.root_of(live, execution, context, limits)
    run_delegated(ctx, target_id, task)
                                  a `delegate` tool's call: the child's output, or
                                  `ToolFailed` (refused, failed or cancelled)
    run_child(parent, target_id, prompt, *, step=None, tool_call=None)
                                  opens, runs and settles one child execution
    resume_child(parent, child_id)
                                  continues a child that paused for approval,
                                  once the turn's decision set it running again
    run_workflow(tree, user_input, steps, *, waiting=None)
                                  a workflow agent's steps, in order (from the
                                  step that paused, when resuming)
    WorkflowOutcome

How a child runs. Its row is stored `running` with `parent`, `root` and
`depth`, together with a first `state` event (author `agent`) whose content is
the child's prompt and whose `metadata.delegation` says where it hangs: the
parent execution, the delegating tool call or the workflow step, the agent.
Clients nest the child's events under that call (or step) from this event
alone, live and after a reload. The child then runs through the turn runner
(`runner.run_child`), which stores and streams its events with its own
execution id. It shares its root's cancel token (a cancel of the turn reaches
it at once) and its parent's pydantic-ai `RunUsage` (pydantic-ai's delegation
pattern, `usage=ctx.usage`), so the root's usage counts the whole tree and the
root's limits bound it; its own `usage` is what the shared usage grew by while
it ran (its own children included).

Checked at every run, whatever the save allowed: the target is visible to the
delegating agent's owner and active, the child is no deeper than
`AGENTRY_MAX_DELEGATION_DEPTH`, and the target is not already in the chain
above (a cycle). A refusal is a failed tool result (a failed step for a
workflow), never a crash of the parent.

Approvals inside the tree. A child whose tool needs approval pauses
(`awaiting_approval`, its messages stored) and its delegating call defers
with `ApprovalRequired`, naming the child (`approvals.WAITING_ON`), so the
parent's run pauses too, up to the root; a workflow pauses at its step. The
decision resumes the root; its delegating call, approved, runs again and
finds its child waiting (`resume_child`), which continues from its stored
messages with its decisions; its answer is then the call's result as if it
had never paused.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from pydantic_ai import ModelMessagesTypeAdapter, RunContext, ToolFailed
from pydantic_ai.exceptions import ApprovalRequired
from pydantic_ai.usage import RunUsage, UsageLimits

from agents.delegation import render_step_prompt
from agents.selectors import agent_config_now, delegation_target
from sessions_app import approvals, broadcast, services
from sessions_app.context import TurnContext, config_at
from sessions_app.db import run_db
from sessions_app.frames import event_frame, execution_frame
from sessions_app.lifecycle import LiveTurn, live_turns
from sessions_app.models import AgentExecution, Event
from sessions_app.turn_events import usage_of

Status = AgentExecution.Status


class DelegationRefused(Exception):
    """The target may not run here (hidden, inactive, too deep, or a cycle)."""


UNAVAILABLE = (
    "That agent is not available: it is inactive, gone, or no longer "
    "visible to this agent's owner."
)


class _EndedOnResume(DelegationRefused):
    """A paused child that may no longer run ended `failed`; its frames."""

    def __init__(self, frames: list[Any]) -> None:
        super().__init__(UNAVAILABLE)
        self.frames = frames


@dataclass
class Tree:
    """A run's place in its turn's tree."""

    live: LiveTurn
    execution_id: str
    session_id: str
    root_id: str
    depth: int
    #: Agent ids from the root's agent down to this run's agent.
    chain: tuple[str, ...]
    user_id: Any
    #: The owner of this run's agent: whose visibility its targets need.
    owner_id: Any
    #: The session's state and its user's tool role as the turn read them:
    #: every run of the tree sees the same (a child reads neither again).
    state: dict[str, Any] = field(default_factory=dict)
    user_role: str = "user"
    usage: RunUsage = field(default_factory=RunUsage)
    limits: UsageLimits | None = None
    #: The shared usage when this run began (zero for a root).
    usage_before: dict[str, int] = field(default_factory=dict)
    #: This run's `TurnStream`: a child waits for its call's event to be stored.
    stream: Any = None

    @property
    def is_root(self) -> bool:
        return self.depth == 0

    @classmethod
    def root_of(
        cls,
        live: LiveTurn,
        execution: AgentExecution,
        context: TurnContext,
        limits: UsageLimits | None,
    ) -> Tree:
        return cls(
            live=live,
            execution_id=live.execution_id,
            session_id=live.session_id,
            root_id=str(execution.root_id or execution.pk),
            depth=execution.depth,
            chain=(str(context.agent_id),),
            user_id=context.user_id,
            owner_id=context.owner_id,
            state=context.state,
            user_role=context.user_role,
            limits=limits,
        )

    def own_usage(self, usage: Any) -> dict[str, int]:
        """This run's usage: the shared usage's growth since it began."""
        now = usage_of(usage)
        return {
            key: max(0, value - self.usage_before.get(key, 0))
            for key, value in now.items()
        }


@dataclass
class _Opened:
    execution: AgentExecution
    #: The child's first event (None for a child reopened to resume).
    event: Event | None
    context: TurnContext
    agent_id: str
    owner_id: Any


def _open_child(
    parent: Tree,
    target_id: str,
    prompt: str,
    placement: dict[str, Any],
) -> _Opened:
    """Checks the target, then stores the child's row and its first event.

    One query checks and reads the target (the tools of a version this
    process has seen are not read again, `agent_config_now`), one transaction
    stores the row and the numbered event; the session's state and its user's
    role are the turn's, read when it began."""
    depth = parent.depth + 1
    limit = settings.AGENTRY_MAX_DELEGATION_DEPTH
    if depth > limit:
        raise DelegationRefused(
            f"Delegation deeper than {limit} levels is not allowed "
            "(AGENTRY_MAX_DELEGATION_DEPTH)."
        )
    if target_id in parent.chain:
        raise DelegationRefused(
            "That agent is already working on this task higher up the chain; "
            "delegating back to it would form a cycle."
        )
    target = delegation_target(owner_id=parent.owner_id, agent_id=target_id)
    if target is None:
        raise DelegationRefused(UNAVAILABLE)
    config = agent_config_now(target)
    now = timezone.now()
    with transaction.atomic():
        execution = AgentExecution.objects.create(
            session_id=parent.session_id,
            parent_id=parent.execution_id,
            root_id=parent.root_id,
            depth=depth,
            agent_id=target.pk,
            agent_version=target.version,
            user_id=parent.user_id,
            status=Status.RUNNING,
            input=prompt,
            model=config.get("model") or settings.AGENTRY_DEFAULT_MODEL,
            started_at=now,
            heartbeat_at=now,
        )
        event = services.event_append(
            parent.session_id,
            services.EventSpec(
                author=Event.Author.AGENT,
                kind=Event.Kind.STATE,
                content=prompt,
                metadata={
                    "delegation": {
                        "parent": parent.execution_id,
                        "root": parent.root_id,
                        "depth": depth,
                        "agent": str(target.pk),
                        "agent_name": target.name,
                        **placement,
                    }
                },
            ),
            execution_id=execution.pk,
        )
    context = TurnContext(
        config=config,
        state=dict(parent.state),
        user_id=parent.user_id,
        agent_id=target.pk,
        owner_id=target.owner_id,
        user_role=parent.user_role,
        history=[],
        prompt=prompt,
    )
    return _Opened(execution, event, context, str(target.pk), target.owner_id)


async def run_child(
    parent: Tree,
    target_id: str,
    prompt: str,
    *,
    step: str | None = None,
    tool_call: tuple[str, str] | None = None,
) -> AgentExecution:
    """Runs `prompt` on the agent `target_id` as a child of `parent`; returns
    the finished child. Raises DelegationRefused (nothing stored)."""
    placement: dict[str, Any] = {}
    if step is not None:
        placement["step"] = step
    if tool_call is not None:
        placement["tool_call_id"], placement["tool_name"] = tool_call
    opened = await run_db(_open_child, parent, target_id, prompt, placement)
    return await _run_opened(parent, opened)


async def resume_child(parent: Tree, child_id: str) -> AgentExecution:
    """Continues a child of `parent` that paused for approval, once the
    turn's decision has set it running again; returns it finished (or
    paused again). Raises DelegationRefused when its agent may no longer run
    here (the child then ends failed)."""
    try:
        opened, results = await run_db(_reopen_child, parent, child_id)
    except _EndedOnResume as exc:
        await broadcast.publish(parent.session_id, *exc.frames)
        raise
    return await _run_opened(parent, opened, resume=results)


def _reopen_child(parent: Tree, child_id: str) -> tuple[_Opened, Any]:
    """The stored state a paused child continues from, and its decisions."""
    child = AgentExecution.objects.select_related("agent", "session", "user").get(
        pk=child_id, parent_id=uuid.UUID(parent.execution_id)
    )
    if child.status != Status.RUNNING:
        raise DelegationRefused(
            f"The delegated agent's run is {child.status}; it cannot go on."
        )
    if delegation_target(owner_id=parent.owner_id, agent_id=child.agent_id) is None:
        ended, events = services.execution_finish(
            child.pk,
            status=Status.FAILED,
            error_code="delegation_refused",
            error_message=UNAVAILABLE,
            events=[
                replace(
                    services.error_event("delegation_refused", UNAVAILABLE),
                    turn_complete=False,
                )
            ],
        )
        raise _EndedOnResume(
            [*(event_frame(e) for e in events), execution_frame(ended)]
        )
    own = list(child.messages or [])
    context = TurnContext(
        config=config_at(child.agent, child.agent_version),
        state=dict(child.session.state or {}),
        user_id=child.user_id,
        agent_id=child.agent_id,
        owner_id=child.agent.owner_id,
        user_role=child.user.tool_role,
        # Fresh history, as when it began: its own messages only.
        history=ModelMessagesTypeAdapter.validate_python(own),
        prompt=None,
        own_messages=own,
        own_usage=dict(child.usage or {}),
    )
    opened = _Opened(child, None, context, str(child.agent_id), child.agent.owner_id)
    return opened, approvals.resume_results(child.pk)


async def _run_opened(
    parent: Tree, opened: _Opened, *, resume: Any = None
) -> AgentExecution:
    """Runs an opened (or reopened) child inside its parent's run."""
    from sessions_app import runner

    child = opened.execution
    # The root's token: a cancel (or shutdown) of the turn reaches every child.
    live = LiveTurn(str(child.pk), parent.session_id, token=parent.live.token)
    live.reason = parent.live.reason
    live_turns[live.execution_id] = live
    tree = replace(
        parent,
        live=live,
        execution_id=live.execution_id,
        depth=child.depth,
        chain=(*parent.chain, opened.agent_id),
        owner_id=opened.owner_id,
        usage_before=usage_of(parent.usage),
    )
    try:
        if opened.event is not None:
            await broadcast.publish(
                parent.session_id, execution_frame(child), event_frame(opened.event)
            )
        return await runner.run_child(tree, child, opened.context, resume)
    except asyncio.CancelledError:
        # The parent's run was torn down under the child: it ends with it.
        await asyncio.shield(runner.end_child(tree))
        raise
    finally:
        live_turns.pop(live.execution_id, None)


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    return json.dumps(output, ensure_ascii=False)


async def run_delegated(ctx: RunContext[Any], target_id: str, task: str) -> str:
    """The `delegate` tool: the child's answer, or ToolFailed saying why not."""
    tree = getattr(ctx.deps, "tree", None)
    if not isinstance(tree, Tree):
        raise ToolFailed("Delegation runs only inside a turn.")
    tool_call = (ctx.tool_call_id or "", ctx.tool_name or "")
    if tree.stream is not None and ctx.tool_call_id:
        # The call's event comes first in the log: the child's hang under it.
        await tree.stream.call_stored(ctx.tool_call_id)
    try:
        waiting = (
            await run_db(_waiting_child, tree.execution_id, tool_call[0])
            if ctx.tool_call_approved
            else None
        )
        if waiting is not None:
            child = await resume_child(tree, waiting)
        else:
            child = await run_child(tree, target_id, task, tool_call=tool_call)
    except DelegationRefused as exc:
        raise ToolFailed(str(exc)) from None
    if child.status == Status.AWAITING_APPROVAL:
        # The parent pauses with its child; the decision runs this call again.
        entry = approvals.waiting_entry(child)
        raise ApprovalRequired(
            metadata={
                approvals.WAITING_ON: entry["execution"],
                "expires_at": entry["expires_at"],
            }
        )
    if child.status == Status.SUCCEEDED:
        return _output_text(child.output)
    raise ToolFailed(
        f"The delegated agent did not finish ({child.error_code or child.status}): "
        f"{child.error_message or child.status}"
    )


def _waiting_child(execution_id: str, tool_call_id: str) -> str | None:
    """The child a paused run's delegating call waits on, if any."""
    for entry in approvals.waiting_on(execution_id):
        if entry.get("tool_call_id") == tool_call_id:
            return str(entry["execution"])
    return None


@dataclass
class WorkflowOutcome:
    output: str = ""
    error: tuple[str, str] | None = None
    #: The step waiting for approval: `{step, execution, expires_at}`.
    paused: dict[str, Any] | None = None


async def run_workflow(
    tree: Tree,
    user_input: str,
    steps: list[dict[str, Any]],
    *,
    waiting: dict[str, Any] | None = None,
) -> WorkflowOutcome:
    """Runs the steps in order; the last one's output is the workflow's.
    A failing (or refused) step ends the workflow with its error; a step
    waiting for approval pauses it. `waiting` is that step, when the decision
    resumes the workflow: it continues, then the later steps run."""
    previous = user_input
    names = [step["name"] for step in steps]
    if waiting and waiting.get("step") not in names:
        return WorkflowOutcome(
            error=("delegation_refused", "The step that paused is no longer there.")
        )
    resume_at = names.index(waiting["step"]) if waiting else 0
    for index, step in enumerate(steps[resume_at:], start=resume_at):
        prompt = render_step_prompt(
            step.get("prompt") or "{previous}", user_input=user_input, previous=previous
        )
        try:
            if waiting and index == resume_at:
                child = await resume_child(tree, str(waiting["execution"]))
            else:
                child = await run_child(
                    tree, str(step["agent"]), prompt, step=step["name"]
                )
        except DelegationRefused as exc:
            return WorkflowOutcome(
                error=("delegation_refused", f"Step {step['name']!r}: {exc}")
            )
        if child.status == Status.AWAITING_APPROVAL:
            return WorkflowOutcome(
                paused=approvals.waiting_entry(child, step=step["name"])
            )
        if child.status != Status.SUCCEEDED:
            return WorkflowOutcome(
                error=(
                    child.error_code or child.status,
                    child.error_message or f"Step {step['name']!r} did not finish.",
                )
            )
        previous = _output_text(child.output)
    return WorkflowOutcome(output=previous)
