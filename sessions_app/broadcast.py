"""The one way frames reach a session's clients, in this process and every other.

Public surface:
    session_group(id), CONTROL_GROUP        group names
    publish(session_id, *frames)            sends frames, in order, to every client of the session
    Batch                                   frames published together, JSON-encoded once
    listen(session_id, deliver) -> Listening
                                            this process's clients of a session (websockets)
    Subscription, subscribe(session_id)     a session's frames, read as they come
    send_control(message)                   a message to every server process (cancels)

Clients of a session (websocket consumers, SSE streams, the terminal chat)
listen through their process's hub (one per event loop): frames published in
the same process reach them directly, encoded once for all of them, without a
trip through the channel layer. Each hub with listeners joins the session's
channel-layer group on one channel of its own and relays what other
processes publish to its listeners. A publish goes through the channel layer
only when another member may be listening: always for stored events and
executions (checked against the layer at that moment, so a client that joined
on another process before a stored event was committed gets it, as `resume`
relies on), and for streamed text when the last check, at most
`MEMBERSHIP_TTL` old, found another member (a client joining elsewhere during
a turn may miss that long of its streamed text, as it misses what streamed
before it joined). A process with no listener of the session (a worker)
always publishes. Frames published
together travel as one channel-layer message. Every server process listens
on one `CONTROL_GROUP` and acts on cancels of the turns it runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer

from sessions_app.frames import Frame

logger = logging.getLogger(__name__)

#: A channel-layer message carrying a list of frames, in order.
FRAMES_MESSAGE = "session.frames"
#: How long a "no other listener" answer is trusted for streamed text.
MEMBERSHIP_TTL = 0.5


def session_group(session_id: Any) -> str:
    return f"session_{session_id}"


CONTROL_GROUP = "agentry.turn-control"


class Batch:
    """Frames published together; `texts` encodes them once for every socket."""

    __slots__ = ("_texts", "frames")

    def __init__(self, frames: Sequence[Frame]) -> None:
        self.frames = list(frames)
        self._texts: list[str] | None = None

    @property
    def texts(self) -> list[str]:
        if self._texts is None:
            self._texts = [json.dumps(f, ensure_ascii=False) for f in self.frames]
        return self._texts

    @property
    def stored(self) -> bool:
        """Whether anything but streamed text is in it (what `resume` recovers)."""
        return any(not _is_streamed_text(f) for f in self.frames)


Deliver = Callable[[Batch], Awaitable[None]]


class _Hub:
    """One event loop's listeners, and its membership of their sessions' groups."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.origin = uuid.uuid4().hex
        self.listeners: dict[str, list[Deliver]] = {}
        self.channel: str | None = None
        self.relay: asyncio.Task[None] | None = None
        # group -> (others may listen, when that was established)
        self.others: dict[str, tuple[bool, float]] = {}
        self.joining: dict[str, asyncio.Future[None]] = {}
        self.opening = asyncio.Lock()

    async def join(self, group: str) -> None:
        async with self.opening:
            if self.channel is None:
                self.channel = await self.layer.new_channel()
                self.relay = asyncio.create_task(self._relay(self.channel))
        await self.layer.group_add(group, self.channel)

    async def leave(self, group: str) -> None:
        self.others.pop(group, None)
        if self.channel is not None:
            await self.layer.group_discard(group, self.channel)

    async def _relay(self, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("the frame relay cannot read the channel layer")
                await asyncio.sleep(1)
                continue
            if message.get("origin") == self.origin:
                continue
            if message.get("type") == FRAMES_MESSAGE:
                await self.deliver(message.get("group", ""), Batch(message["frames"]))

    async def deliver(self, group: str, batch: Batch) -> None:
        for deliver in list(self.listeners.get(group, ())):
            try:
                await deliver(batch)
            except Exception:
                logger.debug("a listener of %s failed", group, exc_info=True)

    async def others_may_listen(self, group: str, stored: bool) -> bool:
        """Whether a member of the group other than this hub may be listening."""
        if group not in self.listeners or self.channel is None:
            return True
        if isinstance(self.layer, InMemoryChannelLayer):
            # Membership is right here, in this process.
            return set(self.layer.groups.get(group, ())) != {self.channel}
        known = self.others.get(group)
        if (
            not stored
            and known is not None
            and time.monotonic() - known[1] < MEMBERSHIP_TTL
        ):
            return known[0]
        return await self.count_others(group)

    async def count_others(self, group: str, strict: bool = False) -> bool:
        """Asks the layer whether the group has members besides this hub;
        `strict` raises when the layer cannot be reached instead of assuming so."""
        subscribers = await _subscribers(self.layer, group, strict)
        others = subscribers is None or subscribers > 1
        self.others[group] = (others, time.monotonic())
        return others


async def _subscribers(layer: Any, group: str, strict: bool = False) -> int | None:
    """Connections subscribed to the group (Redis pub/sub layer); None when unknown."""
    if not hasattr(layer, "_get_layer"):
        return None
    try:
        loop_layer = layer._get_layer()
        name = loop_layer._get_group_channel_name(group)
        shard = loop_layer._get_shard(name)
        shard._ensure_redis()
        [(_, count)] = await shard._redis.pubsub_numsub(name)
        return int(count)
    except Exception:
        if strict:
            raise
        return None


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Hub] = (
    weakref.WeakKeyDictionary()
)


def _hub() -> _Hub:
    loop = asyncio.get_running_loop()
    layer = get_channel_layer()
    hub = _hubs.get(loop)
    if hub is None or hub.layer is not layer:
        hub = _hubs[loop] = _Hub(layer)
    return hub


class Listening:
    """A listener's registration; `close()` ends it."""

    def __init__(self, hub: _Hub, group: str, deliver: Deliver) -> None:
        self.hub, self.group, self.deliver = hub, group, deliver

    async def close(self) -> None:
        listeners = self.hub.listeners.get(self.group)
        if listeners is None or self.deliver not in listeners:
            return
        listeners.remove(self.deliver)
        if not listeners:
            del self.hub.listeners[self.group]
            try:
                await asyncio.shield(self.hub.leave(self.group))
            except Exception:
                logger.debug("could not leave %s", self.group, exc_info=True)


async def listen(session_id: Any, deliver: Deliver) -> Listening:
    """Calls `deliver(batch)` with every batch of the session's frames, from
    any process, until the returned registration is closed. Raises when the
    channel layer cannot be joined (nothing is registered then)."""
    hub = _hub()
    group = session_group(session_id)
    listening = Listening(hub, group, deliver)
    listeners = hub.listeners.setdefault(group, [])
    listeners.append(deliver)
    joined = hub.joining.get(group)
    try:
        if joined is not None:
            await joined
        elif len(listeners) == 1:
            future = hub.joining[group] = asyncio.get_running_loop().create_future()
            try:
                await hub.join(group)
                future.set_result(None)
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # retrieved: later joiners re-raise it
                raise
            finally:
                hub.joining.pop(group, None)
        if not isinstance(hub.layer, InMemoryChannelLayer):
            # One round trip: the layer answers (an SSE stream or socket opened
            # during an outage is refused), and the membership is fresh.
            await hub.count_others(group, strict=True)
    except BaseException:
        await listening.close()
        raise
    return listening


async def publish(session_id: Any, *frames: Frame) -> None:
    """Sends frames, in order, to every client of the session; a channel-layer
    outage is logged, never raised.

    Stored events are already committed when they are published, so a client
    that misses a frame recovers it with `resume`.
    """
    if not frames:
        return
    group = session_group(session_id)
    batch = Batch(frames)
    hub = _hub()
    await hub.deliver(group, batch)
    try:
        if await hub.others_may_listen(group, batch.stored):
            await hub.layer.group_send(
                group,
                {
                    "type": FRAMES_MESSAGE,
                    "frames": batch.frames,
                    "group": group,
                    "origin": hub.origin,
                },
            )
    except Exception:
        logger.warning("could not publish frames to %s", group, exc_info=True)


async def send_control(message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    await layer.group_send(CONTROL_GROUP, message)


class Subscription:
    """A session's frames, read frame by frame.

    Open it before starting a turn, so no frame of that turn is missed.
    """

    def __init__(self, session_id: Any) -> None:
        self.session_id = session_id
        self._pending: deque[Frame] = deque()
        self._arrived = asyncio.Event()
        self._listening: Listening | None = None

    async def open(self) -> Subscription:
        self._listening = await listen(self.session_id, self._receive)
        return self

    async def _receive(self, batch: Batch) -> None:
        self._pending.extend(batch.frames)
        self._arrived.set()

    async def next(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or None when `timeout` seconds pass without one."""
        while not self._pending:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except TimeoutError:
                return None
        return self._pending.popleft()

    async def close(self) -> None:
        if self._listening is not None:
            listening, self._listening = self._listening, None
            await listening.close()


@asynccontextmanager
async def subscribe(session_id: Any) -> AsyncIterator[Subscription]:
    """Listens to the session's frames for the duration of the block."""
    subscription = await Subscription(session_id).open()
    try:
        yield subscription
    finally:
        await subscription.close()


def _is_streamed_text(frame: Mapping[str, Any]) -> bool:
    return frame.get("type") == "event" and bool(frame["event"].get("partial"))
