"""Durable turns: a turn whose process dies is continued by another one.

Public surface:
    StepSaver(execution_id, own_messages, own_usage, fence)
                               the capability every run carries: stores the run's
                               messages (and usage) after each completed model step
    max_attempts()             how many takeovers a turn may have (`AGENTRY_TURN_MAX_ATTEMPTS`)
    claim_stale(lease=, session_id=None, exclude=(), take_over=True)
                               ends dead processes' turns that have no takeover left
                               (`interrupted`) and claims the others; returns both
    takeover_plan(execution_id)
                               what a claimed turn continues from: its context (the
                               stored messages of its last completed step) and the
                               results of the tool calls that step left unanswered

A running turn's `messages` hold what its run has done so far: after each
model response that calls tools, and again once those tools have returned
(one UPDATE each; nothing on the token path). The process renews its lease
(`lifecycle`'s heartbeat); once the lease lapses, any process's sweep claims
the turn with a conditional UPDATE that counts the takeover in `attempts`, so
of several sweepers one wins. The winner continues the run from the stored
messages: a model step cut off mid-stream is asked again; tool calls the step
left without a result are answered from the results already stored as events,
run again when their kind only reads (`tools.registry.read_only_tools`), and
otherwise reported to the model as interrupted, since they may have done their
work already. Before it runs, the takeover stores whatever tool events the dead
process had not stored yet and one state event saying the turn was taken over;
the dead attempt's streamed text was never stored (partial frames are not), so
the continued step streams its answer afresh and nothing is stored twice
(docs/decisions.md, "Durable turns").

A delegated child runs inside its root's tool call: a dead tree's children
end `interrupted` and only its root is taken over (the delegating call is
then reported as interrupted to the root's model).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone
from pydantic_ai import (
    DeferredToolResults,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolApproved,
)
from pydantic_ai._agent_graph import CallToolsNode, ModelRequestNode, UserPromptNode
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import ToolFailed

from sessions_app import services
from sessions_app.attachments import messages_for_storage
from sessions_app.context import TurnContext, context_of, load_context
from sessions_app.db import run_db
from sessions_app.models import AgentExecution, Event
from sessions_app.turn_events import (
    add_usage,
    tool_call_spec,
    tool_result_spec,
    usage_of,
)

Status = AgentExecution.Status

#: What the model is told of a call that may or may not have run when its
#: process died.
INTERRUPTED_CALL = (
    "This tool call was interrupted: the server running it stopped, and it may "
    "or may not have taken effect. Check before calling it again."
)
TAKEN_OVER = "The server running this turn stopped; another one continues it."


def max_attempts() -> int:
    return int(settings.AGENTRY_TURN_MAX_ATTEMPTS)


# --------------------------------------------------------------------- steps


@dataclass
class StepSaver(AbstractCapability[Any]):
    """Stores a run's messages after each completed model step.

    `own_messages` are the execution's stored messages the run continues from
    (a paused or taken-over turn's); the run's new messages follow them.
    """

    execution_id: str
    own_messages: list[Any] = field(default_factory=list)
    own_usage: dict[str, int] = field(default_factory=dict)
    #: The takeover count the run holds the turn at (None: unfenced).
    fence: int | None = None
    # Where the run's own messages start in the run's message list.
    _start: int | None = None

    async def after_node_run(self, ctx: Any, *, node: Any, result: Any) -> Any:
        if isinstance(node, UserPromptNode):
            self._start = len(ctx.messages)
        elif self._start is None:
            pass
        elif isinstance(node, ModelRequestNode) and isinstance(result, CallToolsNode):
            # A response that calls tools: which calls it made is kept before
            # any of them runs. A final answer is stored by the turn's end.
            if result.model_response.tool_calls:
                await self._save(ctx, [])
        elif isinstance(node, CallToolsNode) and isinstance(result, ModelRequestNode):
            # The tools returned: their results go to the model next.
            await self._save(ctx, [result.request])
        return result

    async def _save(self, ctx: Any, pending: list[Any]) -> None:
        assert self._start is not None
        messages = self.own_messages + messages_for_storage(
            [*ctx.messages[self._start :], *pending]
        )
        usage = add_usage(self.own_usage, usage_of(ctx.usage))
        await run_db(save_step, self.execution_id, messages, usage, self.fence)


def save_step(
    execution_id: Any,
    messages: list[Any],
    usage: dict[str, int],
    fence: int | None = None,
) -> None:
    """Stores a running turn's step; with a `fence`, only while the turn is
    still held at that takeover count (LeaseLost otherwise)."""
    running = AgentExecution.objects.filter(pk=execution_id, status=Status.RUNNING)
    if fence is not None:
        running = running.filter(attempts=fence)
    saved = running.update(messages=services.clean_json(messages), usage=usage)
    if not saved and fence is not None:
        raise services.LeaseLost(execution_id)


# --------------------------------------------------------------------- claims


def claim_stale(
    *,
    lease: dt.timedelta,
    session_id: Any = None,
    exclude: Iterable[Any] = (),
    take_over: bool = True,
) -> tuple[list[tuple[AgentExecution, list[Event]]], list[AgentExecution]]:
    """(turns ended `interrupted`, turns claimed for takeover) among the active
    executions not heart-beaten within `lease`.

    A turn with no takeover left (`attempts` at the maximum) and a delegated
    child end `interrupted`. Without `take_over` the others are left alone for
    a sweep that can run them.
    """
    cutoff = timezone.now() - lease
    stale = AgentExecution.objects.filter(
        status__in=AgentExecution.ACTIVE_STATUSES, heartbeat_at__lt=cutoff
    ).exclude(pk__in=list(exclude))
    if session_id is not None:
        stale = stale.filter(session_id=session_id)
    ended: list[tuple[AgentExecution, list[Event]]] = []
    claimed: list[AgentExecution] = []
    for pk, attempts, parent_id in stale.values_list("pk", "attempts", "parent_id"):
        if parent_id is None and attempts < max_attempts():
            if not take_over:
                continue
            won = AgentExecution.objects.filter(
                pk=pk,
                status__in=AgentExecution.ACTIVE_STATUSES,
                heartbeat_at__lt=cutoff,
                attempts=attempts,
            ).update(
                attempts=F("attempts") + 1,
                heartbeat_at=timezone.now(),
                waiting_for_worker=False,
            )
            if won:
                claimed.append(AgentExecution.objects.get(pk=pk))
            continue
        result = services.execution_finish(
            pk,
            status=Status.INTERRUPTED,
            error_code="interrupted",
            error_message=services.INTERRUPTED_MESSAGE,
            events=[services.error_event("interrupted", services.INTERRUPTED_MESSAGE)],
        )
        if result[1]:
            ended.append(result)
    return ended, claimed


# --------------------------------------------------------------------- takeover


@dataclass
class Takeover:
    #: With the tool events stored so far (the run stores no second copy).
    context: TurnContext
    #: The unanswered calls' results; None when the run asks the model again.
    results: DeferredToolResults | None
    #: Events this takeover stored before the run continues.
    events: list[Event]


def takeover_plan(execution_id: Any) -> Takeover:
    """What a claimed turn continues from (call on a thread that may use the
    database); stores the tool events its dead process had not, and the
    takeover's state event."""
    execution = AgentExecution.objects.select_related("session", "agent", "user").get(
        pk=execution_id
    )
    calls, results = _stored_tool_events(execution.pk)
    own = list(execution.messages or [])
    if own:
        context = context_of(
            execution, execution.session, execution.agent, resuming=True
        )
    else:
        # Cut off in its first model step: the turn starts again from its prompt.
        context = load_context(str(execution.pk))
    messages = ModelMessagesTypeAdapter.validate_python(own) if own else []
    specs = _missing_tool_events(messages, calls, results)
    plan = None
    if messages and isinstance(messages[-1], ModelResponse | ModelRequest):
        plan = _unanswered(messages, results, context.config)
    specs.append(
        services.EventSpec(
            author=Event.Author.SYSTEM,
            kind=Event.Kind.STATE,
            content=TAKEN_OVER,
            metadata={"taken_over": execution.attempts},
        )
    )
    events = services.events_append(
        execution.session_id,
        specs,
        execution_id=execution.pk,
        fence=execution.attempts,
    )
    for spec in specs:
        call_id = str(spec.metadata.get("tool_call_id"))
        if spec.kind == Event.Kind.TOOL_CALL:
            calls[call_id] = ""
        elif spec.kind == Event.Kind.TOOL_RESULT:
            results[call_id] = spec.content
    context = replace(
        context,
        stored_tool_calls=frozenset(calls),
        stored_tool_results=frozenset(results),
    )
    return Takeover(context, plan, events)


def _stored_tool_events(execution_id: Any) -> tuple[dict[str, str], dict[str, str]]:
    """(tool call ids, {tool call id: result content}) stored for the execution."""
    calls: dict[str, str] = {}
    results: dict[str, str] = {}
    rows = Event.objects.filter(
        execution_id=execution_id,
        kind__in=(Event.Kind.TOOL_CALL, Event.Kind.TOOL_RESULT),
    ).values_list("kind", "content", "metadata")
    for kind, content, metadata in rows:
        call_id = (metadata or {}).get("tool_call_id")
        if not call_id:
            continue
        if kind == Event.Kind.TOOL_CALL:
            calls[call_id] = content
        else:
            results[call_id] = content
    return calls, results


def _missing_tool_events(
    messages: list[Any], calls: dict[str, str], results: dict[str, str]
) -> list[services.EventSpec]:
    """The tool events of the stored messages that the dead process had not
    stored yet (it died between storing a step and its events)."""
    specs: list[services.EventSpec] = []
    for message in messages:
        if isinstance(message, ModelResponse):
            missing = [c for c in message.tool_calls if c.tool_call_id not in calls]
            if not missing:
                continue
            text = "".join(p.content for p in message.parts if isinstance(p, TextPart))
            if text:
                specs.append(
                    services.EventSpec(author=Event.Author.AGENT, content=text)
                )
            specs += [tool_call_spec(call) for call in missing]
        else:
            for part in message.parts:
                call_id = getattr(part, "tool_call_id", None)
                if part.part_kind != "tool-return" or call_id in results:
                    continue
                specs.append(
                    tool_result_spec(
                        part.tool_name,
                        part.tool_call_id,
                        part.model_response_str(wrap_if_error=False),
                        is_error=getattr(part, "outcome", "success") != "success",
                    )
                )
    return specs


def _unanswered(
    messages: list[Any], results: dict[str, str], config: dict[str, Any]
) -> DeferredToolResults | None:
    """Results for the calls of the last response that no later request
    answers: None when there are none (the run then asks the model again)."""
    from tools.registry import read_only_tools

    last = max(
        (i for i, m in enumerate(messages) if isinstance(m, ModelResponse)),
        default=None,
    )
    if last is None:
        return None
    answered = {
        getattr(part, "tool_call_id", None)
        for message in messages[last + 1 :]
        for part in message.parts
    }
    pending = [c for c in messages[last].tool_calls if c.tool_call_id not in answered]
    if not pending:
        return None
    rerun = read_only_tools(config.get("tools") or [])
    approvals: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    for call in pending:
        if call.tool_call_id in results:
            answers[call.tool_call_id] = results[call.tool_call_id]
        elif call.tool_name in rerun:
            approvals[call.tool_call_id] = ToolApproved()
        else:
            answers[call.tool_call_id] = ToolFailed(INTERRUPTED_CALL)
    return DeferredToolResults(approvals=approvals, calls=answers)
