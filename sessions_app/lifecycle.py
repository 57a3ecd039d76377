"""Which turns this process runs, and what happens when a process goes away.

Public surface:
    LiveTurn, live_turns, track(execution)   turns running here (with their cancel tokens)
    session_freed(session_id)                the event a queued turn waits on (per loop)
    free_session(session_id)                 wakes it: a turn of the session ended here
    ensure_supervisor()                      starts this process's housekeeping (once per loop):
                                             heartbeats, sweeps, cancels from other processes,
                                             due schedules and webhook deliveries
    lease()                                  how long a silent turn is taken to be alive
    is_stale(turn)                           whether the sweep would end that unfinished turn
    sweep_stale_executions[_sync]()          ends turns whose process died and that no
                                             process may take over any more as `interrupted`
    take_over_stale()                        claims the other dead processes' turns and
                                             continues them here (`sessions_app.durable`)
    serves_turns                             set by `manage.py worker`: in task mode only
                                             workers take turns over
    interrupt_live_turns()                   ends this process's turns as `interrupted`
    expire_approvals(now=None)               resumes paused turns past their approval
                                             deadline, their calls denied as expired

Every turn of this process is tracked from the moment its row exists. One
heartbeat per process extends the lease of all of them in a single UPDATE;
every process also sweeps turns whose heartbeat is older than
`AGENTRY_TURN_LEASE` (their process was killed or crashed): it takes each one
over and continues it from its last completed model step, up to
`AGENTRY_TURN_MAX_ATTEMPTS` times, then ends it `interrupted`. Heartbeats and
sweeps run on a thread of their own, so a busy process never misses its own
heartbeat behind its turns' queries. Every `AGENTRY_APPROVAL_SWEEP_SECONDS`
each process also claims turns paused for approval past their deadline (one
process wins each claim) and resumes them with the calls denied. Under daphne,
a clean shutdown ends the running turns as `interrupted` before the reactor
stops.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sys
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone
from pydantic_ai import CancellationToken

from sessions_app import broadcast, services
from sessions_app.db import run_db, run_db_on
from sessions_app.frames import event_frame, execution_frame
from sessions_app.models import AgentExecution

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
#: How often each process looks for turns whose process died.
SWEEP_SECONDS = 5.0


@dataclass
class LiveTurn:
    execution_id: str
    session_id: str
    token: CancellationToken = field(default_factory=CancellationToken)
    #: The outcome a cancel of this turn is recorded as.
    reason: str = "cancelled"
    #: The execution's takeover count when this process took the turn: its
    #: writes fence on it (`services.execution_hold`).
    attempts: int = 0


#: Turns of this process, by execution id.
live_turns: dict[str, LiveTurn] = {}

# Per event loop, the events that wake a session's queued turns when one of its
# turns ends on that loop. Keyed by the loop itself, weakly: a closed loop's
# events go with it, and a new loop (which may get a dead one's id) starts empty.
_session_freed: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[str, asyncio.Event]
] = weakref.WeakKeyDictionary()


def session_freed(session_id: str) -> asyncio.Event:
    """The event set when a turn of the session ends on the running loop."""
    events = _session_freed.setdefault(asyncio.get_running_loop(), {})
    event = events.get(session_id)
    if event is None:
        event = events[session_id] = asyncio.Event()
    return event


def free_session(session_id: str) -> None:
    """Wakes the session's turns queued on the running loop (a turn of it ended)."""
    event = _session_freed.get(asyncio.get_running_loop(), {}).pop(session_id, None)
    if event is not None:
        event.set()


def track(execution: AgentExecution) -> LiveTurn:
    """Registers a turn of this process as soon as its row exists, so the
    process heart-beats it and never sweeps it."""
    live = LiveTurn(
        str(execution.pk), str(execution.session_id), attempts=execution.attempts
    )
    live_turns[live.execution_id] = live
    return live


def lease() -> dt.timedelta:
    """A running execution whose heartbeat is older than this belongs to a dead process."""
    return dt.timedelta(seconds=settings.AGENTRY_TURN_LEASE)


def is_stale(turn: services.UnfinishedTurn) -> bool:
    """What the sweep ends, for one turn already read: active, not run by this
    process, and not heart-beaten within the lease."""
    return (
        turn.active
        and str(turn.pk) not in live_turns
        and turn.heartbeat_at is not None
        and turn.heartbeat_at < timezone.now() - lease()
    )


#: Whether this process runs turns it takes over: every process in inline
#: mode; with `AGENTRY_TURN_EXECUTION=task` only workers (which set it).
serves_turns = False


def _takes_over() -> bool:
    return serves_turns or settings.AGENTRY_TURN_EXECUTION == "inline"


def sweep_stale_executions_sync(session_id: Any = None) -> int:
    """Ends, as `interrupted`, executions whose process stopped heart-beating
    and that may not be taken over any more; returns how many."""
    return len(_sweep(session_id, take_over=False)[1])


def _sweep(
    session_id: Any, *, take_over: bool
) -> tuple[list[AgentExecution], list[Any]]:
    """(turns claimed for takeover, turns ended) among the stale ones."""
    from sessions_app import durable

    finished, claimed = durable.claim_stale(
        lease=lease(),
        session_id=session_id,
        exclude=list(live_turns),
        take_over=take_over,
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
    return claimed, finished


async def sweep_stale_executions() -> int:
    return await run_db(sweep_stale_executions_sync)


async def take_over_stale() -> int:
    """Continues here the turns of dead processes this process claims (ending
    those out of takeovers); returns how many it took over."""
    from sessions_app import runner

    claimed, _ = await run_db_on(_housekeeping, _sweep, None, take_over=_takes_over())
    for execution in claimed:
        logger.info(
            "taking over turn %s (takeover %d)", execution.pk, execution.attempts
        )
        try:
            submission = await runner.take_over(execution)
        except Exception:
            # Its lease lapses again: the next sweep retries, up to the maximum.
            logger.warning("taking over %s failed", execution.pk, exc_info=True)
            continue
        if submission.task is not None:
            _background.add(submission.task)
            submission.task.add_done_callback(_background.discard)
    return len(claimed)


async def expire_approvals(now: dt.datetime | None = None) -> int:
    """Resumes, in this process, the paused turns whose approval deadline has
    passed (as of `now`), their pending calls denied as `approval_expired`;
    returns how many."""
    from sessions_app import approvals, runner

    claimed = await run_db_on(_housekeeping, approvals.claim_expired, now)
    for resumed, results in claimed:
        submission = await runner.resume_claimed(resumed, results)
        if submission.task is not None:
            _background.add(submission.task)
            submission.task.add_done_callback(_background.discard)
    return len(claimed)


# Loops (not their ids, which a new loop may reuse) already supervised.
_supervised_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_background: set[asyncio.Task[Any]] = set()
_housekeeping = ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="agentry-housekeeping"
)


def ensure_supervisor() -> None:
    """Starts this process's housekeeping once per event loop: heartbeats, the
    periodic sweep and (under daphne) the shutdown hook."""
    loop = asyncio.get_running_loop()
    if loop in _supervised_loops:
        return
    _supervised_loops.add(loop)
    from automation import schedules, webhooks

    if _takes_over():
        # Webhook deliveries go where turns run (their own thread, once).
        webhooks.start_delivering()

    for housekeeping in (
        _beat_forever(),
        _sweep_forever(),
        _expire_forever(),
        _listen_for_cancels(),
        # Due schedules, unless workers fire them (task mode, or this is one).
        *([schedules.run_forever()] if schedules.ticks_in_web_process() else []),
    ):
        task = loop.create_task(housekeeping)
        _background.add(task)
        task.add_done_callback(_background.discard)
    _install_shutdown_hook()


async def _beat_forever() -> None:
    """Extends the lease of every turn of this process, in one query."""
    while True:
        # Several beats per lease: a short lease (tests) must not lapse under a
        # live turn, or another process would take it over.
        await asyncio.sleep(min(HEARTBEAT_SECONDS, settings.AGENTRY_TURN_LEASE / 4))
        if not live_turns:
            continue
        try:
            await run_db_on(
                _housekeeping,
                services.execution_heartbeat,
                {key: turn.attempts for key, turn in list(live_turns.items())},
            )
        except Exception:
            logger.warning(
                "heartbeat of %d turn(s) failed", len(live_turns), exc_info=True
            )


async def _sweep_forever() -> None:
    while True:
        try:
            await take_over_stale()
        except Exception:
            logger.warning("sweeping stale executions failed", exc_info=True)
        await asyncio.sleep(SWEEP_SECONDS)


async def _expire_forever() -> None:
    while True:
        await asyncio.sleep(settings.AGENTRY_APPROVAL_SWEEP_SECONDS)
        try:
            await expire_approvals()
        except Exception:
            logger.warning("expiring pending approvals failed", exc_info=True)


async def _listen_for_cancels() -> None:
    """Cancels this process's turns asked for by any process (channel layer)."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    while True:
        try:
            channel = await layer.new_channel()
            await layer.group_add(broadcast.CONTROL_GROUP, channel)
            while True:
                message = await layer.receive(channel)
                live = live_turns.get(str(message.get("execution")))
                if message.get("type") == "turn.cancel" and live is not None:
                    live.reason = message.get("reason") or "cancelled"
                    live.token.cancel()
        except asyncio.CancelledError:
            raise
        except Exception:
            # The layer is unreachable (Redis down): listen again once it is back.
            logger.warning("listening for cancels failed; retrying", exc_info=True)
            await asyncio.sleep(1.0)


async def interrupt_live_turns(timeout: float = 10.0) -> int:
    """Ends every turn running in this process as `interrupted` (shutdown)."""
    turns = list(live_turns.values())
    for turn in turns:
        turn.reason = "interrupted"
        turn.token.cancel()
    deadline = asyncio.get_running_loop().time() + timeout
    while live_turns and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    return len(turns)


def _install_shutdown_hook() -> None:
    # Only when daphne's Twisted reactor runs this process: importing the
    # reactor anywhere else would install one.
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None or getattr(reactor, "_agentry_hooked", False):
        return
    from twisted.internet.defer import Deferred

    def before_shutdown() -> Deferred[int]:
        return Deferred.fromFuture(asyncio.ensure_future(interrupt_live_turns()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    reactor._agentry_hooked = True  # type: ignore[attr-defined]  # a mark on the process's reactor
