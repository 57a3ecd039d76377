"""(f) REST reads: the event log and the session list with 10,000 stored events.

`python -m bench.rest [--backend embedded|postgres] [--size quick|full]`

Seeds one user with 50 sessions, one of which holds 10,000 events, then times
`GET /api/sessions/{id}/events/` (first page, and a page deep into the log by
`after_sequence`) and `GET /api/sessions/` against a live daphne process over
HTTP, one request at a time. The SQL statements of each request are counted
in this process with Django's test client on the same database. No
pydantic-ai counterpart exists; the figures are absolute and the target is
that the statement count does not depend on the log's length.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import httpx

from bench.common import (
    Deployment,
    Report,
    fmt,
    open_backend,
    percentile,
    progress,
    scenario,
    setup_django,
)

NAME = "rest"
EVENTS = 10_000
SESSIONS = 50
SIZES = {"quick": 100, "full": 1000}


def _seed(username: str) -> tuple[str, str]:
    """Sessions of the API user; returns (big session id, small session id)."""
    from accounts.models import User
    from agents.models import Agent
    from sessions_app.models import Event, Session

    user = User.objects.get(username=username)
    agent = Agent.objects.filter(owner=user).first()
    sessions = [
        Session.objects.create(user=user, agent=agent, title=f"session {i}")
        for i in range(SESSIONS)
    ]
    big, small = sessions[0], sessions[1]
    rows = [
        Event(
            session=big,
            author=Event.Author.USER if i % 2 == 0 else Event.Author.AGENT,
            content=f"message {i} " + "lorem ipsum " * 8,
            sequence_number=i + 1,
        )
        for i in range(EVENTS)
    ]
    rows += [
        Event(
            session=small, author=Event.Author.USER, content="hi", sequence_number=i + 1
        )
        for i in range(10)
    ]
    Event.objects.bulk_create(rows, batch_size=2000)
    Session.objects.filter(pk=big.pk).update(last_sequence=EVENTS)
    Session.objects.filter(pk=small.pk).update(last_sequence=10)
    return str(big.pk), str(small.pk)


def _statements(path: str, token: str) -> tuple[int, int]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(SERVER_NAME="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {token}")
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    return len(captured.captured_queries), response.status_code


def _time(http: httpx.Client, path: str, requests: int) -> list[float]:
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        response = http.get(path)
        timings.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} -> {response.status_code}")
    return timings


@scenario(NAME)
def main(args: argparse.Namespace) -> int:
    requests = SIZES[args.size]
    report = Report(
        NAME,
        args.backend,
        {"events": EVENTS, "sessions": SESSIONS, "requests": requests},
    )
    rows: list[tuple[Any, ...]] = []
    with open_backend(args.backend) as backend, Deployment.start(backend) as live:
        assert live.api is not None
        setup_django(live.env)
        progress("seeding")
        big, small = _seed(live.api.username)
        paths = {
            "events, first page (10,000 stored)": f"/api/sessions/{big}/events/",
            "events, after_sequence=9900": f"/api/sessions/{big}/events/?after_sequence=9900",
            "events, first page (10 stored)": f"/api/sessions/{small}/events/",
            "sessions list (50)": "/api/sessions/",
        }
        http = httpx.Client(
            base_url=live.servers[0].url,
            headers=live.api.headers,
            timeout=30,
            trust_env=False,
        )
        with http:
            for label, path in paths.items():
                _time(http, path, 5)
                timings = _time(http, path, requests)
                statements, status = _statements(path, live.api.token)
                p50, p95 = percentile(timings, 50), percentile(timings, 95)
                rows.append((label, fmt(p50), fmt(p95), statements, status))
                report.results[label] = {
                    "p50": round(p50, 5),
                    "p95": round(p95, 5),
                    "statements": statements,
                }
        from django.db import connections

        connections.close_all()
    report.table(
        f"REST reads [{args.backend}]: {requests} sequential requests each",
        ("request", "p50", "p95", "SQL statements", "status"),
        rows,
    )
    big_count = report.results["events, first page (10,000 stored)"]["statements"]
    small_count = report.results["events, first page (10 stored)"]["statements"]
    report.target(
        "extra SQL statements at 10,000 vs 10 events", big_count - small_count, 0
    )
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
