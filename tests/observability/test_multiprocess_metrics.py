"""Several processes sharing PROMETHEUS_MULTIPROC_DIR: `/metrics` adds them up.

Each process here is a real interpreter importing observability.metrics with
the directory set, as daphne processes of one host would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from testing.live import outside_env

PROJECT_ROOT = Path(__file__).resolve().parents[2]

COUNT_ONE_TURN = """
from observability import metrics
metrics.TURNS.labels(status="succeeded").inc()
metrics.TOKENS.labels(kind="output").inc(7)
metrics.COST_USD.inc(0.25)
metrics.TURN_SECONDS.observe(1.5)
metrics.OPEN_WEBSOCKETS.inc()
"""

# A process that stays: its open websocket counts while it lives.
RENDER_WITH_ONE_OPEN_WEBSOCKET = """
import sys
from observability import metrics
metrics.OPEN_WEBSOCKETS.inc()
sys.stdout.write(metrics.exposition()[0].decode())
"""


def _python(code: str, directory: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env={**outside_env(), "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_the_metrics_of_all_processes_add_up(tmp_path):
    directory = tmp_path / "metrics"
    _python(COUNT_ONE_TURN, directory)
    _python(COUNT_ONE_TURN, directory)
    text = _python(RENDER_WITH_ONE_OPEN_WEBSOCKET, directory)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("agentry_turns_total", (("status", "succeeded"),))] == 2
    assert samples[("agentry_tokens_total", (("kind", "output"),))] == 14
    assert samples[("agentry_cost_usd_total", ())] == 0.5
    assert samples[("agentry_turn_seconds_count", ())] == 2
    # Gauges count live processes only: the sockets of the two that exited are gone.
    assert samples[("agentry_open_websockets", ())] == 1
    assert ("process_resident_memory_bytes", ()) in samples
