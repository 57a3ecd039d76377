"""Bare pydantic-ai: the physical limit Agentry is measured against.

`python -m bench.baseline --base-url URL --sessions C --turns M --tokens N ...`
runs C concurrent conversations of M turns each in this one process, with the
same `OpenAIChatModel` against the same fake model server Agentry uses, the
same instructions and the same `run_stream_events` call the turn runner makes,
each conversation carrying its history from turn to turn as a chat does. It
prints one JSON line: every turn's time to first token and latency, the wall
time and this process's CPU time.

Public surface:
    run(...)                 the measurement, in a running event loop
    synthetic_history(n)     n messages of earlier conversation (user/assistant pairs)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from pydantic_ai import Agent, PartDeltaEvent, PartStartEvent, TextPart, TextPartDelta
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    UserPromptPart,
)
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings

from bench.common import cpu_seconds, prompt_for

INSTRUCTIONS = "Answer briefly."


def synthetic_history(count: int, words: int = 20) -> list[ModelMessage]:
    """`count` messages of earlier turns: alternating prompts and answers."""
    answer = " ".join(f"word{i}" for i in range(words))
    messages: list[ModelMessage] = []
    for turn in range(count // 2):
        messages.append(
            ModelRequest(
                parts=[UserPromptPart(f"Earlier question {turn}.")],
                instructions=INSTRUCTIONS,
            )
        )
        messages.append(ModelResponse(parts=[TextPart(answer)], model_name="fake"))
    return messages


def _is_text(event: Any) -> bool:
    if isinstance(event, PartStartEvent):
        return isinstance(event.part, TextPart) and bool(event.part.content)
    return (
        isinstance(event, PartDeltaEvent)
        and isinstance(event.delta, TextPartDelta)
        and bool(event.delta.content_delta)
    )


async def run(
    base_url: str,
    *,
    sessions: int,
    turns: int,
    prompt: str,
    history_messages: int = 0,
) -> dict[str, Any]:
    model = OpenAIChatModel(
        "fake", provider=OpenAIProvider(base_url=base_url, api_key="bench")
    )
    agent = Agent(
        model,
        instructions=INSTRUCTIONS,
        model_settings=ModelSettings(timeout=60.0, max_retries=0),
    )
    records: list[dict[str, Any]] = []

    async def conversation(gate: asyncio.Event) -> None:
        history: list[ModelMessage] = synthetic_history(history_messages)
        await gate.wait()
        for _ in range(turns):
            started = time.perf_counter()
            first: float | None = None
            result = None
            try:
                async with agent.run_stream_events(
                    prompt, message_history=history or None
                ) as events:
                    async for event in events:
                        if first is None and _is_text(event):
                            first = time.perf_counter() - started
                        elif hasattr(event, "result"):
                            result = event.result
                ok = result is not None
                error = "" if ok else "no result"
            except Exception as exc:
                ok, error = False, f"{type(exc).__name__}: {exc}"[:200]
            records.append(
                {
                    "ttft": first,
                    "latency": time.perf_counter() - started,
                    "ok": ok,
                    "error": error,
                }
            )
            if result is not None:
                history = result.all_messages()

    gate = asyncio.Event()
    tasks = [asyncio.create_task(conversation(gate)) for _ in range(sessions)]
    # One warm-up request opens the HTTP client, as a running server's would be.
    async with agent.run_stream_events(prompt_for(1)) as events:
        async for _ in events:
            pass
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    gate.set()
    await asyncio.gather(*tasks)
    return {
        "records": records,
        "wall": time.perf_counter() - started,
        "cpu": cpu_seconds() - cpu_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--base-url", required=True, help="the fake server's /v1 URL")
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--turns", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--history-messages", type=int, default=0)
    args = parser.parse_args()
    result = asyncio.run(
        run(
            args.base_url,
            sessions=args.sessions,
            turns=args.turns,
            prompt=prompt_for(args.tokens, args.delay_ms, args.ttft_ms),
            history_messages=args.history_messages,
        )
    )
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
