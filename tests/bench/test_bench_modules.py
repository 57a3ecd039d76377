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
