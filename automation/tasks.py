"""The Django Tasks that `manage.py worker` runs.

Public surface:
    run_turn(execution_id, resume)          runs a stored turn through the runner
    deliver_webhook(execution_id, url, attempt)
                                            one attempt to tell a URL a run finished;
                                            queues the next attempt when it fails
"""

from __future__ import annotations

from typing import Any

from django_tasks import task


@task()
async def run_turn(
    execution_id: str, resume: dict[str, Any] | None = None, attempts: int = 0
) -> str:
    from automation.dispatch import resume_from_json
    from sessions_app import runner

    execution = await runner.run_enqueued(
        execution_id,
        resume_from_json(resume) if resume is not None else None,
        attempts,
    )
    return execution.status if execution is not None else "deleted"


@task()
async def deliver_webhook(execution_id: str, url: str, attempt: int) -> bool:
    from automation import webhooks

    return await webhooks.attempt_delivery(execution_id, url, attempt)
