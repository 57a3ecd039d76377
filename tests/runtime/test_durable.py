"""Durable turns in one process: a turn whose process died (its lease lapsed)
is claimed by a sweep and continued from its stored messages."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from pydantic_ai import ModelRequest, ModelResponse, ToolCallPart, UserPromptPart

from sessions_app import durable, lifecycle, services
from sessions_app.attachments import messages_for_storage
from sessions_app.models import AgentExecution, Event

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS = '[[call read_file {"path": "notes.txt"}]] [[call write_file {"path": "out.txt", "content": "x"}]] look'


def _open_dead_turn(session, user, content: str, **fields) -> AgentExecution:
    """A running turn whose process died: opened, then not heart-beaten for minutes."""
    opened = services.turn_open(
        session=session,
        user_id=user.pk,
        content=content,
        metadata={},
        client_message_id="",
        policy="reject",
        model="x",
    )
    AgentExecution.objects.filter(pk=opened.execution.pk).update(
        heartbeat_at=timezone.now() - dt.timedelta(minutes=5), **fields
    )
    return opened.execution


async def _finished(execution_id) -> AgentExecution:
    for _ in range(400):
        execution = await AgentExecution.objects.aget(pk=execution_id)
        if execution.status not in AgentExecution.ACTIVE_STATUSES:
            return execution
        await asyncio.sleep(0.05)
    raise AssertionError(f"{execution_id} did not finish")


async def _events(session) -> list[Event]:
    return [
        e
        async for e in Event.objects.filter(session=session).order_by("sequence_number")
    ]


async def test_a_dead_turn_cut_off_in_its_first_step_is_answered_by_a_takeover(
    fake_llm, user, new_session
):
    session = await new_session()
    dead = await sync_to_async(_open_dead_turn)(session, user, "[[tokens=3]] hi")

    assert await lifecycle.take_over_stale() == 1
    execution = await _finished(dead.pk)

    assert execution.status == "succeeded", execution.error_message
    assert execution.output == "word0 word1 word2"
    assert execution.attempts == 1
    events = await _events(session)
    assert [e.sequence_number for e in events] == [1, 2, 3]
    assert [(e.author, e.kind) for e in events] == [
        ("user", "message"),
        ("system", "state"),
        ("agent", "message"),
    ]
    assert events[1].metadata == {"taken_over": 1}
    assert await lifecycle.take_over_stale() == 0, "a finished turn is not taken again"


async def test_a_takeover_reruns_a_read_only_call_and_reports_a_writing_one_interrupted(
    fake_llm, user, make_agent, new_session, settings
):
    user.role = "developer"
    await user.asave(update_fields=["role"])
    agent = await sync_to_async(make_agent)(
        user,
        tools=[
            {"tool": "read_file", "config": {}},
            {"tool": "write_file", "config": {}},
        ],
    )
    session = await new_session(agent=agent)
    (settings.REPO_ROOT / "notes.txt").write_text("durable notes")
    # The dead process stored the step that called both tools and the first
    # call's event, then died while the calls ran.
    step = messages_for_storage(
        [
            ModelRequest(parts=[UserPromptPart(TOOLS)]),
            ModelResponse(
                parts=[
                    ToolCallPart("read_file", {"path": "notes.txt"}, tool_call_id="c1"),
                    ToolCallPart(
                        "write_file",
                        {"path": "out.txt", "content": "x"},
                        tool_call_id="c2",
                    ),
                ]
            ),
        ]
    )
    dead = await sync_to_async(_open_dead_turn)(session, user, TOOLS, messages=step)
    await sync_to_async(services.events_append)(
        session.pk,
        [
            services.EventSpec(
                author=Event.Author.AGENT,
                kind=Event.Kind.TOOL_CALL,
                content="read_file",
                metadata={"tool_name": "read_file", "tool_call_id": "c1"},
            )
        ],
        execution_id=dead.pk,
    )

    assert await lifecycle.take_over_stale() == 1
    execution = await _finished(dead.pk)

    assert execution.status == "succeeded", execution.error_message
    events = await _events(session)
    assert [e.sequence_number for e in events] == list(range(1, len(events) + 1))
    kinds = [
        (e.kind, e.metadata.get("tool_call_id")) for e in events if e.author != "user"
    ]
    # The missing call event is stored by the takeover; the results arrive
    # in whichever order the calls end.
    assert kinds[:3] == [("tool_call", "c1"), ("tool_call", "c2"), ("state", None)]
    assert sorted(kinds[3:5]) == [("tool_result", "c1"), ("tool_result", "c2")]
    assert kinds[5:] == [("message", None)]
    results = {e.metadata["tool_call_id"]: e for e in events if e.kind == "tool_result"}
    assert not results["c1"].metadata["is_error"]
    assert "durable notes" in results["c1"].content, "the read-only call ran again"
    assert results["c2"].metadata["is_error"]
    assert results["c2"].content == durable.INTERRUPTED_CALL
    assert not (settings.REPO_ROOT / "out.txt").exists(), "the write is not run again"
    # The model got both answers and the turn's messages hold the whole run.
    tool_messages = [
        m for m in fake_llm.requests[-1]["messages"] if m["role"] == "tool"
    ]
    assert {m["tool_call_id"] for m in tool_messages} == {"c1", "c2"}
    kinds = [m["kind"] for m in execution.messages]
    assert kinds == ["request", "response", "request", "response"]


async def test_a_turn_out_of_takeovers_ends_interrupted(
    fake_llm, user, new_session, settings
):
    settings.AGENTRY_TURN_MAX_ATTEMPTS = 2
    session = await new_session()
    dead = await sync_to_async(_open_dead_turn)(
        session, user, "[[tokens=3]] hi", attempts=2
    )

    assert await lifecycle.take_over_stale() == 0
    execution = await AgentExecution.objects.aget(pk=dead.pk)
    assert (execution.status, execution.error_code) == ("interrupted", "interrupted")
    assert execution.attempts == 2
    events = await _events(session)
    assert [(e.kind, e.error_code) for e in events] == [
        ("message", ""),
        ("error", "interrupted"),
    ]


def test_two_sweepers_claim_a_dead_turn_once(user, make_session):
    session = make_session(user)
    dead = _open_dead_turn(session, user, "hi")
    lease = dt.timedelta(seconds=20)

    _, first = durable.claim_stale(lease=lease)
    _, second = durable.claim_stale(lease=lease)

    assert [e.pk for e in first] == [dead.pk] and second == []
    assert AgentExecution.objects.get(pk=dead.pk).attempts == 1


class HeldCharge:
    """A `charge` http_endpoint tool whose endpoint holds each call until
    `release` is set (`arrived` says a call came in), and an agent with it."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def _hold(self, reader, writer) -> None:
        await reader.read(65536)
        self.arrived.set()
        await self.release.wait()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s"
            % (len(self.answer), self.answer)
        )
        await writer.drain()
        writer.close()

    async def agent(self, user, make_agent):
        self.server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return await sync_to_async(make_agent)(
            user,
            tools=[
                {
                    "tool": "http_endpoint",
                    "config": {
                        "name": "charge",
                        "description": "Charges the card.",
                        "url": f"http://127.0.0.1:{port}/charge",
                    },
                }
            ],
        )

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def _submit_charge(session, user):
    from sessions_app import runner
    from sessions_app.turn_request import TurnRequest

    return await runner.submit_turn(
        TurnRequest(
            session_id=str(session.pk),
            user_id=user.pk,
            content="[[call charge {}]] pay",
        )
    )


async def test_a_step_that_calls_tools_is_stored_before_they_run(
    fake_llm, user, make_agent, new_session, settings
):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    charge = HeldCharge(b"ok")
    session = await new_session(agent=await charge.agent(user, make_agent))
    from sessions_app import runner

    submission = await _submit_charge(session, user)
    await asyncio.wait_for(charge.arrived.wait(), 20)
    execution = await AgentExecution.objects.aget(pk=submission.execution.pk)
    assert [m["kind"] for m in execution.messages] == ["request", "response"]
    assert execution.messages[1]["parts"][0]["tool_name"] == "charge"
    charge.release.set()
    finished = await runner.wait_for_execution(submission)
    charge.close()
    assert finished.status == "succeeded"


def _lapse_and_claim(execution_id) -> AgentExecution:
    """What another process's sweep does once this process's lease lapsed
    (it stalled: a long pause, a partition): claims the turn for itself."""
    AgentExecution.objects.filter(pk=execution_id).update(
        heartbeat_at=timezone.now() - dt.timedelta(minutes=5)
    )
    _, claimed = durable.claim_stale(lease=lifecycle.lease())
    [execution] = claimed
    return execution


async def test_a_stalled_holder_that_wakes_after_a_takeover_stores_nothing_more(
    fake_llm, user, make_agent, new_session, settings
):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    charge = HeldCharge(b"charged")
    session = await new_session(agent=await charge.agent(user, make_agent))
    from sessions_app import runner

    # The first holder stores the call and its step, then stalls in the call.
    first = await _submit_charge(session, user)
    await asyncio.wait_for(charge.arrived.wait(), 20)
    claimed = await sync_to_async(_lapse_and_claim)(first.execution.pk)
    assert claimed.attempts == 1

    # A second holder takes the turn over and answers it.
    second = await runner.take_over(claimed)
    taken = await runner.wait_for_execution(second)
    assert taken.status == "succeeded", taken.error_message
    model_requests = len(fake_llm.requests)

    # The first holder wakes with the call's result: refused, it stops quietly.
    charge.release.set()
    woken = await runner.wait_for_execution(first)
    charge.close()

    assert (woken.status, woken.attempts, woken.output) == (
        "succeeded",
        1,
        taken.output,
    )
    assert len(fake_llm.requests) == model_requests, "no model step after waking"
    events = await _events(session)
    assert [e.sequence_number for e in events] == list(range(1, len(events) + 1))
    assert [(e.author, e.kind) for e in events] == [
        ("user", "message"),
        ("agent", "tool_call"),
        ("system", "state"),
        ("tool", "tool_result"),
        ("agent", "message"),
    ]
    assert events[3].content == durable.INTERRUPTED_CALL, "not the woken call's"
    assert [e.sequence_number for e in events if e.turn_complete] == [5]
    assert str(first.execution.pk) not in lifecycle.live_turns


def test_every_write_of_a_turn_taken_over_since_is_refused(user, make_session):
    session = make_session(user)
    dead = _open_dead_turn(session, user, "hi")
    _lapse_and_claim(dead.pk)
    spec = services.EventSpec(author=Event.Author.AGENT, content="late")

    with pytest.raises(services.LeaseLost):
        services.events_append(session.pk, [spec], execution_id=dead.pk, fence=0)
    with pytest.raises(services.LeaseLost):
        durable.save_step(dead.pk, [], {"requests": 9}, 0)
    with pytest.raises(services.LeaseLost):
        services.execution_finish(
            dead.pk, status="succeeded", output="late", events=[spec], fence=0
        )
    execution = AgentExecution.objects.get(pk=dead.pk)
    assert (execution.status, execution.output, execution.usage) == (
        "running",
        None,
        {},
    )
    assert Event.objects.filter(session=session).count() == 1
    # The new holder's writes go through.
    [stored] = services.events_append(session.pk, [spec], execution_id=dead.pk, fence=1)
    assert stored.sequence_number == 2
    durable.save_step(dead.pk, [], {"requests": 1}, 1)
    finished, _ = services.execution_finish(
        dead.pk, status="succeeded", output="done", fence=1
    )
    assert finished.status == "succeeded"
