"""The scheduler: fires each due slot of each enabled schedule exactly once.

Every `TICK_SECONDS` each scheduling process looks for the schedules whose
`next_run_at` has passed and fires each in one transaction of its own: the
row is locked with `SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL; a row
another process is firing is skipped, not waited for) and moved on with a
conditional UPDATE that only succeeds while `next_run_at` is still the slot
that was read (on SQLite, which has no row locks, that compare-and-set alone
decides); the run's session, message and queued execution are stored in the
same transaction. So a slot either fires (its turn is stored) or stays due:
a process that fails or dies before the commit leaves it for the next tick,
and one that dies after it leaves a stored turn that, never started, is taken
over once its lease lapses (`sessions_app.durable`). A run the runner refuses
(the agent no longer answers its owner, a budget is spent) still uses up its
slot. The next slot is computed from now, so slots missed while nothing ran
fire once.

Who ticks: every `manage.py worker` (unless `--no-scheduler`), and in `inline`
mode every web process too (there may be no worker); in `task` mode web
processes only accept, stream and store.

Public surface:
    TICK_SECONDS
    Fired                                      a claimed slot and the turn stored for it
    claim_due(now=None) -> list[Fired]         claims due slots and stores their turns (sync)
    fire(schedule) -> Submission               starts one run of a schedule now (async)
    tick() -> int                              claims and starts what is due (async)
    run_forever()                              tick every TICK_SECONDS (async)
    ticks_in_web_process() -> bool
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.db import OperationalError, transaction
from django.utils import timezone

from automation import dispatch
from automation.models import Schedule, next_slot
from sessions_app.db import run_db
from sessions_app.services import TurnRejected
from sessions_app.turn_request import TurnRequest

logger = logging.getLogger(__name__)

#: A due slot fires within this long (the contract allows 10 s).
TICK_SECONDS = 1.0
#: Claimed per tick and process; the rest wait for the next tick.
BATCH = 50

#: Set by `manage.py worker`, whose own loop ticks.
ticking_in_worker = False


def ticks_in_web_process() -> bool:
    return not dispatch.task_mode() and not ticking_in_worker


@dataclass
class Fired:
    schedule: Schedule
    request: TurnRequest
    #: The turn stored with the claim (`runner.StoredTurn`), to be started.
    stored: Any


def claim_due(now: dt.datetime | None = None) -> list[Fired]:
    """Claims the due slots and stores their runs' turns, one transaction
    per schedule; a schedule that fails stays due for the next tick."""
    now = now or timezone.now()
    due = Schedule.objects.filter(enabled=True, next_run_at__lte=now)
    fired: list[Fired] = []
    for pk in due.order_by("next_run_at").values_list("pk", flat=True)[:BATCH]:
        try:
            claimed = _claim_and_store(pk, now)
        except OperationalError:
            # SQLite busy with another process's write: the next tick tries again.
            logger.debug("claiming schedule %s failed", pk, exc_info=True)
            continue
        except Exception:
            logger.warning("schedule %s did not fire; it stays due", pk, exc_info=True)
            continue
        if claimed is not None:
            fired.append(claimed)
    return fired


def _claim_and_store(pk: Any, now: dt.datetime) -> Fired | None:
    with transaction.atomic():
        schedule = (
            Schedule.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk=pk, enabled=True, next_run_at__lte=now)
            .select_related("agent", "owner", "session")
            .first()
        )
        if schedule is None:  # another process fires it, or it moved on
            return None
        following = next_slot(schedule.cron, schedule.timezone, now)
        moved = Schedule.objects.filter(
            pk=pk, enabled=True, next_run_at=schedule.next_run_at
        ).update(next_run_at=following, last_run_at=now)
        if not moved:
            return None
        schedule.next_run_at, schedule.last_run_at = following, now
        try:
            # A refused run rolls back to here: the slot is used up regardless.
            with transaction.atomic():
                request, stored = _store_run(schedule)
        except TurnRejected as exc:
            logger.warning(
                "schedule %s did not start a run: %s (%s)", pk, exc.code, exc.message
            )
            return None
        Schedule.objects.filter(pk=pk).update(
            last_execution_id=stored.turn.execution.pk
        )
    return Fired(schedule, request, stored)


def _store_run(schedule: Schedule) -> tuple[TurnRequest, Any]:
    from automation.runs import open_session
    from sessions_app import runner

    session = schedule.session or open_session(
        schedule.owner, schedule.agent, schedule.input
    )
    request = TurnRequest(
        session_id=str(session.pk),
        user_id=schedule.owner_id,
        content=schedule.input,
        multitask="enqueue",
    )
    return request, runner.open_turn(request)


async def fire(schedule: Schedule):  # -> runner.Submission
    """Starts one run of the schedule now (a new session unless it names one)."""
    from automation.runs import start_run

    # Its owner, agent and session, read here rather than lazily on the loop.
    schedule = await run_db(
        Schedule.objects.select_related("owner", "agent", "session").get,
        pk=schedule.pk,
    )
    submission = await start_run(
        user=schedule.owner,
        agent=schedule.agent,
        content=schedule.input,
        session=schedule.session,
    )
    await run_db(
        Schedule.objects.filter(pk=schedule.pk).update,
        last_execution_id=submission.execution.pk,
    )
    return submission


async def tick() -> int:
    from automation.runs import keep_running
    from sessions_app import runner

    fired = await run_db(claim_due)
    for claimed in fired:
        try:
            keep_running(await runner.start_opened(claimed.request, claimed.stored))
        except Exception:
            # Stored but not started: taken over once its lease lapses.
            logger.warning(
                "the run of schedule %s did not start here",
                claimed.schedule.pk,
                exc_info=True,
            )
    return len(fired)


async def run_forever() -> None:
    while True:
        try:
            await tick()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("firing due schedules failed", exc_info=True)
        await asyncio.sleep(TICK_SECONDS)
