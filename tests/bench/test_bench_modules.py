"""The benchmark modules import, and their workloads ask the fake model for
what they claim to measure."""

from __future__ import annotations

import importlib

import pytest

from bench.common import Workload, percentile
from testing.fake_openai import parse_directives

MODULES = [
    "bench.__main__",
    "bench.baseline",
    "bench.streaming",
    "bench.throughput",
    "bench.long_answers",
    "bench.history",
    "bench.idle_websockets",
    "bench.workers",
    "bench.rest",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_with_a_main(name):
    assert callable(importlib.import_module(name).main)


def test_workload_prompt_is_what_the_fake_model_reads():
    workload = Workload(tokens=20, delay_ms=10.0, ttft_ms=5.0)
    found = parse_directives(workload.prompt)
    assert (found.tokens, found.delay_ms, found.ttft_ms) == (20, 10.0, 5.0)
    assert workload.model_seconds == pytest.approx(0.005 + 19 * 0.010)


def test_percentile_picks_from_the_sorted_values():
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 0) == 1.0


def test_headline_reports_each_deployment_target_met_missed_or_not_measured():
    from bench.__main__ import headline

    def target(name, value, limit, kind, met):
        return {"name": name, "value": value, "limit": limit, "kind": kind, "met": met}

    results = {
        ("throughput", "postgres"): {
            "targets": [
                target(
                    "1-process turns/s ratio at 50 sessions", 0.85, 0.8, "min", True
                ),
                target(
                    "2-process turns/s ratio at 50 sessions", 1.2, 1.6, "min", False
                ),
                target("failed turns", 0, 0, "max", True),
            ]
        },
        ("streaming", "embedded"): {
            "targets": [
                target("turn overhead ratio at 5 sessions", 1.0, 1.3, "max", True)
            ]
        },
    }
    verdicts = [verdict for _, verdict in headline(results)]
    assert verdicts == [
        "met (0.850 >= 0.8)",
        "MISSED (1.200 >= 1.6)",
        "not measured",  # only the embedded backend ran
    ]
