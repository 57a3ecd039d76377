"""(h) Workers: turn throughput when web processes only accept and stream.

`python -m bench.workers [--backend postgres] [--size quick|full]`

With `AGENTRY_TURN_EXECUTION=task` a daphne process stores each turn and
queues it on the Django Tasks queue; `manage.py worker` processes claim and
run the turns and their frames reach the websockets through Redis. 50
concurrent sessions (one websocket each on the one web process) run M
turns back to back against a fake model that answers 100 tokens with no
delay; measured with one worker, then with two, against bare pydantic-ai
running the same 50 x M conversations, rounds alternating, so the cost of the
queue hop is measured rather than guessed. All of it twice, once per task
backend (`AGENTRY_TASK_BACKEND=database`, then `rq`), each on a deployment of
its own. PostgreSQL and Redis only: web and worker processes must share the
database and the channel layer.

Targets: no turn fails; on each task backend one worker reaches at least
0.5x bare pydantic-ai's turns per second (one web process + one worker both
spend CPU per turn, and the queue adds a claim per turn).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from bench.common import (
    Backend,
    Deployment,
    Load,
    Report,
    Sample,
    Workload,
    alternate_rounds,
    cpu_seconds,
    median,
    open_backend,
    scenario,
    throughput_results,
    throughput_row,
)
from testing.workers import LiveWorker

NAME = "workers"
ONE_WORKER_RATIO = 0.5
WORKLOAD = Workload(tokens=100)
SESSIONS = 50
#: Measured in this order, each on a deployment of its own.
TASK_BACKENDS = ("database", "rq")
SIZES = {"quick": {"turns": 2, "rounds": 2}, "full": {"turns": 4, "rounds": 4}}


@dataclass
class WorkerDeployment(Deployment):
    """A task-mode deployment: its CPU is the web process's and the workers'."""

    workers: list[LiveWorker] = field(default_factory=list)

    def add_worker(self) -> LiveWorker:
        logs = self.backend.workdir / "logs"
        worker = LiveWorker(self.env, logs, name=f"worker-{len(self.workers)}")
        self.workers.append(worker.start())
        return worker

    def server_cpu(self) -> float:
        processes = [*self.servers, *self.workers]
        return sum(cpu_seconds(p.pid) for p in processes if p.running())

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        super().stop()


def _measure(
    backend: Backend, task_backend: str, load: Load
) -> dict[int, dict[str, list[Sample]]]:
    """{workers: {"bare": samples, "agentry": samples}} on one task backend."""
    runs: dict[int, dict[str, list[Sample]]] = {}
    with WorkerDeployment.start(
        backend,
        processes=1,
        AGENTRY_TURN_EXECUTION="task",
        AGENTRY_TASK_BACKEND=task_backend,
    ) as live:
        live.add_worker()
        live.round(WORKLOAD, sessions=4, turns=1)
        for workers in (1, 2):
            if workers == 2:
                live.add_worker()
            runs[workers] = alternate_rounds(
                load,
                WORKLOAD,
                {"agentry": live},
                label=f"{task_backend}: {workers} worker(s): ",
            )
    return runs


@scenario(NAME, postgres_only="workers need PostgreSQL and Redis shared with the web")
def main(args: argparse.Namespace) -> int:
    size = SIZES[args.size]
    turns, rounds = size["turns"], size["rounds"]
    report = Report(
        NAME,
        args.backend,
        {"tokens": WORKLOAD.tokens, "sessions": SESSIONS, "turns": turns},
    )
    with open_backend(args.backend) as backend:
        measured = {
            task_backend: _measure(backend, task_backend, Load(SESSIONS, turns, rounds))
            for task_backend in TASK_BACKENDS
        }
    bare = [
        s for runs in measured.values() for run in runs.values() for s in run["bare"]
    ]
    bare_tput = median([s.throughput for s in bare])
    rows = [throughput_row("bare", bare, bare_tput)]
    contenders: dict[str, list[Sample]] = {}
    for task_backend, runs in measured.items():
        # The database backend's keys keep their names from before RQ was measured.
        prefix = "" if task_backend == "database" else f"{task_backend}_"
        for workers, run in runs.items():
            label = f"1 web + {workers} worker{'s' if workers > 1 else ''}"
            rows.append(
                throughput_row(f"{label} ({task_backend})", run["agentry"], bare_tput)
            )
            key = f"{prefix}{'one_worker' if workers == 1 else 'two_workers'}"
            contenders[key] = run["agentry"]
    report.table(
        f"workers [{args.backend}]: {SESSIONS} sessions x {turns} turns, "
        f"{WORKLOAD.tokens}-token answers, no model delay, task mode, "
        f"task backends {' and '.join(TASK_BACKENDS)}; median of {rounds} rounds",
        ("", "turns", "failed", "turns/s", "turn p50", "turn p95", "cpu/turn", "ratio"),
        rows,
    )
    report.results, ratios = throughput_results(bare, contenders)
    for task_backend in TASK_BACKENDS:
        prefix = "" if task_backend == "database" else f"{task_backend}_"
        report.target(
            f"1 web + 1 worker ({task_backend}) turns/s ratio at {SESSIONS} "
            "sessions (agentry/bare)",
            ratios[f"{prefix}one_worker"],
            ONE_WORKER_RATIO,
            "min",
        )
    report.target("failed turns", report.results["failed"], 0)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
