"""Load: 200 websocket sessions running turns back to back on one process.

Each session sends a turn, reads its frames to the final execution status and
sends the next, for `AGENTRY_LOAD_SECONDS` (default 60). Meanwhile the
daphne process's resident memory and the database's connections are sampled.
Afterwards every session's stored log is read back over REST: gapless
sequence numbers, every turn a user message followed by its complete agent
answer, nothing lost and nothing twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field

import pytest
from websockets.asyncio.client import connect

from testing.fake_openai import FAKE_MODEL
from tests.system.conftest import assert_gapless

pytestmark = pytest.mark.slow

SESSIONS = int(os.environ.get("AGENTRY_LOAD_SESSIONS", "200"))
SECONDS = float(os.environ.get("AGENTRY_LOAD_SECONDS", "60"))
TOKENS = 20
POOL_MAX = 10
ANSWER = " ".join(f"word{i}" for i in range(TOKENS))


@dataclass
class SessionRun:
    session_id: str
    turns: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


@dataclass
class Samples:
    rss: list[tuple[float, int]] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)


async def _run_session(url: str, run: SessionRun, deadline: float) -> None:
    async with connect(url, open_timeout=60, max_queue=None) as ws:
        while time.monotonic() < deadline:
            started = time.monotonic()
            await ws.send(
                json.dumps(
                    {
                        "type": "message",
                        "content": f"[[tokens={TOKENS} delay=5]] turn {run.turns}",
                        "client_message_id": uuid.uuid4().hex,
                    }
                )
            )
            text, status = [], None
            while status is None:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if frame["type"] == "error":
                    run.errors.append(json.dumps(frame))
                    return
                if frame["type"] == "event" and frame["event"]["partial"]:
                    text.append(frame["event"]["content"])
                if frame["type"] == "execution" and frame["execution"][
                    "status"
                ] not in (
                    "queued",
                    "running",
                ):
                    status = frame["execution"]["status"]
            run.latencies.append(time.monotonic() - started)
            run.turns += 1
            if status != "succeeded" or "".join(text) != ANSWER:
                run.errors.append(f"turn {run.turns}: {status}, text {''.join(text)!r}")
                return


async def _sample(server, db, samples: Samples, stop: asyncio.Event) -> None:
    started = time.monotonic()
    while not stop.is_set():
        samples.rss.append((time.monotonic() - started, server.rss_bytes()))
        samples.connections.append(await asyncio.to_thread(db.connection_count))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2.0)


async def _load(server, db, urls: dict[str, str]) -> tuple[list[SessionRun], Samples]:
    runs = [SessionRun(session_id) for session_id in urls]
    samples, stop = Samples(), asyncio.Event()
    sampler = asyncio.create_task(_sample(server, db, samples, stop))
    deadline = time.monotonic() + SECONDS
    results = await asyncio.gather(
        *(_run_session(urls[r.session_id], r, deadline) for r in runs),
        return_exceptions=True,
    )
    stop.set()
    await sampler
    for run, result in zip(runs, results, strict=True):
        if isinstance(result, BaseException):
            run.errors.append(repr(result))
    return runs, samples


@pytest.mark.timeout(SECONDS + 300)
def test_200_websocket_sessions_lose_nothing_and_stay_bounded(stack_factory):
    stack = stack_factory(DATABASE_POOL_MIN=2, DATABASE_POOL_MAX=POOL_MAX)
    server = stack.server()
    api = stack.user(server)
    agent = api.create_agent(model=FAKE_MODEL)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        sessions = list(
            pool.map(lambda _: api.create_session(agent["id"])["id"], range(SESSIONS))
        )
    urls = {s: api.ws_url(server.ws_url, s) for s in sessions}
    rss_before = server.rss_bytes()

    started = time.monotonic()
    runs, samples = asyncio.run(_load(server, stack.db, urls))
    elapsed = time.monotonic() - started

    errors = [f"{r.session_id}: {e}" for r in runs for e in r.errors]
    assert not errors, errors[:10]
    turns = sum(r.turns for r in runs)
    assert min(r.turns for r in runs) >= 2, "some session ran fewer than two turns"

    # Every session's stored log, read back: exactly the turns it ran.
    for run in runs:
        events = api.all_events(run.session_id)
        assert_gapless(events)
        assert len(events) == 2 * run.turns, (run.session_id, len(events), run.turns)
        for user, agent_event in zip(events[::2], events[1::2], strict=True):
            assert (user["author"], user["kind"]) == ("user", "message")
            assert (agent_event["author"], agent_event["kind"]) == ("agent", "message")
            assert agent_event["turn_complete"] is True
            assert agent_event["content"] == ANSWER
            assert agent_event["execution"] == user["execution"]
        assert len({e["execution"] for e in events}) == run.turns

    # Memory: after the warm-up third, growth stays small.
    warm = [rss for t, rss in samples.rss if t >= SECONDS / 3]
    assert warm, samples.rss
    growth = max(warm) - warm[0]
    assert growth < max(0.10 * warm[0], 24 * 2**20), (warm[0], max(warm))
    # Connections: never more than the pool allows.
    assert max(samples.connections) <= POOL_MAX, samples.connections

    latencies = sorted(x for r in runs for x in r.latencies)
    mib = 2**20
    print(
        f"\nload: {SESSIONS} sessions, {turns} turns in {elapsed:.1f}s "
        f"({turns / elapsed:.1f} turns/s), turn p50 {latencies[len(latencies) // 2]:.3f}s "
        f"p95 {latencies[int(len(latencies) * 0.95)]:.3f}s\n"
        f"rss: before {rss_before / mib:.1f} MiB, after warm-up {warm[0] / mib:.1f} MiB, "
        f"peak {max(rss for _, rss in samples.rss) / mib:.1f} MiB, "
        f"end {samples.rss[-1][1] / mib:.1f} MiB\n"
        f"rss samples (MiB): {[round(r / mib) for _, r in samples.rss]}\n"
        f"database connections: max {max(samples.connections)} "
        f"(pool max {POOL_MAX}), samples {samples.connections}"
    )
