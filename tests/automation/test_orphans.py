"""Queue rows a killed worker left RUNNING end once their turn no longer runs
under them; rows of turns still running under them are left alone."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from automation import orphans
from automation.tasks import run_turn
from sessions_app import services
from sessions_app.models import AgentExecution

pytestmark = pytest.mark.django_db


def _claimed_row(user, session, *, attempts: int = 0) -> tuple[AgentExecution, str]:
    """A running turn and its queue row, claimed by a worker a minute ago."""
    opened = services.turn_open(
        session=session,
        user_id=user.pk,
        content="hi",
        metadata={},
        client_message_id="",
        policy="reject",
        model="x",
    )
    result = run_turn.enqueue(str(opened.execution.pk), None, attempts)
    row = DBTaskResult.objects.get(pk=result.id)
    row.claim("worker-a")
    DBTaskResult.objects.filter(pk=row.pk).update(
        started_at=timezone.now() - dt.timedelta(minutes=1)
    )
    return opened.execution, str(row.pk)


def _state(row_id: str) -> tuple[str, str, str]:
    row = DBTaskResult.objects.get(pk=row_id)
    return row.status, row.exception_class_path, row.traceback


def test_a_row_whose_turn_was_taken_over_or_went_silent_ends_failed(user, make_session):
    taken, taken_row = _claimed_row(user, make_session(user))
    AgentExecution.objects.filter(pk=taken.pk).update(attempts=1)
    silent, silent_row = _claimed_row(user, make_session(user))
    AgentExecution.objects.filter(pk=silent.pk).update(
        heartbeat_at=timezone.now() - dt.timedelta(minutes=5)
    )
    _, alive_row = _claimed_row(user, make_session(user))

    assert orphans.end_orphaned_turn_tasks() == 2

    status, path, reason = _state(taken_row)
    assert (status, path) == ("FAILED", "automation.orphans.TaskOrphaned")
    assert "taken over" in reason
    status, path, reason = _state(silent_row)
    assert (status, path) == ("FAILED", "automation.orphans.TaskOrphaned")
    assert "worker stopped" in reason
    assert _state(alive_row)[0] == "RUNNING", "its turn still runs under it"
    assert orphans.end_orphaned_turn_tasks() == 0


def test_a_row_claimed_within_the_lease_is_left_alone(user, make_session):
    execution, row_id = _claimed_row(user, make_session(user))
    AgentExecution.objects.filter(pk=execution.pk).update(attempts=1)
    DBTaskResult.objects.filter(pk=row_id).update(started_at=timezone.now())

    assert orphans.end_orphaned_turn_tasks() == 0
    assert _state(row_id)[0] == "RUNNING"
