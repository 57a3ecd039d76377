"""Background runs: a turn started without anyone waiting for its answer.

`POST /api/agents/{id}/runs/`, a schedule's fire and `run-now` all come here.
The turn goes through the runner like any other (`runner.submit_turn`, with
the `enqueue` policy, so a busy session queues it instead of refusing); the
caller gets the stored execution at once. In `inline` mode the turn runs as an
asyncio task of this process, in `task` mode a worker runs it.

Public surface:
    start_run(*, user, agent, content, session=None, webhook_url="") -> Submission (async)
    open_session(user, agent, content) -> Session   a run's new session (sync)
    keep_running(submission)   holds an inline run nobody awaits until it ends
"""

from __future__ import annotations

import asyncio
from typing import Any

from sessions_app import runner, services
from sessions_app.db import run_db
from sessions_app.models import Session

# Inline runs nobody awaits: kept here so the loop does not drop them.
_running: set[asyncio.Task[Any]] = set()


def open_session(user: Any, agent: Any, content: str) -> Session:
    title = content.strip().splitlines()[0][:80] if content.strip() else ""
    return services.session_create(user=user, agent=agent, title=title)


async def start_run(
    *,
    user: Any,
    agent: Any,
    content: str,
    session: Session | None = None,
    webhook_url: str = "",
) -> runner.Submission:
    """Stores a run's message and starts its turn; raises TurnRejected (the
    session opened for it removed again) when the turn is refused."""
    opened = session is None
    if session is None:
        session = await run_db(open_session, user, agent, content)
    try:
        submission = await runner.submit_turn(
            runner.TurnRequest(
                session_id=str(session.pk),
                user_id=user.pk,
                content=content,
                multitask="enqueue",
                webhook_url=webhook_url,
            )
        )
    except BaseException:
        if opened:
            await run_db(session.delete)
        raise
    keep_running(submission)
    return submission


def keep_running(submission: runner.Submission) -> None:
    if submission.task is not None:
        _running.add(submission.task)
        submission.task.add_done_callback(_running.discard)
