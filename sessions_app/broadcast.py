"""The one way frames reach a session's clients: its channel-layer group.

Public surface:
    session_group(id), CONTROL_GROUP        group names
    publish(session_id, *frames)            sends frames, in order, to every client of the session
    Subscription, subscribe(session_id)     a session's frames, read as they come
    send_control(message)                   a message to every server process (cancels)

Every connected client (websocket consumers on any process, SSE streams, the
terminal chat) is a member of `session_<id>`. Frames published together travel
as one channel-layer message (a list), so a turn's opening and closing frames
cost one publish each. Every server process listens on
one `CONTROL_GROUP` and acts on cancels of the turns it runs: cancels are
rare, and one subscription per process is cheaper than one per turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from channels.layers import get_channel_layer

from sessions_app.frames import Frame

logger = logging.getLogger(__name__)

#: A channel-layer message carrying a list of frames, in order.
FRAMES_MESSAGE = "session.frames"


def session_group(session_id: Any) -> str:
    return f"session_{session_id}"


CONTROL_GROUP = "agentry.turn-control"


async def publish(session_id: Any, *frames: Frame) -> None:
    """Broadcasts frames, in order; a channel-layer outage is logged, never raised.

    Stored events are already committed when they are published, so a client
    that misses a frame recovers it with `resume`.
    """
    if not frames:
        return
    group = session_group(session_id)
    try:
        await get_channel_layer().group_send(
            group, {"type": FRAMES_MESSAGE, "frames": list(frames)}
        )
    except Exception:
        logger.warning("could not publish frames to %s", group, exc_info=True)


async def send_control(message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    await layer.group_send(CONTROL_GROUP, message)


class Subscription:
    """Membership of one session's group, read frame by frame.

    Open it before starting a turn, so no frame of that turn is missed.
    """

    def __init__(self, session_id: Any) -> None:
        self.group = session_group(session_id)
        self.layer = get_channel_layer()
        self.channel = ""
        self._pending: deque[Frame] = deque()

    async def open(self) -> Subscription:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)
        return self

    async def next(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or None when `timeout` seconds pass without one."""
        while not self._pending:
            try:
                message = await asyncio.wait_for(
                    self.layer.receive(self.channel), timeout
                )
            except TimeoutError:
                return None
            if message.get("type") == FRAMES_MESSAGE:
                self._pending.extend(message["frames"])
        return self._pending.popleft()

    async def close(self) -> None:
        try:
            await asyncio.shield(self.layer.group_discard(self.group, self.channel))
        except Exception:
            logger.debug("could not leave %s", self.group, exc_info=True)


@asynccontextmanager
async def subscribe(session_id: Any) -> AsyncIterator[Subscription]:
    """Joins the session's group for the duration of the block."""
    subscription = await Subscription(session_id).open()
    try:
        yield subscription
    finally:
        await subscription.close()
