"""`python -m bench` (`make bench`): every benchmark on both backends.

Runs each benchmark module in its own process, first on the embedded
defaults (SQLite, in-memory channel layer), then on PostgreSQL + Redis when
they answer on 127.0.0.1 (skipped otherwise), prints each one's tables as it
goes and a summary at the end, and exits 1 when any target is missed (2 when
a benchmark crashed). `--size full` runs longer, steadier measurements.

The summary ends with the deployment's headline targets (PostgreSQL + Redis,
ratios to bare pydantic-ai in the same run): one process at least 0.8x its
turns per second, two processes at least 1.6x, turn overhead at light load
at most 1.3x. One that was not measured (its benchmark skipped, crashed or
left out with `--only`/`--backend`) is reported as such and does not fail
the run; one that was measured and missed does.

    python -m bench [--size quick|full] [--backend embedded|postgres]... [--only NAME]...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time

from bench.common import BACKENDS, PROJECT_ROOT, PYTHON

#: (benchmark, backend, target name prefix): the headline targets.
HEADLINE = (
    ("throughput", "postgres", "1-process turns/s ratio"),
    ("throughput", "postgres", "2-process turns/s ratio"),
    ("streaming", "postgres", "turn overhead ratio at 5 sessions"),
)

BENCHMARKS = (
    "streaming",
    "throughput",
    "long_answers",
    "history",
    "idle_websockets",
    "rest",
    "tracing",
    "workers",
    "delegation",
)


def _run(module: str, backend: str, size: str) -> tuple[dict | None, int, float]:
    started = time.monotonic()
    proc = subprocess.Popen(
        [PYTHON, "-m", f"bench.{module}", "--backend", backend, "--size", size],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    last: dict | None = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                last = json.loads(line)
            continue
        print(line, end="", flush=True)
    return last, proc.wait(), time.monotonic() - started


def headline(results: dict[tuple[str, str], dict]) -> list[tuple[str, str]]:
    """(target, verdict) of each headline target, from the runs' final JSON
    keyed by (benchmark, backend); the verdict is `met`, `MISSED` or
    `not measured`, with the value and limit when measured."""
    lines = []
    for module, backend, prefix in HEADLINE:
        result = results.get((module, backend)) or {}
        found = [t for t in result.get("targets", ()) if t["name"].startswith(prefix)]
        if not found:
            lines.append((f"{prefix} [{backend}]", "not measured"))
            continue
        target = found[0]
        sign = "<=" if target["kind"] == "max" else ">="
        lines.append(
            (
                f"{target['name']} [{backend}]",
                f"{'met' if target['met'] else 'MISSED'} "
                f"({target['value']:.3f} {sign} {target['limit']:g})",
            )
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--size", choices=("quick", "full"), default="quick")
    parser.add_argument("--backend", action="append", choices=BACKENDS)
    parser.add_argument("--only", action="append", choices=BENCHMARKS)
    args = parser.parse_args()
    summary = []
    results: dict[tuple[str, str], dict] = {}
    worst = 0
    for backend in args.backend or BACKENDS:
        for module in args.only or BENCHMARKS:
            print(f"\n=== {module} [{backend}]", flush=True)
            result, status, seconds = _run(module, backend, args.size)
            if result is None:
                summary.append((module, backend, "crashed", f"exit {status}", seconds))
                worst = 2
                continue
            if result.get("skipped"):
                summary.append((module, backend, "skipped", result["skipped"], seconds))
                continue
            results[(module, backend)] = result
            missed = [t["name"] for t in result["targets"] if not t["met"]]
            summary.append(
                (
                    module,
                    backend,
                    "met" if not missed else "MISSED",
                    "; ".join(missed),
                    seconds,
                )
            )
            if missed:
                worst = max(worst, 1)
            print(json.dumps(result, separators=(",", ":")), flush=True)
    print("\nsummary")
    for module, backend, verdict, detail, seconds in summary:
        print(f"  {module:16} {backend:9} {verdict:8} {seconds:6.0f}s  {detail}")
    print("\nheadline targets (ratios to bare pydantic-ai, same run)")
    for name, verdict in headline(results):
        print(f"  {name:70} {verdict}")
    return worst


if __name__ == "__main__":
    sys.exit(main())
