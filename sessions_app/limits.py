"""Limits on starting turns, so no user can spend without bound (DESIGN.md
section 9). Every way of starting a turn (REST, SSE, agent runs, websocket,
the admin, `manage.py chat`) passes through `runner.submit_turn`, which asks
`turn_admit` before it stores anything.

- Rate: `AGENTRY_TURN_RATE` (DRF-style `N/s|min|hour|day`) turns per user.
  The count lives in the default cache (Redis when configured), so it holds
  across server processes. A window opens with a user's first turn and lasts
  the rate's period; the count is one atomic increment (one round trip once
  the process knows the window: its start is remembered until it ends).
- Caps: a session holds at most `AGENTRY_MAX_QUEUED_TURNS` queued turns, and a
  user has at most `AGENTRY_MAX_ACTIVE_TURNS` queued or running ones (turns
  paused for an approval hold no model and do not count).

- Budgets (DESIGN.md section 11, `usage.budgets`): the turn opens inside the
  transaction that locks the budgets covering it and reserves its allowance,
  which then bounds its run's tokens.

Refusals are `TurnRejected` with status 429: `rate_limited` (with
`retry_after`), `queue_full`, `too_many_active_turns`, `budget_exceeded`. A message that repeats
a stored `client_message_id` runs nothing and is neither counted nor refused.

Public surface:
    turn_admit(session, user_id, client_message_id, queued, queued_in_session,
               active_of_user)
        -> Admission   checks the caps and counts the turn against the rate
    Admission.refund()   gives the count back when the turn was not stored
    parse_rate(rate) -> (turns, seconds)
    turn_open_budgeted(open_turn, **kwargs)   opens an admitted turn within its budgets
    bounded_by_budgets(limits, execution_id)  a run's UsageLimits within its allowance
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured

from sessions_app.models import AgentExecution
from sessions_app.services import TurnRejected
from usage.budgets import open_with_reservations, usage_limits

#: Opens an admitted turn (`services.turn_open`) in the transaction that
#: reserves its budgets; raises `budget_exceeded` when one has nothing left.
turn_open_budgeted = open_with_reservations
#: The run's pydantic-ai UsageLimits, at most the turn's reserved allowance.
bounded_by_budgets = usage_limits

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """`"30/min"` -> (30, 60), as DRF's throttles read their rates."""
    try:
        count, _, period = rate.partition("/")
        return int(count), _PERIODS[period.strip()[0].lower()]
    except (ValueError, KeyError, IndexError):
        raise ImproperlyConfigured(
            f"AGENTRY_TURN_RATE {rate!r} is not a rate such as '30/min'."
        ) from None


@dataclass
class Admission:
    """A turn counted against its user's rate; refunded if it is not stored."""

    counter_key: str | None = None

    def refund(self) -> None:
        if self.counter_key is not None:
            _cache_call(cache.decr, self.counter_key)
            self.counter_key = None


def turn_admit(
    *,
    session: Any,
    user_id: Any,
    client_message_id: str,
    queued: bool,
    queued_in_session: int,
    active_of_user: int,
) -> Admission:
    """Admits a new turn of `session` or raises `TurnRejected` (429).

    `queued` says the turn will wait in the session's queue (policies
    `enqueue` and `interrupt`); `queued_in_session` is how many already do;
    `active_of_user` is how many turns the user has queued or running in any
    session (`services.unfinished_turns` reads both in the query that looks
    at the session's turns).
    """
    try:
        _check_caps(queued, queued_in_session, active_of_user)
        return _count_against_rate(user_id)
    except TurnRejected:
        # A repeated message is answered with its stored turn, never refused.
        # Checked only here: a repeat that is admitted is found (and refunded)
        # by `services.turn_open`, so admitted turns pay no extra query.
        if (
            client_message_id
            and AgentExecution.objects.filter(
                session_id=session.pk, client_message_id=client_message_id
            ).exists()
        ):
            return Admission()
        raise


def _check_caps(queued: bool, queued_in_session: int, active: int) -> None:
    if queued and queued_in_session >= settings.AGENTRY_MAX_QUEUED_TURNS:
        raise TurnRejected(
            "queue_full",
            f"This session already has {settings.AGENTRY_MAX_QUEUED_TURNS} turns "
            "queued; wait for them to run.",
            429,
        )
    if active >= settings.AGENTRY_MAX_ACTIVE_TURNS:
        raise TurnRejected(
            "too_many_active_turns",
            f"You already have {active} turns queued or running; wait for "
            "one to finish.",
            429,
        )


#: Window starts this process has read, by user: while a window lasts, its
#: counter's name is known and a turn costs one increment, not four calls.
_known_windows: dict[Any, float] = {}
_KNOWN_WINDOWS_MAX = 10_000


def _count_against_rate(user_id: Any) -> Admission:
    limit, period = parse_rate(settings.AGENTRY_TURN_RATE)
    now = time.time()
    known = _known_windows.get(user_id)
    count = None
    if known is not None and now < known + period:
        started, counter_key = known, _counter_key(user_id, known)
        # None when the counter is gone (evicted, flushed): read it afresh.
        count = _cache_call(cache.incr, counter_key)
    if count is None:
        started, counter_key, count = _open_window(user_id, now, period)
    if count is None:
        # The cache is unreachable (or the window ended just now): admit the
        # turn rather than refuse every user while Redis is down.
        return Admission()
    if count > limit:
        _cache_call(cache.decr, counter_key)  # refusals do not count
        retry_after = max(1, math.ceil(started + period - now))
        raise TurnRejected(
            "rate_limited",
            f"You may start {limit} turns per {period} s; try again in "
            f"{retry_after} s.",
            429,
            retry_after=retry_after,
        )
    return Admission(counter_key)


def _counter_key(user_id: Any, started: float) -> str:
    # The window's start names its counter: when the start expires, the next
    # turn opens a new window with a fresh counter.
    return f"turn-rate:{user_id}:{started:.6f}"


def _open_window(user_id: Any, now: float, period: int) -> tuple[float, str, Any]:
    """Reads (or opens) the user's current window and counts the turn in it."""
    start_key = f"turn-rate:{user_id}:start"
    _cache_call(cache.add, start_key, now, timeout=period)
    started = _cache_call(cache.get, start_key) or now
    counter_key = _counter_key(user_id, started)
    _cache_call(cache.add, counter_key, 0, timeout=period + 1)
    count = _cache_call(cache.incr, counter_key)
    if count is not None:
        if len(_known_windows) >= _KNOWN_WINDOWS_MAX:
            _known_windows.clear()
        _known_windows[user_id] = started
    return started, counter_key, count


def _cache_call(method: Any, *args: Any, **kwargs: Any) -> Any:
    """A cache call whose failure (Redis down, a key expired between two
    calls) reads as "no value" instead of failing the turn."""
    try:
        return method(*args, **kwargs)
    except ValueError:  # incr/decr of a key that expired meanwhile
        return None
    except Exception:  # a cache outage must not stop turns
        logger.warning("turn rate cache unavailable", exc_info=True)
        return None
