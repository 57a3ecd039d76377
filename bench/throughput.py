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

import sys

from bench.common import (
    Deployment,
    Report,
    Sample,
    Workload,
    available,
    cli,
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

NAME = "throughput"
ONE_PROCESS_RATIO = 0.8
TWO_PROCESSES_RATIO = 1.6
WORKLOAD = Workload(tokens=100)
SESSIONS = 50
SIZES = {"quick": {"turns": 3, "rounds": 3}, "full": {"turns": 4, "rounds": 5}}


def _row(label: str, samples: list[Sample], bare_tput: float) -> tuple[str, ...]:
    tput = median([s.throughput for s in samples])
    latencies = [x for s in samples for x in s.latencies()]
    cpu = median([s.cpu / max(1, s.turns) for s in samples])
    frames = median([s.frames_per_turn() for s in samples])
    return (
        label,
        str(sum(s.turns for s in samples)),
        str(sum(s.failed for s in samples)),
        f"{tput:.1f}",
        fmt(percentile(latencies, 50)),
        fmt(percentile(latencies, 95)),
        fmt(cpu),
        "" if label == "bare" else f"{frames:.1f}",
        "" if label == "bare" else fmt(tput / bare_tput, "x"),
    )


def main() -> int:
    args = cli(__doc__.splitlines()[0])
    reason = available(args.backend)
    if reason:
        return skip(NAME, args.backend, reason)
    size = SIZES[args.size]
    turns, rounds = size["turns"], size["rounds"]
    report = Report(
        NAME,
        args.backend,
        {
            "tokens": WORKLOAD.tokens,
            "sessions": SESSIONS,
            "turns": turns,
            "rounds": rounds,
        },
    )
    bare: list[Sample] = []
    one: list[Sample] = []
    two: list[Sample] = []
    with (
        open_backend(args.backend) as backend,
        Deployment.start(backend, processes=2) as live,
    ):
        assert live.model is not None
        single = Deployment(
            backend, live.servers[:1], live.model, live.api, live.agent_id
        )
        run_agentry_ws(live, live.create_sessions(4), WORKLOAD, turns=1)
        for index in range(rounds):
            progress(f"round {index + 1}/{rounds}")
            bare.append(
                run_bare(live.model.base_url, WORKLOAD, sessions=SESSIONS, turns=turns)
            )
            one.append(
                run_agentry_ws(
                    single, live.create_sessions(SESSIONS), WORKLOAD, turns=turns
                )
            )
            two.append(
                run_agentry_ws(
                    live, live.create_sessions(SESSIONS), WORKLOAD, turns=turns
                )
            )
    bare_tput = median([s.throughput for s in bare])
    one_tput = median([s.throughput for s in one])
    two_tput = median([s.throughput for s in two])
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
            _row("bare", bare, bare_tput),
            _row("agentry 1 process", one, bare_tput),
            _row("agentry 2 processes", two, bare_tput),
        ],
    )
    report.results = {
        "bare_turns_per_s": rounded(bare_tput, 2),
        "one_process_turns_per_s": rounded(one_tput, 2),
        "two_processes_turns_per_s": rounded(two_tput, 2),
        "one_process_ratio": rounded(one_tput / bare_tput, 3),
        "two_processes_ratio": rounded(two_tput / bare_tput, 3),
        "bare_cpu_per_turn": rounded(median([s.cpu / s.turns for s in bare])),
        "one_process_cpu_per_turn": rounded(median([s.cpu / s.turns for s in one])),
        "one_process_frames_per_turn": rounded(
            median([s.frames_per_turn() for s in one]), 1
        ),
        "failed": sum(s.failed for s in one + two),
        "errors": sorted({e for s in one + two for e in s.errors()}),
    }
    if args.backend == "postgres":
        report.target(
            f"1-process turns/s ratio at {SESSIONS} sessions (agentry/bare)",
            one_tput / bare_tput,
            ONE_PROCESS_RATIO,
            "min",
        )
        report.target(
            f"2-process turns/s ratio at {SESSIONS} sessions (agentry/bare)",
            two_tput / bare_tput,
            TWO_PROCESSES_RATIO,
            "min",
        )
    report.target("failed turns", report.results["failed"], 0)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
