"""(b) Throughput: completed turns per second with an instant model.

`python -m bench.throughput [--backend embedded|postgres] [--size quick|full]`

C concurrent sessions, one websocket each, run M turns back to back against a
fake model that answers 100 tokens with no delay, so the server's CPU is the
limit. Bare pydantic-ai runs the same C x M conversations in one process.
Agentry is measured on one daphne process, then on two (the sessions split
between them, sharing the database and channel layer), rounds alternating.

Targets (PostgreSQL + Redis, the deployment): one process reaches at least
0.8x bare pydantic-ai's turns per second at 50 sessions, two processes at
least 1.6x, and no turn fails. The embedded run reports the same numbers
with only the last target.
"""

from __future__ import annotations

import argparse
import sys

from bench.common import (
    Deployment,
    Load,
    Report,
    Workload,
    alternate_rounds,
    median,
    open_backend,
    rounded,
    scenario,
    throughput_results,
    throughput_row,
)

NAME = "throughput"
ONE_PROCESS_RATIO = 0.8
TWO_PROCESSES_RATIO = 1.6
WORKLOAD = Workload(tokens=100)
SESSIONS = 50
SIZES = {"quick": {"turns": 3, "rounds": 3}, "full": {"turns": 4, "rounds": 5}}


@scenario(NAME)
def main(args: argparse.Namespace) -> int:
    size = SIZES[args.size]
    turns, rounds = size["turns"], size["rounds"]
    config = {"tokens": WORKLOAD.tokens, "sessions": SESSIONS, **size}
    report = Report(NAME, args.backend, config)
    with (
        open_backend(args.backend) as backend,
        Deployment.start(backend, processes=2) as live,
    ):
        single = Deployment(
            backend, live.servers[:1], live.model, live.api, live.agent_id
        )
        live.round(WORKLOAD, sessions=4, turns=1)
        samples = alternate_rounds(
            Load(SESSIONS, turns, rounds), WORKLOAD, {"one": single, "two": live}
        )
    bare, one, two = samples["bare"], samples["one"], samples["two"]
    bare_tput = median([s.throughput for s in bare])
    report.table(
        f"throughput [{args.backend}]: {SESSIONS} sessions x {turns} turns, "
        f"{WORKLOAD.tokens}-token answers, no model delay; median of {rounds} rounds",
        (
            "",
            "turns",
            "failed",
            "turns/s",
            "turn p50",
            "turn p95",
            "cpu/turn",
            "frames/turn",
            "ratio",
        ),
        [
            throughput_row("bare", bare, bare_tput, frames=True),
            throughput_row("agentry 1 process", one, bare_tput, frames=True),
            throughput_row("agentry 2 processes", two, bare_tput, frames=True),
        ],
    )
    report.results, ratios = throughput_results(
        bare, {"one_process": one, "two_processes": two}
    )
    report.results |= {
        "bare_cpu_per_turn": rounded(median([s.cpu / s.turns for s in bare])),
        "one_process_cpu_per_turn": rounded(median([s.cpu / s.turns for s in one])),
        "one_process_frames_per_turn": rounded(
            median([s.frames_per_turn() for s in one]), 1
        ),
    }
    if args.backend == "postgres":
        report.target(
            f"1-process turns/s ratio at {SESSIONS} sessions (agentry/bare)",
            ratios["one_process"],
            ONE_PROCESS_RATIO,
            "min",
        )
        report.target(
            f"2-process turns/s ratio at {SESSIONS} sessions (agentry/bare)",
            ratios["two_processes"],
            TWO_PROCESSES_RATIO,
            "min",
        )
    report.target("failed turns", report.results["failed"], 0)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
