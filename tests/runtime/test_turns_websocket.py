"""Turns over the websocket, end to end: the real ASGI app, the real channel
layer, the real database and pydantic-ai's OpenAI model talking HTTP to the
fake model server."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from pydantic_ai import RunCancelled

from sessions_app import lifecycle, services
from sessions_app.models import AgentExecution, Event
from sessions_app.turn_events import classify_failure
from tests.plugins.runtime import is_partial, is_status, is_terminal

pytestmark = pytest.mark.django_db(transaction=True)

QUICK = "[[tokens=12 delay=2]] say something"
# Words further apart than the coalescing window each get their own frame.
WORD_BY_WORD = "[[tokens=12 delay=30]] say something"
SLOW = "[[tokens=400 delay=25]] take your time"


@pytest.fixture
def agent_with(make_agent, user):
    async def make(**kwargs):
        return await sync_to_async(make_agent)(user, **kwargs)

    return make


async def stored_log(session) -> list[Event]:
    return [
        e
        async for e in Event.objects.filter(session=session).order_by("sequence_number")
    ]


def events(frames: list[dict], partial: bool | None = None) -> list[dict]:
    found = [f["event"] for f in frames if f["type"] == "event"]
    return found if partial is None else [e for e in found if e["partial"] is partial]


async def test_a_turn_streams_its_frames_in_order(
    fake_llm, user, new_session, ws_connect
):
    session = await new_session()
    ws = await ws_connect(user, session)
    frames = await ws.turn(WORD_BY_WORD)

    types = [(f["type"], f.get("event", {}).get("partial")) for f in frames]
    assert types[0] == ("event", False) and types[1] == ("execution", None)
    user_event = frames[0]["event"]
    assert (
        user_event["author"],
        user_event["kind"],
        user_event["sequence_number"],
    ) == (
        "user",
        "message",
        1,
    )
    assert user_event["content"] == WORD_BY_WORD
    assert frames[1]["execution"]["status"] == "running"

    partials = events(frames, partial=True)
    assert len(partials) == 12, "the answer streams word by word"
    assert all(
        (p["author"], p["kind"], p["sequence_number"]) == ("agent", "message", None)
        for p in partials
    )
    final = events(frames, partial=False)[-1]
    assert final["turn_complete"] and final["author"] == "agent"
    assert (
        "".join(p["content"] for p in partials)
        == final["content"]
        == "word0 word1 word2 word3 word4 word5 word6 word7 word8 word9 word10 word11"
    )

    done = frames[-1]["execution"]
    assert done["status"] == "succeeded" and done["output"] == final["content"]
    assert done["usage"]["requests"] == 1 and done["usage"]["output_tokens"] > 0
    assert done["usage"]["input_tokens"] > 0 and done["duration_ms"] >= 0

    stored = await stored_log(session)
    assert [e.sequence_number for e in stored] == [1, 2]
    assert [e["sequence_number"] for e in events(frames, partial=False)] == [1, 2]


async def test_tool_calls_are_stored_and_streamed(
    fake_llm, user, agent_with, new_session, ws_connect, settings
):
    (settings.REPO_ROOT / "hello.txt").write_text("hello from the workspace\n")
    agent = await agent_with(tools=[{"tool": "read_file", "config": {}}])
    session = await new_session(agent=agent)
    ws = await ws_connect(user, session)
    frames = await ws.turn('[[call read_file {"path": "hello.txt"}]] read it')

    stored = events(frames, partial=False)
    kinds = [(e["author"], e["kind"]) for e in stored]
    assert kinds == [
        ("user", "message"),
        ("agent", "tool_call"),
        ("tool", "tool_result"),
        ("agent", "message"),
    ]
    call, result = stored[1], stored[2]
    assert call["metadata"]["tool_name"] == "read_file"
    assert call["metadata"]["args"] == {"path": "hello.txt"}
    assert result["metadata"]["tool_call_id"] == call["metadata"]["tool_call_id"]
    assert result["metadata"]["is_error"] is False
    assert "hello from the workspace" in result["content"]
    assert "hello from the workspace" in stored[-1]["content"]
    assert frames[-1]["execution"]["usage"]["tool_calls"] == 1


async def test_refused_tool_call_is_an_error_result_and_the_turn_goes_on(
    fake_llm, user, agent_with, new_session, ws_connect, settings
):
    outside = settings.REPO_ROOT.parent / "secret.txt"
    outside.write_text("SECRET-VALUE")
    agent = await agent_with(tools=[{"tool": "read_file", "config": {}}])
    session = await new_session(agent=agent)
    ws = await ws_connect(user, session)
    frames = await ws.turn('[[call read_file {"path": "../secret.txt"}]] leak it')

    result = next(
        e for e in events(frames, partial=False) if e["kind"] == "tool_result"
    )
    assert result["metadata"]["is_error"] is True
    assert "SECRET-VALUE" not in result["content"]
    assert frames[-1]["execution"]["status"] == "succeeded"


async def test_history_of_earlier_turns_reaches_the_model(
    fake_llm, user, new_session, ws_connect
):
    session = await new_session()
    ws = await ws_connect(user, session)
    await ws.turn("[[reply my name is Ann]] remember me")
    await ws.turn("[[tokens=3]] what is my name?")

    messages = fake_llm.requests[-1]["messages"]
    contents = [str(m.get("content")) for m in messages]
    assert any("remember me" in c for c in contents)
    assert any("my name is Ann" in c for c in contents if c)
    assert "what is my name?" in contents[-1]


async def test_cancel_stops_the_stream_and_the_session_stays_usable(
    fake_llm, user, new_session, ws_connect
):
    session = await new_session()
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": SLOW})
    await ws.until(is_partial)
    started = asyncio.get_running_loop().time()
    await ws.send({"type": "cancel"})
    frames = await ws.until(is_terminal, timeout=10)
    assert asyncio.get_running_loop().time() - started < 3
    assert frames[-1]["execution"]["status"] == "cancelled"
    errors = [e for e in events(frames, partial=False) if e["kind"] == "error"]
    assert [e["error_code"] for e in errors] == ["cancelled"]

    assert (await ws.turn(QUICK))[-1]["execution"]["status"] == "succeeded"


async def test_turn_finishes_and_is_stored_after_the_client_leaves(
    fake_llm, user, new_session, ws_connect
):
    session = await new_session()
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": "[[tokens=40 delay=10]] keep going"})
    await ws.until(is_partial)
    await ws.close()

    async with asyncio.timeout(20):
        while not await AgentExecution.objects.filter(
            session=session, status="succeeded"
        ).aexists():
            await asyncio.sleep(0.05)
    final = await Event.objects.filter(session=session, turn_complete=True).aget()
    assert final.content.split() == [f"word{i}" for i in range(40)]


async def test_every_client_of_a_session_sees_the_same_frames(
    fake_llm, user, new_session, ws_connect
):
    session = await new_session()
    sender, watcher = await ws_connect(user, session), await ws_connect(user, session)
    sent = await sender.turn("[[tokens=20 delay=2]] hello to both")
    seen = await watcher.until(is_terminal)
    assert sent == seen
    await sender.close()


async def test_resume_replays_exactly_the_missed_events(
    fake_llm, user, new_session, ws_connect
):
    session = await new_session()
    ws = await ws_connect(user, session)
    await ws.turn(QUICK)
    await ws.turn(QUICK)
    await ws.send({"type": "resume", "after_sequence": 1})
    replayed = [
        f["event"]
        for f in await ws.until(
            lambda f: f.get("event", {}).get("sequence_number") == 4
        )
    ]
    assert [e["sequence_number"] for e in replayed] == [2, 3, 4]
    assert all(e["partial"] is False for e in replayed)
    assert await ws.nothing_more()


async def test_message_while_a_turn_runs_is_refused_and_not_stored(
    fake_llm, user, new_session, ws_connect
):
    session = await new_session()
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": SLOW})
    await ws.until(is_status("running"))
    await ws.send({"type": "message", "content": "second"})
    refused = await ws.until(lambda f: f["type"] == "error")
    assert refused[-1]["error"]["code"] == "session_busy"
    await ws.send({"type": "cancel"})
    await ws.until(is_terminal)
    users = [e.content for e in await stored_log(session) if e.author == "user"]
    assert users == [SLOW]


async def test_enqueued_message_runs_after_the_running_turn(
    fake_llm, user, new_session, ws_connect
):
    session = await new_session()
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": "[[tokens=20 delay=10]] first"})
    await ws.until(is_status("running"))
    await ws.send(
        {"type": "message", "content": "[[tokens=3]] second", "multitask": "enqueue"}
    )
    frames = await ws.until(
        lambda f: is_terminal(f) and f["execution"]["input"].endswith("second")
    )

    statuses = [
        (f["execution"]["input"][-6:], f["execution"]["status"])
        for f in frames
        if f["type"] == "execution"
    ]
    assert statuses == [
        ("second", "queued"),
        (" first", "succeeded"),
        ("second", "running"),
        ("second", "succeeded"),
    ]


async def test_interrupting_message_cancels_the_running_turn_then_runs(
    fake_llm, user, new_session, ws_connect
):
    session = await new_session()
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": SLOW})
    await ws.until(is_partial)
    await ws.send(
        {
            "type": "message",
            "content": "[[tokens=3]] now this",
            "multitask": "interrupt",
        }
    )
    frames = await ws.until(
        lambda f: is_terminal(f) and f["execution"]["input"].endswith("now this")
    )
    finals = [
        (f["execution"]["input"][-8:], f["execution"]["status"])
        for f in frames
        if is_terminal(f)
    ]
    assert finals == [("ake your time"[-8:], "cancelled"), ("now this", "succeeded")]


async def test_session_configuration_sets_the_default_policy(
    fake_llm, user, new_session, ws_connect
):
    session = await new_session(configuration={"multitask": "enqueue"})
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": "[[tokens=10 delay=10]] one"})
    await ws.until(is_status("running"))
    await ws.send({"type": "message", "content": "[[tokens=2]] two"})
    queued = await ws.until(is_status("queued"))
    assert queued[-1]["execution"]["input"].endswith("two")
    await ws.until(lambda f: is_terminal(f) and f["execution"]["input"].endswith("two"))


async def test_repeated_client_message_id_runs_once(
    fake_llm, user, new_session, ws_connect
):
    session = await new_session()
    ws = await ws_connect(user, session)
    first = await ws.turn(QUICK, client_message_id="m-1")
    await ws.send({"type": "message", "content": QUICK, "client_message_id": "m-1"})
    again = await ws.recv()
    assert again == {"type": "execution", "execution": first[-1]["execution"]}
    assert await AgentExecution.objects.filter(session=session).acount() == 1
    assert fake_llm.stats["requests"] == 1


@pytest.mark.parametrize(
    "directive,status,code",
    [
        ("[[error=500]]", "failed", "model_error"),
        ("[[error=429]]", "failed", "model_rate_limited"),
        ("[[error=400]]", "failed", "model_error"),
        ("[[hang]]", "failed", "model_timeout"),
        ("[[tokens=50 delay=5 disconnect_after=4]]", "failed", "model_error"),
    ],
)
async def test_provider_failures_end_the_turn_with_an_error_event(
    fake_llm, user, new_session, ws_connect, settings, directive, status, code
):
    settings.AGENTRY_MODEL_TIMEOUT = 1
    session = await new_session()
    ws = await ws_connect(user, session)
    frames = await ws.turn(f"{directive} fail please", timeout=20)
    assert frames[-1]["execution"]["status"] == status
    assert frames[-1]["execution"]["error_code"] == code
    error = [e for e in events(frames, partial=False) if e["kind"] == "error"]
    assert [e["error_code"] for e in error] == [code] and error[0]["content"]

    assert (await ws.turn(QUICK))[-1]["execution"]["status"] == "succeeded", (
        "the next turn works"
    )


async def test_usage_limit_ends_the_turn(
    fake_llm, user, agent_with, new_session, ws_connect, settings
):
    (settings.REPO_ROOT / "a.txt").write_text("a")
    agent = await agent_with(
        tools=[{"tool": "read_file", "config": {}}], usage_limits={"request_limit": 1}
    )
    session = await new_session(agent=agent)
    ws = await ws_connect(user, session)
    frames = await ws.turn('[[call read_file {"path": "a.txt"}]] go')
    assert frames[-1]["execution"]["error_code"] == "usage_limit_exceeded"


async def test_structured_output_is_stored_as_json(
    fake_llm, user, agent_with, new_session, ws_connect
):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}},
        "required": ["answer", "score"],
    }
    agent = await agent_with(output_schema=schema)
    session = await new_session(agent=agent)
    ws = await ws_connect(user, session)
    frames = await ws.turn(
        '[[call final_result {"answer": "yes", "score": 3}]] extract'
    )
    done = frames[-1]["execution"]
    assert done["status"] == "succeeded", frames
    assert done["output"] == {"answer": "yes", "score": 3}
    final = events(frames, partial=False)[-1]
    assert (
        final["turn_complete"] and final["content"] == '{"answer": "yes", "score": 3}'
    )


async def test_state_placeholders_fill_the_instructions(
    fake_llm, user, agent_with, new_session, ws_connect
):
    agent = await agent_with(instructions="You help {customer}.")
    session = await new_session(agent=agent, state={"customer": "ACME"})
    ws = await ws_connect(user, session)
    await ws.turn(QUICK)
    system = [
        m
        for m in fake_llm.requests[-1]["messages"]
        if m["role"] in ("system", "developer")
    ]
    assert system and "You help ACME." in system[0]["content"]


async def test_history_with_an_unanswered_tool_call_still_takes_a_new_prompt(
    fake_llm, user, new_session, ws_connect
):
    from pydantic_ai import ModelMessagesTypeAdapter
    from pydantic_ai.messages import (
        ModelRequest,
        ModelResponse,
        ToolCallPart,
        UserPromptPart,
    )

    session = await new_session()
    dangling = [
        ModelRequest(parts=[UserPromptPart("read it")]),
        ModelResponse(
            parts=[ToolCallPart("read_file", {"path": "a.txt"}, tool_call_id="c1")]
        ),
    ]
    cancelled = await AgentExecution.objects.acreate(
        session=session,
        agent_id=session.agent_id,
        user=user,
        status="cancelled",
        input="read it",
        finished_at=timezone.now(),
        messages=ModelMessagesTypeAdapter.dump_python(dangling, mode="json"),
    )
    # Every turn stores its user's message first.
    await sync_to_async(services.event_append)(
        session.pk,
        services.EventSpec(author=Event.Author.USER, content="read it"),
        execution_id=cancelled.pk,
    )
    ws = await ws_connect(user, session)
    frames = await ws.turn(QUICK)
    assert frames[-1]["execution"]["status"] == "succeeded", frames[-1]
    sent = fake_llm.requests[-1]["messages"]
    assert any(m["role"] == "tool" and m.get("tool_call_id") == "c1" for m in sent)


async def test_a_fast_stream_is_coalesced_but_its_first_word_is_not_delayed(
    fake_llm, user, new_session, ws_connect
):
    session = await new_session()
    ws = await ws_connect(user, session)
    frames = await ws.turn("[[tokens=300]] as fast as you can")
    partials = [e["content"] for e in events(frames, partial=True)]
    final = events(frames, partial=False)[-1]["content"]
    assert partials[0] == "word0 ", "the first chunk goes out alone, at once"
    assert len(partials) < 300 / 3, f"{len(partials)} frames for 300 chunks"
    assert "".join(partials) == final


async def test_a_history_bound_keeps_the_last_whole_turns(
    fake_llm, user, new_session, ws_connect, settings
):
    settings.AGENTRY_HISTORY_TURNS = 2
    session = await new_session()
    ws = await ws_connect(user, session)
    for n in range(4):
        await ws.turn(f"[[tokens=2]] question {n}")
    await ws.turn("[[tokens=2]] and now?")

    sent = [str(m.get("content")) for m in fake_llm.requests[-1]["messages"]]
    asked = [c for c in sent if "question" in c]
    assert [c.split("]] ")[-1] for c in asked] == ["question 2", "question 3"]
    assert "and now?" in sent[-1]
    # The log keeps every turn.
    assert len(await stored_log(session)) == 10


async def test_a_shutdown_records_queued_and_running_turns_as_classified(
    fake_llm, user, new_session, ws_connect
):
    """The queued turn never started a run, the running one did: both end as
    `classify_failure` says a shutdown's cancel ends, on the row and in the
    error frame alike."""
    session = await new_session()
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": SLOW})
    await ws.until(is_partial)
    await ws.send(
        {"type": "message", "content": "[[tokens=3]] later", "multitask": "enqueue"}
    )
    await ws.until(is_status("queued"))

    assert await lifecycle.interrupt_live_turns() == 2
    frames = await ws.until(is_terminal)
    frames += await ws.until(is_terminal)

    expected = classify_failure(RunCancelled("stop"), cancel_reason="interrupted")
    finals = {
        f["execution"]["input"][-5:]: f["execution"] for f in frames if is_terminal(f)
    }
    errors = {
        e["execution"]: (e["error_code"], e["content"])
        for e in events(frames, partial=False)
        if e["kind"] == "error"
    }
    stored = [e async for e in AgentExecution.objects.filter(session=session)]
    assert len(stored) == 2 and set(finals) == {" time", "later"}
    for execution in stored:
        frame = finals[execution.input[-5:]]
        assert (frame["status"], frame["error_code"]) == expected[:2]
        assert (execution.status, execution.error_code, execution.error_message) == (
            expected
        )
        assert errors[str(execution.pk)] == expected[1:]
