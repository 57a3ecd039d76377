"""How `manage.py worker` takes tasks off the configured task backend's queue.

The worker (`automation.worker`) runs every task the same way, awaiting
`task.acall(...)` on its own asyncio loop; only taking a task off the queue
and recording how it ended depend on the backend (`AGENTRY_TASK_BACKEND`):

- `DatabaseClaims`: rows of the backport's database backend
  (`django_tasks_db.DBTaskResult`), claimed with `SELECT ... FOR UPDATE SKIP
  LOCKED` (an exclusive transaction on SQLite), so any number of workers share
  one queue and each task runs once.
- `RQClaims`: jobs of `django-tasks-rq`'s Redis queues, popped with RQ's own
  dequeue (each job reaches one worker) and recorded with RQ's own
  bookkeeping (started, finished and failed registries, results, heartbeats,
  the backend's callbacks), so `get_result()`, `rq info` and django-rq's
  views see them as any RQ worker's jobs. RQ's own workers run one job per
  process (forking for each) and an async task through `async_to_sync`, so
  one of them would answer one turn at a time; this one runs as many as the
  database path does. It also moves due delayed jobs (webhook retries) onto
  their queue, as an RQ worker started `--with-scheduler` does, and runs
  RQ's registry maintenance, which fails the jobs of workers that died.

Every method is synchronous and runs off the loop; `claim` is called on every
pass of the worker's loop (with a limit of 0 when every slot is busy) so a
backend can do its periodic upkeep there.

Public surface:
    Claims                          what a strategy provides (Protocol)
    claims_for(backend_name, queue_names, worker_id) -> Claims
                                    the strategy for that backend; SystemExit
                                    for a backend no strategy serves
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Protocol

from django.db.utils import OperationalError
from django_tasks import task_backends
from django_tasks.base import Task
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception


class Claims(Protocol):
    def start(self) -> None: ...

    def claim(self, limit: int) -> list[Any]: ...

    def load(self, claimed: Any) -> tuple[Task[Any, Any], list[Any], dict[str, Any]]:
        """The task and its arguments (raises when they cannot be loaded)."""
        ...

    def describe(self, claimed: Any) -> str: ...

    def succeeded(self, claimed: Any, value: Any) -> None: ...

    def failed(self, claimed: Any, exc: BaseException) -> None: ...

    def stop(self) -> None: ...


def claims_for(backend_name: str, queue_names: list[str], worker_id: str) -> Claims:
    backend = task_backends[backend_name]
    if isinstance(backend, DatabaseBackend):
        return DatabaseClaims(backend_name, queue_names, worker_id)
    from django_tasks_rq import RQBackend

    if isinstance(backend, RQBackend):
        return RQClaims(queue_names, worker_id)
    raise SystemExit(
        f"The task backend {backend_name!r} is neither the database nor the RQ backend."
    )


class DatabaseClaims:
    def __init__(self, backend_name: str, queue_names: list[str], worker_id: str):
        self.backend_name = backend_name
        self.queue_names = queue_names
        self.worker_id = worker_id

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def claim(self, limit: int) -> list[DBTaskResult]:
        if limit <= 0:
            return []
        ready = DBTaskResult.objects.ready().filter(
            backend_name=self.backend_name, queue_name__in=self.queue_names
        )
        try:
            with exclusive_transaction(ready.db):
                rows = list(ready.select_for_update(skip_locked=True)[:limit])
                for row in rows:
                    row.claim(self.worker_id)
        except OperationalError as exc:
            if is_locked_database_exception(exc):
                return []
            raise
        return rows

    def load(
        self, claimed: DBTaskResult
    ) -> tuple[Task[Any, Any], list[Any], dict[str, Any]]:
        args = claimed.args_kwargs
        return claimed.task, args["args"], args["kwargs"]

    def describe(self, claimed: DBTaskResult) -> str:
        return f"{claimed.pk} ({claimed.task_path})"

    def succeeded(self, claimed: DBTaskResult, value: Any) -> None:
        claimed.set_successful(value)

    def failed(self, claimed: DBTaskResult, exc: BaseException) -> None:
        claimed.set_failed(exc)


#: How often RQClaims moves due delayed jobs onto their queues (RQ's scheduler
#: looks once a second too).
RQ_SCHEDULE_SECONDS = 1.0


class RQClaims:
    def __init__(self, queue_names: list[str], worker_id: str) -> None:
        import django_rq
        from django_tasks_rq import Job
        from rq.scheduler import RQScheduler
        from rq.timeouts import TimerDeathPenalty
        from rq.worker import Worker as RQWorker

        class Bookkeeper(RQWorker):
            """RQ's worker for its bookkeeping only: it never runs `work()`.
            Its callbacks run on a thread, where signal-based timeouts cannot."""

            death_penalty_class = TimerDeathPenalty

            def procline(self, message: str) -> None:
                """Leaves the process title alone."""

            def get_heartbeat_ttl(self, job: Any, working_time: float = 0.0) -> int:
                """RQ shortens a job's heartbeat as its job timeout (180 s by
                default) nears, for the work horse it would kill; nothing is
                killed here (a turn has AGENTRY_TURN_TIMEOUT), so a long turn
                keeps a full heartbeat and is not failed as abandoned."""
                return int(self.job_monitoring_interval) + 60

        try:
            self.queues = [
                django_rq.get_queue(name, job_class=Job) for name in queue_names
            ]
        except KeyError as exc:
            raise SystemExit(f"The RQ queue {exc} is not in RQ_QUEUES.") from None
        self.connection = self.queues[0].connection
        self.worker_id = worker_id
        self.rq = Bookkeeper(
            self.queues, name=worker_id, connection=self.connection, job_class=Job
        )
        self.scheduler = RQScheduler(
            queue_names, connection=self.connection, name=worker_id
        )
        # Finishing tasks (on the shared thread pool) and claiming (on the
        # claims thread) both go through the one bookkeeper.
        self.lock = threading.Lock()
        self.running: dict[str, tuple[Any, Any, Any]] = {}
        self.next_schedule = 0.0
        self.next_heartbeat = 0.0

    def start(self) -> None:
        with self.lock:
            try:
                self.rq.register_birth()
            except ValueError:
                # A worker of this id died without saying so; its entry
                # lapses on its own.
                self.rq.name = f"{self.worker_id}-{os.getpid()}"
                self.rq.register_birth()
            self.rq.clean_registries()

    def stop(self) -> None:
        with self.lock:
            self.scheduler.release_locks()
            self.rq.register_death()

    def claim(self, limit: int) -> list[tuple[Any, Any, Any]]:
        from rq.queue import Queue
        from rq.utils import now

        with self.lock:
            self._upkeep()
            claimed = []
            for _ in range(max(0, limit)):
                popped = Queue.dequeue_any(
                    self.queues,
                    None,
                    connection=self.connection,
                    job_class=self.rq.job_class,
                )
                if popped is None:
                    break
                job, queue = popped
                execution = self.rq.prepare_execution(job)
                self.rq.prepare_job_execution(
                    job, remove_from_intermediate_queue=len(self.queues) == 1
                )
                job.started_at = now()
                self.running[job.id] = (job, queue, execution)
                claimed.append((job, queue, execution))
            return claimed

    def _upkeep(self) -> None:
        """Delayed jobs that are due go onto their queues; the jobs this
        worker runs keep their heartbeats (a job whose heartbeat lapses is
        taken for its dead worker's and failed by RQ's maintenance)."""
        clock = time.monotonic()
        if clock >= self.next_schedule:
            self.next_schedule = clock + RQ_SCHEDULE_SECONDS
            if self.scheduler.acquire_locks():
                self.scheduler.enqueue_scheduled_jobs()
        if clock >= self.next_heartbeat:
            self.next_heartbeat = clock + self.rq.job_monitoring_interval
            self.rq.heartbeat(self.rq.job_monitoring_interval + 60)
            for job, _, execution in self.running.values():
                self.rq.maintain_heartbeats(job, execution)
            if self.rq.should_run_maintenance_tasks:
                self.rq.clean_registries()

    def load(
        self, claimed: tuple[Any, Any, Any]
    ) -> tuple[Task[Any, Any], list[Any], dict[str, Any]]:
        job = claimed[0]
        return job.func, list(job.args), dict(job.kwargs)

    def describe(self, claimed: tuple[Any, Any, Any]) -> str:
        job = claimed[0]
        return f"{job.id} ({job.func_name})"

    def succeeded(self, claimed: tuple[Any, Any, Any], value: Any) -> None:
        job, queue, execution = claimed
        with self.lock:
            self.running.pop(job.id, None)
            # RQ's own ending of a job that returned: result, registries,
            # the backend's success callback.
            self.rq._finalize_success(job, queue, execution, value)

    def failed(self, claimed: tuple[Any, Any, Any], exc: BaseException) -> None:
        job, queue, execution = claimed
        with self.lock:
            self.running.pop(job.id, None)
            self.rq._finalize_failure(
                job, queue, execution, (type(exc), exc, exc.__traceback__)
            )
