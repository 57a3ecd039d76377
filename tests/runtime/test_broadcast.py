"""Frames reach this process's listeners directly; the channel layer carries
them only when another member of the session's group may listen."""

from __future__ import annotations

import uuid

from channels.layers import (
    DEFAULT_CHANNEL_LAYER,
    InMemoryChannelLayer,
    channel_layers,
    get_channel_layer,
)

from sessions_app import broadcast


def stored_frame() -> dict:
    return {"type": "execution", "execution": {"id": "e", "status": "running"}}


def partial_frame() -> dict:
    return {"type": "event", "event": {"partial": True, "content": "hi"}}


def another_process(layer):
    """The layer as another process meets it: the same in-memory layer, or a
    connection of its own to the same Redis (one process shares one)."""
    if isinstance(layer, InMemoryChannelLayer):
        return layer
    return channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)


def queued(layer, channel: str) -> int:
    queue = layer.channels.get(channel)
    return 0 if queue is None else queue.qsize()


async def test_a_listener_in_the_process_gets_frames_without_the_channel_layer():
    session_id = str(uuid.uuid4())
    layer = get_channel_layer()
    received: list[list[str]] = []

    async def deliver(batch: broadcast.Batch) -> None:
        received.append(batch.texts)

    listening = await broadcast.listen(session_id, deliver)
    try:
        await broadcast.publish(session_id, stored_frame(), partial_frame())
        assert received == [
            [
                '{"type": "execution", "execution": {"id": "e", "status": "running"}}',
                '{"type": "event", "event": {"partial": true, "content": "hi"}}',
            ]
        ]
        # Nothing went through the layer: the hub is the group's only member.
        hub_channel = broadcast._hub().channel
        assert queued(layer, hub_channel) == 0
    finally:
        await listening.close()
    assert broadcast.session_group(session_id) not in layer.groups


async def test_another_member_of_the_group_gets_every_stored_frame():
    session_id = str(uuid.uuid4())
    layer = get_channel_layer()
    received: list[broadcast.Batch] = []

    async def deliver(batch: broadcast.Batch) -> None:
        received.append(batch)

    listening = await broadcast.listen(session_id, deliver)
    # A member elsewhere (another process's hub, as the layer sees it).
    other = another_process(layer)
    elsewhere = await other.new_channel()
    await other.group_add(broadcast.session_group(session_id), elsewhere)
    try:
        await broadcast.publish(session_id, stored_frame())
        message = await other.receive(elsewhere)
        assert message["frames"] == [stored_frame()]
        # Here it arrived once, directly; the hub drops its own copy.
        assert [batch.frames for batch in received] == [[stored_frame()]]
    finally:
        await listening.close()


async def test_frames_from_another_process_reach_the_listeners_once():
    session_id = str(uuid.uuid4())
    layer = get_channel_layer()
    subscription = await broadcast.Subscription(session_id).open()
    try:
        await layer.group_send(
            broadcast.session_group(session_id),
            {
                "type": broadcast.FRAMES_MESSAGE,
                "frames": [stored_frame()],
                "group": broadcast.session_group(session_id),
                "origin": "another process",
            },
        )
        assert await subscription.next(timeout=5) == stored_frame()
    finally:
        await subscription.close()
