"""`manage.py worker`'s loop on each task backend, in this process.

Every test runs once on the database backend and once on the RQ backend
(`django-tasks-rq` on REDIS_URL; skipped, saying so, without it): tasks are
enqueued through the Django Tasks API, a real `automation.worker.Worker`
claims and runs them on the test's event loop, and the outcome is read back
through the backend's own `get_result`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.test import AsyncClient
from django.utils import timezone
from django_tasks import TaskResultStatus, task, task_backends
from django_tasks_db.models import DBTaskResult

from automation import schedules
from automation.worker import Worker
from sessions_app import lifecycle, runner, services
from sessions_app.db import run_db
from sessions_app.models import AgentExecution
from tests.plugins.runtime import access_token, is_status

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

WORKER_ID = "worker-under-test"

#: Tasks of this module that have started and not yet ended.
_arrived: list[int] = []


@task()
async def meet(expected: int) -> int:
    """Ends once `expected` of these run at the same time (a worker that ran
    them one at a time would never get there)."""
    _arrived.append(expected)
    for _ in range(1500):
        if len(_arrived) >= expected:
            return len(_arrived)
        await asyncio.sleep(0.01)
    raise TimeoutError(f"only {len(_arrived)} of {expected} ran at once")


@task()
async def explode() -> None:
    raise ValueError("this task always fails")


@task()
async def hang() -> None:
    await asyncio.Event().wait()


@task()
def add(a: int, b: int) -> int:
    return a + b


def _clear_rq(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter("rq:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["database", "rq"])
def task_backend(request, settings) -> Iterator[str]:
    """The TASKS setting of `AGENTRY_TASK_BACKEND=database|rq`."""
    if request.param == "rq":
        if not settings.REDIS_URL:
            pytest.skip("the RQ backend needs Redis: REDIS_URL is not set")
        _clear_rq(settings.REDIS_URL)
        settings.RQ_QUEUES = {"default": {"URL": settings.REDIS_URL}}
        settings.TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend"}}
    yield request.param
    if request.param == "rq":
        _clear_rq(settings.REDIS_URL)


@pytest.fixture
async def start_worker(
    task_backend, monkeypatch
) -> AsyncIterator[Callable[..., Worker]]:
    """Starts `Worker`s on this loop; stops them (as SIGTERM does) at the end."""
    monkeypatch.setattr(lifecycle, "serves_turns", lifecycle.serves_turns)
    monkeypatch.setattr(schedules, "ticking_in_worker", schedules.ticking_in_worker)
    _arrived.clear()
    started: list[tuple[Worker, asyncio.Task[None]]] = []

    def start(concurrency: int = 10) -> Worker:
        worker = Worker(
            concurrency=concurrency,
            queue_names=["default"],
            interval=0.02,
            worker_id=f"{WORKER_ID}-{len(started)}",
            scheduler=False,
        )
        started.append((worker, asyncio.create_task(worker.run())))
        return worker

    yield start
    for worker, running in started:
        worker.stopping.set()
        await asyncio.wait_for(running, timeout=30)


async def _result(task_id: str, *, until: Callable[[TaskResultStatus], bool]):
    from rq.exceptions import NoSuchJobError

    backend = task_backends["default"]
    for _ in range(800):
        try:
            result = await run_db(backend.get_result, task_id)
        except NoSuchJobError:
            # django-tasks-rq reads a delayed job's status, then its time in
            # the scheduled registry: a job moved onto its queue in between
            # has none. Its next read finds it queued.
            await asyncio.sleep(0.025)
            continue
        if until(result.status):
            return result
        await asyncio.sleep(0.025)
    raise AssertionError(f"task {task_id} stayed {result.status}")


def _ended(status: TaskResultStatus) -> bool:
    return status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)


async def test_one_worker_runs_many_tasks_at_once_and_records_each(start_worker):
    start_worker(concurrency=8)
    queued = [await meet.aenqueue(6) for _ in range(6)]
    queued.append(await add.aenqueue(2, 3))
    results = [await _result(r.id, until=_ended) for r in queued]
    assert [r.status for r in results] == [TaskResultStatus.SUCCESSFUL] * 7
    assert results[-1].return_value == 5
    assert all(r.worker_ids and r.worker_ids[-1].startswith(WORKER_ID) for r in results)


async def test_a_failing_task_is_recorded_failed_with_its_error(start_worker):
    start_worker()
    failed = await _result((await explode.aenqueue()).id, until=_ended)
    assert failed.status == TaskResultStatus.FAILED
    assert "this task always fails" in failed.errors[-1].traceback


async def test_a_delayed_task_runs_once_it_is_due(start_worker, task_backend):
    start_worker()
    due = timezone.now() + dt.timedelta(seconds=1.5)
    queued = await add.using(run_after=due).aenqueue(1, 1)
    done = await _result(queued.id, until=_ended)
    assert done.status == TaskResultStatus.SUCCESSFUL
    # RQ keeps a delayed job's time in whole seconds (rounded down).
    earliest = due.replace(microsecond=0) if task_backend == "rq" else due
    assert done.started_at >= earliest


async def test_two_workers_share_a_queue_and_run_each_task_once(start_worker):
    start_worker(concurrency=3)
    start_worker(concurrency=3)
    queued = [await meet.aenqueue(6) for _ in range(6)]
    results = [await _result(r.id, until=_ended) for r in queued]
    assert [r.status for r in results] == [TaskResultStatus.SUCCESSFUL] * 6
    assert len(_arrived) == 6, "each task ran once"
    assert {r.worker_ids[-1] for r in results} == {f"{WORKER_ID}-0", f"{WORKER_ID}-1"}


async def test_a_stopped_worker_records_the_task_it_cut_off_as_failed(start_worker):
    worker = start_worker()
    queued = await hang.aenqueue()
    await _result(queued.id, until=lambda s: s == TaskResultStatus.RUNNING)
    worker.stopping.set()
    cut = await _result(queued.id, until=_ended)
    assert cut.status == TaskResultStatus.FAILED
    assert "CancelledError" in cut.errors[-1].exception_class_path


async def test_a_background_run_in_task_mode_is_answered_by_the_worker(
    start_worker, settings, fake_llm, user, make_agent
):
    settings.AGENTRY_TURN_EXECUTION = "task"
    start_worker()
    agent = await sync_to_async(make_agent)(user)
    response = await AsyncClient().post(
        f"/api/agents/{agent.pk}/runs/",
        {"input": "[[tokens=4]] background work"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {access_token(user)}"},
    )
    assert response.status_code == 202, response.content
    execution_id = response.json()["execution"]["id"]
    for _ in range(400):
        execution = (
            await AsyncClient().get(
                f"/api/executions/{execution_id}/",
                headers={"Authorization": f"Bearer {access_token(user)}"},
            )
        ).json()
        if execution["status"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.025)
    assert execution["status"] == "succeeded", execution
    assert execution["output"]


def _ended_run_turns_now(task_backend: str) -> list[tuple[str, object]]:
    """(status, return value) of every ended `run_turn` task of the backend."""
    ended = (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
    if task_backend == "database":
        return [
            (row.status, row.return_value)
            for row in DBTaskResult.objects.filter(
                task_path="automation.tasks.run_turn", status__in=ended
            )
        ]
    import redis
    from django_tasks_rq.backend import RQ_STATUS_TO_RESULT_STATUS
    from rq import Queue
    from rq.job import Job

    connection = redis.Redis.from_url(django_settings.REDIS_URL)
    try:
        queue = Queue("default", connection=connection)
        ids = [
            *queue.finished_job_registry.get_job_ids(),
            *queue.failed_job_registry.get_job_ids(),
        ]
        return [
            (RQ_STATUS_TO_RESULT_STATUS[job.get_status()], job.return_value())
            for job in Job.fetch_many(ids, connection=connection)
            if job is not None and job.func_name == "automation.tasks.run_turn"
        ]
    finally:
        connection.close()


async def _ended_run_turns(task_backend: str) -> list[tuple[str, object]]:
    for _ in range(800):
        ended = await run_db(_ended_run_turns_now, task_backend)
        if ended:
            return ended
        await asyncio.sleep(0.025)
    raise AssertionError("no worker ended the queued run_turn task")


async def _queued_turn_cancelled(ws, session) -> tuple[str, list[dict]]:
    """Sends a message (queued for a worker), cancels it; (its id, the frames)."""
    await ws.send({"type": "message", "content": "[[tokens=4]] never answered"})
    started = await ws.until(is_status("running"))
    await ws.send({"type": "cancel"})
    return started[-1]["execution"]["id"], await ws.until(is_status("cancelled"))


async def test_a_cancel_ends_a_queued_turn_at_once_and_its_worker_runs_nothing(
    start_worker, task_backend, settings, fake_llm, user, new_session, ws_connect
):
    settings.AGENTRY_TURN_EXECUTION = "task"
    session = await new_session()
    ws = await ws_connect(user, session)
    execution_id, frames = await _queued_turn_cancelled(ws, session)
    closing = [f["event"] for f in frames if f["type"] == "event"]
    assert [(e["kind"], e["error_code"], e["turn_complete"]) for e in closing] == [
        ("error", "cancelled", True)
    ]
    assert frames[-1]["execution"]["error_code"] == "cancelled"

    start_worker()
    ended = await _ended_run_turns(task_backend)
    assert ended == [(TaskResultStatus.SUCCESSFUL, "cancelled")]
    assert fake_llm.requests == []
    execution = await run_db(AgentExecution.objects.get, pk=execution_id)
    assert execution.status == AgentExecution.Status.CANCELLED
    events = await run_db(
        lambda: list(session.events.values_list("sequence_number", "kind"))
    )
    assert sorted(events) == [(1, "message"), (2, "error")]
    assert await ws.nothing_more()


async def test_a_cancel_leaves_a_queued_turn_a_worker_claimed_to_that_worker(
    settings, user, new_session, ws_connect
):
    settings.AGENTRY_TURN_EXECUTION = "task"
    session = await new_session()
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": "hello"})
    started = await ws.until(is_status("running"))
    execution_id = started[-1]["execution"]["id"]
    queued = AgentExecution.objects.filter(pk=execution_id, waiting_for_worker=True)
    for _ in range(400):
        if await run_db(queued.exists):
            break
        await asyncio.sleep(0.025)
    # What a worker's claim of the queued task writes.
    assert await run_db(services.execution_claim_queued, execution_id, 0)

    assert await runner.cancel_turn(str(session.pk))

    execution = await run_db(AgentExecution.objects.get, pk=execution_id)
    assert execution.status == AgentExecution.Status.RUNNING
    assert await ws.nothing_more()
