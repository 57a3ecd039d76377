"""Writes that span a session's models: the event log and the execution lifecycle.

Public surface (all synchronous; call them through `sessions_app.db.run_db` from
async code):
    clean_text(value), clean_json(value)   what PostgreSQL can store, from any text
    session_create(*, user, agent, ...)     a new session, pinned to the agent's version
                                            unless `user` owns the agent
    event_append(...)                       one event with the next sequence number
    unfinished_turns(session_id, user_id)   the session's queued, running and paused turns,
                                            and how many its user has active anywhere
    turn_open(...)                          the user's event and its execution, atomically
    turn_conflict(session_id, client_message_id)
                                            the stored turn a refused insert repeats, or
                                            SessionBusy
    execution_promote(execution_id)         queued -> running when the session is free
    execution_finish(...)                   final status, output, usage, messages, and its events
    Decision, Resumed, execution_resume(...)
                                            approval decisions kept, the turn running again
                                            (a person before the deadline, the sweep after),
                                            with every paused execution of its tree
    executions_abandon_approvals(session)   pending approvals ended by a new message
    execution_heartbeat(held)               extends the lease of running executions
    execution_hand_to_worker(id, fence), execution_claim_queued(id, attempts)
                                            a task-mode turn queued for a worker, and
                                            the worker's claim that makes it its own
    turn_end_unheld(root_id, ...)           ends a queued turn no process holds yet
                                            (its cancel), with its error events
    LeaseLost, execution_hold(id, fence)    the fence of a leased turn's writes
    execution_set_trace_id(id, trace_id)    the trace of an execution's first run
    executions_sweep_stale(...)             marks executions of dead processes `interrupted`
    error_event(code, message)              the closing error event of a turn
    INTERRUPTED_MESSAGE                     what a turn its process stopped under says

Sequence numbers come from `Session.last_sequence`, incremented with an UPDATE in
the same transaction that inserts the event: the row lock serialises writers of
one session (on PostgreSQL; SQLite serialises all writers), and a rolled back
insert rolls back its number, so numbers are unique, gapless and in order.

A running turn's writes are fenced: each one passes the `attempts` (takeover
count) its process started the turn with, and is refused (`LeaseLost`) in the
same transaction once another process has taken the turn over, so a process
that stalled past its lease and wakes up again cannot store anything more.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Q
from django.utils import timezone

from agents.selectors import agent_answers
from core.text import INVALID_TEXT
from sessions_app import titles
from sessions_app.models import AgentExecution, ApprovalDecision, Event, Session
from usage import accounting as usage_accounting

Status = AgentExecution.Status

#: The error of a turn whose process stopped under it: swept after a crash, or
#: ended by this process's own shutdown.
INTERRUPTED_MESSAGE = "The server stopped while this turn was running."


class LeaseLost(Exception):
    """Another process took this turn over (or ended it) while this one held
    it: the write is refused and this process's run stops."""


class SessionBusy(Exception):
    """Another turn of the session is running (or queued ahead)."""


class TurnRejected(Exception):
    """A turn (or a decision on one) was refused before anything was stored.

    `retry_after` is the seconds after which the same request may succeed
    (a rate limit); REST answers it as `Retry-After`. `details` go into the
    error body (REST) and the error frame (websocket).
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        *,
        retry_after: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
        self.retry_after, self.details = retry_after, details


class AgentUnavailable(TurnRejected):
    """The session's agent no longer answers its user: private, or inactive."""

    def __init__(self) -> None:
        super().__init__(
            "agent_unavailable",
            "This agent is no longer available: its owner made it private or "
            "inactive. The session's history stays readable.",
            404,
        )


def session_create(
    *,
    user: Any,
    agent: Any,
    title: str = "",
    external_session_id: str = "",
    state: dict[str, Any] | None = None,
    configuration: dict[str, Any] | None = None,
    follow_latest: bool = False,
) -> Session:
    """Opens a session of `user` with `agent`: every way of starting a
    conversation (API, agent run, admin, terminal) comes through here.

    The agent's owner always runs its latest version. Anyone else's session
    is pinned to the version current now, so an owner's later change of
    instructions or tools does not reach users who chose the earlier one;
    they move on with `agent_version: "latest"` (`follow_latest` here).

    Raises:
        AgentUnavailable: the agent does not answer `user` (inactive, or
            another user's private agent).
    """
    if not agent_answers(agent=agent, user=user):
        raise AgentUnavailable
    follows_latest = follow_latest or agent.owner_id == user.pk
    return Session.objects.create(
        user=user,
        agent=agent,
        agent_version=None if follows_latest else agent.version,
        title=title,
        external_session_id=external_session_id,
        state=state or {},
        configuration=configuration or {},
    )


def clean_text(value: Any) -> str:
    """The text with NUL and lone surrogates replaced, so any database stores it.

    Model and tool output is not ours to refuse, so it is repaired; user input
    is refused earlier, at the edge.
    """
    text = value if isinstance(value, str) else str(value)
    return INVALID_TEXT.sub("\ufffd", text)


def clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        return {clean_text(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


@dataclass
class EventSpec:
    """An event to append, before it has a sequence number."""

    author: str
    kind: str = Event.Kind.MESSAGE
    content: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    actions: dict[str, Any] = field(default_factory=dict)
    turn_complete: bool = False
    error_code: str = ""
    error_message: str = ""


def _numbering_update(
    connection: Any, session_id: Any, count: int
) -> tuple[str, list[Any]]:
    """`UPDATE <session> ... RETURNING last_sequence`: takes the session's row
    lock and reserves `count` numbers. Only quoted identifiers from the
    model's own metadata are interpolated."""
    table = connection.ops.quote_name(Session._meta.db_table)
    column = connection.ops.quote_name("last_sequence")
    stamp = connection.ops.quote_name("updated_at")
    key_column = Session._meta.pk.column
    assert key_column is not None  # a concrete primary key has a column
    key = connection.ops.quote_name(key_column)
    sql = (
        f"UPDATE {table} SET {column} = {column} + %s, {stamp} = %s "
        f"WHERE {key} = %s RETURNING {column}"
    )
    params = [
        count,
        Session._meta.get_field("updated_at").get_db_prep_value(
            timezone.now(), connection
        ),
        Session._meta.pk.get_db_prep_value(session_id, connection),
    ]
    return sql, params


def _insert_numbered(connection: Any, session_id: Any, events: list[Event]) -> None:
    """PostgreSQL: numbers and inserts `events` in one statement, the session's
    UPDATE feeding the rows' sequence numbers (one round trip instead of two,
    on every stored event). A session deleted meanwhile numbers nothing: the
    NULL number's refusal is read as Session.DoesNotExist."""
    quote = connection.ops.quote_name
    fields = [f for f in Event._meta.concrete_fields if f.name != "sequence_number"]
    numbering, params = _numbering_update(connection, session_id, len(events))
    row = ", ".join(["%s"] * len(fields))
    rows = []
    for offset, event in enumerate(events):
        rows.append(f"({row}, (SELECT last FROM numbered) - %s)")
        params += [
            f.get_db_prep_save(f.pre_save(event, True), connection) for f in fields
        ]
        params.append(len(events) - 1 - offset)
    columns = ", ".join(quote(f.column) for f in fields)
    sequence = quote("sequence_number")
    sql = (
        f"WITH numbered (last) AS ({numbering}) "
        f"INSERT INTO {quote(Event._meta.db_table)} ({columns}, {sequence}) "
        f"VALUES {', '.join(rows)} RETURNING {sequence}"
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            numbers = [number for (number,) in cursor.fetchall()]
    except IntegrityError as exc:
        diag = getattr(exc.__cause__, "diag", None)
        if getattr(diag, "column_name", None) == "sequence_number":
            raise Session.DoesNotExist(
                f"Session {session_id} does not exist."
            ) from None
        raise
    for event, number in zip(events, numbers, strict=True):
        event.sequence_number = number
        event._state.adding = False
        event._state.db = connection.alias


def _allocate(session_id: Any, count: int) -> int:
    """Reserves `count` sequence numbers; returns the first. Call inside atomic().

    One `UPDATE ... RETURNING` (SQLite >= 3.35) both takes the session's row
    lock and reads the new last number; the events are inserted after it.
    PostgreSQL does both in one statement (`_insert_numbered`).
    """
    connection = connections[router.db_for_write(Session)]
    sql, params = _numbering_update(connection, session_id, count)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        raise Session.DoesNotExist(f"Session {session_id} does not exist.")
    last_sequence: int = row[0]
    return last_sequence - count + 1


def execution_hold(execution_id: Any, fence: int) -> None:
    """Locks an active execution's row for the rest of the transaction while
    its takeover count is still `fence`; raises LeaseLost otherwise (and
    AgentExecution.DoesNotExist once its session was deleted).

    The lock makes a takeover's claim wait for this write to commit, so the
    claim sees everything its previous holder stored. Call inside atomic().
    """
    held = (
        AgentExecution.objects.select_for_update()
        .filter(pk=execution_id)
        .values_list("attempts", "status")
        .first()
    )
    if held is None:
        raise AgentExecution.DoesNotExist(f"Execution {execution_id} does not exist.")
    attempts, status = held
    if attempts != fence or status not in AgentExecution.ACTIVE_STATUSES:
        raise LeaseLost(execution_id)


def events_append(
    session_id: Any,
    specs: Sequence[EventSpec],
    *,
    execution_id: Any = None,
    fence: int | None = None,
) -> list[Event]:
    """Appends events in order, numbered in the same transaction; with a
    `fence`, only while the execution is still held at that takeover count."""
    if not specs:
        return []
    # Inside a caller's transaction no savepoint is needed: any failure here
    # rolls the caller back too.
    with transaction.atomic(savepoint=False):
        if fence is not None:
            execution_hold(execution_id, fence)
        events = [
            Event(
                session_id=session_id,
                execution_id=execution_id,
                author=spec.author,
                kind=spec.kind,
                content=clean_text(spec.content),
                metadata=clean_json(spec.metadata),
                actions=clean_json(spec.actions),
                turn_complete=spec.turn_complete,
                error_code=spec.error_code,
                error_message=clean_text(spec.error_message),
            )
            for spec in specs
        ]
        connection = connections[router.db_for_write(Event)]
        if connection.vendor == "postgresql":
            _insert_numbered(connection, session_id, events)
        else:
            first = _allocate(session_id, len(events))
            for offset, event in enumerate(events):
                event.sequence_number = first + offset
            Event.objects.bulk_create(events)
    return events


def event_append(
    session_id: Any, spec: EventSpec, *, execution_id: Any = None
) -> Event:
    return events_append(session_id, [spec], execution_id=execution_id)[0]


@dataclass
class OpenedTurn:
    execution: AgentExecution
    user_event: Event | None
    duplicate: bool = False


def _existing(session_id: Any, client_message_id: str) -> AgentExecution | None:
    if not client_message_id:
        return None
    return AgentExecution.objects.filter(
        session_id=session_id, client_message_id=client_message_id
    ).first()


@dataclass(frozen=True)
class UnfinishedTurn:
    pk: Any
    status: str
    heartbeat_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.status in AgentExecution.ACTIVE_STATUSES


@dataclass(frozen=True)
class UnfinishedTurns:
    """A session's unfinished turns and how many its user has active anywhere."""

    in_session: list[UnfinishedTurn]
    active_of_user: int


def unfinished_turns(session_id: Any, user_id: Any = None) -> UnfinishedTurns:
    """The session's queued, running and awaiting-approval executions (what a
    new message must wait for, sweep or abandon) and, with `user_id`, the
    number of that user's queued and running executions in any session (the
    cap `limits.turn_admit` checks): one query for both."""
    unfinished = Q(
        session_id=session_id,
        status__in=(*AgentExecution.ACTIVE_STATUSES, Status.AWAITING_APPROVAL),
    )
    if user_id is not None:
        unfinished |= Q(user_id=user_id, status__in=AgentExecution.ACTIVE_STATUSES)
    in_session, active_of_user = [], 0
    for (
        pk,
        status,
        heartbeat_at,
        row_session_id,
        row_user_id,
    ) in AgentExecution.objects.filter(unfinished).values_list(
        "pk", "status", "heartbeat_at", "session_id", "user_id"
    ):
        if str(row_session_id) == str(session_id):
            in_session.append(UnfinishedTurn(pk, status, heartbeat_at))
        if (
            str(row_user_id) == str(user_id)
            and status in AgentExecution.ACTIVE_STATUSES
        ):
            active_of_user += 1
    return UnfinishedTurns(in_session, active_of_user)


def turn_open(
    *,
    session: Session,
    user_id: Any,
    content: str,
    metadata: dict[str, Any],
    client_message_id: str,
    policy: str,
    model: str,
    busy: bool | None = None,
    agent_version: int | None = None,
    webhook_url: str = "",
    in_caller_transaction: bool = False,
) -> OpenedTurn:
    """Stores the user's message and its execution in one transaction.

    The user's event carries `client_message_id`, when given, in its metadata.

    `agent_version` is the version the turn runs (the session's pinned one;
    by default the agent's current one); a resumed turn runs it too.

    With the `reject` policy the execution starts `running`, and a queued or
    running turn of the session refuses it without storing anything (between
    processes the partial unique index on running turns decides). `enqueue`
    and `interrupt` store it `queued`; the caller promotes it when the session
    is free. `busy` is whether the session has a queued or running turn, when
    the caller has just looked (`unfinished_turns`); otherwise it is read here.

    `in_caller_transaction`: the caller's transaction holds this one's writes
    without a savepoint of their own, and a conflict (a repeated
    `client_message_id`, or another running turn) raises IntegrityError, which
    the caller answers with `turn_conflict` once its transaction has rolled back.
    """
    existing = _existing(session.pk, client_message_id)
    if existing is not None:
        return OpenedTurn(existing, None, duplicate=True)
    now = timezone.now()
    queued = policy != "reject"
    if not queued:
        if busy is None:
            busy = AgentExecution.objects.filter(
                session_id=session.pk, status__in=AgentExecution.ACTIVE_STATUSES
            ).exists()
        if busy:
            raise SessionBusy
    try:
        with transaction.atomic(savepoint=not in_caller_transaction):
            execution_id = uuid.uuid4()
            execution = AgentExecution.objects.create(
                id=execution_id,
                # A turn's own execution is the root of its delegation tree.
                root_id=execution_id,
                session_id=session.pk,
                agent_id=session.agent_id,
                agent_version=agent_version or session.agent.version,
                user_id=user_id,
                status=Status.QUEUED if queued else Status.RUNNING,
                input=content,
                client_message_id=client_message_id,
                model=model,
                started_at=None if queued else now,
                heartbeat_at=now,
                webhook_url=webhook_url,
            )
            if client_message_id:
                # Clients match the stored message to the one they sent by it.
                metadata = {**metadata, "client_message_id": client_message_id}
            user_event = event_append(
                session.pk,
                EventSpec(author=Event.Author.USER, content=content, metadata=metadata),
                execution_id=execution.pk,
            )
            titles.title_untitled_session(session, content)
    except IntegrityError:
        if in_caller_transaction:
            raise
        return turn_conflict(session.pk, client_message_id)
    return OpenedTurn(execution, user_event)


def turn_conflict(session_id: Any, client_message_id: str) -> OpenedTurn:
    """What an insert refused by a unique index meant: the stored turn of a
    repeated `client_message_id`, else SessionBusy (another turn runs)."""
    existing = _existing(session_id, client_message_id)
    if existing is not None:
        return OpenedTurn(existing, None, duplicate=True)
    raise SessionBusy


def execution_promote(execution_id: Any) -> AgentExecution | None:
    """Starts a queued execution if it is the oldest queued one of a free session.

    Returns the running execution, or None when it must keep waiting. Raises
    AgentExecution.DoesNotExist when it is no longer queued (cancelled meanwhile).
    """
    execution = AgentExecution.objects.get(pk=execution_id)
    if execution.status != Status.QUEUED:
        raise AgentExecution.DoesNotExist(
            f"Execution {execution_id} is {execution.status}."
        )
    ahead = AgentExecution.objects.filter(
        session_id=execution.session_id,
        status=Status.QUEUED,
        created_at__lt=execution.created_at,
    ).exists()
    if ahead:
        return None
    try:
        with transaction.atomic():
            queued = AgentExecution.objects.filter(
                pk=execution_id, status=Status.QUEUED
            )
            promoted = queued.update(status=Status.RUNNING)
            if promoted:
                # The update may have waited for the session's previous turn
                # to commit its end (the one-running-turn index); this turn
                # starts after that, so its start time is taken only now.
                now = timezone.now()
                AgentExecution.objects.filter(pk=execution_id).update(
                    started_at=now, heartbeat_at=now
                )
    except IntegrityError:
        return None
    if not promoted:
        raise AgentExecution.DoesNotExist(f"Execution {execution_id} left the queue.")
    execution.refresh_from_db()
    return execution


#: What finishing writes (the input and the rest of the row stay as they are).
_FINISH_FIELDS = (
    "status",
    "output",
    "usage",
    "messages",
    "error_code",
    "error_message",
    "started_at",
    "finished_at",
    "duration_ms",
    "approval_expires_at",
)


def execution_finish(
    execution_id: Any,
    *,
    status: str,
    output: Any = None,
    usage: dict[str, int] | None = None,
    messages: list[Any] | None = None,
    error_code: str = "",
    error_message: str = "",
    events: Iterable[EventSpec] = (),
    approval_expires_at: dt.datetime | None = None,
    fence: int | None = None,
) -> tuple[AgentExecution, list[Event]]:
    """Ends an execution and appends its closing events, atomically.

    Only an active execution is finished: a second finisher (a sweep racing the
    turn itself) changes nothing and gets the stored state back. With a
    `fence`, a turn another process has taken over since is not finished
    either (LeaseLost). A turn paused for approval keeps
    `approval_expires_at`, when its pending calls expire.
    """
    from automation.webhooks import targets_reads

    with transaction.atomic():
        # One read brings what settling and the webhooks would ask for next.
        execution = (
            AgentExecution.objects.select_for_update()
            .annotate(**usage_accounting.settle_reads(), **targets_reads())
            .get(pk=execution_id)
        )
        if execution.status not in AgentExecution.ACTIVE_STATUSES:
            return execution, []
        if fence is not None and execution.attempts != fence:
            raise LeaseLost(execution_id)
        now = timezone.now()
        execution.status = status
        execution.output = clean_json(output)
        execution.usage = usage or execution.usage or {}
        if messages is not None:
            execution.messages = clean_json(messages)
        execution.error_code = error_code
        execution.error_message = clean_text(error_message)
        execution.started_at = execution.started_at or now
        # A turn paused for approval is not over: it has no end time yet.
        execution.finished_at = None if status == Status.AWAITING_APPROVAL else now
        execution.approval_expires_at = (
            approval_expires_at if status == Status.AWAITING_APPROVAL else None
        )
        execution.duration_ms = max(
            0, int((now - execution.started_at).total_seconds() * 1000)
        )
        # Its cost and own figures, and its budget reservations given back.
        settled = usage_accounting.settle(execution)
        execution.save(update_fields={*_FINISH_FIELDS, *settled})
        stored = events_append(
            execution.session_id, list(events), execution_id=execution.pk
        )
        if status in AgentExecution.FINAL_STATUSES:
            transaction.on_commit(functools.partial(_tell_webhooks, execution))
    return execution, stored


def _tell_webhooks(execution: AgentExecution) -> None:
    from automation.webhooks import execution_finished

    execution_finished(execution)


class NotAwaitingApproval(Exception):
    """The execution is not (or no longer) waiting for a decision."""


class ApprovalExpired(Exception):
    """The pending calls' deadline passed before the decision came."""


@dataclass(frozen=True)
class Decision:
    """One decision on one pending tool call, as it is kept
    (`ApprovalDecision`) and given to the resumed run."""

    tool_call_id: str
    tool_name: str
    args: Any
    decision: str
    message: str = ""
    edited_args: dict[str, Any] | None = None
    #: The paused execution whose call it is (a delegated child's, or "" for
    #: the execution the decision resumes).
    execution_id: str = ""

    @property
    def approved(self) -> bool:
        return self.decision == ApprovalDecision.Decision.APPROVED

    def as_action(self) -> dict[str, Any]:
        """The decision as the resuming `state` event lists it."""
        action: dict[str, Any] = {"approved": self.approved, "decision": self.decision}
        if self.message:
            action["message"] = self.message
        if self.edited_args is not None:
            action["args"] = self.edited_args
        return action


@dataclass
class Resumed:
    """A paused turn a decision claimed: its root execution and the paused
    executions below it (delegated children), all running again, and the
    `state` events that keep the decisions, one per execution whose calls
    they answer."""

    execution: AgentExecution
    members: list[AgentExecution]
    events: list[Event]


def execution_resume(
    execution_id: Any,
    *,
    decided_by: Any,
    decisions: Sequence[Decision],
    via: str,
    now: dt.datetime | None = None,
    paused_until: dt.datetime | None = None,
) -> Resumed:
    """Keeps the decisions on a paused turn's calls and sets it running again.

    `execution_id` is the turn's root. One conditional UPDATE claims it, so of
    two deciders (a person and the expiry sweep, or two processes' sweeps)
    exactly one resumes it; the executions of its tree that wait with it (a
    delegated child whose tool needs approval, and every level in between)
    run again in the same transaction. A person (`decided_by`, the session's
    user) decides only before the deadline; the sweep (`decided_by=None`)
    only after it. `paused_until` is the deadline read with the pending calls
    the decisions answer: a later pause of the same turn (other calls) is not
    claimed by them.

    Raises NotAwaitingApproval, ApprovalExpired, or SessionBusy when another
    turn of the session runs meanwhile.
    """
    now = now or timezone.now()
    paused = AgentExecution.objects.filter(
        pk=execution_id, status=Status.AWAITING_APPROVAL
    )
    if decided_by is None:
        claimable = paused.filter(approval_expires_at__lte=now)
    else:
        claimable = paused.filter(user_id=decided_by).filter(
            Q(approval_expires_at__isnull=True) | Q(approval_expires_at__gt=now)
        )
    if paused_until is not None:
        claimable = claimable.filter(approval_expires_at=paused_until)
    try:
        with transaction.atomic():
            claimed = claimable.update(
                status=Status.RUNNING, heartbeat_at=now, approval_expires_at=None
            )
            if not claimed:
                deadline = (
                    paused.filter(user_id=decided_by)
                    .values_list("approval_expires_at", flat=True)
                    .first()
                    if decided_by is not None
                    else None
                )
                if deadline is not None and deadline <= now:
                    raise ApprovalExpired
                raise NotAwaitingApproval
            execution = AgentExecution.objects.get(pk=execution_id)
            members = _resume_members(execution, now)
            ApprovalDecision.objects.bulk_create(
                ApprovalDecision(
                    execution_id=d.execution_id or execution.pk,
                    tool_call_id=d.tool_call_id,
                    tool_name=d.tool_name,
                    args=clean_json(d.args),
                    decision=d.decision,
                    edited_args=clean_json(d.edited_args),
                    message=clean_text(d.message),
                    decided_by_id=decided_by,
                    decided_at=now,
                    via=via,
                )
                for d in decisions
            )
            events = []
            for holder in [*members, execution]:
                own = [
                    d
                    for d in decisions
                    if (d.execution_id or str(execution.pk)) == str(holder.pk)
                ]
                if own or (holder is execution and not members):
                    events.append(
                        event_append(
                            execution.session_id,
                            _decision_event(own, decided_by),
                            execution_id=holder.pk,
                        )
                    )
    except IntegrityError:
        raise SessionBusy from None
    return Resumed(execution, members, events)


def _resume_members(root: AgentExecution, now: dt.datetime) -> list[AgentExecution]:
    """The executions below a claimed root that paused with it, running
    again (deepest first, as they paused)."""
    waiting = AgentExecution.objects.filter(
        root_id=root.pk, status=Status.AWAITING_APPROVAL
    ).exclude(pk=root.pk)
    ids = list(waiting.order_by("-depth", "created_at").values_list("pk", flat=True))
    if not ids:
        return []
    AgentExecution.objects.filter(pk__in=ids).update(
        status=Status.RUNNING, heartbeat_at=now, approval_expires_at=None
    )
    found = AgentExecution.objects.in_bulk(ids)
    return [found[pk] for pk in ids]


def _decision_event(decisions: Sequence[Decision], decided_by: Any) -> EventSpec:
    approved = sum(d.approved for d in decisions)
    summary = (
        f"Approved {approved}, denied {len(decisions) - approved} tool call(s)."
        if decided_by is not None
        else f"{len(decisions)} tool call(s) expired unanswered and were denied."
    )
    return EventSpec(
        author=Event.Author.USER if decided_by is not None else Event.Author.SYSTEM,
        kind=Event.Kind.STATE,
        content=summary,
        actions={"approvals": {d.tool_call_id: d.as_action() for d in decisions}},
    )


def executions_abandon_approvals(
    session_id: Any,
) -> list[tuple[AgentExecution, list[Event]]]:
    """Ends turns of the session still waiting for approval: a new message moves
    the conversation on, and their pending calls are closed out as unanswered.

    A paused tree ends at every level, its delegated children before their
    parents; only the root's error event completes the turn."""
    abandoned = []
    pending = (
        AgentExecution.objects.filter(
            session_id=session_id, status=Status.AWAITING_APPROVAL
        )
        .order_by("-depth", "created_at")
        .values_list("pk", flat=True)
    )
    for execution_id in pending:
        with transaction.atomic():
            execution = AgentExecution.objects.select_for_update().get(pk=execution_id)
            if execution.status != Status.AWAITING_APPROVAL:
                continue
            message = (
                "A new message was sent before the pending tool calls were approved."
            )
            execution.status = Status.CANCELLED
            execution.approval_expires_at = None
            execution.error_code = "approval_abandoned"
            execution.error_message = message
            execution.finished_at = timezone.now()
            execution.save()
            closing = error_event("approval_abandoned", message)
            closing.turn_complete = execution.parent_id is None
            events = events_append(session_id, [closing], execution_id=execution.pk)
        abandoned.append((execution, events))
    return abandoned


def execution_set_trace_id(execution_id: Any, trace_id: str) -> None:
    """Stores the trace of an execution's first run (later runs keep it)."""
    AgentExecution.objects.filter(pk=execution_id, trace_id="").update(
        trace_id=trace_id
    )


def execution_hand_to_worker(execution_id: Any, fence: int) -> bool:
    """Marks a turn this process stored (or resumed) and now queues for a
    worker as held by no process (`waiting_for_worker`), while it is still
    active at takeover count `fence`."""
    return bool(
        AgentExecution.objects.filter(
            pk=execution_id,
            attempts=fence,
            status__in=AgentExecution.ACTIVE_STATUSES,
        ).update(waiting_for_worker=True)
    )


def execution_claim_queued(execution_id: Any, attempts: int = 0) -> bool:
    """A worker's claim on a turn it found in the task queue: extends its lease
    at once, unless it ended or another process took it over since it was
    queued (`attempts` then moved on). From then on the worker holds it."""
    return bool(
        AgentExecution.objects.filter(
            pk=execution_id,
            attempts=attempts,
            status__in=AgentExecution.ACTIVE_STATUSES,
        ).update(heartbeat_at=timezone.now(), waiting_for_worker=False)
    )


def turn_end_unheld(
    root_id: Any, *, status: str, error_code: str, error_message: str
) -> list[tuple[AgentExecution, list[Event]]]:
    """Ends a turn that waits for a worker's claim (`waiting_for_worker`, so
    held by no process) as `status`: its active executions, delegated ones
    first, each with its error event, in one transaction. Returns them, or []
    when a process holds the turn (that process is told instead) or it ended.

    The first statement is a write on the root's row: a worker's claim of
    the same row either commits first (the turn is then the worker's and
    nothing is ended here) or waits and finds the turn ended.
    """
    with transaction.atomic():
        unheld = AgentExecution.objects.filter(
            pk=root_id,
            waiting_for_worker=True,
            status__in=AgentExecution.ACTIVE_STATUSES,
        ).update(waiting_for_worker=False)
        if not unheld:
            return []
        members = AgentExecution.objects.filter(
            root_id=root_id, status__in=AgentExecution.ACTIVE_STATUSES
        ).order_by("-depth")
        ended = []
        for execution_id, parent_id in members.values_list("pk", "parent_id"):
            closing = error_event(error_code, error_message)
            closing.turn_complete = parent_id is None
            ended.append(
                execution_finish(
                    execution_id,
                    status=status,
                    error_code=error_code,
                    error_message=error_message,
                    events=[closing],
                )
            )
    return ended


def execution_heartbeat(held: Mapping[Any, int]) -> None:
    """Extends the lease of the executions this process runs ({id: the
    takeover count it holds}); one taken over since is left to its new holder."""
    by_fence: dict[int, list[Any]] = {}
    for execution_id, fence in held.items():
        by_fence.setdefault(fence, []).append(execution_id)
    if not by_fence:
        return
    mine = Q()
    for fence, ids in by_fence.items():
        mine |= Q(attempts=fence, pk__in=ids)
    AgentExecution.objects.filter(
        mine, status__in=AgentExecution.ACTIVE_STATUSES
    ).update(heartbeat_at=timezone.now())


def executions_sweep_stale(
    *, lease: dt.timedelta, session_id: Any = None, exclude: Iterable[Any] = ()
) -> list[tuple[AgentExecution, list[Event]]]:
    """Marks active executions whose heartbeat is older than `lease` as interrupted.

    Their process died (killed, crashed, restarted): the turn cannot finish, so
    it ends with an `interrupted` error event and the session is free again.
    """
    stale = AgentExecution.objects.filter(
        status__in=AgentExecution.ACTIVE_STATUSES,
        heartbeat_at__lt=timezone.now() - lease,
    ).exclude(pk__in=list(exclude))
    if session_id is not None:
        stale = stale.filter(session_id=session_id)
    finished = []
    for execution_id in stale.values_list("pk", flat=True):
        result = execution_finish(
            execution_id,
            status=Status.INTERRUPTED,
            error_code="interrupted",
            error_message=INTERRUPTED_MESSAGE,
            events=[error_event("interrupted", INTERRUPTED_MESSAGE)],
        )
        if result[1]:
            finished.append(result)
    return finished


def error_event(code: str, message: str) -> EventSpec:
    return EventSpec(
        author=Event.Author.SYSTEM,
        kind=Event.Kind.ERROR,
        content=message,
        error_code=code,
        error_message=message,
        turn_complete=True,
    )
