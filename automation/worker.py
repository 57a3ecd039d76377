"""`manage.py worker`: one process that runs queued tasks concurrently.

The backport's own `db_worker` runs one task at a time, which would let one
worker answer one turn at a time. Turns wait on models and tools, not on the
CPU, so this worker runs up to `AGENTRY_WORKER_CONCURRENCY` tasks at once on
one asyncio loop, the way a web process runs its inline turns, whichever task
backend carries the queue (`AGENTRY_TASK_BACKEND`): every task runs through
`_run_one`, and only taking tasks off the queue and recording their ends
differ, in the backend's claim strategy (`automation.claims`). Any number of
workers share one queue and each task runs once.

It also runs the process housekeeping every turn-running process runs
(`sessions_app.lifecycle`: heartbeats, sweeps, cancels from other processes),
the end of task rows a killed worker left running (`automation.orphans`)
and, unless told not to, the schedule ticker (`automation.schedules`).

Public surface:
    Worker(concurrency, queue_names, interval, worker_id, scheduler)
    Worker.run()        runs until SIGTERM/SIGINT (async)
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connections

from automation.claims import Claims, claims_for
from sessions_app import lifecycle
from sessions_app.db import run_db, run_db_on

logger = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        *,
        concurrency: int,
        queue_names: list[str],
        interval: float,
        worker_id: str,
        scheduler: bool = True,
        backend_name: str = "default",
        on_ready: Callable[[str], None] | None = None,
    ) -> None:
        self.on_ready = on_ready
        self.concurrency = max(1, concurrency)
        self.queue_names = queue_names
        self.interval = interval
        self.worker_id = worker_id
        self.scheduler = scheduler
        self.backend_name = backend_name
        self.running: set[asyncio.Task[Any]] = set()
        self.stopping = asyncio.Event()
        self.slot_freed = asyncio.Event()
        # Claims must not queue behind the turns' own queries.
        self.claims = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="agentry-claims"
        )

    async def run(self) -> None:
        strategy = claims_for(self.backend_name, self.queue_names, self.worker_id)
        await run_db_on(self.claims, strategy.start)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        from automation import schedules

        # This loop ticks (or, with --no-scheduler, leaves it to other workers).
        schedules.ticking_in_worker = True
        # In task mode only workers take over turns whose process died.
        lifecycle.serves_turns = True
        lifecycle.ensure_supervisor()
        ticker = None
        if self.scheduler:
            ticker = asyncio.create_task(schedules.run_forever())
        from automation import orphans

        # Rows a killed worker left RUNNING end (from this start on).
        orphan_sweep = asyncio.create_task(orphans.run_forever(self.backend_name))
        ready = (
            f"worker {self.worker_id} ready: up to {self.concurrency} tasks at once "
            f"from {','.join(self.queue_names)}"
            + (", firing schedules" if self.scheduler else "")
        )
        logger.info(ready)
        if self.on_ready is not None:
            self.on_ready(ready)
        try:
            await self._claim_forever(strategy)
        finally:
            orphan_sweep.cancel()
            if ticker is not None:
                ticker.cancel()
            # A turn cut off here ends `interrupted`, as on a web process's shutdown.
            await lifecycle.interrupt_live_turns()
            for task in list(self.running):
                task.cancel()
            await asyncio.gather(*self.running, return_exceptions=True)
            await run_db_on(self.claims, strategy.stop)
            await run_db_on(self.claims, connections.close_all)
            self.claims.shutdown()

    async def _claim_forever(self, strategy: Claims) -> None:
        while not self.stopping.is_set():
            free = self.concurrency - len(self.running)
            claimed: list[Any] = []
            try:
                # Called with 0 free slots too: the strategy's upkeep runs there.
                claimed = await run_db_on(self.claims, strategy.claim, free)
            except Exception:
                logger.warning("claiming tasks failed", exc_info=True)
            for one in claimed:
                task = asyncio.create_task(self._run_one(strategy, one))
                self.running.add(task)
                task.add_done_callback(self._done)
            if claimed and len(claimed) == free:
                await self._wait(self.slot_freed)
            elif not claimed:
                await self._wait(None)

    async def _wait(self, event: asyncio.Event | None) -> None:
        waits = [asyncio.ensure_future(self.stopping.wait())]
        if event is not None:
            event.clear()
            waits.append(asyncio.ensure_future(event.wait()))
        _, pending = await asyncio.wait(
            waits, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED
        )
        for waiting in pending:
            waiting.cancel()

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.running.discard(task)
        self.slot_freed.set()

    async def _run_one(self, strategy: Claims, claimed: Any) -> None:
        try:
            task, args, kwargs = strategy.load(claimed)
            value = await task.acall(*args, **kwargs)
        except BaseException as exc:
            logger.warning("task %s failed", strategy.describe(claimed), exc_info=True)
            await asyncio.shield(run_db(strategy.failed, claimed, exc))
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
                raise
        else:
            await run_db(strategy.succeeded, claimed, value)
