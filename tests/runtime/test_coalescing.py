"""How many partial frames a turn's streamed text becomes, on a held clock.

`TurnStream` measures its coalescing window on `TurnStream.clock`; these tests
set that clock by hand, so what they count does not depend on how fast the
machine runs them.
"""

from __future__ import annotations

import uuid

import pytest

from sessions_app import broadcast
from sessions_app.turn_events import TurnStream


class HeldClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> HeldClock:
    held = HeldClock()
    monkeypatch.setattr(TurnStream, "clock", held)
    return held


async def streams(count: int) -> tuple[list[TurnStream], list[list[str]]]:
    """`count` turns streaming in this process, and the partial texts each
    one's listeners receive."""
    made, received = [], []
    for _ in range(count):
        session_id = str(uuid.uuid4())
        texts: list[str] = []

        async def deliver(batch: broadcast.Batch, texts: list[str] = texts) -> None:
            texts.extend(frame["event"]["content"] for frame in batch.frames)

        listening = await broadcast.listen(session_id, deliver)
        made.append((TurnStream(str(uuid.uuid4()), session_id), listening))
        received.append(texts)
    return made, received


async def test_a_busy_process_sends_fewer_larger_frames_per_turn(clock, settings):
    # Four turns streaming under a budget of 20 frames/s: every turn's window
    # widens to 200 ms, so chunks 10 ms apart are held and sent together.
    settings.AGENTRY_STREAM_FRAMES_PER_SECOND = 20
    made, received = await streams(4)
    try:
        for index in range(40):
            for stream, _ in made:
                await stream.partial(f"word{index} ")
            clock.now += 0.010
            if index % 20 == 19:
                # The scheduled sends land at the window's end.
                for stream, _ in made:
                    await stream.flush()
        for stream, _ in made:
            await stream.flush()
        for texts in received:
            assert texts[0] == "word0 ", "the first chunk still goes out at once"
            assert len(texts) <= 5, texts
            assert "".join(texts) == "".join(f"word{i} " for i in range(40))
    finally:
        for stream, listening in made:
            stream.close()
            await listening.close()


async def test_a_lone_turn_still_streams_a_frame_per_slow_chunk(clock, settings):
    # One turn under the same budget may send a frame every 50 ms: chunks
    # 60 ms apart each go out at once, none is held.
    settings.AGENTRY_STREAM_FRAMES_PER_SECOND = 20
    made, received = await streams(1)
    (stream, listening), texts = made[0], received[0]
    try:
        for index in range(12):
            await stream.partial(f"word{index} ")
            clock.now += 0.060
        assert texts == [f"word{i} " for i in range(12)]
        await stream.flush()
        assert len(texts) == 12
    finally:
        stream.close()
        await listening.close()


async def test_chunks_inside_the_window_wait_for_it_then_go_out_together(
    clock, settings
):
    settings.AGENTRY_STREAM_FRAMES_PER_SECOND = 20
    made, received = await streams(1)
    (stream, listening), texts = made[0], received[0]
    try:
        await stream.partial("a ")
        clock.now += 0.010
        await stream.partial("b ")
        await stream.partial("c ")
        assert texts == ["a "], "text inside the window is held"
        await stream.flush()
        assert texts == ["a ", "b c "]
    finally:
        stream.close()
        await listening.close()
