"""What a turn run leaves behind besides its rows: a span, metrics, a log line.

Public surface:
    observed_turn(live, execution, run)
                            awaits the runner's `run` coroutine inside the
                            `agentry.turn` span, with the log context set, counts it
                            and logs `turn finished`; returns the run's execution
    queued_turn()           context manager around a turn waiting in its session's queue
    note_first_token()      the running turn streamed text (first call counts)
    task_context(traceparent)
                            the contextvars a turn task starts in (None: the current
                            ones), so a message frame's `traceparent` continues
                            the caller's trace

The span starts inside the turn's own task: pydantic-ai's spans nest under it
by context, and a child execution started from a delegating tool's span nests
under that span the same way.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from opentelemetry.trace import Status, StatusCode

from observability import metrics, tracing
from observability.logs import EXECUTION_ID, SESSION_ID, TRACE_ID, USER_ID

T = TypeVar("T")

logger = logging.getLogger("agentry.turns")

_ERROR_STATUSES = frozenset({"failed", "interrupted"})


@dataclass
class _Running:
    started: float
    first_token: bool = False


_running: contextvars.ContextVar[_Running | None] = contextvars.ContextVar(
    "agentry_running_turn", default=None
)


def task_context(traceparent: str) -> contextvars.Context | None:
    return tracing.context_from_traceparent(traceparent) if traceparent else None


@contextmanager
def queued_turn() -> Iterator[None]:
    with metrics.QUEUED_TURNS.track_inprogress():
        yield


def note_first_token() -> None:
    running = _running.get()
    if running is not None and not running.first_token:
        running.first_token = True
        metrics.FIRST_TOKEN_SECONDS.observe(time.monotonic() - running.started)


async def observed_turn(live: Any, execution: Any, run: Coroutine[Any, Any, T]) -> T:

    # Reset on the way out: a child execution (delegation) runs inside its
    # parent's task, whose lines must go on naming the parent.
    reset = [
        (SESSION_ID, SESSION_ID.set(live.session_id)),
        (EXECUTION_ID, EXECUTION_ID.set(live.execution_id)),
        (USER_ID, USER_ID.set(str(execution.user_id))),
        (TRACE_ID, TRACE_ID.set(None)),
    ]
    try:
        return await _observed(live, execution, run)
    finally:
        for var, token in reversed(reset):
            var.reset(token)


async def _observed(live: Any, execution: Any, run: Coroutine[Any, Any, Any]) -> Any:
    from sessions_app.db import run_db
    from sessions_app.services import execution_set_trace_id

    # A resumed turn's row already counts its earlier runs: count this run only.
    before = (
        execution.input_tokens,
        execution.output_tokens,
        getattr(execution, "cost_usd", None),
    )
    started = time.monotonic()
    running = _running.set(_Running(started))
    # What a run that raised (shutdown, its session deleted) is counted as.
    status = "interrupted"
    outcome = None
    with (
        metrics.ACTIVE_TURNS.track_inprogress(),
        tracing.turn_span(
            {
                "agentry.session_id": live.session_id,
                "agentry.execution_id": live.execution_id,
                "agentry.agent_id": str(execution.agent_id),
                "agentry.agent_version": execution.agent_version,
            }
        ) as span,
    ):
        trace_id = tracing.trace_id_of(span)
        try:
            if trace_id:
                TRACE_ID.set(trace_id)
                if not execution.trace_id:
                    await run_db(execution_set_trace_id, live.execution_id, trace_id)
            outcome = await run
            status = outcome.status
            return outcome
        finally:
            seconds = time.monotonic() - started
            span.set_attribute("agentry.status", status)
            if status in _ERROR_STATUSES:
                span.set_status(Status(StatusCode.ERROR, status))
            _count(outcome, status, seconds, before)
            _running.reset(running)


def _count(
    outcome: Any, status: str, seconds: float, before: tuple[int, int, Any]
) -> None:
    input_tokens = output_tokens = 0
    cost: Decimal | None = None
    if outcome is not None:
        input_tokens = max(outcome.input_tokens - before[0], 0)
        output_tokens = max(outcome.output_tokens - before[1], 0)
        cost_now = getattr(outcome, "cost_usd", None)
        if cost_now is not None:
            cost = max(Decimal(cost_now) - Decimal(before[2] or 0), Decimal(0))
    metrics.TURNS.labels(status=status).inc()
    metrics.TURN_SECONDS.observe(seconds)
    if input_tokens:
        metrics.TOKENS.labels(kind="input").inc(input_tokens)
    if output_tokens:
        metrics.TOKENS.labels(kind="output").inc(output_tokens)
    if cost:
        metrics.COST_USD.inc(float(cost))
    logger.info(
        "turn finished",
        extra={
            "status": status,
            "duration_ms": round(seconds * 1000),
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "tokens": input_tokens + output_tokens,
            "cost_usd": None if cost is None else str(cost),
        },
    )
