"""Telling other systems that an execution finished.

When an execution reaches a final status (`succeeded`, `failed`,
`cancelled`, `interrupted`), `sessions_app.services.execution_finish` calls
`execution_finished` once its transaction commits. Each target URL (the
run's `webhook_url`, and the agent's `webhooks` for runs of the agent's own
owner) then gets a `POST` of `{"event": "execution.finished", "execution":
{...}}` signed with `X-Agentry-Signature: sha256=<hex HMAC-SHA256 of the
body>`, keyed by the UTF-8 bytes of the signing user's webhook secret (the
user who started the run for its `webhook_url`, the agent's owner for the
agent's list). Requests go through the network guard (`tools.netguard`).

A non-2xx answer or no answer is tried again after `AGENTRY_WEBHOOK_RETRY_BASE`
* 2**(attempt-1) seconds, up to `MAX_ATTEMPTS` tries; a destination the guard
refuses is not retried. Every attempt is a `WebhookDelivery` row. Deliveries
never run on a turn's path: in `task` mode each attempt is a task
(`automation.tasks.deliver_webhook`, later ones deferred with `run_after`),
in `inline` mode they run on this process's own delivery loop (a thread).

Public surface:
    MAX_ATTEMPTS, EVENT, SIGNATURE_HEADER
    execution_finished(execution)              schedules the deliveries (sync)
    attempt_delivery(execution_id, url, attempt) -> bool   one attempt (async)
    sign(secret, body) -> str                  the header's value
    webhook_secret_rotate(user) -> str         a new secret, stored encrypted
    webhook_secret_of(user_id) -> str          the secret (made on first use)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import threading
from typing import Any

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.secrets import decrypt, encrypt
from automation import dispatch
from automation.models import WebhookDelivery
from sessions_app.db import run_db
from sessions_app.frames import execution_payload
from sessions_app.models import AgentExecution

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
EVENT = "execution.finished"
SIGNATURE_HEADER = "X-Agentry-Signature"
TIMEOUT_SECONDS = 10.0
#: How much of a failing receiver's answer is kept in the delivery's error.
ERROR_CHARS = 500


def sign(secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_secret_rotate(user: Any) -> str:
    value = secrets.token_urlsafe(32)
    get_user_model().objects.filter(pk=user.pk).update(webhook_secret=encrypt(value))
    return value


def webhook_secret_of(user_id: Any) -> str:
    """The user's secret; one is made (and kept) for a user who never rotated,
    so every delivery is signed (its owner learns it by rotating)."""
    users = get_user_model().objects
    stored = users.filter(pk=user_id).values_list("webhook_secret", flat=True).first()
    if stored:
        return decrypt(stored)
    value = secrets.token_urlsafe(32)
    users.filter(pk=user_id, webhook_secret="").update(webhook_secret=encrypt(value))
    return decrypt(
        users.filter(pk=user_id).values_list("webhook_secret", flat=True).get()
    )


# --------------------------------------------------------------------- targets


def _targets(execution: AgentExecution) -> list[tuple[str, Any]]:
    """(url, signing user id) pairs. An agent's own list hears only its
    owner's runs: another user's conversation is not the owner's to receive."""
    from agents.models import Agent

    targets: list[tuple[str, Any]] = []
    if execution.webhook_url:
        targets.append((execution.webhook_url, execution.user_id))
    hooks = (
        Agent.objects.filter(pk=execution.agent_id, owner_id=execution.user_id)
        .values_list("webhooks", flat=True)
        .first()
    )
    for url in hooks or []:
        if isinstance(url, str) and url and url not in dict(targets):
            targets.append((url, execution.user_id))
    return targets


def execution_finished(execution: AgentExecution) -> None:
    """Schedules the deliveries of a finished execution (after its commit)."""
    if execution.status not in AgentExecution.FINAL_STATUSES:
        return
    try:
        for url, _ in _targets(execution):
            _schedule(str(execution.pk), url, attempt=1, delay=0.0)
    except Exception:
        # Never let a webhook problem reach the turn that just ended.
        logger.warning("scheduling webhooks of %s failed", execution.pk, exc_info=True)


def _retry_delay(attempt: int) -> float:
    """The wait before try `attempt + 1`."""
    return settings.AGENTRY_WEBHOOK_RETRY_BASE * 2 ** (attempt - 1)


def _schedule(execution_id: str, url: str, *, attempt: int, delay: float) -> None:
    if dispatch.task_mode():
        from automation.tasks import deliver_webhook

        task = deliver_webhook
        if delay > 0:
            task = task.using(run_after=timezone.now() + dt.timedelta(seconds=delay))
        task.enqueue(execution_id, url, attempt)
        return
    asyncio.run_coroutine_threadsafe(
        _deliver_later(execution_id, url, attempt, delay), _delivery_loop()
    )


async def _deliver_later(
    execution_id: str, url: str, attempt: int, delay: float
) -> None:
    if delay > 0:
        await asyncio.sleep(delay)
    try:
        await attempt_delivery(execution_id, url, attempt)
    except Exception:
        logger.warning("webhook delivery to %s failed", url, exc_info=True)


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _delivery_loop() -> asyncio.AbstractEventLoop:
    """This process's delivery loop (inline mode), on a daemon thread of its own."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="agentry-webhooks", daemon=True
            ).start()
            _loop = loop
        return _loop


# --------------------------------------------------------------------- delivery


def _body_and_secret(execution_id: str) -> tuple[bytes, str] | None:
    execution = AgentExecution.objects.filter(pk=execution_id).first()
    if execution is None:
        return None
    body = json.dumps(
        {"event": EVENT, "execution": execution_payload(execution)},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    return body, webhook_secret_of(execution.user_id)


async def attempt_delivery(execution_id: str, url: str, attempt: int) -> bool:
    """POSTs the execution's end to `url` once, records the attempt and, when
    it failed and may succeed later, schedules the next one. True if delivered."""
    from tools.netguard import DestinationRefused, guarded_client

    loaded = await run_db(_body_and_secret, execution_id)
    if loaded is None:  # the session (and so the execution) was deleted
        return False
    body, secret = loaded
    status_code: int | None = None
    error = ""
    retryable = True
    try:
        async with guarded_client(timeout=TIMEOUT_SECONDS) as client:
            response = await asyncio.wait_for(
                client.post(
                    url,
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        "User-Agent": "Agentry-Webhooks/1",
                        SIGNATURE_HEADER: sign(secret, body),
                    },
                ),
                timeout=TIMEOUT_SECONDS,
            )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}: {response.text[:ERROR_CHARS]}"
    except DestinationRefused as exc:
        error, retryable = f"refused by the network guard: {exc}", False
    except (httpx.HTTPError, TimeoutError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS] or type(exc).__name__
    delivered = not error
    await run_db(
        WebhookDelivery.objects.create,
        execution_id=execution_id,
        url=url,
        attempt=attempt,
        status_code=status_code,
        error=error,
    )
    if not delivered and retryable and attempt < MAX_ATTEMPTS:
        await run_db(
            _schedule,
            execution_id,
            url,
            attempt=attempt + 1,
            delay=_retry_delay(attempt),
        )
    return delivered
