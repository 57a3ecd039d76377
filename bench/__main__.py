"""`python -m bench` (`make bench`): every benchmark on both backends.

Runs each benchmark module in its own process, first on the embedded
defaults (SQLite, in-memory channel layer), then on PostgreSQL + Redis when
they answer on 127.0.0.1 (skipped otherwise), prints each one's tables as it
goes and a summary at the end, and exits 1 when any target is missed (2 when
a benchmark crashed). `--size full` runs longer, steadier measurements.

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


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--size", choices=("quick", "full"), default="quick")
    parser.add_argument("--backend", action="append", choices=BACKENDS)
    parser.add_argument("--only", action="append", choices=BENCHMARKS)
    args = parser.parse_args()
    summary = []
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
    return worst


if __name__ == "__main__":
    sys.exit(main())
