"""(a) Streaming overhead: what a websocket client waits for beyond the model.

`python -m bench.streaming [--backend embedded|postgres] [--size quick|full]`

A real websocket client against a live daphne process sends a message and
times the first partial frame (time to first token) and the terminal
execution frame (whole turn); bare pydantic-ai streams the same answer from
the same fake model in a process of its own. Overhead is the time seen minus
the fake model's own sleeps. Loads: 1, 5 ("light": the target), 50 and 200
concurrent sessions, each on a fresh session per round, rounds alternating
Agentry and bare pydantic-ai.

Targets: at light load (5 sessions, 10 ms between tokens) Agentry's per-turn
overhead is at most 1.3x bare pydantic-ai's; no failed turn at 50 and 200.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

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
    rounded,
    run_agentry_ws,
    run_bare,
    skip,
)

NAME = "streaming"
WORKLOAD = Workload(tokens=20, delay_ms=10.0)
LIGHT = 5
LIGHT_OVERHEAD_RATIO = 1.3


@dataclass(frozen=True)
class Load:
    sessions: int
    turns: int
    rounds: int


SIZES = {
    "quick": [Load(1, 4, 2), Load(LIGHT, 4, 3), Load(50, 1, 1), Load(200, 1, 1)],
    "full": [Load(1, 10, 5), Load(LIGHT, 6, 7), Load(50, 4, 3), Load(200, 2, 3)],
}


def _summary(samples: list[Sample], workload: Workload) -> dict[str, float]:
    latencies = [x for s in samples for x in s.latencies()]
    ttfts = [x for s in samples for x in s.ttfts()]
    # Medians of each round's median: rounds alternate, so a burst of load
    # from elsewhere on the machine hits one round, not the statistic.
    turn = median([median(s.latencies()) for s in samples if s.latencies()])
    first = median([median(s.ttfts()) for s in samples if s.ttfts()])
    return {
        "turns": sum(s.turns for s in samples),
        "failed": sum(s.failed for s in samples),
        "ttft_p50": first,
        "ttft_p95": percentile(ttfts, 95),
        "latency_p50": turn,
        "latency_p95": percentile(latencies, 95),
        "ttft_overhead": first - workload.ttft_seconds,
        "turn_overhead": turn - workload.model_seconds,
        # Bare: its whole process; Agentry: the server process.
        "cpu_per_turn": median([s.cpu / s.turns for s in samples if s.turns]),
    }


def main() -> int:
    args = cli(__doc__.splitlines()[0])
    reason = available(args.backend)
    if reason:
        return skip(NAME, args.backend, reason)
    loads = SIZES[args.size]
    report = Report(
        NAME,
        args.backend,
        {
            "tokens": WORKLOAD.tokens,
            "delay_ms": WORKLOAD.delay_ms,
            "model_seconds": WORKLOAD.model_seconds,
            "loads": [vars(load) for load in loads],
        },
    )
    rows = []
    with open_backend(args.backend) as backend, Deployment.start(backend) as live:
        assert live.model is not None
        warm = live.create_sessions(2)
        run_agentry_ws(live, warm, WORKLOAD, turns=1)
        for load in loads:
            bare: list[Sample] = []
            ours: list[Sample] = []
            for _ in range(load.rounds):
                bare.append(
                    run_bare(
                        live.model.base_url,
                        WORKLOAD,
                        sessions=load.sessions,
                        turns=load.turns,
                    )
                )
                sessions = live.create_sessions(load.sessions)
                ours.append(run_agentry_ws(live, sessions, WORKLOAD, turns=load.turns))
            b, a = _summary(bare, WORKLOAD), _summary(ours, WORKLOAD)
            ratio = a["turn_overhead"] / b["turn_overhead"]
            ttft_ratio = a["ttft_overhead"] / b["ttft_overhead"]
            for label, s in (("bare", b), ("agentry", a)):
                rows.append(
                    (
                        load.sessions,
                        label,
                        f"{s['turns']}",
                        f"{s['failed']}",
                        fmt(s["ttft_p50"]),
                        fmt(s["ttft_p95"]),
                        fmt(s["latency_p50"]),
                        fmt(s["latency_p95"]),
                        fmt(s["ttft_overhead"]),
                        fmt(s["turn_overhead"]),
                        fmt(s["cpu_per_turn"]),
                        fmt(ttft_ratio, "x") if label == "agentry" else "",
                        fmt(ratio, "x") if label == "agentry" else "",
                    )
                )
            report.results[str(load.sessions)] = {
                "bare": {k: rounded(v) for k, v in b.items()},
                "agentry": {k: rounded(v) for k, v in a.items()},
                "ttft_overhead_ratio": rounded(ttft_ratio, 3),
                "turn_overhead_ratio": rounded(ratio, 3),
                "agentry_errors": sorted({e for s in ours for e in s.errors()}),
            }
            if load.sessions == LIGHT:
                report.target(
                    f"turn overhead ratio at {LIGHT} sessions (agentry/bare)",
                    ratio,
                    LIGHT_OVERHEAD_RATIO,
                )
            if load.sessions >= 50:
                report.target(
                    f"failed turns at {load.sessions} sessions", a["failed"], 0
                )
            for s in ours:
                for error in s.errors():
                    report.note(f"{load.sessions} sessions: {error}")
    report.table(
        f"streaming overhead [{args.backend}]: {WORKLOAD.tokens} tokens, "
        f"{WORKLOAD.delay_ms:g} ms apart; model's own time "
        f"{fmt(WORKLOAD.model_seconds)}",
        (
            "sessions",
            "",
            "turns",
            "failed",
            "ttft p50",
            "ttft p95",
            "turn p50",
            "turn p95",
            "ttft over",
            "turn over",
            "cpu/turn",
            "ttft ratio",
            "turn ratio",
        ),
        rows,
    )
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
