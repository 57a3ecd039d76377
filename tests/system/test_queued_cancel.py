"""A cancel of a task-mode turn that no worker has claimed yet.

One stack in `task` mode per task backend (database, RQ): a daphne web
process that stores and queues turns, and no worker while the turn waits in
the task queue. The cancel (websocket or REST) ends the turn at once, with the
frames a cancelled run sends; a worker started afterwards claims the queued
task, finds the turn ended and neither asks the model nor stores anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from testing.fake_openai import FAKE_MODEL
from testing.workers import LiveWorker
from tests.system.conftest import (
    assert_gapless,
    frames_until,
    is_final,
    open_ws,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def stack(stack_factory, task_backend):
    stack = stack_factory(
        AGENTRY_TURN_EXECUTION="task",
        AGENTRY_TASK_BACKEND=task_backend,
        # No sweep of the web process ends the waiting turn first.
        AGENTRY_TURN_LEASE=120,
    )
    stack.web = stack.server("web")
    return stack


@pytest.fixture
def worker(stack) -> Iterator[LiveWorker]:
    worker = LiveWorker(stack.env, stack.logs)
    yield worker
    worker.stop(timeout=10)


def _by_websocket(stack, api, ws, session_id: str) -> None:
    ws.send(json.dumps({"type": "cancel"}))


def _by_rest(stack, api, ws, session_id: str) -> None:
    answer = api.post(f"/api/sessions/{session_id}/cancel/")
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"cancelled": True}


def _ended_run_turns(stack) -> list[tuple[str, list[str]]]:
    return [
        (status, workers)
        for status, workers in stack.task_results("automation.tasks.run_turn")
        if status in ("SUCCESSFUL", "FAILED")
    ]


@pytest.mark.parametrize("cancel", [_by_websocket, _by_rest], ids=["ws", "rest"])
def test_a_cancel_of_a_turn_no_worker_claimed_ends_it_and_the_worker_runs_nothing(
    stack, worker, cancel: Callable[..., None]
):
    api = stack.user(stack.web)
    agent = api.create_agent(model=FAKE_MODEL)
    session = api.create_session(agent["id"])
    asked_before = stack.model.stats()["requests"]
    ran_before = len(_ended_run_turns(stack))
    with open_ws(stack.web, api, session["id"]) as ws:
        ws.send(json.dumps({"type": "message", "content": "[[tokens=5]] hi"}))
        started = frames_until(ws, lambda f: f["type"] == "execution")
        assert started[-1]["execution"]["status"] == "running"
        execution_id = started[-1]["execution"]["id"]
        cancel(stack, api, ws, session["id"])
        frames = frames_until(ws, lambda f: is_final(f, execution_id), timeout=10)
    closing = [f["event"] for f in frames if f["type"] == "event"]
    assert [(e["kind"], e["error_code"], e["turn_complete"]) for e in closing] == [
        ("error", "cancelled", True)
    ]
    assert closing[0]["content"] == "The turn was cancelled."
    assert frames[-1]["execution"]["status"] == "cancelled"
    assert frames[-1]["execution"]["error_code"] == "cancelled"
    stored = api.all_events(session["id"])

    worker.start()

    def ran() -> list[Any]:
        results = _ended_run_turns(stack)
        return results[ran_before:] if len(results) > ran_before else []

    finished = wait_for(ran, timeout=60, what="the worker to take the queued task")
    assert [status for status, _ in finished] == ["SUCCESSFUL"]
    assert stack.model.stats()["requests"] == asked_before, "the model was asked"
    execution = api.get(f"/api/executions/{execution_id}/").json()
    assert execution["status"] == "cancelled"
    assert execution["error_code"] == "cancelled"
    after = api.all_events(session["id"])
    assert after == stored, "the worker stored nothing"
    assert_gapless(after)
    assert [e["kind"] for e in after] == ["message", "error"]
    assert after[-1]["error_code"] == "cancelled"
