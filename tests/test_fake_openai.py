"""The fake OpenAI-compatible server speaks the protocol pydantic-ai's own
OpenAI model class expects, over real HTTP, and does what its directives say."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest
from pydantic_ai import Agent, FunctionToolset, models
from pydantic_ai.exceptions import (
    ModelConnectionError,
    ModelHTTPError,
    ModelRateLimitError,
    ModelTimeoutError,
)
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from testing.fake_openai import (
    FAKE_MODEL,
    FakeOpenAI,
    FakeOpenAIThread,
    parse_directives,
)


@pytest.fixture(autouse=True)
def _allow_model_requests(monkeypatch):
    """These tests drive pydantic-ai's OpenAI model against the server directly."""
    monkeypatch.setattr(models, "ALLOW_MODEL_REQUESTS", True)


def chat_model(base_url: str) -> OpenAIChatModel:
    return OpenAIChatModel(
        "fake", provider=OpenAIProvider(base_url=base_url, api_key="k")
    )


def sse_payloads(response: httpx.Response) -> list[str]:
    return [
        line.removeprefix("data: ")
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]


def test_directives_are_parsed_and_unknown_ones_ignored():
    found = parse_directives(
        'hi [[tokens=3 delay=5 ttft=7]] [[call read_file {"path": "a b"}]] '
        "[[reply it is ]] [[bogus=1 tokens=x]]"
    )
    assert (found.tokens, found.delay_ms, found.ttft_ms) == (3, 5.0, 7.0)
    assert found.calls == [("read_file", {"path": "a b"})]
    assert found.reply == "it is "
    assert parse_directives("plain text") == parse_directives("")


async def test_streams_words_with_usage_chunk_and_done():
    async with FakeOpenAI(tokens=4) as server, httpx.AsyncClient() as client:
        response = await client.post(
            f"{server.base_url}/chat/completions",
            json={
                "model": "m",
                "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "count [[tokens=3]]"}],
            },
        )
    assert response.headers["content-type"] == "text/event-stream"
    payloads = sse_payloads(response)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
    )
    assert text == "word0 word1 word2"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert server.stats["streamed"] == 1


async def test_no_usage_chunk_unless_asked():
    async with FakeOpenAI() as server, httpx.AsyncClient() as client:
        response = await client.post(
            f"{server.base_url}/chat/completions",
            json={
                "model": "m",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
        )
    chunks = [json.loads(p) for p in sse_payloads(response)[:-1]]
    assert all("usage" not in c for c in chunks)


async def test_non_streaming_answer_with_usage_over_keep_alive():
    async with FakeOpenAI(tokens=2) as server, httpx.AsyncClient() as client:
        for _ in range(3):
            response = await client.post(
                f"{server.base_url}/chat/completions",
                json={
                    "model": "m",
                    "messages": [{"role": "user", "content": "[[reply Hello, world]]"}],
                },
            )
            body = response.json()
            assert body["choices"][0]["message"]["content"] == "Hello, world"
            assert body["usage"]["completion_tokens"] == 2
    assert server.stats["requests"] == 3


async def test_pydantic_ai_streams_a_tool_call_and_answers_from_its_result():
    toolset = FunctionToolset()

    @toolset.tool_plain
    def lookup(key: str) -> str:
        return f"value of {key}"

    async with FakeOpenAI() as server:
        agent = Agent(chat_model(server.base_url), toolsets=[toolset])
        async with agent.run_stream_events(
            'go [[call lookup {"key": "k1"}]]'
        ) as events:
            kinds = [type(event).__name__ async for event in events]
            result = events.result
    assert "FunctionToolCallEvent" in kinds and "FunctionToolResultEvent" in kinds
    assert result.output == "The tool said: value of k1"
    first, second = server.requests
    assert first["tools"][0]["function"]["name"] == "lookup"
    assert second["messages"][-1]["role"] == "tool"
    assert server.stats["tool_calls"] == 1 and server.stats["tool_results"] == 1
    assert result.usage.requests == 2 and result.usage.output_tokens > 0


async def test_a_tool_the_request_does_not_offer_is_not_called():
    async with FakeOpenAI(tokens=2) as server:
        result = await Agent(chat_model(server.base_url)).run("[[call nope {}]]")
    assert result.output == "word0 word1"
    assert server.stats["tool_calls"] == 0


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, ModelHTTPError), (500, ModelHTTPError), (429, ModelRateLimitError)],
)
async def test_error_statuses_carry_an_openai_error_body(status, error):
    async with FakeOpenAI() as server:
        agent = Agent(chat_model(server.base_url))
        with pytest.raises(error) as caught:
            await agent.run(f"[[error={status}]]", model_settings={"max_retries": 0})
        async with httpx.AsyncClient() as client:
            raw = await client.post(
                f"{server.base_url}/chat/completions",
                json={"messages": [{"role": "user", "content": f"[[error={status}]]"}]},
            )
    assert caught.value.status_code == status
    assert raw.status_code == status and raw.json()["error"]["code"] == str(status)


async def test_hang_is_ended_by_the_client_timeout():
    async with FakeOpenAI() as server:
        agent = Agent(chat_model(server.base_url))
        started = time.monotonic()
        with pytest.raises(ModelTimeoutError):
            await agent.run(
                "[[hang]]", model_settings={"timeout": 0.3, "max_retries": 0}
            )
    assert time.monotonic() - started < 3
    assert server.stats["hangs"] == 1


async def test_disconnect_mid_stream_is_a_connection_error():
    async with FakeOpenAI() as server:
        agent = Agent(chat_model(server.base_url))
        seen = []
        with pytest.raises(ModelConnectionError):
            async with agent.run_stream_events(
                "[[tokens=20 disconnect_after=4]]", model_settings={"max_retries": 0}
            ) as events:
                seen = [event async for event in events]
    assert server.stats["disconnects"] == 1
    assert not seen


async def test_timing_directives_are_honoured():
    async with FakeOpenAI() as server:
        agent = Agent(chat_model(server.base_url))
        started = time.monotonic()
        result = await agent.run("[[tokens=5 delay=30 ttft=100]]")
    assert result.output == "word0 word1 word2 word3 word4"
    assert time.monotonic() - started >= 0.1 + 4 * 0.03


def test_background_thread_runner_and_stats_endpoint():
    with FakeOpenAIThread(tokens=1) as server:
        reply = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"messages": [{"role": "user", "content": "hello"}]},
        )
        stats = httpx.get(f"{server.url}/stats").json()
        reset = httpx.post(f"{server.url}/stats/reset").json()
        missing = httpx.get(f"{server.url}/nowhere")
    assert reply.json()["choices"][0]["message"]["content"] == "word0"
    assert stats["requests"] == 1 and reset["requests"] == 1
    assert server.requests == [] and server.stats["requests"] == 0
    assert missing.status_code == 404 and "error" in missing.json()


def test_runs_as_a_command():
    process = subprocess.Popen(
        [sys.executable, "-m", "testing.fake_openai", "--port", "0", "--tokens", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        url = line.rsplit(" ", 1)[-1].strip()
        assert line.startswith("fake_openai listening on http://127.0.0.1:")
        reply = httpx.post(
            f"{url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}]},
        )
        assert reply.json()["choices"][0]["message"]["content"] == "word0 word1"
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_fixture_points_openai_models_at_the_server(fake_llm):
    import os

    assert os.environ["OPENAI_BASE_URL"] == f"{fake_llm.url}/v1"
    result = Agent(FAKE_MODEL).run_sync("[[reply via env]]")
    assert result.output == "via env"
    assert fake_llm.requests[0]["model"] == "fake"


async def test_several_call_directives_are_parallel_tool_calls():
    toolset = FunctionToolset()
    seen = []

    @toolset.tool_plain
    def lookup(key: str) -> str:
        seen.append(key)
        return key.upper()

    async with FakeOpenAI() as server:
        agent = Agent(chat_model(server.base_url), toolsets=[toolset])
        result = await agent.run(
            '[[call lookup {"key": "a"}]] [[call lookup {"key": "b"}]]'
        )
    assert sorted(seen) == ["a", "b"]
    assert result.output == "The tool said: B"
    assert server.stats["tool_calls"] == 2 and server.stats["tool_results"] == 2


async def test_disconnect_without_streaming_drops_the_connection():
    async with FakeOpenAI() as server:
        agent = Agent(chat_model(server.base_url))
        with pytest.raises(ModelConnectionError):
            await agent.run("[[disconnect_after=0]]", model_settings={"max_retries": 0})
    assert server.stats["disconnects"] == 1
