"""The turn runner: the only code that runs an agent.

REST (blocking and SSE), the websocket consumer, the admin "try it" page and
`manage.py chat` all call `submit_turn`; none of them runs a model itself.

Public surface:
    TurnRequest, POLICIES       re-exported from `turn_request` (validated as built)
    Submission, TurnRejected
    submit_turn(request)        stores the user's message, applies the session's
                                multitask policy and starts the turn as a task
    StoredTurn, open_turn(request), start_opened(request, stored)
                                the same in two steps, for a caller that stores
                                the turn inside a transaction of its own
    cancel_turn(session_id)     cancels the running turn wherever it runs, or ends
                                it at once while it waits for a worker (task mode)
    submit_approval(...)        decisions on a paused turn's tool calls; resumes it
    resume_claimed(resumed, results)
                                runs on a paused turn its decision or expiry claimed
    take_over(execution)        continues a dead process's turn that the sweep claimed
    run_child(tree, execution, context, resume=None)
                                runs (or resumes) a delegated child execution inside
                                its parent's run (`delegation` opens and places it)
    end_child(tree)             ends a child whose parent's run was torn down under it
    wait_for_execution(sub)     the execution once it has finished
    run_to_completion(request)  submit_turn, then wait_for_execution
    run_enqueued(execution_id)  a worker's run of a turn queued in task mode

Its helpers: `turn_events` turns a run's pydantic-ai events into stored events
and frames, `lifecycle` tracks this process's turns (heartbeats, sweeps of
dead processes' turns, shutdown), `context` reads what a run needs (config,
history, prompt), `approvals` checks decisions on paused turns, `services`
does the writes.

A turn runs as an asyncio task owned by this module, not by the connection that
started it: a client that disconnects does not stop it, and every client of the
session sees its frames through the channel-layer group. Stored events are
committed before they are published; streamed text is published as partial
events and never stored token by token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from pydantic_ai import (
    AgentRunResultEvent,
    DeferredToolRequests,
    DeferredToolResults,
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    PartDeltaEvent,
    PartStartEvent,
    RunCancelled,
    TextPart,
    TextPartDelta,
)
from pydantic_ai.exceptions import (
    UnexpectedModelBehavior,
)

from agents.selectors import agent_answers
from automation import dispatch
from observability.turns import observed_turn, queued_turn, task_context
from sessions_app import (
    approvals,
    broadcast,
    delegation,
    durable,
    limits,
    selectors,
    services,
)
from sessions_app.attachments import messages_for_storage
from sessions_app.context import TurnContext, config_at, context_of, load_context
from sessions_app.db import run_db
from sessions_app.frames import ExecutionFrame, Frame, event_frame, execution_frame
from sessions_app.lifecycle import (
    LiveTurn,
    ensure_supervisor,
    free_session,
    is_stale,
    live_turns,
    session_freed,
    sweep_stale_executions_sync,
    track,
)
from sessions_app.models import AgentExecution, Event, Session
from sessions_app.services import TurnRejected
from sessions_app.turn_events import (
    TurnStream,
    add_usage,
    classify_cancel,
    classify_failure,
    usage_of,
)
from sessions_app.turn_request import POLICIES, TurnRequest

logger = logging.getLogger(__name__)

Status = AgentExecution.Status


@dataclass
class Submission:
    execution: AgentExecution
    duplicate: bool = False
    #: A worker runs it (`AGENTRY_TURN_EXECUTION=task`): nothing to await here.
    queued_on_tasks: bool = False
    task: asyncio.Task[AgentExecution | None] | None = None

    @property
    def frame(self) -> ExecutionFrame:
        return execution_frame(self.execution)


# --------------------------------------------------------------------- validation


def _policy(request: TurnRequest, session: Session) -> str:
    policy = (
        request.multitask or (session.configuration or {}).get("multitask") or "reject"
    )
    # The request's own policy is valid; a session's stored one may predate
    # a change of the list.
    if policy not in POLICIES:
        raise TurnRejected(
            "invalid_multitask", f"multitask must be one of {', '.join(POLICIES)}."
        )
    return policy


# --------------------------------------------------------------------- submission


def _attachments(request: TurnRequest) -> list[dict[str, Any]]:
    ids = list(request.attachments)
    if not ids:
        return []
    found = selectors.attachments_for_turn(
        user_id=request.user_id, session_id=request.session_id, ids=ids
    )
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


@dataclass
class StoredTurn:
    turn: services.OpenedTurn
    policy: str
    abandoned: list[Frame] = field(default_factory=list)
    context: TurnContext | None = None


def _open(request: TurnRequest) -> StoredTurn:
    """Everything a new turn needs from the database, in one thread hop: the
    user's event and execution, pending approvals it abandons and, when it can
    start at once, its context."""
    session = _session_answering(request)
    # Read before this turn's event is stored: no event yet, no history.
    earlier_turns = session.last_sequence > 0
    version = _version_of(session)
    config = config_at(session.agent, version)
    policy = _policy(request, session)
    attachments = _attachments(request)
    turns = services.unfinished_turns(session.pk, request.user_id)
    if any(is_stale(turn) for turn in turns.in_session):
        sweep_stale_executions_sync(session_id=session.pk)
        turns = services.unfinished_turns(session.pk, request.user_id)
    unfinished = turns.in_session
    # The one place every way of starting a turn passes: rate and caps.
    admission = limits.turn_admit(
        session=session,
        user_id=request.user_id,
        client_message_id=request.client_message_id,
        queued=policy != "reject",
        queued_in_session=sum(turn.status == Status.QUEUED for turn in unfinished),
        active_of_user=turns.active_of_user,
    )
    try:
        opened = limits.turn_open_budgeted(
            services.turn_open,
            session=session,
            user_id=request.user_id,
            content=request.content,
            metadata={"attachments": attachments} if attachments else {},
            client_message_id=request.client_message_id,
            policy="reject" if policy == "reject" else "enqueue",
            model=config.get("model") or settings.AGENTRY_DEFAULT_MODEL,
            busy=any(turn.active for turn in unfinished),
            agent_version=version,
            webhook_url=request.webhook_url,
        )
    except BaseException:
        admission.refund()
        raise
    if opened.duplicate:
        admission.refund()
        return StoredTurn(opened, policy)
    abandoned = (
        _abandon_approvals(session.pk)
        if any(turn.status == Status.AWAITING_APPROVAL for turn in unfinished)
        else []
    )
    context = None
    if opened.execution.status == Status.RUNNING:
        # The session's user is the turn's: read with the session already.
        opened.execution.user = session.user
        context = context_of(
            opened.execution,
            session,
            session.agent,
            attachments=attachments,
            config=config,
            earlier_turns=earlier_turns,
        )
    return StoredTurn(opened, policy, abandoned, context)


def _session_answering(request: TurnRequest) -> Session:
    """The request's session, when its agent still answers the session's user.

    Checked for every turn: an owner who makes an agent private or inactive
    stops it answering at once, whatever sessions were opened before.
    """
    try:
        session = selectors.session_for_turn(
            session_id=request.session_id, user_id=request.user_id
        )
    except (Session.DoesNotExist, ValidationError):
        raise TurnRejected("not_found", "No such session.", 404) from None
    if not agent_answers(agent=session.agent, user=session.user):
        raise services.AgentUnavailable
    return session


def _version_of(session: Session) -> int:
    """The agent version a new turn of the session runs: its pinned one, or
    the latest when it follows the agent (always so for the owner)."""
    if session.agent_version is not None:
        return session.agent_version
    return session.agent.version


def _abandon_approvals(session_id: Any) -> list[Frame]:
    frames: list[Frame] = []
    for execution, events in services.executions_abandon_approvals(session_id):
        frames += [event_frame(e) for e in events] + [execution_frame(execution)]
    return frames


async def submit_turn(request: TurnRequest) -> Submission:
    """Stores the user's message and starts (or queues) its turn.

    Raises TurnRejected (nothing stored) for a session, agent or attachments
    the request may not use or, with the
    `reject` policy, a busy session (`session_busy`, status 409). A repeated
    `client_message_id` returns the existing execution and runs nothing.
    """
    ensure_supervisor()
    return await start_opened(request, await run_db(open_turn, request))


def open_turn(request: TurnRequest) -> StoredTurn:
    """`submit_turn`'s writes, for a caller that stores them in a transaction
    of its own (a schedule's fire with its claim); `start_opened` then starts
    the turn. A turn stored but never started is not lost: untracked, its
    lease lapses and a sweep takes it over."""
    try:
        return _open(request)
    except services.SessionBusy:
        # Named, so a client sending several messages knows which was refused.
        refused = request.client_message_id
        raise TurnRejected(
            "session_busy",
            "Another turn of this session is running.",
            409,
            details={"client_message_id": refused} if refused else None,
        ) from None


async def start_opened(request: TurnRequest, result: StoredTurn) -> Submission:
    """Starts (or queues) a turn `open_turn` stored."""
    ensure_supervisor()
    opened = result.turn
    if opened.duplicate:
        return Submission(opened.execution, duplicate=True)
    assert opened.user_event is not None  # only a duplicate stores no message
    execution = opened.execution
    live = track(execution)
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
        live_turns.pop(live.execution_id, None)
        raise
    if dispatch.task_mode():
        return await _hand_to_worker(live, execution)
    task = asyncio.create_task(
        _drive(live, execution, context=result.context),
        context=task_context(request.traceparent),
    )
    return Submission(execution, task=task)


async def _hand_to_worker(
    live: LiveTurn, execution: AgentExecution, resume: DeferredToolResults | None = None
) -> Submission:
    """Queues a stored turn for `manage.py worker`, which tracks it from its
    claim on. Until then no process holds it and a cancel ends it at once
    (`cancel_turn`); one that reached this process first ends it here."""
    await run_db(services.execution_hand_to_worker, execution.pk, live.attempts)
    live_turns.pop(live.execution_id, None)
    if live.token.cancelled and await _end_unheld(
        live.session_id, execution.pk, live.reason
    ):
        return Submission(execution, queued_on_tasks=True)
    await dispatch.enqueue_turn(execution.pk, resume, attempts=execution.attempts)
    return Submission(execution, queued_on_tasks=True)


async def run_enqueued(
    execution_id: str, resume: DeferredToolResults | None = None, attempts: int = 0
) -> AgentExecution | None:
    """Runs, in a worker, a turn a web process stored and queued (task mode);
    a turn that ended meanwhile (cancelled, swept) or that another worker
    already took over is left as it is."""
    ensure_supervisor()
    current = await run_db(AgentExecution.objects.filter(pk=execution_id).first)
    if (
        current is None
        or current.status not in AgentExecution.ACTIVE_STATUSES
        or current.attempts != attempts
        or execution_id in live_turns
    ):
        return current
    # Tracked before the claim: a cancel that finds the turn claimed (not
    # `waiting_for_worker` any more) asks this process, which knows it then.
    live = track(current)
    if not await run_db(services.execution_claim_queued, execution_id, attempts):
        if live_turns.get(execution_id) is live:
            live_turns.pop(execution_id, None)
        return await run_db(AgentExecution.objects.filter(pk=execution_id).first)
    execution = await run_db(AgentExecution.objects.get, pk=execution_id)
    return await _drive(live, execution, resume=resume)


async def _end_unheld(session_id: Any, root_id: Any, reason: str) -> set[str]:
    """Ends, as a cancel for `reason` ends a run, a turn that waits for a
    worker's claim; the ids it ended (none when a process holds the turn)."""
    status, code, message = classify_cancel(reason)
    ended = await run_db(
        services.turn_end_unheld,
        root_id,
        status=status,
        error_code=code,
        error_message=message,
    )
    if ended:
        frames: list[Frame] = []
        for execution, events in ended:
            frames += [event_frame(e) for e in events] + [execution_frame(execution)]
        await broadcast.publish(session_id, *frames)
        free_session(str(session_id))
    return {str(execution.pk) for execution, _ in ended}


async def cancel_turn(
    session_id: Any, *, reason: str = "cancelled", keep: str = ""
) -> bool:
    """Asks the running turn of a session to stop, on whichever process runs it.

    Returns whether a turn was running. The turn itself writes its `cancelled`
    outcome; a turn queued for a worker that no process holds yet is ended
    here, as it would end itself; a turn whose process is gone is swept as
    `interrupted` instead.
    """

    def running_ids() -> list[tuple[Any, Any]]:
        turns = AgentExecution.objects.filter(
            session_id=session_id, status=Status.RUNNING
        )
        if keep:
            turns = turns.exclude(pk=keep)
        # Roots first: ending a queued turn ends its delegated executions too.
        return list(turns.order_by("depth").values_list("pk", "root_id"))

    running = await run_db(running_ids)
    ended: set[str] = set()
    for execution_id, root_id in running:
        if str(execution_id) in ended:
            continue
        live = live_turns.get(str(execution_id))
        if live is not None:
            live.reason = reason
            live.token.cancel()
            continue
        if execution_id == root_id:
            ended |= await _end_unheld(session_id, execution_id, reason)
            if str(execution_id) in ended:
                continue
        await broadcast.send_control(
            {"type": "turn.cancel", "execution": str(execution_id), "reason": reason},
        )
    return bool(running)


async def submit_approval(
    *, execution_id: Any, user_id: Any, decisions: Any, via: str = "rest"
) -> Submission:
    """Keeps the user's decisions on a paused turn's tool calls and resumes it.

    `execution_id` is the turn's root or any paused execution of its tree (a
    delegated child waiting for approval); the decisions answer the pending
    calls of the whole tree, which resumes from its root. `via` says where
    the decision came from (`ApprovalDecision.Via`). Raises TurnRejected for
    bad decisions (the turn stays paused), a turn no longer paused, or one
    whose approval expired.
    """
    ensure_supervisor()
    execution, pending = await run_db(
        approvals.pending_approvals, execution_id, user_id
    )
    decided = approvals.parse_decisions(pending, decisions)
    await run_db(_ensure_agent_answers, execution)
    try:
        resumed = await run_db(
            services.execution_resume,
            execution.pk,
            decided_by=user_id,
            decisions=decided,
            via=via,
            paused_until=execution.approval_expires_at,
        )
    except services.NotAwaitingApproval:
        raise TurnRejected(
            "not_awaiting_approval",
            "The execution is no longer awaiting approval.",
            409,
        ) from None
    except services.ApprovalExpired:
        raise TurnRejected(
            "approval_expired",
            "The pending tool calls expired before this decision; they are denied.",
            409,
        ) from None
    except services.SessionBusy:
        raise TurnRejected(
            "session_busy", "Another turn of this session is running.", 409
        ) from None
    results = await run_db(approvals.resume_results, resumed.execution.pk)
    return await resume_claimed(resumed, results)


async def resume_claimed(
    resumed: services.Resumed, results: DeferredToolResults
) -> Submission:
    """Runs on a paused turn that a decision (or its expiry) has just claimed;
    its paused children continue as their delegating calls run again."""
    execution = resumed.execution
    live = track(execution)
    await broadcast.publish(
        live.session_id,
        *(event_frame(e) for e in resumed.events),
        *(execution_frame(member) for member in resumed.members),
        execution_frame(execution),
    )
    if dispatch.task_mode():
        return await _hand_to_worker(live, execution, results)
    task = asyncio.create_task(_drive(live, execution, resume=results))
    return Submission(execution, task=task)


async def take_over(execution: AgentExecution) -> Submission:
    """Continues, here, a turn whose process died (`lifecycle` claimed it),
    from its last completed model step (`durable`)."""
    live = track(execution)
    try:
        plan = await run_db(durable.takeover_plan, live.execution_id)
        await broadcast.publish(
            live.session_id,
            *(event_frame(e) for e in plan.events),
            execution_frame(execution),
        )
    except BaseException:
        live_turns.pop(live.execution_id, None)
        raise
    task = asyncio.create_task(
        _drive(live, execution, resume=plan.results, context=plan.context)
    )
    return Submission(execution, task=task)


def _ensure_agent_answers(execution: AgentExecution) -> None:
    """Refuses to resume a paused turn whose agent no longer answers its
    user; the turn stays paused (the owner may make the agent available again)."""
    session = selectors.session_for_turn(
        session_id=execution.session_id, user_id=execution.user_id
    )
    if not agent_answers(agent=session.agent, user=session.user):
        raise services.AgentUnavailable


async def run_to_completion(request: TurnRequest) -> AgentExecution:
    """Submits a turn and waits for its end (blocking REST, the admin)."""
    return await wait_for_execution(await submit_turn(request))


async def wait_for_execution(submission: Submission) -> AgentExecution:
    """The execution once it has finished (or as it stands, for a duplicate).

    Raises TurnRejected (404) when the session was deleted meanwhile.
    """
    if submission.task is not None:
        execution = await asyncio.shield(submission.task)
    elif submission.queued_on_tasks:
        execution = await dispatch.wait_until_finished(submission.execution.pk)
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


async def _drive(
    live: LiveTurn,
    execution: AgentExecution,
    *,
    resume: DeferredToolResults | None = None,
    context: TurnContext | None = None,
) -> AgentExecution | None:
    """Runs a tracked turn to its end; None if its session was deleted meanwhile."""
    execution_id, session_id = live.execution_id, live.session_id
    try:
        if live.token.cancelled:
            # Asked before its run began (a worker's claim racing the cancel):
            # it ends as a cancelled run does, without asking the model.
            status, code, message = classify_cancel(live.reason)
            return await _finish(live, status=status, error=(code, message))
        if execution.status != Status.RUNNING:
            with queued_turn():
                running = await _wait_until_running(live)
            if running is None:
                return await run_db(AgentExecution.objects.get, pk=execution_id)
            execution = running
        return await observed_turn(
            live, execution, _run(live, execution, resume, context)
        )
    except (AgentExecution.DoesNotExist, Session.DoesNotExist):
        # Deleting a session (or its agent) cascades to the running turn's rows.
        logger.info("turn %s ended: its session was deleted", execution_id)
        return None
    except services.LeaseLost:
        # This process stalled past its lease and another one took the turn
        # over: it stops without a word, the turn is the new holder's.
        logger.warning(
            "turn %s stopped here: another process took it over", execution_id
        )
        return await run_db(AgentExecution.objects.filter(pk=execution_id).first)
    except asyncio.CancelledError as exc:
        # The process is going away (shutdown, or the loop is closing).
        status, code, message = classify_failure(exc)
        with contextlib.suppress(services.LeaseLost):
            await asyncio.shield(_finish(live, status=status, error=(code, message)))
        raise
    finally:
        # A takeover in this same process (tests) tracks the turn afresh.
        if live_turns.get(execution_id) is live:
            live_turns.pop(execution_id, None)
        free_session(session_id)


async def _wait_until_running(live: LiveTurn) -> AgentExecution | None:
    """Promotes a queued execution when the session is free; None if it left the queue."""
    delay = 0.05
    while True:
        freed = session_freed(live.session_id)
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
            status, code, message = classify_cancel(live.reason)
            await _finish(live, status=status, error=(code, message))
            return None
        # Woken when a turn of this session ends in this process; polling
        # covers turns that end on another process.
        try:
            await asyncio.wait_for(freed.wait(), timeout=delay)
        except TimeoutError:
            delay = min(delay * 2, 0.5)


async def _run(
    live: LiveTurn,
    execution: AgentExecution,
    resume: DeferredToolResults | None = None,
    context: TurnContext | None = None,
    tree: delegation.Tree | None = None,
) -> AgentExecution:
    """Builds the turn's agent, dispatches its run's events, settles its outcome.

    `tree` places a delegated child in its turn (shared usage, limits and
    cancel token); a root makes its own.
    """
    started = time.monotonic()
    stream = TurnStream(
        live.execution_id,
        live.session_id,
        set(resume.approvals) if resume is not None else None,
        fence=live.attempts,
    )
    run = _RunState()
    try:
        if context is None:
            context = await run_db(
                load_context, live.execution_id, resuming=resume is not None
            )
        if tree is None:
            run_limits = await limits.bounded_by_budgets(
                _usage_limits(context), live.execution_id
            )
            tree = delegation.Tree.root_of(live, execution, context, run_limits)
        tree.stream = stream
        if context.config.get("kind") == "workflow":
            return await _run_workflow(
                live, execution, context, tree, resuming=resume is not None
            )
        agent, deps = _build(live, context, tree)
        stream.already_stored(context.stored_tool_calls, context.stored_tool_results)
        async with agent.run_stream_events(
            context.prompt,
            message_history=context.history or None,
            deps=deps,
            usage_limits=tree.limits,
            usage=tree.usage,
            deferred_tool_results=resume,
            cancellation_token=live.token,
            timeout=settings.AGENTRY_TURN_TIMEOUT,
            capabilities=[
                durable.StepSaver(
                    live.execution_id,
                    context.own_messages,
                    context.own_usage,
                    fence=live.attempts,
                )
            ],
        ) as events:
            run.usage_handle = events
            run.result = await _dispatch(events, stream)
        outcome = await _settle(live, context, stream, run.result, tree)
        logger.debug(
            "turn %s finished in %.3fs", live.execution_id, time.monotonic() - started
        )
        return outcome
    except services.LeaseLost:
        raise
    except Exception as exc:
        return await _settle_failure(live, stream, run, exc, tree)
    finally:
        stream.close()


async def run_child(
    tree: delegation.Tree,
    execution: AgentExecution,
    context: TurnContext,
    resume: DeferredToolResults | None = None,
) -> AgentExecution:
    """Runs a child execution opened by `delegation.run_child` to its end (or
    its pause), or continues one `delegation.resume_child` reopened."""
    return await observed_turn(
        tree.live,
        execution,
        _run(tree.live, execution, resume, context=context, tree=tree),
    )


async def end_child(tree: delegation.Tree) -> None:
    """Ends a child as its turn's cancel (or shutdown) asked, when its
    parent's run was torn down before the child could settle itself."""
    live = tree.live
    status, code, message = classify_failure(
        asyncio.CancelledError()
        if live.reason == "interrupted" or not live.token.cancelled
        else RunCancelled("Cancelled.")
    )
    await _finish(
        live,
        status=status,
        usage=tree.own_usage(tree.usage),
        error=(code, message),
        closes_turn=False,
    )


async def _run_workflow(
    live: LiveTurn,
    execution: AgentExecution,
    context: TurnContext,
    tree: delegation.Tree,
    *,
    resuming: bool = False,
) -> AgentExecution:
    """A workflow agent's turn: its steps run in order as child executions;
    the last step's output is the turn's answer, a failed step its error.
    A step waiting for approval pauses the workflow; resumed, it goes on
    from that step."""
    steps = (context.config.get("workflow") or {}).get("steps") or []
    waiting = await run_db(approvals.waiting_on, live.execution_id) if resuming else []
    outcome = await delegation.run_workflow(
        tree, execution.input, steps, waiting=waiting[0] if waiting else None
    )
    usage = add_usage(context.own_usage, tree.own_usage(tree.usage))
    if live.token.cancelled:
        status, code, message = classify_cancel(live.reason)
        return await _finish(live, status=status, usage=usage, error=(code, message))
    if outcome.error is not None:
        return await _finish(
            live, status=Status.FAILED, usage=usage, error=outcome.error
        )
    if outcome.paused is not None:
        step = outcome.paused
        return await _store_pause(
            live,
            [
                services.EventSpec(
                    author=Event.Author.SYSTEM,
                    kind=Event.Kind.STATE,
                    content=f"Waiting for approval in step {step['step']!r}.",
                    actions={approvals.WAITING_ACTION: [step]},
                )
            ],
            usage=usage,
            messages=None,
            deadline=approvals.deadline_of(step),
        )
    return await _finish(
        live,
        status=Status.SUCCEEDED,
        output=outcome.output,
        usage=usage,
        final=services.EventSpec(
            author=Event.Author.AGENT,
            content=outcome.output,
            turn_complete=True,
            metadata={"workflow": True},
        ),
    )


@dataclass
class _RunState:
    """What a run left behind, for settling it however it ended."""

    usage_handle: Any = None
    result: Any = None


def _build(
    live: LiveTurn, context: TurnContext, tree: delegation.Tree
) -> tuple[Any, Any]:
    from agents.factory import TurnDeps, build_agent

    deps = TurnDeps(
        user_id=context.user_id,
        agent_id=context.agent_id,
        owner_id=context.owner_id,
        user_role=context.user_role,
        session_id=live.session_id,
        state=context.state,
        tree=tree,
    )
    return build_agent(context.config, deps=deps), deps


def _usage_limits(context: TurnContext) -> Any:
    from agents.factory import usage_limits_for

    return usage_limits_for(context.config)


async def _dispatch(events: Any, stream: TurnStream) -> Any:
    """Sends the run's text and tool events on; returns the run's result."""
    result = None
    async for event in events:
        if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
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
    return result


async def _settle(
    live: LiveTurn,
    context: TurnContext,
    stream: TurnStream,
    result: Any,
    tree: delegation.Tree,
) -> AgentExecution:
    """Stores a finished run: its answer, or the calls that wait for approval.

    A child's answer does not complete the turn (its root's does)."""
    output = result.output
    messages = context.own_messages + messages_for_storage(result.new_messages())
    usage = add_usage(context.own_usage, tree.own_usage(result.usage))
    await stream.flush()
    text = stream.take_segment()
    if isinstance(output, DeferredToolRequests):
        return await _pause_for_approval(live, output, text, usage, messages)
    if isinstance(output, str):
        content = text or output
        stored_output: Any = content
    else:
        stored_output = _jsonable(output)
        content = json.dumps(stored_output, ensure_ascii=False)
    return await _finish(
        live,
        status=Status.SUCCEEDED,
        output=stored_output,
        usage=usage,
        messages=messages,
        final=services.EventSpec(
            author=Event.Author.AGENT,
            content=content,
            turn_complete=tree.is_root,
            metadata={
                "model": context.config.get("model") or settings.AGENTRY_DEFAULT_MODEL
            },
        ),
        closes_turn=tree.is_root,
    )


async def _settle_failure(
    live: LiveTurn,
    stream: TurnStream,
    run: _RunState,
    exc: Exception,
    tree: delegation.Tree | None,
) -> AgentExecution:
    """Stores a run that did not finish: what it said and used so far, and why."""
    status, code, message = classify_failure(exc, cancel_reason=live.reason)
    closes_turn = tree is None or tree.is_root
    if isinstance(exc, TurnRejected):
        # Nothing ran: the execution keeps the usage it had (a resumed turn's).
        return await _finish(
            live, status=status, error=(code, message), closes_turn=closes_turn
        )
    if status not in (Status.CANCELLED, Status.INTERRUPTED):
        logger.info("turn %s failed: %s (%s)", live.execution_id, code, exc)
    cancelled = RunCancelled.from_cancellation(exc)
    messages = None
    if cancelled is not None:
        messages = messages_for_storage(cancelled.new_messages())
    usage = (
        cancelled.usage
        if cancelled is not None
        else getattr(run.usage_handle, "usage", None)
    )
    await stream.flush()
    partial_text = stream.take_segment()
    return await _finish(
        live,
        status=status,
        usage=tree.own_usage(usage) if tree is not None else usage_of(usage),
        messages=messages,
        error=(code, message),
        partial_text=partial_text,
        closes_turn=closes_turn,
    )


async def _pause_for_approval(
    live: LiveTurn,
    requests: DeferredToolRequests,
    text: str,
    usage: dict[str, int],
    messages: list[Any],
) -> AgentExecution:
    """Stores the calls that wait for a human and pauses the run until they
    are decided or their deadline passes.

    A run whose delegating call waits on a child paused for approval pauses
    with it: its `state` event names the children it waits on
    (`actions.waiting_on`) rather than requests of its own."""
    pause = approvals.pause_of(requests)
    specs = []
    if text:
        specs.append(services.EventSpec(author=Event.Author.AGENT, content=text))
    actions: dict[str, Any] = {}
    if pause.pending or not pause.waiting_on:
        names = ", ".join(sorted({p["tool_name"] for p in pause.pending}))
        content = f"Waiting for approval to run {names or 'a tool'}."
        actions["approval_requests"] = pause.pending
    else:
        names = ", ".join(sorted({w["tool_name"] for w in pause.waiting_on}))
        content = f"Waiting for approval of a call made inside {names}."
    if pause.waiting_on:
        actions[approvals.WAITING_ACTION] = pause.waiting_on
    specs.append(
        services.EventSpec(
            author=Event.Author.SYSTEM,
            kind=Event.Kind.STATE,
            content=content,
            actions=actions,
        )
    )
    return await _store_pause(
        live, specs, usage=usage, messages=messages, deadline=pause.deadline
    )


async def _store_pause(
    live: LiveTurn,
    specs: list[services.EventSpec],
    *,
    usage: dict[str, int],
    messages: list[Any] | None,
    deadline: Any,
) -> AgentExecution:
    """Pauses the execution with its `state` event until `deadline`."""
    execution, events = await run_db(
        services.execution_finish,
        live.execution_id,
        status=Status.AWAITING_APPROVAL,
        usage=usage,
        messages=messages,
        events=specs,
        approval_expires_at=deadline,
        fence=live.attempts,
    )
    await broadcast.publish(
        live.session_id, *(event_frame(e) for e in events), execution_frame(execution)
    )
    return execution


def _jsonable(value: Any) -> Any:
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value)


async def _finish(
    live: LiveTurn,
    *,
    status: str,
    output: Any = None,
    usage: dict[str, int] | None = None,
    messages: list[Any] | None = None,
    final: services.EventSpec | None = None,
    error: tuple[str, str] | None = None,
    partial_text: str = "",
    closes_turn: bool = True,
) -> AgentExecution:
    """Ends the execution with its closing events; only a root's (`closes_turn`)
    mark the turn complete."""
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
        specs.append(replace(services.error_event(*error), turn_complete=closes_turn))
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
        fence=live.attempts,
    )
    if events:
        await broadcast.publish(
            live.session_id,
            *(event_frame(e) for e in events),
            execution_frame(execution),
        )
    return execution


__all__ = [
    "POLICIES",
    "Submission",
    "TurnRejected",
    "TurnRequest",
    "cancel_turn",
    "run_enqueued",
    "run_to_completion",
    "submit_approval",
    "submit_turn",
    "wait_for_execution",
]
