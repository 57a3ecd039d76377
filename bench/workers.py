"""(h) Workers: turn throughput when web processes only accept and stream.

`python -m bench.workers [--backend postgres] [--size quick|full]`

With `AGENTRY_TURN_EXECUTION=task` a daphne process stores each turn and
queues it on the Django Tasks database queue; `manage.py worker` processes
claim and run the turns and their frames reach the websockets through Redis.
50 concurrent sessions (one websocket each on the one web process) run M
turns back to back against a fake model that answers 100 tokens with no
delay; measured with one worker, then with two, against bare pydantic-ai
running the same 50 x M conversations, rounds alternating, so the cost of the
queue hop is measured rather than guessed. PostgreSQL and Redis only: web
and worker processes must share the database and the channel layer.

Targets: no turn fails; one worker reaches at least 0.5x bare pydantic-ai's
turns per second (one web process + one worker both spend CPU per turn, and
the queue adds a claim per turn).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from bench.common import (
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
    bare_one: list[Sample] = []
    bare_two: list[Sample] = []
    one: list[Sample] = []
    two: list[Sample] = []
    with (
        open_backend(args.backend) as backend,
        WorkerDeployment.start(
            backend, processes=1, AGENTRY_TURN_EXECUTION="task"
        ) as live,
    ):
        assert live.model is not None
        live.add_worker()
        run_agentry_ws(live, live.create_sessions(4), WORKLOAD, turns=1)
        for workers, (bare, agentry) in ((1, (bare_one, one)), (2, (bare_two, two))):
            if workers == 2:
                live.add_worker()
            for index in range(rounds):
                progress(f"{workers} worker(s): round {index + 1}/{rounds}")
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
    bare_tput = median([s.throughput for s in bare_one + bare_two])
    one_tput = median([s.throughput for s in one])
    two_tput = median([s.throughput for s in two])
    report.table(
        f"workers [{args.backend}]: {SESSIONS} sessions x {turns} turns, "
        f"{WORKLOAD.tokens}-token answers, no model delay, task mode; "
        f"median of {rounds} rounds",
        ("", "turns", "failed", "turns/s", "turn p50", "turn p95", "cpu/turn", "ratio"),
        [
            _row("bare", bare_one + bare_two, bare_tput),
            _row("1 web + 1 worker", one, bare_tput),
            _row("1 web + 2 workers", two, bare_tput),
        ],
    )
    report.results = {
        "bare_turns_per_s": rounded(bare_tput, 2),
        "one_worker_turns_per_s": rounded(one_tput, 2),
        "two_workers_turns_per_s": rounded(two_tput, 2),
        "one_worker_ratio": rounded(one_tput / bare_tput, 3),
        "two_workers_ratio": rounded(two_tput / bare_tput, 3),
        "failed": sum(s.failed for s in one + two),
        "errors": sorted({e for s in one + two for e in s.errors()}),
    }
    report.target(
        f"1 web + 1 worker turns/s ratio at {SESSIONS} sessions (agentry/bare)",
        one_tput / bare_tput,
        ONE_WORKER_RATIO,
        "min",
    )
    report.target("failed turns", report.results["failed"], 0)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
