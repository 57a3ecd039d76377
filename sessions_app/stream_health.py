"""Is the channel layer reachable? One watcher per process tells the websockets.

With Redis gone, a websocket's group membership silently stops delivering:
the client would wait forever for frames that are never relayed. The watcher
PINGs the layer's Redis every `PROBE_SECONDS` on a connection of its own and,
after `FAILURES_TO_TRIP` failed probes in a row, calls every registered
consumer's callback once, so each can send a `stream_unavailable` error
frame and close. Clients reconnect once the layer is back and `resume` from
their last sequence number; stored events are never lost, only the live
relay is.

Public surface:
    watch(callback) / unwatch(callback)   register a consumer (starts the watcher)
    layer_available()                     the last probe's verdict
    probe()                               one probe now

In-process layers (the embedded default) cannot fail, so nothing is probed.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

PROBE_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 5.0
#: Failed probes in a row before the layer counts as down: one slow answer
#: from a saturated event loop is not an outage.
FAILURES_TO_TRIP = 2

Callback = Callable[[], Awaitable[None]]

_callbacks: set[Callback] = set()
_available = True
# Per event loop, weakly keyed by the loop itself: a closed loop's watcher and
# connections go with it, and a new loop (which may reuse a dead one's id)
# starts with none.
_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)


def layer_available() -> bool:
    return _available


def _redis_hosts() -> list[Any]:
    config: Mapping[str, Any] = settings.CHANNEL_LAYERS.get("default", {})
    if "channels_redis" not in config.get("BACKEND", ""):
        return []
    return list(config.get("CONFIG", {}).get("hosts", []))


def _client_for(host: Any) -> Any:
    """A dedicated connection per host and loop: a probe must not queue behind
    the layer's own publishes, which a busy process keeps in line."""
    import redis.asyncio

    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(repr(host))
    if client is None:
        options: dict[str, Any] = {
            "socket_connect_timeout": PROBE_TIMEOUT_SECONDS,
            "socket_timeout": PROBE_TIMEOUT_SECONDS,
        }
        if isinstance(host, str):
            client = redis.asyncio.Redis.from_url(host, **options)
        else:
            client = redis.asyncio.Redis(**{**dict(host), **options})
        clients[repr(host)] = client
    return client


async def probe() -> bool:
    """PING every Redis of the channel layer; False if one does not answer."""
    for host in _redis_hosts():
        try:
            await asyncio.wait_for(_client_for(host).ping(), PROBE_TIMEOUT_SECONDS + 1)
        except asyncio.CancelledError:
            raise
        except Exception:
            return False
    return True


def watch(callback: Callback) -> None:
    _callbacks.add(callback)
    loop = asyncio.get_running_loop()
    task = _watchers.get(loop)
    if task is None or task.done():
        _watchers[loop] = loop.create_task(_watch_forever())


def unwatch(callback: Callback) -> None:
    _callbacks.discard(callback)


async def _watch_forever() -> None:
    global _available
    failures = 0
    while True:
        await asyncio.sleep(PROBE_SECONDS)
        if not _callbacks and _available:
            continue
        if await probe():
            failures = 0
            if not _available:
                _available = True
                logger.info("channel layer reachable again")
            continue
        failures += 1
        if not _available or failures < FAILURES_TO_TRIP:
            continue
        _available = False
        logger.warning(
            "channel layer unreachable: closing %d websocket(s)", len(_callbacks)
        )
        callbacks = list(_callbacks)
        _callbacks.clear()
        results = await asyncio.gather(
            *(callback() for callback in callbacks), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                logger.debug("stream_unavailable notice failed", exc_info=result)


__all__ = ["layer_available", "probe", "unwatch", "watch"]
