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
refuses is not retried. Every attempt is a `WebhookDelivery` row. A delivery
still to be made is a `PendingWebhook` row (its next attempt and when it is
due), stored as the execution ends, so a restart loses no attempt and no
retry. Every process that runs turns (web processes in `inline` mode, workers
in `task` mode) tries the due ones on a delivery loop of its own (a thread,
never a turn's path), one process per row (`SELECT ... FOR UPDATE SKIP
LOCKED`; a compare-and-set on SQLite). While a process tries a row its due
time is moved `CLAIM_SECONDS` on, so a process that dies mid-attempt leaves
it to be tried again then (a receiver may, rarely, hear an attempt twice).

Public surface:
    MAX_ATTEMPTS, EVENT, SIGNATURE_HEADER, CLAIM_SECONDS
    execution_finished(execution)              stores the deliveries to make (sync)
    add_pending(execution_id, url, attempt=1, delay=0.0)
                                               stores one delivery to make (sync)
    deliver_due() -> int                       tries the due deliveries (async)
    start_delivering()                         this process's delivery loop (once)
    stop_delivering()                          ends it (tests, before their database goes)
    targets_reads()                            annotations that spare it a query
    attempt_delivery(execution_id, url, attempt) -> bool   one attempt (async)
    sign(secret, body) -> str                  the header's value
    webhook_secret_rotate(user) -> str         a new secret, stored encrypted
    webhook_secret_of(user_id) -> str          the secret (made on first use)
"""

from __future__ import annotations

import asyncio
import contextlib
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
from django.db import transaction
from django.db.models import Min, OuterRef, Subquery
from django.utils import timezone

from accounts.secrets import decrypt, encrypt
from automation.models import PendingWebhook, WebhookDelivery
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
    if hasattr(execution, "owner_webhooks"):
        hooks = execution.owner_webhooks  # read with the execution (`targets_reads`)
    else:
        hooks = (
            Agent.objects.filter(pk=execution.agent_id, owner_id=execution.user_id)
            .values_list("webhooks", flat=True)
            .first()
        )
    for url in hooks or []:
        if isinstance(url, str) and url and url not in dict(targets):
            targets.append((url, execution.user_id))
    return targets


def targets_reads() -> dict[str, Any]:
    """An annotation for the finishing read of an execution: the agent's
    webhooks when the run is its owner's, so scheduling reads nothing more."""
    from agents.models import Agent

    return {
        "owner_webhooks": Subquery(
            Agent.objects.filter(
                pk=OuterRef("agent_id"), owner_id=OuterRef("user_id")
            ).values("webhooks")[:1]
        )
    }


def execution_finished(execution: AgentExecution) -> None:
    """Stores the deliveries of a finished execution (after its commit)."""
    if execution.status not in AgentExecution.FINAL_STATUSES:
        return
    try:
        for url, _ in _targets(execution):
            add_pending(execution.pk, url)
    except Exception:
        # Never let a webhook problem reach the turn that just ended.
        logger.warning("storing webhooks of %s failed", execution.pk, exc_info=True)
    _wake()


def add_pending(
    execution_id: Any, url: str, attempt: int = 1, delay: float = 0.0
) -> None:
    """Stores a delivery to make (at most one per execution and URL)."""
    PendingWebhook.objects.bulk_create(
        [
            PendingWebhook(
                execution_id=execution_id,
                url=url,
                attempt=attempt,
                due_at=timezone.now() + dt.timedelta(seconds=delay),
            )
        ],
        ignore_conflicts=True,
    )


def _retry_delay(attempt: int) -> float:
    """The wait before try `attempt + 1`."""
    return float(settings.AGENTRY_WEBHOOK_RETRY_BASE * 2 ** (attempt - 1))


# --------------------------------------------------------------------- the loop

#: A due row being tried is not due again for this long (an attempt takes at
#: most `TIMEOUT_SECONDS`).
CLAIM_SECONDS = 3 * TIMEOUT_SECONDS
#: The longest pause between two looks for due deliveries.
IDLE_SECONDS = 1.0
#: Tried at once by one process.
BATCH = 20
#: The pause when the due rows were all claimed by other processes.
CONTENDED_SECONDS = 0.05


def _claim_due() -> list[PendingWebhook]:
    now = timezone.now()
    claimed: list[PendingWebhook] = []
    with transaction.atomic():
        due = PendingWebhook.objects.select_for_update(skip_locked=True).filter(
            due_at__lte=now
        )
        for row in due.order_by("due_at")[:BATCH]:
            # On SQLite (no row locks) the compare-and-set decides.
            moved = PendingWebhook.objects.filter(pk=row.pk, due_at=row.due_at).update(
                due_at=now + dt.timedelta(seconds=CLAIM_SECONDS)
            )
            if moved:
                claimed.append(row)
    return claimed


async def deliver_due() -> int:
    """Tries the deliveries due now (this process's share); returns how many."""
    claimed = await run_db(_claim_due)
    await asyncio.gather(
        *(attempt_delivery(str(r.execution_id), r.url, r.attempt) for r in claimed),
        return_exceptions=True,
    )
    return len(claimed)


def _next_due_in() -> float:
    first = PendingWebhook.objects.aggregate(first=Min("due_at"))["first"]
    if first is None:
        return IDLE_SECONDS
    return max(0.0, min(IDLE_SECONDS, (first - timezone.now()).total_seconds()))


async def _deliver_forever(woken: asyncio.Event) -> None:
    while True:
        woken.clear()
        try:
            # One indexed read while idle; a claim only when something is due.
            wait = await run_db(_next_due_in)
            if wait <= 0:
                if await deliver_due():
                    continue
                wait = CONTENDED_SECONDS  # another process claims them
        except Exception:
            logger.warning("delivering due webhooks failed", exc_info=True)
            wait = IDLE_SECONDS
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(woken.wait(), timeout=wait)


_loop: asyncio.AbstractEventLoop | None = None
_woken: asyncio.Event | None = None
_thread: threading.Thread | None = None
_loop_lock = threading.Lock()


def start_delivering() -> None:
    """Starts this process's delivery loop, on a daemon thread of its own so
    that a slow receiver never slows a turn (once per process)."""
    global _loop, _woken, _thread
    with _loop_lock:
        if _loop is not None and not _loop.is_closed():
            return
        loop = asyncio.new_event_loop()
        woken = asyncio.Event()
        thread = threading.Thread(
            target=loop.run_forever, name="agentry-webhooks", daemon=True
        )
        thread.start()
        asyncio.run_coroutine_threadsafe(_deliver_forever(woken), loop)
        _loop, _woken, _thread = loop, woken, thread


def stop_delivering(timeout: float = 5.0) -> None:
    """Ends this process's delivery loop, if it runs one; due deliveries stay
    stored for the next process that runs turns."""
    global _loop, _woken, _thread
    with _loop_lock:
        loop, thread = _loop, _thread
        _loop, _woken, _thread = None, None, None
    if loop is None or loop.is_closed():
        return

    async def cancel_everything() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(cancel_everything(), loop).result(timeout)
    loop.call_soon_threadsafe(loop.stop)
    if thread is not None:
        thread.join(timeout)
    if not loop.is_running():
        loop.close()


def _wake() -> None:
    """Tells this process's delivery loop, if it runs one, to look now."""
    loop, woken = _loop, _woken
    if loop is not None and woken is not None and not loop.is_closed():
        loop.call_soon_threadsafe(woken.set)


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
    """POSTs the execution's end to `url` once and records the attempt with
    what follows it (the next attempt, when it failed and may succeed later).
    True if delivered."""
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
    retry = not delivered and retryable and attempt < MAX_ATTEMPTS
    await run_db(
        _record,
        execution_id,
        url,
        attempt,
        status_code,
        error,
        _retry_delay(attempt) if retry else None,
    )
    return delivered


def _record(
    execution_id: str,
    url: str,
    attempt: int,
    status_code: int | None,
    error: str,
    retry_in: float | None,
) -> None:
    """Stores the attempt and, in the same transaction, the delivery's next
    attempt or its end."""
    with transaction.atomic():
        WebhookDelivery.objects.create(
            execution_id=execution_id,
            url=url,
            attempt=attempt,
            status_code=status_code,
            error=error,
        )
        pending = PendingWebhook.objects.filter(
            execution_id=execution_id, url=url, attempt=attempt
        )
        if retry_in is None:
            pending.delete()
        else:
            pending.update(
                attempt=attempt + 1,
                due_at=timezone.now() + dt.timedelta(seconds=retry_in),
            )
