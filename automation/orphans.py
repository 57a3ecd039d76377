"""Task rows whose worker died, ended so the queue's bookkeeping stays honest.

A row of the database task backend (`django_tasks_db.DBTaskResult`) that a
worker claimed stays `RUNNING` if that worker is killed: nothing else would
ever end it. A `run_turn` row is orphaned once no process runs its turn under
it any more: the turn was taken over by another process (its `attempts` moved
past the row's), nobody heart-beats it within the lease (its worker died, or
the turn ended), or its execution is gone (the session was deleted). Such a
row, `RUNNING` for longer than the lease, ends `FAILED` with
`automation.orphans.TaskOrphaned` and the reason as its traceback. Every
worker looks at start and every `SWEEP_SECONDS` (any worker may end any
worker's rows; the update only ends a row still `RUNNING`).

The other task (`deliver_webhook`) only stores a row and ends at once; its
rows are not swept.

Public surface:
    SWEEP_SECONDS
    TaskOrphaned                        the exception class an orphaned row names
    end_orphaned_turn_tasks(backend_name="default") -> int   one sweep (sync)
    run_forever(backend_name="default")                       sweeps periodically (async)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import Any

from django.utils import timezone
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.compat import TaskResultStatus, task_backends
from django_tasks_db.models import DBTaskResult

from sessions_app import lifecycle
from sessions_app.db import run_db
from sessions_app.models import AgentExecution

logger = logging.getLogger(__name__)

SWEEP_SECONDS = 5.0
RUN_TURN = "automation.tasks.run_turn"


class TaskOrphaned(Exception):
    """The worker running this task stopped before it could end it."""


def end_orphaned_turn_tasks(backend_name: str = "default") -> int:
    """Ends the orphaned `run_turn` rows of the backend; returns how many."""
    if not isinstance(task_backends[backend_name], DatabaseBackend):
        return 0
    now = timezone.now()
    cutoff = now - lifecycle.lease()
    rows = list(
        DBTaskResult.objects.running()
        .filter(backend_name=backend_name, task_path=RUN_TURN, started_at__lt=cutoff)
        .values_list("pk", "args_kwargs")
    )
    if not rows:
        return 0
    ids = [_args(args)[0] for _, args in rows]
    turns = {
        str(pk): (attempts, heartbeat_at)
        for pk, attempts, heartbeat_at in AgentExecution.objects.filter(
            pk__in=[i for i in ids if _is_uuid(i)]
        ).values_list("pk", "attempts", "heartbeat_at")
    }
    ended = 0
    for pk, args in rows:
        reason = _orphaned(*_args(args), turns, cutoff)
        if reason is None:
            continue
        ended += DBTaskResult.objects.filter(
            pk=pk, status=TaskResultStatus.RUNNING
        ).update(
            status=TaskResultStatus.FAILED,
            finished_at=now,
            return_value=None,
            exception_class_path=f"{__name__}.{TaskOrphaned.__qualname__}",
            traceback=f"{TaskOrphaned.__qualname__}: {reason}",
        )
    if ended:
        logger.info("ended %d task(s) whose worker stopped", ended)
    return ended


def _args(args_kwargs: Any) -> tuple[str, int]:
    """(execution id, takeover count) a `run_turn` row was queued with."""
    args = list((args_kwargs or {}).get("args") or [])
    kwargs = (args_kwargs or {}).get("kwargs") or {}
    execution_id = str(args[0] if args else kwargs.get("execution_id"))
    attempts = args[2] if len(args) > 2 else kwargs.get("attempts", 0)
    return execution_id, int(attempts or 0)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _orphaned(
    execution_id: str,
    attempts: int,
    turns: dict[str, tuple[int, dt.datetime | None]],
    cutoff: dt.datetime,
) -> str | None:
    if execution_id not in turns:
        return "its execution was deleted."
    current, heartbeat_at = turns[execution_id]
    if current != attempts:
        return f"its turn was taken over by another process (takeover {current})."
    if heartbeat_at is None or heartbeat_at < cutoff:
        return "no process has run its turn within the lease; its worker stopped."
    return None


async def run_forever(backend_name: str = "default") -> None:
    while True:
        try:
            await run_db(end_orphaned_turn_tasks, backend_name)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("ending orphaned tasks failed", exc_info=True)
        await asyncio.sleep(SWEEP_SECONDS)
