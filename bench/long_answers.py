"""(c) Long answers: a 2,000-token answer streamed with no delay.

`python -m bench.long_answers [--backend embedded|postgres] [--size quick|full]`

One session, one websocket, turns back to back: the fake model sends 2,000
words as fast as it can, so the time per token is what the stack adds per
streamed chunk (pydantic-ai and the OpenAI SDK for bare pydantic-ai; plus
partial frames through the channel layer and the websocket for Agentry).
Rounds alternate; the figure is the median wall time of a turn divided by
its tokens.

Target: Agentry's wall time per token is at most 1.3x bare pydantic-ai's.
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
    median,
    open_backend,
    rounded,
    scenario,
)

NAME = "long_answers"
WORKLOAD = Workload(tokens=2000)
SIZES = {"quick": {"turns": 2, "rounds": 2}, "full": {"turns": 3, "rounds": 7}}


@scenario(NAME)
def main(args: argparse.Namespace) -> int:
    size = SIZES[args.size]
    report = Report(NAME, args.backend, {"tokens": WORKLOAD.tokens, **size})
    with open_backend(args.backend) as backend, Deployment.start(backend) as live:
        live.round(Workload(tokens=20), sessions=1, turns=1)
        samples = alternate_rounds(
            Load(1, size["turns"], size["rounds"]), WORKLOAD, {"agentry": live}
        )
    bare, ours = samples["bare"], samples["agentry"]
    per_token = {
        label: median([median(s.latencies()) for s in samples if s.latencies()])
        / WORKLOAD.tokens
        for label, samples in (("bare", bare), ("agentry", ours))
    }
    ttft = {
        label: median([median(s.ttfts()) for s in samples if s.ttfts()])
        for label, samples in (("bare", bare), ("agentry", ours))
    }
    cpu = {
        "bare": median([s.cpu / s.turns for s in bare]) / WORKLOAD.tokens,
        "agentry": median([s.cpu / s.turns for s in ours]) / WORKLOAD.tokens,
    }
    ratio = per_token["agentry"] / per_token["bare"]
    report.table(
        f"long answers [{args.backend}]: {WORKLOAD.tokens} tokens, no delay; "
        f"median of {size['rounds']} rounds x {size['turns']} turns",
        ("", "failed", "ttft", "turn", "per token", "cpu per token", "ratio"),
        [
            (
                label,
                str(sum(s.failed for s in samples)),
                fmt(ttft[label]),
                fmt(per_token[label] * WORKLOAD.tokens),
                f"{per_token[label] * 1e6:.0f} us",
                f"{cpu[label] * 1e6:.0f} us",
                fmt(ratio, "x") if label == "agentry" else "",
            )
            for label, samples in (("bare", bare), ("agentry", ours))
        ],
    )
    report.results = {
        "bare_seconds_per_token": rounded(per_token["bare"], 8),
        "agentry_seconds_per_token": rounded(per_token["agentry"], 8),
        "bare_cpu_per_token": rounded(cpu["bare"], 8),
        "agentry_server_cpu_per_token": rounded(cpu["agentry"], 8),
        "ratio": rounded(ratio, 3),
        "failed": sum(s.failed for s in ours),
    }
    report.target("wall time per token (agentry/bare)", ratio, 1.3)
    report.target("failed turns", report.results["failed"], 0)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
