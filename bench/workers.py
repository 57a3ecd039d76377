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

import sys
from dataclasses import dataclass, field

from bench.common import (
    Backend,
    Deployment,
    Report,
    Sample,
    Workload,
    available,
    cli,
    cpu_seconds,
    fmt,
    median,
    open_backend,
    percentile,
    progress,
    rounded,
    run_agentry_ws,
    run_bare,
    skip,
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


def _row(label: str, samples: list[Sample], bare_tput: float) -> tuple[str, ...]:
    tput = median([s.throughput for s in samples])
    latencies = [x for s in samples for x in s.latencies()]
    cpu = median([s.cpu / max(1, s.turns) for s in samples])
    return (
        label,
        str(sum(s.turns for s in samples)),
        str(sum(s.failed for s in samples)),
        f"{tput:.1f}",
        fmt(percentile(latencies, 50)),
        fmt(percentile(latencies, 95)),
        fmt(cpu),
        "" if label == "bare" else fmt(tput / bare_tput, "x"),
    )


def _measure(
    backend: Backend, task_backend: str, turns: int, rounds: int
) -> dict[int, tuple[list[Sample], list[Sample]]]:
    """{workers: (bare samples, agentry samples)} on one task backend."""
    measured: dict[int, tuple[list[Sample], list[Sample]]] = {1: ([], []), 2: ([], [])}
    with WorkerDeployment.start(
        backend,
        processes=1,
        AGENTRY_TURN_EXECUTION="task",
        AGENTRY_TASK_BACKEND=task_backend,
    ) as live:
        assert live.model is not None
        live.add_worker()
        run_agentry_ws(live, live.create_sessions(4), WORKLOAD, turns=1)
        for workers, (bare, agentry) in measured.items():
            if workers == 2:
                live.add_worker()
            for index in range(rounds):
                progress(
                    f"{task_backend}: {workers} worker(s): round {index + 1}/{rounds}"
                )
                bare.append(
                    run_bare(
                        live.model.base_url, WORKLOAD, sessions=SESSIONS, turns=turns
                    )
                )
                agentry.append(
                    run_agentry_ws(
                        live, live.create_sessions(SESSIONS), WORKLOAD, turns=turns
                    )
                )
    return measured


def main() -> int:
    args = cli(__doc__.splitlines()[0])
    if args.backend != "postgres":
        return skip(
            NAME, args.backend, "workers need PostgreSQL and Redis shared with the web"
        )
    reason = available(args.backend)
    if reason:
        return skip(NAME, args.backend, reason)
    size = SIZES[args.size]
    turns, rounds = size["turns"], size["rounds"]
    report = Report(
        NAME,
        args.backend,
        {"tokens": WORKLOAD.tokens, "sessions": SESSIONS, "turns": turns},
    )
    measured = {}
    with open_backend(args.backend) as backend:
        for task_backend in TASK_BACKENDS:
            measured[task_backend] = _measure(backend, task_backend, turns, rounds)
    bare_all = [
        s for runs in measured.values() for bare, _ in runs.values() for s in bare
    ]
    bare_tput = median([s.throughput for s in bare_all])
    rows = [_row("bare", bare_all, bare_tput)]
    report.results = {"bare_turns_per_s": rounded(bare_tput, 2)}
    agentry_all: list[Sample] = []
    for task_backend, runs in measured.items():
        # The database backend's keys keep their names from before RQ was measured.
        prefix = "" if task_backend == "database" else f"{task_backend}_"
        for workers, (_, agentry) in runs.items():
            agentry_all += agentry
            label = f"1 web + {workers} worker{'s' if workers > 1 else ''}"
            rows.append(_row(f"{label} ({task_backend})", agentry, bare_tput))
            tput = median([s.throughput for s in agentry])
            key = f"{prefix}{'one_worker' if workers == 1 else 'two_workers'}"
            report.results[f"{key}_turns_per_s"] = rounded(tput, 2)
            report.results[f"{key}_ratio"] = rounded(tput / bare_tput, 3)
    report.table(
        f"workers [{args.backend}]: {SESSIONS} sessions x {turns} turns, "
        f"{WORKLOAD.tokens}-token answers, no model delay, task mode, "
        f"task backends {' and '.join(TASK_BACKENDS)}; median of {rounds} rounds",
        ("", "turns", "failed", "turns/s", "turn p50", "turn p95", "cpu/turn", "ratio"),
        rows,
    )
    report.results["failed"] = sum(s.failed for s in agentry_all)
    report.results["errors"] = sorted({e for s in agentry_all for e in s.errors()})
    for task_backend in TASK_BACKENDS:
        prefix = "" if task_backend == "database" else f"{task_backend}_"
        report.target(
            f"1 web + 1 worker ({task_backend}) turns/s ratio at {SESSIONS} "
            "sessions (agentry/bare)",
            report.results[f"{prefix}one_worker_ratio"],
            ONE_WORKER_RATIO,
            "min",
        )
    report.target("failed turns", report.results["failed"], 0)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
