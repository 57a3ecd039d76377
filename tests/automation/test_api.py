"""Background runs, schedules, the webhook secret and delivery listings over the
REST API, with turns run inline through the real ASGI application."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import AsyncClient
from django.utils import timezone

from accounts.secrets import decrypt
from automation import schedules
from automation.models import PendingWebhook, Schedule, WebhookDelivery
from sessions_app.db import run_db
from sessions_app.models import AgentExecution, Session
from tests.plugins.runtime import access_token

QUICK = "[[tokens=4]] background work"


def _bearer(user) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token(user)}"}


async def _until_finished(execution_id: str) -> AgentExecution:
    for _ in range(400):
        execution = await run_db(AgentExecution.objects.get, pk=execution_id)
        if execution.status not in AgentExecution.ACTIVE_STATUSES:
            return execution
        await asyncio.sleep(0.025)
    raise AssertionError(f"execution {execution_id} did not finish")


# --------------------------------------------------------------------- runs


@pytest.mark.django_db(transaction=True)
async def test_a_run_answers_202_queued_at_once_and_then_runs(
    fake_llm, user, make_agent
):
    agent = await sync_to_async(make_agent)(user)
    response = await AsyncClient().post(
        f"/api/agents/{agent.pk}/runs/",
        {"input": QUICK},
        content_type="application/json",
        headers=_bearer(user),
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == {"execution", "session"}
    assert body["execution"]["status"] == "queued"
    assert body["execution"]["session"] == body["session"]
    execution = await _until_finished(body["execution"]["id"])
    assert execution.status == "succeeded"
    assert str(execution.session_id) == body["session"]


@pytest.fixture
def agent(make_agent, user):
    return make_agent(user)


@pytest.mark.parametrize(
    "payload, field",
    [
        ({}, "input"),
        ({"input": 5}, "input"),
        ({"input": "hi", "webhook_url": "ftp://example.com/x"}, "webhook_url"),
        ({"input": "hi", "webhook_url": "not a url"}, "webhook_url"),
        ({"input": "hi", "webhook_url": "http://10.0.0.7/hook"}, "webhook_url"),
        ({"input": "hi", "session": "nope"}, "session"),
    ],
)
def test_a_run_with_bad_fields_is_a_400_naming_the_field(
    auth_client, user, agent, payload, field
):
    response = auth_client(user).post(
        f"/api/agents/{agent.pk}/runs/", payload, format="json"
    )
    assert response.status_code == 400, response.content
    assert field in str(response.json()["error"]["details"])
    assert not AgentExecution.objects.exists()


def test_runs_of_agents_and_sessions_the_caller_may_not_use_are_refused(
    auth_client, api_client, user, other_user, agent, make_agent, make_session
):
    foreign_session = make_session(other_user, agent=make_agent(other_user))
    client = auth_client(user)
    assert (
        client.post(
            f"/api/agents/{make_agent(other_user).pk}/runs/",
            {"input": "hi"},
            format="json",
        ).status_code
        == 404
    )
    refused = client.post(
        f"/api/agents/{agent.pk}/runs/",
        {"input": "hi", "session": str(foreign_session.pk)},
        format="json",
    )
    assert refused.status_code == 400
    assert "session" in refused.json()["error"]["details"]
    assert (
        api_client.post(
            f"/api/agents/{agent.pk}/runs/", {"input": "hi"}, format="json"
        ).status_code
        == 401
    )
    assert not AgentExecution.objects.exists()


# --------------------------------------------------------------------- schedules


def _schedule(client, agent, **fields: Any):
    return client.post(
        "/api/schedules/",
        {"agent": str(agent.pk), "cron": "30 8 * * 1-5", "input": "report", **fields},
        format="json",
    )


def test_a_schedule_is_created_with_its_next_slot(auth_client, user, agent):
    response = _schedule(auth_client(user), agent, timezone="Europe/Paris")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["enabled"] is True and body["session"] is None
    next_run = dt.datetime.fromisoformat(body["next_run_at"])
    assert next_run > timezone.now()
    local = next_run.astimezone(dt.timezone(dt.timedelta(hours=1)))
    # 08:30 in Paris: 07:30 UTC in winter, 06:30 in summer.
    assert local.minute == 30 and next_run.weekday() < 5
    assert body["last_run_at"] is None and body["last_execution"] is None


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"cron": "* * * *"}, "cron"),
        ({"cron": "* * * * * *"}, "cron"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": 5}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"input": ""}, "input"),
    ],
)
def test_a_schedule_with_bad_fields_is_a_400(auth_client, user, agent, fields, field):
    response = _schedule(auth_client(user), agent, **fields)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert not Schedule.objects.exists()


def test_schedules_are_their_owners_own(
    auth_client, user, other_user, agent, make_agent, make_session
):
    own = _schedule(auth_client(user), agent).json()
    other = auth_client(other_user)
    assert other.get(f"/api/schedules/{own['id']}/").status_code == 404
    assert (
        other.patch(
            f"/api/schedules/{own['id']}/", {"enabled": False}, format="json"
        ).status_code
        == 404
    )
    assert other.post(f"/api/schedules/{own['id']}/run-now/").status_code == 404
    assert other.get("/api/schedules/").json()["results"] == []
    # Another user's private agent and session cannot be scheduled.
    assert _schedule(other, agent).status_code == 400
    foreign = make_session(other_user, agent=make_agent(other_user))
    refused = _schedule(auth_client(user), agent, session=str(foreign.pk))
    assert refused.status_code == 400


def test_disabling_a_schedule_clears_its_next_run_and_delete_removes_it(
    auth_client, user, agent
):
    client = auth_client(user)
    created = _schedule(client, agent).json()
    patched = client.patch(
        f"/api/schedules/{created['id']}/", {"enabled": False}, format="json"
    )
    assert patched.status_code == 200
    assert patched.json()["next_run_at"] is None
    assert client.delete(f"/api/schedules/{created['id']}/").status_code == 204
    assert not Schedule.objects.exists()


def test_schedule_filters_take_only_valid_values(auth_client, user, agent):
    client = auth_client(user)
    enabled = _schedule(client, agent).json()
    disabled = _schedule(client, agent, enabled=False).json()
    listed = client.get("/api/schedules/", {"enabled": "false"}).json()["results"]
    assert [s["id"] for s in listed] == [disabled["id"]]
    listed = client.get("/api/schedules/", {"enabled": "true"}).json()["results"]
    assert [s["id"] for s in listed] == [enabled["id"]]
    for bad in ("null", "maybe", ""):
        response = client.get("/api/schedules/", {"enabled": bad})
        assert response.status_code == 400, (bad, response.json())


def _due(user, agent, *, cron: str = "* * * * *", ago: dt.timedelta, **fields):
    schedule = Schedule.objects.create(
        owner=user, agent=agent, cron=cron, input="tick", **fields
    )
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=timezone.now() - ago)
    return schedule


def test_a_due_slot_is_claimed_once_and_missed_slots_fire_once(user, agent):
    missed = _due(user, agent, ago=dt.timedelta(days=3))
    first = schedules.claim_due()
    assert [f.schedule.pk for f in first] == [missed.pk]
    assert schedules.claim_due() == []
    missed.refresh_from_db()
    assert missed.next_run_at > timezone.now()
    assert missed.last_run_at is not None
    # Its turn was stored with the claim.
    [execution] = AgentExecution.objects.filter(agent=agent)
    assert (execution.status, execution.input) == ("queued", "tick")
    assert missed.last_execution_id == execution.pk


def test_a_disabled_schedule_never_fires(user, agent):
    schedule = _due(user, agent, ago=dt.timedelta(minutes=5))
    Schedule.objects.filter(pk=schedule.pk).update(enabled=False)
    assert schedules.claim_due() == []


@pytest.mark.django_db(transaction=True)
async def test_run_now_and_a_tick_start_runs_in_new_sessions(
    fake_llm, user, make_agent
):
    agent = await sync_to_async(make_agent)(user)
    schedule = await sync_to_async(_due)(user, agent, ago=dt.timedelta(seconds=1))
    assert await schedules.tick() == 1
    response = await AsyncClient().post(
        f"/api/schedules/{schedule.pk}/run-now/", headers=_bearer(user)
    )
    assert response.status_code == 202, response.content
    executions = await run_db(lambda: list(AgentExecution.objects.filter(agent=agent)))
    assert len(executions) == 2
    assert len({e.session_id for e in executions}) == 2
    for execution in executions:
        assert (await _until_finished(str(execution.pk))).status == "succeeded"
    schedule = await run_db(Schedule.objects.get, pk=schedule.pk)
    assert schedule.last_execution_id in {e.pk for e in executions}


# --------------------------------------------------------------------- webhooks


def test_rotating_the_webhook_secret_shows_it_once_and_stores_it_encrypted(
    auth_client, user, api_client
):
    client = auth_client(user)
    first = client.post("/api/auth/webhook-secret/rotate/")
    assert first.status_code == 200
    secret = first.json()["webhook_secret"]
    stored = get_user_model().objects.get(pk=user.pk).webhook_secret
    assert secret and stored and secret not in stored
    assert decrypt(stored) == secret
    assert (
        client.post("/api/auth/webhook-secret/rotate/").json()["webhook_secret"]
        != secret
    )
    assert "webhook_secret" not in str(client.get("/api/auth/me/").json())
    assert api_client.post("/api/auth/webhook-secret/rotate/").status_code == 401


def test_deliveries_are_listed_only_for_the_executions_owner(
    auth_client, user, other_user, agent, make_session
):
    session = make_session(user, agent=agent)
    execution = AgentExecution.objects.create(
        session=session, agent=agent, user=user, status="succeeded", input="x"
    )
    WebhookDelivery.objects.create(
        execution=execution,
        url="https://example.com/h",
        attempt=1,
        status_code=500,
        error="HTTP 500",
    )
    listed = auth_client(user).get(f"/api/executions/{execution.pk}/deliveries/")
    assert listed.status_code == 200
    [row] = listed.json()["results"]
    assert set(row) == {"id", "url", "attempt", "status_code", "error", "created_at"}
    assert (
        auth_client(other_user)
        .get(f"/api/executions/{execution.pk}/deliveries/")
        .status_code
        == 404
    )


class _Receiver:
    def __init__(self) -> None:
        self.received = threading.Event()
        self.headers: dict[str, str] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.headers = dict(self.headers)
                self.send_response(200)
                self.end_headers()
                receiver.received.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.django_db(transaction=True)
async def test_an_inline_run_tells_its_webhook_without_waiting_for_it(
    fake_llm, user, make_agent, settings
):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    receiver = _Receiver()
    agent = await sync_to_async(make_agent)(user)
    try:
        response = await AsyncClient().post(
            f"/api/agents/{agent.pk}/runs/",
            {"input": QUICK, "webhook_url": receiver.url},
            content_type="application/json",
            headers=_bearer(user),
        )
        execution = await _until_finished(response.json()["execution"]["id"])
        assert await asyncio.to_thread(receiver.received.wait, 20)
        assert receiver.headers["X-Agentry-Signature"].startswith("sha256=")
        for _ in range(200):
            rows = await run_db(
                lambda: list(WebhookDelivery.objects.filter(execution=execution))
            )
            if rows:
                break
            await asyncio.sleep(0.05)
        assert [(r.attempt, r.status_code, r.error) for r in rows] == [(1, 200, "")]
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


class _FailingReceiver:
    """Answers 500 `failures` times, then 204."""

    def __init__(self, failures: int) -> None:
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if len(receiver.statuses) < failures else 204
                receiver.statuses.append(status)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.django_db(transaction=True)
async def test_an_inline_runs_webhook_that_fails_twice_is_one_delivery_of_three_attempts(
    fake_llm, user, make_agent, settings
):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    settings.AGENTRY_WEBHOOK_RETRY_BASE = 0.05
    receiver = _FailingReceiver(failures=2)
    agent = await sync_to_async(make_agent)(user)
    try:
        response = await AsyncClient().post(
            f"/api/agents/{agent.pk}/runs/",
            {"input": QUICK, "webhook_url": receiver.url},
            content_type="application/json",
            headers=_bearer(user),
        )
        execution = await _until_finished(response.json()["execution"]["id"])
        for _ in range(400):
            rows = await run_db(
                lambda: list(WebhookDelivery.objects.filter(execution=execution))
            )
            if len(rows) >= 3:
                break
            await asyncio.sleep(0.05)
        assert [(r.attempt, r.status_code) for r in rows] == [
            (1, 500),
            (2, 500),
            (3, 204),
        ]
        assert receiver.statuses == [500, 500, 204]
        assert not await run_db(PendingWebhook.objects.exists), "nothing left to do"
        # Each retry waited its backoff: 0.05 s, then 0.1 s.
        gaps = [
            (later.created_at - earlier.created_at).total_seconds()
            for earlier, later in itertools.pairwise(rows)
        ]
        assert gaps[0] >= 0.05 and gaps[1] >= 0.1, gaps
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


# --------------------------------------------------------------------- fires that fail


def _refuse_linking_runs(on: bool) -> None:
    """A real database error at the last write of a fire (its schedule's
    `last_execution`), after the claim and the stored turn."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            if on:
                cursor.execute(
                    "CREATE FUNCTION agentry_refuse() RETURNS trigger AS $$ "
                    "BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql"
                )
                cursor.execute(
                    "CREATE TRIGGER agentry_refuse BEFORE UPDATE OF last_execution_id "
                    "ON automation_schedule FOR EACH ROW "
                    "WHEN (NEW.last_execution_id IS NOT NULL) "
                    "EXECUTE FUNCTION agentry_refuse()"
                )
            else:
                cursor.execute("DROP TRIGGER agentry_refuse ON automation_schedule")
                cursor.execute("DROP FUNCTION agentry_refuse()")
        elif on:
            cursor.execute(
                "CREATE TRIGGER agentry_refuse BEFORE UPDATE OF last_execution_id "
                "ON automation_schedule WHEN NEW.last_execution_id IS NOT NULL "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        else:
            cursor.execute("DROP TRIGGER agentry_refuse")


@pytest.mark.django_db(transaction=True)
def test_a_fire_that_fails_after_its_claim_leaves_the_slot_due_then_fires_once(
    user, agent
):
    schedule = _due(user, agent, ago=dt.timedelta(minutes=2))
    slot = Schedule.objects.get(pk=schedule.pk).next_run_at
    sessions_before = Session.objects.count()
    _refuse_linking_runs(True)
    try:
        assert schedules.claim_due() == []
        assert schedules.claim_due() == []
    finally:
        _refuse_linking_runs(False)
    stored = Schedule.objects.get(pk=schedule.pk)
    assert (stored.next_run_at, stored.last_run_at) == (slot, None), "still due"
    assert not AgentExecution.objects.exists(), "its turn went with the claim"
    assert Session.objects.count() == sessions_before

    [fired] = schedules.claim_due()
    assert schedules.claim_due() == []
    assert fired.schedule.pk == schedule.pk
    assert AgentExecution.objects.filter(agent=agent).count() == 1
    assert Schedule.objects.get(pk=schedule.pk).next_run_at > timezone.now()


@pytest.mark.django_db(transaction=True)
def test_a_run_the_runner_refuses_uses_up_its_slot_and_leaves_nothing(user, agent):
    schedule = _due(user, agent, ago=dt.timedelta(minutes=2))
    sessions_before = Session.objects.count()
    agent.is_active = False
    agent.save(update_fields=["is_active"])

    assert schedules.claim_due() == []
    stored = Schedule.objects.get(pk=schedule.pk)
    assert stored.next_run_at > timezone.now() and stored.last_run_at is not None
    assert not AgentExecution.objects.exists()
    assert Session.objects.count() == sessions_before
    assert schedules.claim_due() == []


@pytest.mark.django_db(transaction=True)
async def test_a_slot_whose_process_died_before_starting_its_run_still_runs_once(
    fake_llm, user, make_agent
):
    from sessions_app import lifecycle

    agent = await sync_to_async(make_agent)(user)
    schedule = await sync_to_async(_due)(user, agent, ago=dt.timedelta(seconds=1))
    # Claimed and stored, then the process died before it started the turn.
    [fired] = await run_db(schedules.claim_due)
    execution_id = fired.stored.turn.execution.pk
    await run_db(
        AgentExecution.objects.filter(pk=execution_id).update,
        heartbeat_at=timezone.now() - dt.timedelta(minutes=5),
    )

    assert await lifecycle.take_over_stale() == 1
    execution = await _until_finished(str(execution_id))
    assert execution.status == "succeeded", execution.error_message
    assert await schedules.tick() == 0
    assert await run_db(AgentExecution.objects.filter(agent=agent).count) == 1
    schedule = await run_db(Schedule.objects.get, pk=schedule.pk)
    assert schedule.last_execution_id == execution_id
