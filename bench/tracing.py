"""(g) Tracing cost: the same turns with tracing off and on, beside bare pydantic-ai.

`python -m bench.tracing [--backend embedded|postgres] [--size quick|full]`

Two live daphne deployments on the same backend: one without
OTEL_EXPORTER_OTLP_ENDPOINT (nothing exported, the default) and one exporting
every span over OTLP/HTTP to a local receiver (`testing.otlp`) run by this
benchmark. Websocket clients run the streaming workload on each, rounds
alternating bare pydantic-ai, tracing off and tracing on; overhead is the time
seen minus the fake model's own sleeps, as in `bench.streaming`.

Both are reported as ratios to bare pydantic-ai's overhead from the same run
(tracing off is the product as `bench.streaming` measures it, whose target
applies to it). Targets: exporting every span costs at most 1.5x the per-turn
overhead of tracing off at 5 sessions, and no turn fails either way.
"""

from __future__ import annotations

import argparse
import sys

from bench.common import (
    Deployment,
    Load,
    Report,
    alternate_rounds,
    fmt,
    open_backend,
    overhead_summary,
    rounded,
    scenario,
)
from bench.streaming import LIGHT, WORKLOAD
from testing.otlp import OtlpReceiver

NAME = "tracing"
LABELS = {"bare": "bare", "off": "tracing off", "on": "tracing on"}

SIZES = {
    "quick": [Load(1, 4, 2), Load(LIGHT, 4, 3)],
    "full": [Load(1, 10, 5), Load(LIGHT, 6, 7)],
}
#: What the table and results keep of `overhead_summary`.
FIGURES = (
    "turns",
    "failed",
    "ttft_p50",
    "latency_p50",
    "turn_overhead",
    "cpu_per_turn",
)


@scenario(NAME)
def main(args: argparse.Namespace) -> int:
    loads = SIZES[args.size]
    config = {**WORKLOAD.describe(), "loads": [vars(load) for load in loads]}
    report = Report(NAME, args.backend, config)
    rows = []
    with (
        OtlpReceiver() as receiver,
        open_backend(args.backend) as backend,
        Deployment.start(backend) as off,
        Deployment.start(
            backend,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            # The exporter's default batching (5 s, 512 spans), as deployed.
        ) as on,
    ):
        for deployment in (off, on):
            deployment.round(WORKLOAD, sessions=2, turns=1)
        for load in loads:
            samples = alternate_rounds(load, WORKLOAD, {"off": off, "on": on})
            summaries = {
                label: {
                    k: v
                    for k, v in overhead_summary(runs, WORKLOAD).items()
                    if k in FIGURES
                }
                for label, runs in samples.items()
            }
            bare = summaries["bare"]["turn_overhead"]
            result: dict[str, object] = {}
            for label, s in summaries.items():
                ratio = s["turn_overhead"] / bare
                rows.append(
                    (
                        load.sessions,
                        LABELS[label],
                        f"{s['turns']}",
                        f"{s['failed']}",
                        fmt(s["ttft_p50"]),
                        fmt(s["latency_p50"]),
                        fmt(s["turn_overhead"]),
                        fmt(s["cpu_per_turn"]),
                        "" if label == "bare" else fmt(ratio, "x"),
                    )
                )
                result[label] = {k: rounded(v) for k, v in s.items()}
                result[f"{label}_turn_overhead_ratio"] = rounded(ratio, 3)
            report.results[str(load.sessions)] = result
            if load.sessions == LIGHT:
                report.target(
                    "turn overhead at 5 sessions, tracing on / tracing off",
                    summaries["on"]["turn_overhead"]
                    / summaries["off"]["turn_overhead"],
                    1.5,
                )
            for label in ("off", "on"):
                report.target(
                    f"failed turns at {load.sessions} sessions, tracing {label}",
                    summaries[label]["failed"],
                    0,
                )
        turn_spans = sum(s.name == "agentry.turn" for s in receiver.spans())
        report.results["spans_received"] = len(receiver.spans())
        report.results["turn_spans_received"] = turn_spans
        report.note(
            f"the receiver got {len(receiver.spans())} spans, "
            f"{turn_spans} of them agentry.turn (the last batch may still be in flight)"
        )
    report.table(
        f"tracing cost [{args.backend}]: {WORKLOAD.tokens} tokens, "
        f"{WORKLOAD.delay_ms:g} ms apart; model's own time "
        f"{fmt(WORKLOAD.model_seconds)}",
        (
            "sessions",
            "",
            "turns",
            "failed",
            "ttft p50",
            "turn p50",
            "turn over",
            "cpu/turn",
            "turn ratio",
        ),
        rows,
    )
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
