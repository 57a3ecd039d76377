"""Is the channel layer reachable? One watcher per process tells the websockets.

With Redis gone, a websocket's group membership silently stops delivering:
the client would wait forever for frames that are never relayed. The watcher
probes the layer every `PROBE_SECONDS` (one publish to a channel nobody
reads) and, when a probe fails, calls every registered consumer's callback
once, so each can send a `stream_unavailable` error frame and close. Clients
reconnect once the layer is back and `resume` from their last sequence
number; stored events are never lost, only the live relay is.

Public surface:
    watch(callback) / unwatch(callback)   register a consumer (starts the watcher)
    layer_available()                     the last probe's verdict
    probe()                               one probe now

In-process layers (the embedded default) cannot fail, so nothing is probed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

PROBE_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 2.0
PROBE_CHANNEL = "agentry.stream-health"

Callback = Callable[[], Awaitable[None]]

_callbacks: set[Callback] = set()
_available = True
_watchers: dict[int, asyncio.Task[None]] = {}


def layer_available() -> bool:
    return _available


async def probe() -> bool:
    """Publishes one message; False if the layer cannot be reached in time."""
    layer = get_channel_layer()
    if layer is None or isinstance(layer, InMemoryChannelLayer):
        return True
    try:
        await asyncio.wait_for(
            layer.send(PROBE_CHANNEL, {"type": "probe"}), PROBE_TIMEOUT_SECONDS
        )
    except asyncio.CancelledError:
        raise
    except Exception:
        return False
    return True


def watch(callback: Callback) -> None:
    _callbacks.add(callback)
    loop = asyncio.get_running_loop()
    task = _watchers.get(id(loop))
    if task is None or task.done():
        _watchers[id(loop)] = loop.create_task(_watch_forever())


def unwatch(callback: Callback) -> None:
    _callbacks.discard(callback)


async def _watch_forever() -> None:
    global _available
    while True:
        await asyncio.sleep(PROBE_SECONDS)
        if not _callbacks and _available:
            continue
        available = await probe()
        if available == _available:
            continue
        _available = available
        if available:
            logger.info("channel layer reachable again")
            continue
        logger.warning(
            "channel layer unreachable: closing %d websocket(s)", len(_callbacks)
        )
        callbacks, _ = list(_callbacks), _callbacks.clear()
        results = await asyncio.gather(
            *(callback() for callback in callbacks), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                logger.debug("stream_unavailable notice failed", exc_info=result)


__all__ = ["layer_available", "probe", "unwatch", "watch"]
