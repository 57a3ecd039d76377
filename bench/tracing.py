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
    rounded,
    run_agentry_ws,
    run_bare,
    skip,
)
from testing.otlp import OtlpReceiver

NAME = "tracing"
WORKLOAD = Workload(tokens=20, delay_ms=10.0)
LIGHT = 5


@dataclass(frozen=True)
class Load:
    sessions: int
    turns: int
    rounds: int


SIZES = {
    "quick": [Load(1, 4, 2), Load(LIGHT, 4, 3)],
    "full": [Load(1, 10, 5), Load(LIGHT, 6, 7)],
}


def _summary(samples: list[Sample], workload: Workload) -> dict[str, float]:
    turn = median([median(s.latencies()) for s in samples if s.latencies()])
    first = median([median(s.ttfts()) for s in samples if s.ttfts()])
    return {
        "turns": sum(s.turns for s in samples),
        "failed": sum(s.failed for s in samples),
        "ttft_p50": first,
        "latency_p50": turn,
        "turn_overhead": turn - workload.model_seconds,
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
        assert off.model is not None
        for deployment in (off, on):
            run_agentry_ws(deployment, deployment.create_sessions(2), WORKLOAD, turns=1)
        for load in loads:
            samples: dict[str, list[Sample]] = {"bare": [], "off": [], "on": []}
            for _ in range(load.rounds):
                samples["bare"].append(
                    run_bare(
                        off.model.base_url,
                        WORKLOAD,
                        sessions=load.sessions,
                        turns=load.turns,
                    )
                )
                for label, deployment in (("off", off), ("on", on)):
                    sessions = deployment.create_sessions(load.sessions)
                    samples[label].append(
                        run_agentry_ws(deployment, sessions, WORKLOAD, turns=load.turns)
                    )
            summaries = {k: _summary(v, WORKLOAD) for k, v in samples.items()}
            bare = summaries["bare"]["turn_overhead"]
            result: dict[str, object] = {}
            for label, s in summaries.items():
                ratio = s["turn_overhead"] / bare
                rows.append(
                    (
                        load.sessions,
                        {"bare": "bare", "off": "tracing off", "on": "tracing on"}[
                            label
                        ],
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
