"""Fixtures for system tests: real daphne processes on PostgreSQL and Redis.

Each test module builds a `Stack` (a fresh PostgreSQL database copied from
the migrated template, a private redis-server, a fake model server and one or
more daphne processes, all from `testing.live`) and tears every process down with it. The tests are skipped,
saying why, when PostgreSQL on 127.0.0.1:5432 or a redis-server binary is not
available; CI has both.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from testing.live import (
    ApiClient,
    FakeModelServer,
    LiveServer,
    PostgresDatabase,
    RedisServer,
    postgres_available,
    server_env,
)


def _missing_services() -> str:
    if not postgres_available():
        return "PostgreSQL is not reachable on 127.0.0.1:5432 (user postgres)"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed"
    return ""


class Stack:
    """A database, a Redis, a fake model and daphne processes sharing them."""

    def __init__(self, base: Path, **env_overrides: Any) -> None:
        self.base = base
        self.logs = base / "logs"
        # A copy of the migrated template: no server start migrates.
        self.db = PostgresDatabase.fresh("agentry_sys", migrated=True)
        self.redis = RedisServer(self.logs).start()
        self.model = FakeModelServer(self.logs).start()
        self.env = server_env(
            database_url=self.db.url,
            redis_url=self.redis.url(0),
            model_url=self.model.base_url,
            repo_root=base / "workspace",
            **env_overrides,
        )
        self.servers: list[LiveServer] = []

    def server(self, name: str = "daphne", **env_overrides: Any) -> LiveServer:
        """Starts one more daphne process on this stack."""
        env = {**self.env, **{k: str(v) for k, v in env_overrides.items()}}
        server = LiveServer(env, self.logs, name=name, migrate=False)
        self.servers.append(server)
        return server.start()

    def user(self, server: LiveServer) -> ApiClient:
        api = ApiClient(server.url)
        api.register_and_login()
        return api

    def close(self) -> None:
        for server in self.servers:
            server.stop(timeout=10)
        self.model.stop()
        self.redis.stop()
        self.db.drop()

    def task_results(self, task_path: str) -> list[tuple[str, list[str]]]:
        """(status, worker ids) of every ended task of `task_path` on this
        stack's task backend, in the Django Tasks API's terms."""
        if self.env.get("AGENTRY_TASK_BACKEND") != "rq":
            return self.db.execute(
                "SELECT status, worker_ids FROM django_tasks_database_dbtaskresult "
                "WHERE task_path = %s",
                task_path,
            )
        import redis
        from django_tasks_rq.backend import RQ_STATUS_TO_RESULT_STATUS
        from rq import Queue
        from rq.job import Job

        connection = redis.Redis.from_url(self.env["REDIS_URL"])
        try:
            queue = Queue("default", connection=connection)
            ids = [
                *queue.finished_job_registry.get_job_ids(),
                *queue.failed_job_registry.get_job_ids(),
            ]
            jobs = [
                job
                for job in Job.fetch_many(ids, connection=connection)
                if job is not None and job.func_name == task_path
            ]
            return [
                (
                    str(RQ_STATUS_TO_RESULT_STATUS[job.get_status()]),
                    [result.worker_name for result in job.results()],
                )
                for job in jobs
            ]
        finally:
            connection.close()

    def logs_tail(self) -> str:
        return "\n".join(
            f"--- {server.name}\n{server.log_tail(30)}" for server in self.servers
        )


@pytest.fixture(scope="module", params=["database", "rq"])
def task_backend(request: pytest.FixtureRequest) -> str:
    """`AGENTRY_TASK_BACKEND` for a task-mode stack: its tests run on both
    (every stack has its own redis-server, so neither is ever skipped for
    want of Redis where the stack itself can run)."""
    return str(request.param)


@pytest.fixture(scope="module")
def stack_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Stack]]:
    reason = _missing_services()
    if reason:
        pytest.skip(reason)
    stacks: list[Stack] = []

    def make(**env_overrides: Any) -> Stack:
        stack = Stack(tmp_path_factory.mktemp("stack"), **env_overrides)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()


def open_ws(server: LiveServer, api: ApiClient, session_id: str) -> ClientConnection:
    return connect(
        api.ws_url(server.ws_url, session_id), open_timeout=10, close_timeout=2
    )


def recv_frame(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def frames_until(
    ws: ClientConnection,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 20.0,
) -> list[dict[str, Any]]:
    """Frames read until `done(frame)` is true (that frame included)."""
    deadline = time.monotonic() + timeout
    frames: list[dict[str, Any]] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no final frame within {timeout}s; got {frames[-5:]}")
        frame = recv_frame(ws, left)
        frames.append(frame)
        if done(frame):
            return frames


def is_final(frame: dict[str, Any], execution_id: str | None = None) -> bool:
    if frame.get("type") != "execution":
        return False
    execution = frame["execution"]
    return execution["status"] not in ("queued", "running") and (
        execution_id is None or execution["id"] == execution_id
    )


def wait_for(
    probe: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = ""
) -> Any:
    """Polls `probe` until it returns something truthy; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def assert_gapless(events: list[dict[str, Any]]) -> None:
    numbers = [e["sequence_number"] for e in events]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
