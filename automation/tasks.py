"""The Django Tasks that `manage.py worker` runs.

Public surface:
    run_turn(execution_id, resume)          runs a stored turn through the runner
    deliver_webhook(execution_id, url, attempt)
                                            stores a delivery to make; the delivery
                                            loops of the processes that run turns make it
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
def deliver_webhook(execution_id: str, url: str, attempt: int) -> None:
    """Kept for deliveries queued as tasks before they were stored as
    `PendingWebhook` rows."""
    from automation import webhooks

    webhooks.add_pending(execution_id, url, attempt)
