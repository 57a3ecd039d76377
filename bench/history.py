"""(d) History growth: a turn in a session with 10 vs 1,000 stored events.

`python -m bench.history [--backend embedded|postgres] [--size quick|full]`

Runs the turn runner in this process (`submit_turn` + `wait_for_execution`,
the same calls the websocket consumer makes) against the fake model server,
so every SQL statement of a turn can be counted: a wrapper is installed on
each database connection as it is opened, in whichever worker thread the
runner's database calls run. Two sessions are seeded with 5 and 500 finished
turns (10 and 1,000 events, each turn's pydantic-ai messages stored on its
execution as the runner stores them); turns alternate between them. Bare
pydantic-ai runs the same turn with 10 and 1,000 messages of history.

The sessions are measured twice: with the whole history sent to the model
(the default) and with it bounded to the last `BOUND` turns
(`AGENTRY_HISTORY_TURNS`), the deployment setting for long sessions.

Targets: a turn with 1,000 stored events takes at most 1.5x the time of one
with 10 with the history bounded (unbounded, the model request itself grows
with the history: bare pydantic-ai's own ratio is reported beside Agentry's),
and issues the same number of SQL statements either way.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.common import (
    Backend,
    Report,
    Workload,
    fmt,
    median,
    open_backend,
    rounded,
    scenario,
    setup_django,
)
from testing.fake_openai import FAKE_MODEL
from testing.live import FakeModelServer

NAME = "history"
WORKLOAD = Workload(tokens=20)
SHORT, LONG = 10, 1000
#: Turns of history the bounded run sends to the model.
BOUND = 20
SIZES = {"quick": {"turns": 8}, "full": {"turns": 25}}


class QueryCounter:
    """Counts the SQL statements of every connection, in every thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.statements: list[str] = []

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: Any,
    ) -> Any:
        with self._lock:
            self.statements.append(sql)
        return execute(sql, params, many, context)

    def install(self) -> None:
        from django.db import connections
        from django.db.backends.signals import connection_created

        def attach(sender: Any, connection: Any, **kwargs: Any) -> None:
            if self not in connection.execute_wrappers:
                connection.execute_wrappers.append(self)

        connection_created.connect(attach, weak=False, dispatch_uid="bench-queries")
        for connection in connections.all():
            attach(None, connection)

    def take(self) -> list[str]:
        with self._lock:
            taken, self.statements = self.statements, []
        return taken


def _seed(events: int, user: Any, agent: Any) -> Any:
    """A session with `events` stored events: events/2 finished turns."""
    from django.utils import timezone
    from pydantic_ai import ModelMessagesTypeAdapter

    from bench.baseline import synthetic_history
    from sessions_app.models import AgentExecution, Event, Session

    session = Session.objects.create(user=user, agent=agent)
    turn_messages = synthetic_history(2)
    dumped = ModelMessagesTypeAdapter.dump_python(turn_messages, mode="json")
    answer = turn_messages[1].parts[0].content
    now = timezone.now()
    executions, rows = [], []
    for turn in range(events // 2):
        execution = AgentExecution(
            session=session,
            agent=agent,
            agent_version=agent.version,
            user=user,
            status=AgentExecution.Status.SUCCEEDED,
            input=f"Earlier question {turn}.",
            model=agent.model,
            output=answer,
            messages=dumped,
            usage={"requests": 1},
            started_at=now,
            finished_at=now,
            heartbeat_at=now,
        )
        executions.append(execution)
        rows.append(
            Event(
                session=session,
                execution=execution,
                author=Event.Author.USER,
                content=execution.input,
                sequence_number=2 * turn + 1,
            )
        )
        rows.append(
            Event(
                session=session,
                execution=execution,
                author=Event.Author.AGENT,
                content=answer,
                turn_complete=True,
                sequence_number=2 * turn + 2,
            )
        )
    AgentExecution.objects.bulk_create(executions, batch_size=500)
    Event.objects.bulk_create(rows, batch_size=1000)
    Session.objects.filter(pk=session.pk).update(last_sequence=events)
    return session


def _prepare(backend: Backend, model_url: str) -> tuple[Any, dict[int, Any]]:
    setup_django(backend.env(model_url))
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.models import User
    from agents.services import agent_create

    user = User.objects.create_user("bench", "bench@example.com", "Sturdy-passw0rd!")
    agent = agent_create(
        owner=user,
        fields={
            "name": "bench",
            "model": FAKE_MODEL,
            "instructions": "Answer briefly.",
        },
    )
    return user, {n: _seed(n, user, agent) for n in (SHORT, LONG)}


async def _turn(session: Any, user: Any) -> tuple[float, str]:
    from sessions_app import runner

    started = time.perf_counter()
    submission = await runner.submit_turn(
        runner.TurnRequest(
            session_id=session.pk, user_id=user.pk, content=WORKLOAD.prompt
        )
    )
    execution = await runner.wait_for_execution(submission)
    return time.perf_counter() - started, execution.status


def _context_load_seconds(session: Any, repeat: int = 5) -> float:
    """How long the runner's per-turn context load takes for this session."""
    from sessions_app.context import load_context
    from sessions_app.models import AgentExecution

    execution = AgentExecution.objects.filter(session=session).latest("created_at")
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        load_context(str(execution.pk))
        timings.append(time.perf_counter() - started)
    return median(timings)


async def _agentry(
    user: Any, sessions: dict[int, Any], turns: int, counter: QueryCounter
) -> dict[int, dict[str, Any]]:
    measured: dict[int, dict[str, Any]] = {
        n: {"latency": [], "queries": [], "failed": 0} for n in sessions
    }
    for n in sessions:  # warm-up: model client, caches
        await _turn(sessions[n], user)
    for _ in range(turns):
        for n, session in sessions.items():
            counter.take()
            latency, status = await _turn(session, user)
            # Heartbeat and sweep tasks run on their own clock, not per turn.
            measured[n]["queries"].append(counter.take())
            measured[n]["latency"].append(latency)
            measured[n]["failed"] += status != "succeeded"
    return measured


async def _bare(model_url: str, turns: int) -> dict[int, float]:
    from bench.baseline import run

    latencies: dict[int, list[float]] = {SHORT: [], LONG: []}
    for _ in range(turns):
        for n in (SHORT, LONG):
            result = await run(
                model_url,
                sessions=1,
                turns=1,
                prompt=WORKLOAD.prompt,
                history_messages=n,
            )
            latencies[n].append(result["records"][0]["latency"])
    return {n: median(values) for n, values in latencies.items()}


def _summary(measured: dict[str, Any]) -> dict[str, Any]:
    """Latency, statement counts and failures of one session's measured turns."""
    counts = [len(q) for q in measured["queries"]]
    return {
        "latency": median(measured["latency"]),
        "queries_min": min(counts),
        "queries_max": max(counts),
        "queries_median": median(counts),
        "failed": measured["failed"],
    }


def _statement_counts(summary: dict[str, Any]) -> str:
    low, high = summary["queries_min"], summary["queries_max"]
    return str(low) if low == high else f"{low}-{high}"


@scenario(NAME)
def main(args: argparse.Namespace) -> int:
    turns = SIZES[args.size]["turns"]
    report = Report(
        NAME,
        args.backend,
        {"events": [SHORT, LONG], "turns": turns, "tokens": WORKLOAD.tokens},
    )
    with open_backend(args.backend) as backend:
        model = FakeModelServer(backend.workdir / "logs").start()
        try:
            user, sessions = _prepare(backend, model.base_url)
            from pydantic_ai import models

            models.ALLOW_MODEL_REQUESTS = True
            counter = QueryCounter()
            counter.install()
            measured = asyncio.run(_agentry(user, sessions, turns, counter))
            from django.conf import settings

            settings.AGENTRY_HISTORY_TURNS = BOUND
            bounded = asyncio.run(_agentry(user, sessions, turns, counter))
            settings.AGENTRY_HISTORY_TURNS = 0
            bare = asyncio.run(_bare(model.base_url, turns))
            context = {n: _context_load_seconds(sessions[n]) for n in (SHORT, LONG)}
        finally:
            model.stop()
            from django.db import connections

            connections.close_all()
    rows, summary = [], {}
    for n in (SHORT, LONG):
        summary[n] = _summary(measured[n]) | {
            "bare_latency": bare[n],
            "overhead": median(measured[n]["latency"]) - bare[n],
            "context_load": context[n],
        }
        rows.append(
            (
                n,
                fmt(summary[n]["latency"]),
                fmt(bare[n]),
                fmt(summary[n]["overhead"]),
                fmt(context[n]),
                _statement_counts(summary[n]),
                str(summary[n]["failed"]),
            )
        )
    for n in (SHORT, LONG):
        summary[f"{n}_bounded"] = bounded_n = _summary(bounded[n])
        rows.append(
            (
                f"{n} (last {BOUND} turns)",
                fmt(bounded_n["latency"]),
                "",
                "",
                "",
                _statement_counts(bounded_n),
                str(bounded_n["failed"]),
            )
        )
    latency_ratio = summary[LONG]["latency"] / summary[SHORT]["latency"]
    bounded_ratio = (
        summary[f"{LONG}_bounded"]["latency"] / summary[f"{SHORT}_bounded"]["latency"]
    )
    bare_ratio = bare[LONG] / bare[SHORT]
    report.table(
        f"history growth [{args.backend}]: {WORKLOAD.tokens}-token answers, "
        f"no model delay, in-process runner; median of {turns} turns each",
        (
            "stored events",
            "agentry turn",
            "bare turn",
            "agentry - bare",
            "context load",
            "SQL per turn",
            "failed",
        ),
        rows,
    )
    kinds = collections.Counter(
        statement.split()[0].upper() for statement in measured[LONG]["queries"][-1]
    )
    report.note(
        "statements of one turn (1,000 events): "
        + ", ".join(f"{kind} {count}" for kind, count in kinds.most_common())
    )
    report.results = {
        str(n): {k: rounded(v) if isinstance(v, float) else v for k, v in s.items()}
        for n, s in summary.items()
    } | {
        "latency_ratio": rounded(latency_ratio, 3),
        "bounded_latency_ratio": rounded(bounded_ratio, 3),
        "bare_latency_ratio": rounded(bare_ratio, 3),
        "overhead_ratio": rounded(
            summary[LONG]["overhead"] / summary[SHORT]["overhead"], 3
        ),
    }
    report.note(
        f"unbounded history: 1,000 / 10 events {latency_ratio:.2f}x "
        f"(bare pydantic-ai with the same messages: {bare_ratio:.2f}x)"
    )
    report.target(
        f"turn latency 1,000 / 10 events, last {BOUND} turns", bounded_ratio, 1.5
    )
    report.target(
        "extra SQL statements per turn at 1,000 events",
        max(
            summary[LONG]["queries_max"] - summary[SHORT]["queries_min"],
            summary[f"{LONG}_bounded"]["queries_max"]
            - summary[f"{SHORT}_bounded"]["queries_min"],
        ),
        0,
    )
    report.target("failed turns", sum(s.get("failed", 0) for s in summary.values()), 0)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
