"""The SQL statements of a turn's two database hops, opening and finishing.

A turn's database work is two thread hops (`runner._open`, then
`services.execution_finish`), each one transaction. Every statement in them
is a round trip and ORM work on the server's busiest path, so the list is
held here: a change that adds one shows up as a failure naming it.
`BEGIN` and `COMMIT` (SQLite's are logged, PostgreSQL's are not) are left
out, so the lists hold on both databases. The session has a title already:
a session's first message also names it (one more UPDATE, once).
"""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions_app import runner, services
from sessions_app.models import AgentExecution, Event
from usage.models import Budget

pytestmark = pytest.mark.django_db(transaction=True)

#: A session's first turn: no event stored before it, so no history to read.
OPEN_FIRST = [
    "SELECT sessions_app_session",  # the session, its agent and user
    "SELECT agents_agenttool",  # the agent's tools, once per version per process
    "SELECT sessions_app_agentexecution",  # unfinished turns, the user's active count
    "SELECT usage_budget",  # the covering budgets, locked
    "INSERT sessions_app_agentexecution",
    "UPDATE sessions_app_session",  # the event's sequence number (RETURNING)
    "INSERT sessions_app_event",
]
#: A later turn of the same agent version: its tools are known, its history read.
OPEN_LATER = [
    "SELECT sessions_app_session",
    "SELECT sessions_app_agentexecution",
    "SELECT usage_budget",
    "INSERT sessions_app_agentexecution",
    "UPDATE sessions_app_session",
    "INSERT sessions_app_event",
    "SELECT sessions_app_agentexecution",  # the history
]
FINISH = [
    # The execution, locked, with whether it has children and reservations
    # and its owner's webhooks.
    "SELECT sessions_app_agentexecution",
    # (the model prices: read once per change of the price table, see below)
    "UPDATE sessions_app_agentexecution",
    "UPDATE sessions_app_session",
    "INSERT sessions_app_event",
]
#: The first turn to end in a process (or after a price changed) reads the prices.
FINISH_READING_PRICES = [FINISH[0], "SELECT usage_modelprice", *FINISH[1:]]


#: PostgreSQL numbers and inserts events in one statement (`WITH numbered AS
#: (UPDATE ...) INSERT ...`); SQLite runs the two.
NUMBERED_EVENTS = ["UPDATE sessions_app_session", "INSERT sessions_app_event"]


def _expected(statements: list[str]) -> list[str]:
    if connection.vendor != "postgresql":
        return statements
    at = statements.index(NUMBERED_EVENTS[0])
    assert statements[at : at + 2] == NUMBERED_EVENTS
    return [*statements[:at], "WITH sessions_app_event", *statements[at + 2 :]]


def _kinds(queries: CaptureQueriesContext) -> list[str]:
    kinds = []
    for query in queries.captured_queries:
        sql = query["sql"]
        verb = sql.split(None, 1)[0].upper()
        if verb in ("BEGIN", "COMMIT"):
            continue
        pattern = (
            r'INSERT INTO\s+"?(\w+)"?'
            if verb == "WITH"
            else r'(?:FROM|INTO|UPDATE)\s+"?(\w+)"?'
        )
        table = re.search(pattern, sql, re.IGNORECASE)
        kinds.append(f"{verb} {table.group(1) if table else '?'}")
    return kinds


def _turn(
    user, session, opening_statements: list[str], finishing_statements: list[str]
) -> AgentExecution:
    with CaptureQueriesContext(connection) as opening:
        opened = runner._open(
            runner.TurnRequest(session_id=session.pk, user_id=user.pk, content="hi")
        )
    assert opened.context is not None, "the turn starts at once, context read"
    assert _kinds(opening) == _expected(opening_statements)
    with CaptureQueriesContext(connection) as finishing:
        execution, events = services.execution_finish(
            opened.turn.execution.pk,
            status=AgentExecution.Status.SUCCEEDED,
            output="hello",
            usage={"requests": 1, "input_tokens": 3, "output_tokens": 2},
            events=[
                services.EventSpec(
                    author=Event.Author.AGENT, content="hello", turn_complete=True
                )
            ],
        )
    assert _kinds(finishing) == _expected(finishing_statements)
    assert [e.sequence_number for e in events] == [
        opened.turn.user_event.sequence_number + 1
    ]
    return execution


def test_a_turn_opens_and_finishes_in_the_listed_statements_only(user, make_session):
    session = make_session(user, title="A chat")
    _turn(user, session, OPEN_FIRST, FINISH_READING_PRICES)
    execution = _turn(user, session, OPEN_LATER, FINISH)
    assert execution.status == "succeeded"
    assert execution.usage["total_tokens"] == 5
    assert list(
        Event.objects.filter(session=session).values_list("sequence_number", flat=True)
    ) == [1, 2, 3, 4]


def test_a_turn_under_a_budget_still_gives_its_reservation_back(user, make_session):
    Budget.objects.create(
        scope=Budget.Scope.USER,
        user=user,
        period=Budget.Period.MONTH,
        limit_tokens=10_000,
    )
    session = make_session(user)
    opened = runner._open(
        runner.TurnRequest(session_id=session.pk, user_id=user.pk, content="hi")
    )
    execution_id = opened.turn.execution.pk
    assert AgentExecution.objects.get(pk=execution_id).reservations.count() == 1
    services.execution_finish(
        execution_id, status=AgentExecution.Status.SUCCEEDED, output="ok"
    )
    assert AgentExecution.objects.get(pk=execution_id).reservations.count() == 0
