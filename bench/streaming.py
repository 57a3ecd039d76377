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

import argparse
import sys

from bench.common import (
    Deployment,
    Load,
    Report,
    Workload,
    alternate_rounds,
    fmt,
    open_backend,
    overhead_summary,
    rounded,
    scenario,
)

NAME = "streaming"
WORKLOAD = Workload(tokens=20, delay_ms=10.0)
LIGHT = 5
LIGHT_OVERHEAD_RATIO = 1.3

SIZES = {
    "quick": [Load(1, 4, 2), Load(LIGHT, 4, 3), Load(50, 1, 1), Load(200, 1, 1)],
    "full": [Load(1, 10, 5), Load(LIGHT, 6, 7), Load(50, 4, 3), Load(200, 2, 3)],
}


@scenario(NAME)
def main(args: argparse.Namespace) -> int:
    loads = SIZES[args.size]
    config = {**WORKLOAD.describe(), "loads": [vars(load) for load in loads]}
    report = Report(NAME, args.backend, config)
    rows = []
    with open_backend(args.backend) as backend, Deployment.start(backend) as live:
        live.round(WORKLOAD, sessions=2, turns=1)
        for load in loads:
            samples = alternate_rounds(load, WORKLOAD, {"agentry": live})
            ours = samples["agentry"]
            b = overhead_summary(samples["bare"], WORKLOAD)
            a = overhead_summary(ours, WORKLOAD)
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
