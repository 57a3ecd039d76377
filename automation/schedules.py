"""The scheduler: fires each due slot of each enabled schedule exactly once.

Every `TICK_SECONDS` each scheduling process claims the schedules whose
`next_run_at` has passed. The claim is one transaction: the due rows are read
with `SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL; rows another process is
claiming are skipped, not waited for) and each is moved on with a conditional
UPDATE that only succeeds while `next_run_at` is still the slot that was read
(on SQLite, which has no row locks, that compare-and-set alone decides). The
next slot is computed from now, so slots missed while nothing ran fire once.
Only then is the run started (`automation.runs.start_run`): a process killed
between its claim and the start loses that one slot rather than firing it twice.

Who ticks: every `manage.py worker` (unless `--no-scheduler`), and in `inline`
mode every web process too (there may be no worker); in `task` mode web
processes only accept, stream and store.

Public surface:
    TICK_SECONDS
    claim_due(now=None) -> list[Schedule]     claims due schedules (sync)
    fire(schedule) -> Submission               starts one run of a schedule (async)
    tick() -> int                              claims and fires what is due (async)
    run_forever()                              tick every TICK_SECONDS (async)
    ticks_in_web_process() -> bool
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from django.db import OperationalError, transaction
from django.utils import timezone

from automation import dispatch
from automation.models import Schedule, next_slot
from sessions_app.db import run_db
from sessions_app.services import TurnRejected

logger = logging.getLogger(__name__)

#: A due slot fires within this long (the contract allows 10 s).
TICK_SECONDS = 1.0
#: Claimed per tick and process; the rest wait for the next tick.
BATCH = 50

#: Set by `manage.py worker`, whose own loop ticks.
ticking_in_worker = False


def ticks_in_web_process() -> bool:
    return not dispatch.task_mode() and not ticking_in_worker


def claim_due(now: dt.datetime | None = None) -> list[Schedule]:
    now = now or timezone.now()
    claimed: list[Schedule] = []
    try:
        with transaction.atomic():
            due = list(
                Schedule.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(enabled=True, next_run_at__lte=now)
                .select_related("agent", "owner", "session")
                .order_by("next_run_at")[:BATCH]
            )
            for schedule in due:
                following = next_slot(schedule.cron, schedule.timezone, now)
                moved = Schedule.objects.filter(
                    pk=schedule.pk, enabled=True, next_run_at=schedule.next_run_at
                ).update(next_run_at=following, last_run_at=now)
                if moved:
                    schedule.next_run_at, schedule.last_run_at = following, now
                    claimed.append(schedule)
    except OperationalError:
        # SQLite busy with another process's write: the next tick tries again.
        logger.debug("claiming due schedules failed", exc_info=True)
        return []
    return claimed


async def fire(schedule: Schedule):  # -> runner.Submission
    """Starts one run of the schedule (a new session unless it names one)."""
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
    fired = 0
    for schedule in await run_db(claim_due):
        try:
            await fire(schedule)
            fired += 1
        except TurnRejected as exc:
            logger.warning(
                "schedule %s did not start a run: %s (%s)",
                schedule.pk,
                exc.code,
                exc.message,
            )
    return fired


async def run_forever() -> None:
    while True:
        try:
            await tick()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("firing due schedules failed", exc_info=True)
        await asyncio.sleep(TICK_SECONDS)
