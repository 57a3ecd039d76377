"""How a run that did not finish is recorded (one classification for every
ending), and the per-loop wake-ups of queued turns."""

from __future__ import annotations

import asyncio

from pydantic_ai import RunCancelled, RunTimedOut

from sessions_app import lifecycle, services
from sessions_app.services import TurnRejected
from sessions_app.turn_events import classify_failure


def test_a_users_cancel_is_cancelled():
    assert classify_failure(RunCancelled("stop")) == (
        "cancelled",
        "cancelled",
        "The turn was cancelled.",
    )


def test_a_cancel_asked_by_a_shutdown_is_interrupted():
    status, code, message = classify_failure(
        RunCancelled("stop"), cancel_reason="interrupted"
    )
    assert (status, code, message) == (
        "interrupted",
        "interrupted",
        services.INTERRUPTED_MESSAGE,
    )


def test_a_task_cancelled_under_the_turn_is_interrupted():
    assert classify_failure(asyncio.CancelledError())[:2] == (
        "interrupted",
        "interrupted",
    )


def test_a_timeout_is_a_failure_whatever_the_cancel_reason():
    status, code, _ = classify_failure(RunTimedOut("slow"), cancel_reason="interrupted")
    assert (status, code) == ("failed", "turn_timeout")


def test_a_turn_refused_as_it_starts_fails_with_the_refusal():
    refusal = TurnRejected("agent_version_unavailable", "Version 3 is gone.", 409)
    assert classify_failure(refusal) == (
        "failed",
        "agent_version_unavailable",
        "Version 3 is gone.",
    )


def test_a_new_loop_never_sees_an_old_loops_wake_ups():
    async def waiting_event() -> asyncio.Event:
        return lifecycle.session_freed("s1")

    first = asyncio.new_event_loop()
    old = first.run_until_complete(waiting_event())
    first.close()
    second = asyncio.new_event_loop()
    try:
        assert second.run_until_complete(waiting_event()) is not old
    finally:
        second.close()


async def test_freeing_a_session_wakes_its_waiters_and_forgets_the_event():
    freed = lifecycle.session_freed("s2")
    lifecycle.free_session("s2")
    assert freed.is_set()
    assert lifecycle.session_freed("s2") is not freed
