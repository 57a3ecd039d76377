"""Prometheus metrics of the turns, websockets and process.

Public surface:
    TURNS, TURN_SECONDS, FIRST_TOKEN_SECONDS, TOKENS, COST_USD,
    ACTIVE_TURNS, QUEUED_TURNS, OPEN_WEBSOCKETS   the metrics (DESIGN.md section 12)
    exposition()                                  (body, content type) of `GET /metrics`

Several daphne processes of one deployment share one directory named by
PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode): every
process writes its samples to its own memory-mapped files there and
`/metrics`, whichever process answers, adds them up. Gauges count live
processes only ("livesum"); counters and histograms of processes that ended
keep counting, as a counter must. The directory has to be empty when the
first process starts (a tmpfs, or cleared by the start script). Without the
variable each process reports its own figures.
"""

from __future__ import annotations

import atexit
import os

# prometheus_client picks its storage when it is imported: the directory must
# exist by then.
_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if _MULTIPROC_DIR:
    os.makedirs(_MULTIPROC_DIR, exist_ok=True)

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

# Turn times span a fast offline answer to a long tool-using run.
_TURN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

TURNS = Counter("agentry_turns", "Turn runs finished, by outcome.", ["status"])
TURN_SECONDS = Histogram(
    "agentry_turn_seconds", "Wall time of a turn run.", buckets=_TURN_BUCKETS
)
FIRST_TOKEN_SECONDS = Histogram(
    "agentry_first_token_seconds",
    "From a turn run's start to its first streamed text.",
    buckets=_FIRST_TOKEN_BUCKETS,
)
TOKENS = Counter("agentry_tokens", "Model tokens used by turns.", ["kind"])
COST_USD = Counter(
    "agentry_cost_usd", "What turns cost, in US dollars (priced models only)."
)
ACTIVE_TURNS = Gauge(
    "agentry_active_turns", "Turns running now.", multiprocess_mode="livesum"
)
QUEUED_TURNS = Gauge(
    "agentry_queued_turns",
    "Turns waiting for their session to be free.",
    multiprocess_mode="livesum",
)
OPEN_WEBSOCKETS = Gauge(
    "agentry_open_websockets",
    "Accepted websocket connections open now.",
    multiprocess_mode="livesum",
)


def exposition() -> tuple[bytes, str]:
    if not _MULTIPROC_DIR:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    # The standard process metrics are those of the process that answers.
    ProcessCollector(registry=registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _leave() -> None:
    # This process's live gauges stop counting once it exits.
    multiprocess.mark_process_dead(os.getpid())


if _MULTIPROC_DIR:
    atexit.register(_leave)
