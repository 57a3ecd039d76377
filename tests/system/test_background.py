"""Background runs, schedules and webhooks on real processes.

One stack in `task` mode per task backend (database, RQ): a daphne web
process that only accepts, streams and stores, and two `manage.py worker`
processes (each also a scheduler) that run every turn, fire schedules and
deliver webhooks, all on PostgreSQL and Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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

# Starting a stack and two workers on a busy machine takes a while.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def stack(stack_factory, task_backend):
    stack = stack_factory(
        AGENTRY_TURN_EXECUTION="task",
        AGENTRY_TASK_BACKEND=task_backend,
        AGENTRY_WEBHOOK_RETRY_BASE="0.2",
        AGENTRY_ALLOW_PRIVATE_URLS="1",
    )
    web = stack.server("web")
    workers = [
        LiveWorker(stack.env, stack.logs, name=f"worker-{n}").start(wait=False)
        for n in (1, 2)
    ]
    try:
        for worker in workers:
            worker.wait_ready()
        stack.web = web
        yield stack
    finally:
        for worker in workers:
            worker.stop(timeout=10)


def test_a_turn_in_task_mode_streams_to_a_websocket_while_a_worker_runs_it(stack):
    api = stack.user(stack.web)
    agent = api.create_agent(model=FAKE_MODEL)
    session = api.create_session(agent["id"])
    with open_ws(stack.web, api, session["id"]) as ws:
        ws.send(json.dumps({"type": "message", "content": "[[tokens=12 delay=5]] hi"}))
        frames = frames_until(ws, is_final)
    partials = [f for f in frames if f["type"] == "event" and f["event"].get("partial")]
    assert partials, "the worker's streamed text reached the web process's socket"
    assert frames[-1]["execution"]["status"] == "succeeded"
    assert_gapless(api.all_events(session["id"]))
    ran = stack.task_results("automation.tasks.run_turn")
    assert ran and all(status == "SUCCESSFUL" and ids for status, ids in ran)


class Receiver:
    """A webhook receiver on 127.0.0.1 that fails `failures` times, then answers 204."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.bodies: list[tuple[bytes, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append((body, dict(self.headers)))
                failing = len(receiver.bodies) <= receiver.failures
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(failures=2)
    yield receiver
    receiver.close()


def test_a_background_run_answers_202_at_once_and_its_webhook_is_retried(
    stack, receiver
):
    api = stack.user(stack.web)
    secret = api.post("/api/auth/webhook-secret/rotate/").json()["webhook_secret"]
    agent = api.create_agent(model=FAKE_MODEL)
    accepted = api.post(
        f"/api/agents/{agent['id']}/runs/",
        json={"input": "[[tokens=5]] report", "webhook_url": receiver.url},
    )
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert set(body) == {"execution", "session"}
    assert body["execution"]["status"] == "queued"
    execution_id = body["execution"]["id"]

    def attempts() -> list[dict[str, Any]]:
        page = api.get(f"/api/executions/{execution_id}/deliveries/").json()
        return page["results"] if len(page["results"]) >= 3 else []

    deliveries = wait_for(attempts, timeout=30, what="three delivery attempts")
    assert [(d["attempt"], d["status_code"]) for d in deliveries] == [
        (1, 500),
        (2, 500),
        (3, 204),
    ]
    assert {d["url"] for d in deliveries} == {receiver.url}
    assert deliveries[0]["error"] and not deliveries[2]["error"]
    sent, headers = receiver.bodies[-1]
    expected = "sha256=" + hmac.new(secret.encode(), sent, hashlib.sha256).hexdigest()
    assert headers["X-Agentry-Signature"] == expected
    payload = json.loads(sent)
    assert payload["event"] == "execution.finished"
    assert payload["execution"]["id"] == execution_id
    assert payload["execution"]["status"] == "succeeded"
    assert len(receiver.bodies) == 3


def test_two_workers_fire_each_due_slot_of_each_schedule_once(stack):
    api = stack.user(stack.web)
    agent = api.create_agent(model=FAKE_MODEL)
    schedules = [
        api.post(
            "/api/schedules/",
            # A slot that never comes by itself: the test makes slots due.
            json={"agent": agent["id"], "cron": "0 0 1 1 *", "input": f"tick {n}"},
        ).json()
        for n in range(4)
    ]
    ids = [s["id"] for s in schedules]
    rounds = 4

    def fired() -> dict[str, int]:
        rows = stack.db.execute(
            "SELECT s.id::text, count(e.id) FROM automation_schedule s "
            "JOIN sessions_app_agentexecution e ON e.agent_id = s.agent_id "
            "AND e.input = s.input WHERE s.id::text = ANY(%s) GROUP BY s.id",
            ids,
        )
        return dict(rows)

    for done in range(1, rounds + 1):
        # The clock reaches the next slot of every schedule at once.
        stack.db.execute(
            "UPDATE automation_schedule SET next_run_at = now() WHERE id::text = ANY(%s)",
            ids,
        )
        wait_for(
            lambda done=done: all(fired().get(i, 0) >= done for i in ids),
            timeout=15,
            what=f"round {done} of fires",
        )
    wait_for(
        lambda: all(
            e["status"] == "succeeded"
            for s in ids
            for e in api.get(f"/api/executions/?agent={agent['id']}").json()["results"]
        ),
        timeout=30,
        what="every fired run to finish",
    )
    assert fired() == dict.fromkeys(ids, rounds)
    sessions = stack.db.execute(
        "SELECT count(DISTINCT session_id) FROM sessions_app_agentexecution "
        "WHERE agent_id::text = %s",
        agent["id"],
    )
    assert sessions[0][0] == rounds * len(ids), "each fire opens its own session"
