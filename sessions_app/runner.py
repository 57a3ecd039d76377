"""The turn runner: the only code that runs an agent.

REST (blocking and SSE), the websocket consumer, the admin "try it" page and
`manage.py chat` all call `submit_turn`; none of them runs a model itself.

Public surface:
    TurnRequest, Submission, TurnRejected
    submit_turn(request)        stores the user's message, applies the session's
                                multitask policy and starts the turn as a task
    cancel_turn(session_id)     cancels the running turn wherever it runs
    submit_approval(...)        decisions on a paused turn's tool calls; resumes it
    wait_for_execution(sub)     the execution once it has finished
    run_to_completion(request)  submit_turn, then wait_for_execution
    sweep_stale_executions()    ends turns whose process died as `interrupted`

A turn runs as an asyncio task owned by this module, not by the connection that
started it: a client that disconnects does not stop it, and every client of the
session sees its frames through the channel-layer group. Stored events are
committed before they are published; streamed text is published as partial
events and never stored token by token.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import mimetypes
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone
from pydantic_ai import (
    AgentRunResultEvent,
    BinaryContent,
    CancellationToken,
    DeferredToolRequests,
    DeferredToolResults,
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    ModelMessagesTypeAdapter,
    PartDeltaEvent,
    PartStartEvent,
    RunCancelled,
    RunTimedOut,
    TextPart,
    TextPartDelta,
    ToolDenied,
    UsageLimitExceeded,
)
from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelHTTPError,
    ModelRateLimitError,
    ModelTimeoutError,
    UnexpectedModelBehavior,
)
from pydantic_ai.messages import repair_messages

from sessions_app import broadcast, services
from sessions_app.db import run_db, run_db_on
from sessions_app.frames import (
    error_frame,
    event_frame,
    execution_frame,
    execution_payload,
    partial_payload,
)
from sessions_app.models import AgentExecution, Artifact, Event, Session

logger = logging.getLogger(__name__)

Status = AgentExecution.Status
POLICIES = ("reject", "enqueue", "interrupt")
HEARTBEAT_SECONDS = 5.0
#: How often each process looks for turns whose process died.
SWEEP_SECONDS = 5.0
MAX_ATTACHMENT_TEXT = 200_000


class TurnRejected(Exception):
    """The turn was refused before anything was stored."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass
class TurnRequest:
    session_id: Any
    user_id: Any
    content: str
    attachments: Sequence[Any] = ()
    client_message_id: str = ""
    multitask: str | None = None


@dataclass
class Submission:
    execution: AgentExecution
    duplicate: bool = False
    task: asyncio.Task[AgentExecution | None] | None = None

    @property
    def frame(self) -> dict[str, Any]:
        return execution_frame(self.execution)


@dataclass
class _LiveTurn:
    execution_id: str
    session_id: str
    token: CancellationToken = field(default_factory=CancellationToken)
    reason: str = "cancelled"


# Turns running in this process, by execution id; the events that wake queued
# turns of a session when one of its turns ends here (one per event loop).
_live: dict[str, _LiveTurn] = {}
_session_freed: dict[tuple[int, str], asyncio.Event] = {}


def _freed(session_id: str) -> asyncio.Event:
    key = (id(asyncio.get_running_loop()), session_id)
    event = _session_freed.get(key)
    if event is None:
        event = _session_freed[key] = asyncio.Event()
    return event


# --------------------------------------------------------------------- validation


def validate_content(content: Any) -> str:
    if not isinstance(content, str) or not content.strip():
        raise TurnRejected("invalid_message", "content must be a non-empty string.")
    if len(content) > settings.AGENTRY_MAX_MESSAGE_CHARS:
        raise TurnRejected(
            "message_too_large",
            f"content is longer than {settings.AGENTRY_MAX_MESSAGE_CHARS} characters.",
            413,
        )
    if services.clean_text(content) != content:
        raise TurnRejected(
            "invalid_message",
            "content must not contain NUL characters or lone surrogates.",
        )
    return content


def _policy(request: TurnRequest, session: Session) -> str:
    policy = (
        request.multitask or (session.configuration or {}).get("multitask") or "reject"
    )
    if policy not in POLICIES:
        raise TurnRejected(
            "invalid_multitask", f"multitask must be one of {', '.join(POLICIES)}."
        )
    return policy


# --------------------------------------------------------------------- submission


def _attachments(request: TurnRequest) -> list[dict[str, Any]]:
    ids = list(request.attachments or ())
    if not ids:
        return []
    if len(ids) > 20:
        raise TurnRejected("invalid_attachments", "at most 20 attachments per message.")
    found = {
        str(a.pk): a
        for a in Artifact.objects.filter(
            pk__in=[i for i in ids if _is_uuid(i)],
            owner_id=request.user_id,
            session_id=request.session_id,
        )
    }
    missing = [str(i) for i in ids if str(i) not in found]
    if missing:
        raise TurnRejected(
            "invalid_attachments",
            f"unknown attachment(s) for this session: {', '.join(missing)}.",
        )
    return [
        {
            "id": str(a.pk),
            "name": a.name,
            "version": a.version,
            "content_type": a.content_type,
            "size": a.size,
        }
        for a in (found[str(i)] for i in ids)
    ]


def _is_uuid(value: Any) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


@dataclass
class _Opened:
    turn: services.OpenedTurn
    policy: str
    abandoned: list[dict[str, Any]] = field(default_factory=list)
    context: _TurnContext | None = None


def _open(request: TurnRequest) -> _Opened:
    """Everything a new turn needs from the database, in one thread hop: the
    user's event and execution, pending approvals it abandons and, when it can
    start at once, its context."""
    session = Session.objects.select_related("agent").get(pk=request.session_id)
    policy = _policy(request, session)
    attachments = _attachments(request)
    sweep_stale_executions_sync(session_id=session.pk)
    opened = services.turn_open(
        session=session,
        user_id=request.user_id,
        content=request.content,
        metadata={"attachments": attachments} if attachments else {},
        client_message_id=request.client_message_id or "",
        policy="reject" if policy == "reject" else "enqueue",
        model=session.agent.model or settings.AGENTRY_DEFAULT_MODEL,
    )
    if opened.duplicate:
        return _Opened(opened, policy)
    abandoned = _abandon_approvals(session.pk)
    context = (
        _load_context(str(opened.execution.pk))
        if opened.execution.status == Status.RUNNING
        else None
    )
    return _Opened(opened, policy, abandoned, context)


def _abandon_approvals(session_id: Any) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    for execution, events in services.executions_abandon_approvals(session_id):
        frames += [event_frame(e) for e in events] + [execution_frame(execution)]
    return frames


async def submit_turn(request: TurnRequest) -> Submission:
    """Stores the user's message and starts (or queues) its turn.

    Raises TurnRejected (nothing stored) for invalid input or, with the
    `reject` policy, a busy session (`session_busy`, status 409). A repeated
    `client_message_id` returns the existing execution and runs nothing.
    """
    ensure_supervisor()
    validate_content(request.content)
    if len(request.client_message_id or "") > 200:
        raise TurnRejected(
            "invalid_message", "client_message_id is longer than 200 characters."
        )
    try:
        result = await run_db(_open, request)
    except services.SessionBusy:
        raise TurnRejected(
            "session_busy", "Another turn of this session is running.", 409
        ) from None
    opened = result.turn
    if opened.duplicate:
        return Submission(opened.execution, duplicate=True)
    execution = opened.execution
    live = _track(execution)
    try:
        await broadcast.publish(
            request.session_id,
            event_frame(opened.user_event),
            execution_frame(execution),
            *result.abandoned,
        )
        if result.policy == "interrupt":
            await cancel_turn(
                request.session_id, reason="cancelled", keep=str(execution.pk)
            )
    except BaseException:
        # Untracked, the turn is swept as interrupted once its lease runs out.
        _live.pop(live.execution_id, None)
        raise
    task = asyncio.create_task(_drive(live, execution, context=result.context))
    return Submission(execution, task=task)


async def cancel_turn(
    session_id: Any, *, reason: str = "cancelled", keep: str = ""
) -> bool:
    """Asks the running turn of a session to stop, on whichever process runs it.

    Returns whether a turn was running. The turn itself writes its `cancelled`
    outcome; a turn whose process is gone is swept as `interrupted` instead.
    """
    running = await run_db(
        lambda: list(
            AgentExecution.objects.filter(session_id=session_id, status=Status.RUNNING)
            .exclude(pk=keep or None)
            .values_list("pk", flat=True)
        )
    )
    for execution_id in running:
        live = _live.get(str(execution_id))
        if live is not None:
            live.reason = reason
            live.token.cancel()
        else:
            await broadcast.send_control(
                session_id,
                {
                    "type": "turn.cancel",
                    "execution": str(execution_id),
                    "reason": reason,
                },
            )
    return bool(running)


def _decisions(pending: list[dict[str, Any]], decisions: Any) -> DeferredToolResults:
    """Validates approval decisions against the pending calls."""
    if not isinstance(decisions, dict) or not decisions:
        raise TurnRejected(
            "invalid_approval",
            "decisions must map each pending tool_call_id to a decision.",
        )
    pending_ids = {p["tool_call_id"] for p in pending}
    unknown = sorted(set(decisions) - pending_ids)
    missing = sorted(pending_ids - set(decisions))
    if unknown or missing:
        raise TurnRejected(
            "invalid_approval",
            f"decide exactly the pending tool calls (unknown: {unknown}, missing: {missing}).",
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


def _pending_approvals(
    execution_id: Any, user_id: Any
) -> tuple[AgentExecution, list[Any]]:
    execution = AgentExecution.objects.filter(pk=execution_id, user_id=user_id).first()
    if execution is None:
        raise TurnRejected("not_found", "No such execution.", 404)
    if execution.status != Status.AWAITING_APPROVAL:
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
    return execution, list(
        ((state.actions or {}) if state else {}).get("approval_requests", [])
    )


async def submit_approval(
    *, execution_id: Any, user_id: Any, decisions: Any
) -> Submission:
    """Records decisions on a paused turn's tool calls and resumes it."""
    ensure_supervisor()
    execution, pending = await run_db(_pending_approvals, execution_id, user_id)
    results = _decisions(pending, decisions)
    try:
        execution, event = await run_db(
            services.execution_resume,
            execution.pk,
            user_id=user_id,
            decisions=decisions,
        )
    except services.NotAwaitingApproval:
        raise TurnRejected(
            "not_awaiting_approval",
            "The execution is no longer awaiting approval.",
            409,
        ) from None
    except services.SessionBusy:
        raise TurnRejected(
            "session_busy", "Another turn of this session is running.", 409
        ) from None
    live = _track(execution)
    await broadcast.publish(
        live.session_id, event_frame(event), execution_frame(execution)
    )
    task = asyncio.create_task(_drive(live, execution, resume=results))
    return Submission(execution, task=task)


async def run_to_completion(request: TurnRequest) -> AgentExecution:
    """Submits a turn and waits for its end (blocking REST, the admin)."""
    return await wait_for_execution(await submit_turn(request))


async def wait_for_execution(submission: Submission) -> AgentExecution:
    """The execution once it has finished (or as it stands, for a duplicate).

    Raises TurnRejected (404) when the session was deleted meanwhile.
    """
    if submission.task is not None:
        execution = await asyncio.shield(submission.task)
    else:
        execution = await run_db(
            AgentExecution.objects.filter(pk=submission.execution.pk).first
        )
    if execution is None:
        raise TurnRejected(
            "session_deleted", "The session was deleted while its turn ran.", 404
        )
    return execution


# --------------------------------------------------------------------- running


def _track(execution: AgentExecution) -> _LiveTurn:
    """Registers a turn of this process as soon as its row exists, so the
    process heart-beats it and never sweeps it."""
    live = _LiveTurn(str(execution.pk), str(execution.session_id))
    _live[live.execution_id] = live
    return live


async def _drive(
    live: _LiveTurn,
    execution: AgentExecution,
    *,
    resume: DeferredToolResults | None = None,
    context: _TurnContext | None = None,
) -> AgentExecution | None:
    """Runs a tracked turn to its end; None if its session was deleted meanwhile."""
    execution_id, session_id = live.execution_id, live.session_id
    helpers: list[asyncio.Task[Any]] = []
    try:
        if execution.status != Status.RUNNING:
            execution = await _wait_until_running(live)
            if execution is None:
                return await run_db(AgentExecution.objects.get, pk=execution_id)
        helpers.append(asyncio.create_task(_listen_for_cancel(live)))
        return await _run(live, execution, resume, context)
    except (AgentExecution.DoesNotExist, Session.DoesNotExist):
        # Deleting a session (or its agent) cascades to the running turn's rows.
        logger.info("turn %s ended: its session was deleted", execution_id)
        return None
    except asyncio.CancelledError:
        # The process is going away (shutdown, or the loop is closing).
        await asyncio.shield(
            _finish(
                live,
                status=Status.INTERRUPTED,
                error=(
                    "interrupted",
                    "The server stopped while this turn was running.",
                ),
            )
        )
        raise
    finally:
        for helper in helpers:
            helper.cancel()
        _live.pop(execution_id, None)
        _freed(session_id).set()
        _session_freed.pop((id(asyncio.get_running_loop()), session_id), None)


async def _wait_until_running(live: _LiveTurn) -> AgentExecution | None:
    """Promotes a queued execution when the session is free; None if it left the queue."""
    delay = 0.05
    while True:
        freed = _freed(live.session_id)
        freed.clear()
        try:
            execution = await run_db(services.execution_promote, live.execution_id)
        except AgentExecution.DoesNotExist:
            current = await run_db(AgentExecution.objects.get, pk=live.execution_id)
            return current if current.status == Status.RUNNING else None
        if execution is not None:
            await broadcast.publish(live.session_id, execution_frame(execution))
            return execution
        if live.token.cancelled:
            await _finish(
                live, status=Status.CANCELLED, error=("cancelled", "Cancelled.")
            )
            return None
        # Woken when a turn of this session ends in this process; polling
        # covers turns that end on another process.
        try:
            await asyncio.wait_for(freed.wait(), timeout=delay)
        except TimeoutError:
            delay = min(delay * 2, 0.5)


async def _listen_for_cancel(live: _LiveTurn) -> None:
    """Relays cancels sent through the channel layer by other processes."""
    layer = get_channel_layer()
    group = broadcast.control_group(live.session_id)
    try:
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
    except Exception:
        logger.warning(
            "cannot listen for cancels of %s", live.session_id, exc_info=True
        )
        return
    try:
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(1.0)
                continue
            if message.get("type") == "turn.cancel" and message.get("execution") in (
                None,
                live.execution_id,
            ):
                live.reason = message.get("reason") or "cancelled"
                live.token.cancel()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(layer.group_discard(group, channel))


@dataclass
class _TurnContext:
    config: dict[str, Any]
    state: dict[str, Any]
    user_id: Any
    agent_id: Any
    history: list[Any]
    prompt: str | list[Any] | None
    own_messages: list[Any] = field(default_factory=list)
    own_usage: dict[str, int] = field(default_factory=dict)


def _load_context(execution_id: str, resuming: bool = False) -> _TurnContext:
    execution = AgentExecution.objects.select_related("session", "agent").get(
        pk=execution_id
    )
    session, agent = execution.session, execution.agent
    previous = (
        AgentExecution.objects.filter(session_id=session.pk, finished_at__isnull=False)
        .exclude(pk=execution.pk)
        .order_by("created_at")
        .values_list("messages", flat=True)
    )
    history: list[Any] = []
    for messages in previous:
        if messages:
            history.extend(ModelMessagesTypeAdapter.validate_python(messages))
    # A turn cancelled (or left awaiting approval) between a tool call and its
    # result leaves calls without returns; closing them out keeps the history
    # one the model accepts before a new prompt.
    history = repair_messages(history)
    if resuming:
        # The paused run's own messages end with the calls awaiting decisions;
        # the run continues from them with no new prompt.
        own = list(execution.messages or [])
        return _TurnContext(
            config=agent.config_snapshot(),
            state=dict(session.state or {}),
            user_id=execution.user_id,
            agent_id=agent.pk,
            history=history + ModelMessagesTypeAdapter.validate_python(own),
            prompt=None,
            own_messages=own,
            own_usage=dict(execution.usage or {}),
        )
    user_event = (
        Event.objects.filter(execution_id=execution.pk, author=Event.Author.USER)
        .only("metadata")
        .first()
    )
    attachments = (
        (user_event.metadata or {}).get("attachments", []) if user_event else []
    )
    return _TurnContext(
        config=agent.config_snapshot(),
        state=dict(session.state or {}),
        user_id=execution.user_id,
        agent_id=agent.pk,
        history=history,
        prompt=_prompt(execution.input, attachments),
    )


def _prompt(text: str, attachments: list[dict[str, Any]]) -> str | list[Any]:
    """The user prompt with its attachments: text files inline, media as binary."""
    if not attachments:
        return text
    parts: list[Any] = [text]
    for artifact in Artifact.objects.filter(pk__in=[a["id"] for a in attachments]):
        content_type = (
            artifact.content_type or mimetypes.guess_type(artifact.name)[0] or ""
        )
        with artifact.file.open("rb") as fh:
            data = fh.read(settings.MAX_UPLOAD_BYTES)
        if content_type.startswith("text/") or content_type in ("application/json",):
            body = data[:MAX_ATTACHMENT_TEXT].decode("utf-8", errors="replace")
            parts.append(f"\n\nAttached file {artifact.name!r}:\n{body}")
        else:
            parts.append(
                BinaryContent(
                    data=data, media_type=content_type or "application/octet-stream"
                )
            )
    return parts


def _usage(usage: Any) -> dict[str, int]:
    if usage is None:
        return {"requests": 0, "input_tokens": 0, "output_tokens": 0, "tool_calls": 0}
    return {
        "requests": usage.requests,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "tool_calls": usage.tool_calls,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _classify(exc: BaseException) -> tuple[str, str, str]:
    """(status, error_code, message) for an exception that ended a run."""
    if isinstance(exc, RunTimedOut):
        return Status.FAILED, "turn_timeout", "The turn took longer than allowed."
    if isinstance(exc, RunCancelled):
        return Status.CANCELLED, "cancelled", "The turn was cancelled."
    if isinstance(exc, UsageLimitExceeded):
        return Status.FAILED, "usage_limit_exceeded", str(exc)
    if isinstance(exc, ModelTimeoutError):
        return Status.FAILED, "model_timeout", "The model did not answer in time."
    if isinstance(exc, ModelRateLimitError) or (
        isinstance(exc, ModelHTTPError) and exc.status_code == 429
    ):
        return (
            Status.FAILED,
            "model_rate_limited",
            "The model provider is rate limiting requests.",
        )
    if isinstance(exc, ModelAPIError | UnexpectedModelBehavior):
        return Status.FAILED, "model_error", f"The model failed: {exc}"
    from agents.factory import AgentConfigError

    if isinstance(exc, AgentConfigError):
        return Status.FAILED, "agent_config_error", str(exc)
    from tools.registry import ToolUnavailableError

    if isinstance(exc, ToolUnavailableError):
        return Status.FAILED, "tool_unavailable", str(exc)
    if _is_timeout(exc):
        return Status.FAILED, "model_timeout", "The model did not answer in time."
    if _is_connection_error(exc):
        return Status.FAILED, "model_error", f"The model could not be reached: {exc}"
    return (
        Status.FAILED,
        "internal_error",
        f"The turn failed: {type(exc).__name__}: {exc}",
    )


def _is_timeout(exc: BaseException) -> bool:
    import httpx

    return isinstance(exc, TimeoutError | httpx.TimeoutException)


def _is_connection_error(exc: BaseException) -> bool:
    import httpx

    return isinstance(exc, httpx.TransportError | ConnectionError)


class _Stream:
    """Turns pydantic-ai stream events into stored events and frames.

    Streamed text is published as it arrives, one partial frame per model
    chunk. Batching chunks (in a publisher task, or over a 5 ms window) was
    measured in bench.long_answers and saved under 5% of the server's CPU per
    token (see docs/performance.md), while making the frames a client sees
    depend on the server's load.
    """

    def __init__(self, live: _LiveTurn, announced: set[str] | None = None) -> None:
        self.live = live
        self.segment: list[str] = []
        # Calls already stored: a resumed run re-announces the approved ones.
        self.announced = set(announced or ())

    async def partial(self, text: str) -> None:
        if not text:
            return
        self.segment.append(text)
        payload = partial_payload(
            session_id=self.live.session_id,
            execution_id=self.live.execution_id,
            content=text,
            created_at=timezone.now(),
        )
        await broadcast.publish(
            self.live.session_id, {"type": "event", "event": payload}
        )

    async def store(self, *specs: services.EventSpec) -> None:
        events = await run_db(
            services.events_append,
            self.live.session_id,
            list(specs),
            execution_id=self.live.execution_id,
        )
        await broadcast.publish(self.live.session_id, *(event_frame(e) for e in events))

    def take_segment(self) -> str:
        text, self.segment = "".join(self.segment), []
        return text

    async def tool_call(self, event: FunctionToolCallEvent) -> None:
        if event.part.tool_call_id in self.announced:
            return
        self.announced.add(event.part.tool_call_id)
        specs = []
        text = self.take_segment()
        if text:
            # Text the model wrote before deciding to call a tool stays in the log.
            specs.append(services.EventSpec(author=Event.Author.AGENT, content=text))
        part = event.part
        specs.append(
            services.EventSpec(
                author=Event.Author.AGENT,
                kind=Event.Kind.TOOL_CALL,
                content=part.tool_name,
                metadata={
                    "tool_name": part.tool_name,
                    "tool_call_id": part.tool_call_id,
                    "args": _args(part),
                },
            )
        )
        await self.store(*specs)

    async def tool_result(self, event: FunctionToolResultEvent) -> None:
        part = event.part
        is_error = getattr(part, "outcome", "success") != "success"
        try:
            content = part.model_response_str(wrap_if_error=False)
        except Exception:
            content = str(part.content)
        await self.store(
            services.EventSpec(
                author=Event.Author.TOOL,
                kind=Event.Kind.TOOL_RESULT,
                content=content,
                metadata={
                    "tool_name": part.tool_name,
                    "tool_call_id": part.tool_call_id,
                    "is_error": is_error,
                },
            )
        )


def _args(part: Any) -> Any:
    try:
        return part.args_as_dict()
    except Exception:
        return {"raw": str(part.args)}


async def _run(
    live: _LiveTurn,
    execution: AgentExecution,
    resume: DeferredToolResults | None = None,
    context: _TurnContext | None = None,
) -> AgentExecution:
    from agents.factory import TurnDeps, build_agent, usage_limits_for

    started = time.monotonic()
    stream = _Stream(live, set(resume.approvals) if resume is not None else None)
    usage_handle: Any = None
    result: Any = None
    try:
        if context is None:
            context = await run_db(_load_context, live.execution_id, resume is not None)
        deps = TurnDeps(
            user_id=context.user_id,
            agent_id=context.agent_id,
            session_id=live.session_id,
            state=context.state,
        )
        agent = build_agent(context.config, deps=deps)
        async with agent.run_stream_events(
            context.prompt,
            message_history=context.history or None,
            deps=deps,
            usage_limits=usage_limits_for(context.config),
            deferred_tool_results=resume,
            cancellation_token=live.token,
            timeout=settings.AGENTRY_TURN_TIMEOUT,
        ) as events:
            usage_handle = events
            async for event in events:
                if isinstance(event, PartStartEvent) and isinstance(
                    event.part, TextPart
                ):
                    await stream.partial(event.part.content)
                elif isinstance(event, PartDeltaEvent) and isinstance(
                    event.delta, TextPartDelta
                ):
                    await stream.partial(event.delta.content_delta)
                elif isinstance(event, FunctionToolCallEvent):
                    await stream.tool_call(event)
                elif isinstance(event, FunctionToolResultEvent):
                    await stream.tool_result(event)
                elif isinstance(event, AgentRunResultEvent):
                    result = event.result
        if result is None:
            raise UnexpectedModelBehavior("The run ended without a result.")
        output = result.output
        messages = context.own_messages + ModelMessagesTypeAdapter.dump_python(
            result.new_messages(), mode="json"
        )
        usage = _add_usage(context.own_usage, _usage(result.usage))
        text = stream.take_segment()
        if isinstance(output, DeferredToolRequests):
            return await _pause_for_approval(live, output, text, usage, messages)
        if isinstance(output, str):
            content = text or output
            stored_output: Any = content
        else:
            stored_output = _jsonable(output)
            content = json.dumps(stored_output, ensure_ascii=False)
        logger.debug(
            "turn %s finished in %.3fs", live.execution_id, time.monotonic() - started
        )
        return await _finish(
            live,
            status=Status.SUCCEEDED,
            output=stored_output,
            usage=usage,
            messages=messages,
            final=services.EventSpec(
                author=Event.Author.AGENT,
                content=content,
                turn_complete=True,
                metadata={
                    "model": context.config.get("model")
                    or settings.AGENTRY_DEFAULT_MODEL
                },
            ),
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        status, code, message = _classify(exc)
        if isinstance(exc, RunCancelled) and not isinstance(exc, RunTimedOut):
            status = (
                Status.INTERRUPTED if live.reason == "interrupted" else Status.CANCELLED
            )
            code = "interrupted" if live.reason == "interrupted" else "cancelled"
        else:
            logger.info("turn %s failed: %s (%s)", live.execution_id, code, exc)
        cancelled = RunCancelled.from_cancellation(exc)
        messages = None
        if cancelled is not None:
            messages = ModelMessagesTypeAdapter.dump_python(
                cancelled.new_messages(), mode="json"
            )
        usage = (
            cancelled.usage
            if cancelled is not None
            else getattr(usage_handle, "usage", None)
        )
        partial_text = stream.take_segment()
        return await _finish(
            live,
            status=status,
            usage=_usage(usage),
            messages=messages,
            error=(code, message),
            partial_text=partial_text,
        )


def _add_usage(before: dict[str, int], now: dict[str, int]) -> dict[str, int]:
    """A resumed turn's usage is the sum of its runs."""
    return {key: before.get(key, 0) + value for key, value in now.items()}


async def _pause_for_approval(
    live: _LiveTurn,
    requests: DeferredToolRequests,
    text: str,
    usage: dict[str, int],
    messages: list[Any],
) -> AgentExecution:
    """Stores the calls that wait for a human and pauses the turn."""
    pending = [
        {
            "tool_call_id": call.tool_call_id,
            "tool_name": call.tool_name,
            "args": _args(call),
        }
        for call in requests.approvals
    ]
    names = ", ".join(sorted({p["tool_name"] for p in pending})) or "a tool"
    specs = []
    if text:
        specs.append(services.EventSpec(author=Event.Author.AGENT, content=text))
    specs.append(
        services.EventSpec(
            author=Event.Author.SYSTEM,
            kind=Event.Kind.STATE,
            content=f"Waiting for approval to run {names}.",
            actions={"approval_requests": pending},
        )
    )
    execution, events = await run_db(
        services.execution_finish,
        live.execution_id,
        status=Status.AWAITING_APPROVAL,
        usage=usage,
        messages=messages,
        events=specs,
    )
    await broadcast.publish(
        live.session_id, *(event_frame(e) for e in events), execution_frame(execution)
    )
    return execution


def _jsonable(value: Any) -> Any:
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value)


async def _finish(
    live: _LiveTurn,
    *,
    status: str,
    output: Any = None,
    usage: dict[str, int] | None = None,
    messages: list[Any] | None = None,
    final: services.EventSpec | None = None,
    error: tuple[str, str] | None = None,
    partial_text: str = "",
) -> AgentExecution:
    specs: list[services.EventSpec] = []
    if partial_text:
        specs.append(
            services.EventSpec(
                author=Event.Author.AGENT,
                content=partial_text,
                metadata={"incomplete": True},
            )
        )
    if final is not None:
        specs.append(final)
    if error is not None:
        specs.append(services.error_event(*error))
    execution, events = await run_db(
        services.execution_finish,
        live.execution_id,
        status=status,
        output=output,
        usage=usage,
        messages=messages,
        error_code=error[0] if error else "",
        error_message=error[1] if error else "",
        events=specs,
    )
    if events:
        await broadcast.publish(
            live.session_id,
            *(event_frame(e) for e in events),
            execution_frame(execution),
        )
    return execution


# --------------------------------------------------------------------- recovery


def lease() -> dt.timedelta:
    """A running execution whose heartbeat is older than this belongs to a dead process."""
    return dt.timedelta(seconds=settings.AGENTRY_TURN_LEASE)


def sweep_stale_executions_sync(session_id: Any = None) -> int:
    """Ends executions whose process stopped heart-beating; returns how many."""
    finished = services.executions_sweep_stale(
        lease=lease(), session_id=session_id, exclude=list(_live)
    )
    if finished:
        from asgiref.sync import async_to_sync

        for execution, events in finished:
            frames = [event_frame(e) for e in events] + [execution_frame(execution)]
            try:
                async_to_sync(broadcast.publish)(execution.session_id, *frames)
            except Exception:
                logger.debug(
                    "could not publish the sweep of %s", execution.pk, exc_info=True
                )
    return len(finished)


async def sweep_stale_executions() -> int:
    return await run_db(sweep_stale_executions_sync)


# --------------------------------------------------------------------- process lifecycle

_supervised_loops: set[int] = set()


def ensure_supervisor() -> None:
    """Starts this process's housekeeping once per event loop: the periodic
    sweep of dead processes' turns, and (under daphne) a shutdown hook that
    ends running turns as `interrupted` before the server stops."""
    loop = asyncio.get_running_loop()
    if id(loop) in _supervised_loops:
        return
    _supervised_loops.add(id(loop))
    for housekeeping in (_beat_forever(), _sweep_forever()):
        task = loop.create_task(housekeeping)
        _background.add(task)
        task.add_done_callback(_background.discard)
    _install_shutdown_hook()


_background: set[asyncio.Task[Any]] = set()
# Heartbeats and sweeps get a thread of their own: queued behind a busy
# process's turn queries, a late heartbeat would get live turns swept.
_housekeeping = ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="agentry-housekeeping"
)


async def _beat_forever() -> None:
    """Extends the lease of every turn of this process, in one query."""
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        if not _live:
            continue
        try:
            await run_db_on(_housekeeping, services.execution_heartbeat, list(_live))
        except Exception:
            logger.warning("heartbeat of %d turn(s) failed", len(_live), exc_info=True)


async def _sweep_forever() -> None:
    while True:
        try:
            await run_db_on(_housekeeping, sweep_stale_executions_sync)
        except Exception:
            logger.warning("sweeping stale executions failed", exc_info=True)
        await asyncio.sleep(SWEEP_SECONDS)


async def interrupt_live_turns(timeout: float = 10.0) -> int:
    """Ends every turn running in this process as `interrupted` (shutdown)."""
    live = list(_live.values())
    for turn in live:
        turn.reason = "interrupted"
        turn.token.cancel()
    deadline = asyncio.get_running_loop().time() + timeout
    while _live and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    return len(live)


def _install_shutdown_hook() -> None:
    import sys

    # Only when daphne's Twisted reactor runs this process: importing the
    # reactor anywhere else would install one.
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None or getattr(reactor, "_agentry_hooked", False):
        return
    from twisted.internet.defer import Deferred

    def before_shutdown() -> Deferred:
        return Deferred.fromFuture(asyncio.ensure_future(interrupt_live_turns()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    reactor._agentry_hooked = True


def busy_frame() -> dict[str, Any]:
    return error_frame("session_busy", "Another turn of this session is running.")


__all__ = [
    "Submission",
    "TurnRejected",
    "TurnRequest",
    "cancel_turn",
    "execution_payload",
    "submit_turn",
    "sweep_stale_executions",
    "wait_for_execution",
]
