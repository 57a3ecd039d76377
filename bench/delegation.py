"""(h) Delegation: a two-level delegation turn beside bare pydantic-ai doing the same.

`python -m bench.delegation [--backend embedded|postgres] [--size quick|full]`

Runs the turn runner in this process (`submit_turn` + `wait_for_execution`,
as `bench.history` does) against the fake model server. The tree turn: agent A
delegates to B (`delegate` tool), which delegates to C, which answers; five
model requests, two child executions, every event stored and published. Bare
pydantic-ai does the same in one process: A's tool runs B with
`usage=ctx.usage`, whose tool runs C, on the same `OpenAIChatModel` and fake
model. A single plain turn (one request) is measured beside it, both ways. Every
Agentry turn runs in a fresh session, as every bare run starts without history.

Overhead is Agentry's latency minus bare pydantic-ai's for the same work. The
overhead per child execution is the tree's overhead minus a single turn's,
over the two children. Target: at most 1.5x a single turn's overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from pydantic_ai import Agent, RunContext
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings

from bench.common import (
    Backend,
    Report,
    fmt,
    median,
    open_backend,
    rounded,
    scenario,
    setup_django,
)
from testing.fake_openai import FAKE_MODEL
from testing.live import FakeModelServer

NAME = "delegation"
TOKENS = 20
SIZES = {"quick": {"turns": 8}, "full": {"turns": 30}}
INSTRUCTIONS = "Answer briefly."


def call(tool: str, task: str) -> str:
    """A prompt making the fake model call `tool` with `task` (whose own
    directives reach only the agent that gets the task)."""
    args = json.dumps({"task": task}).replace("[", "\\u005b").replace("]", "\\u005d")
    return f"[[call {tool} {args}]] delegate"


LEAF = f"[[tokens={TOKENS}]] answer"
TREE_PROMPT = call("ask_middle", call("ask_leaf", LEAF))


def _prepare(
    backend: Backend, model_url: str, turns: int
) -> tuple[Any, dict[str, list[Any]]]:
    setup_django(backend.env(model_url))
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.models import User
    from agents.services import agent_create
    from sessions_app.services import session_create

    user = User.objects.create_user("bench", "bench@example.com", "Sturdy-passw0rd!")

    def agent(name: str, target: Any = None, tool: str = "") -> Any:
        tools = []
        if target is not None:
            tools = [
                {
                    "tool": "delegate",
                    "config": {"agent": str(target.pk), "name": tool},
                }
            ]
        fields = {"name": name, "model": FAKE_MODEL, "instructions": INSTRUCTIONS}
        return agent_create(owner=user, fields=fields, tools=tools)

    leaf = agent("leaf")
    middle = agent("middle", leaf, "ask_leaf")
    root = agent("root", middle, "ask_middle")
    single = agent("single")
    # A fresh session per turn (the first one warms up): bare pydantic-ai
    # carries no history, so neither may Agentry, or the tree's longer history
    # (its tool calls and results) would be counted as the children's cost,
    # growing with the number of turns.
    sessions = {
        label: [session_create(user=user, agent=chosen) for _ in range(turns + 1)]
        for label, chosen in (("single", single), ("tree", root))
    }
    return user, sessions


async def _turn(session: Any, user: Any, content: str) -> tuple[float, str]:
    from sessions_app import runner

    started = time.perf_counter()
    submission = await runner.submit_turn(
        runner.TurnRequest(session_id=session.pk, user_id=user.pk, content=content)
    )
    execution = await runner.wait_for_execution(submission)
    return time.perf_counter() - started, execution.status


async def _agentry(user: Any, sessions: dict[str, list[Any]]) -> dict[str, Any]:
    measured: dict[str, Any] = {"single": [], "tree": [], "failed": 0}
    prompts = {"single": LEAF, "tree": TREE_PROMPT}
    for round_sessions in zip(sessions["single"], sessions["tree"], strict=True):
        for label, session in zip(("single", "tree"), round_sessions, strict=True):
            latency, status = await _turn(session, user, prompts[label])
            if session is sessions[label][0]:
                continue  # warm-up: model client, caches
            measured[label].append(latency)
            measured["failed"] += status != "succeeded"
    return measured


def _bare_agents(model_url: str) -> tuple[Any, Any]:
    """Bare pydantic-ai's single agent and the root of its delegation tree."""
    model = OpenAIChatModel(
        "fake", provider=OpenAIProvider(base_url=model_url, api_key="bench")
    )
    settings = ModelSettings(max_retries=0)

    def make() -> Agent[None, str]:
        return Agent(model, instructions=INSTRUCTIONS, model_settings=settings)

    leaf, middle, root = make(), make(), make()

    async def stream(agent: Agent[None, str], prompt: str, usage: Any) -> str:
        async with agent.run_stream_events(prompt, usage=usage) as events:
            output = ""
            async for event in events:
                result = getattr(event, "result", None)
                if result is not None:
                    output = result.output
            return output

    @middle.tool
    async def ask_leaf(ctx: RunContext[None], task: str) -> str:
        return await stream(leaf, task, ctx.usage)

    @root.tool
    async def ask_middle(ctx: RunContext[None], task: str) -> str:
        return await stream(middle, task, ctx.usage)

    return make(), (root, stream)


async def _bare(model_url: str, turns: int) -> dict[str, list[float]]:
    single, (root, stream) = _bare_agents(model_url)
    measured: dict[str, list[float]] = {"single": [], "tree": []}
    await stream(single, LEAF, None)
    await stream(root, TREE_PROMPT, None)
    for _ in range(turns):
        for label, agent, prompt in (
            ("single", single, LEAF),
            ("tree", root, TREE_PROMPT),
        ):
            started = time.perf_counter()
            await stream(agent, prompt, None)
            measured[label].append(time.perf_counter() - started)
    return measured


@scenario(NAME)
def main(args: argparse.Namespace) -> int:
    turns = SIZES[args.size]["turns"]
    report = Report(NAME, args.backend, {"turns": turns, "tokens": TOKENS})
    with open_backend(args.backend) as backend:
        model = FakeModelServer(backend.workdir / "logs").start()
        try:
            user, sessions = _prepare(backend, model.base_url, turns)
            measured = asyncio.run(_agentry(user, sessions))
            bare = asyncio.run(_bare(model.base_url, turns))
        finally:
            model.stop()
            from django.db import connections

            connections.close_all()
    latency = {k: median(measured[k]) for k in ("single", "tree")}
    bare_latency = {k: median(bare[k]) for k in ("single", "tree")}
    overhead = {k: latency[k] - bare_latency[k] for k in latency}
    per_child = (overhead["tree"] - overhead["single"]) / 2
    ratio = per_child / overhead["single"] if overhead["single"] > 0 else 0.0
    report.table(
        f"{NAME} [{args.backend}]: median of {turns} turns each",
        ("turn", "agentry", "bare", "overhead"),
        [
            (label, fmt(latency[label]), fmt(bare_latency[label]), fmt(overhead[label]))
            for label in ("single", "tree")
        ],
    )
    report.note(
        f"overhead per child execution {fmt(per_child)}, "
        f"{ratio:.2f}x a single turn's overhead ({fmt(overhead['single'])})"
    )
    report.results = {
        "latency": {k: rounded(v) for k, v in latency.items()},
        "bare_latency": {k: rounded(v) for k, v in bare_latency.items()},
        "overhead": {k: rounded(v) for k, v in overhead.items()},
        "overhead_per_child": rounded(per_child),
        "per_child_ratio": rounded(ratio, 3),
    }
    report.target("overhead per child execution / a single turn's", ratio, 1.5)
    report.target("failed turns", measured["failed"], 0)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
