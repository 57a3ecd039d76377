"""mcp_server: the tools of a real MCP server on 127.0.0.1, served by uvicorn.

The server is the MCP SDK's `MCPServer`, over streamable HTTP (and SSE for the
transport test), in a background thread. Every HTTP request it receives is
recorded, so a test can prove what reached it and with which headers.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from asgiref.sync import sync_to_async
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from pydantic_ai import Agent, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.messages import ModelMessage, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from sessions_app.models import Event
from tests.tools.test_netguard import ChangingResolver
from tools.mcp import MAX_RESPONSE_BYTES, remote_mcp_toolset_class
from tools.registry import (
    ToolConfigError,
    ToolContext,
    ToolUnavailableError,
    registry,
    toolset_for,
)

SERVER_TOOLS = {"add", "shout", "broken", "sleepy"}


def demo_server() -> MCPServer:
    server = MCPServer("demo", log_level="WARNING")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def shout(text: str) -> str:
        """The text in capitals."""
        return text.upper()

    @server.tool()
    def broken() -> str:
        """Always fails."""
        raise ToolError("the widget is broken")

    @server.tool()
    async def sleepy() -> str:
        """Answers after a second."""
        await asyncio.sleep(1)
        return "awake"

    return server


@dataclass
class RunningServer:
    base_url: str
    path: str = "/mcp"
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    stop: Callable[[], None] = lambda: None

    @property
    def url(self) -> str:
        return self.base_url + self.path


def serve(
    app: Any, path: str = "/mcp", host: str = "127.0.0.1", port: int = 0
) -> RunningServer:
    """Serves `app` on `host` (a free port by default) and records its HTTP requests."""
    sock = socket.socket()
    sock.bind((host, port))
    running = RunningServer(f"http://{host}:{sock.getsockname()[1]}", path)

    async def recording(scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            running.requests.append((scope["path"], headers))
        await app(scope, receive, send)

    server = uvicorn.Server(
        uvicorn.Config(
            recording, log_level="warning", timeout_graceful_shutdown=1, lifespan="on"
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the MCP server did not start"
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
        sock.close()

    running.stop = stop
    return running


@pytest.fixture(scope="module")
def http_server() -> Iterator[RunningServer]:
    running = serve(demo_server().streamable_http_app())
    yield running
    running.stop()


@pytest.fixture
def mcp(http_server, settings) -> RunningServer:
    """The streamable HTTP server, with loopback addresses allowed for the test."""
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    http_server.requests.clear()
    return http_server


def mcp_toolset(url: str, **config: Any):
    return toolset_for(
        [{"tool": "mcp_server", "config": {"url": url, **config}}],
        ToolContext(repo_root=Path(".")),
    )


@dataclass
class Script:
    """A FunctionModel that makes the given calls, then answers "done"."""

    calls: list[tuple[str, dict[str, Any]]]
    offered: dict[str, Any] = field(default_factory=dict)
    returned: list[ToolReturnPart] = field(default_factory=list)

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            self.offered = {tool.name: tool for tool in info.function_tools}
        else:
            self.returned += [
                p for p in messages[-1].parts if isinstance(p, ToolReturnPart)
            ]
        step = len(messages) // 2
        if step < len(self.calls):
            return ModelResponse(parts=[ToolCallPart(*self.calls[step])])
        return ModelResponse(parts=[TextPart("done")])


async def run_script(toolset, *calls: tuple[str, dict[str, Any]]) -> Script:
    script = Script(list(calls))
    result = await Agent(FunctionModel(script), toolsets=[toolset]).run("go")
    assert result.output == "done"
    return script


@pytest.mark.parametrize(
    "config, where",
    [
        ({"url": "ftp://example.com/mcp"}, "url"),
        ({"url": "file:///tmp/mcp.sock"}, "url"),
        ({"url": "python server.py"}, "url"),
        ({"url": "http://user:pw@example.com/mcp"}, "url"),
        ({"url": "http://example.com/mcp", "command": "python"}, "command"),
        ({"url": "http://example.com/mcp", "headers": {"X": "a\nB: c"}}, "headers"),
        ({"url": "http://example.com/mcp", "tool_prefix": "9lives"}, "tool_prefix"),
        ({"url": "http://example.com/mcp", "tool_prefix": "a-b"}, "tool_prefix"),
        ({"url": "http://example.com/mcp", "allowed_tools": [""]}, "allowed_tools"),
        ({"url": "http://example.com/mcp", "timeout_seconds": 0}, "timeout_seconds"),
        ({"url": "http://example.com/mcp", "timeout_seconds": 301}, "timeout_seconds"),
        ({}, "url"),
    ],
)
def test_bad_configs_are_refused_when_saved(config, where):
    with pytest.raises(ToolConfigError, match=where):
        registry.validate_config("mcp_server", config)


def test_the_kind_is_a_custom_tool_with_a_strict_schema():
    kind = registry.get("mcp_server")
    assert kind.category == "custom"
    config = {
        "url": "https://mcp.example.com/sse",
        "headers": {"Authorization": "Bearer k"},
        "tool_prefix": "docs",
        "allowed_tools": ["search"],
    }
    assert registry.validate_config("mcp_server", config) == config
    assert kind.describe()["config_schema"]["additionalProperties"] is False


async def test_the_model_calls_a_server_tool_and_gets_its_result(mcp):
    toolset = mcp_toolset(mcp.url, headers={"Authorization": "Bearer s3cret"})
    script = await run_script(toolset, ("add", {"a": 2, "b": 3}))

    assert set(script.offered) == SERVER_TOOLS
    assert script.offered["add"].description == "Add two integers."
    assert script.offered["add"].parameters_json_schema["required"] == ["a", "b"]
    [returned] = script.returned
    assert (returned.tool_name, returned.outcome) == ("add", "success")
    assert returned.content == 5
    assert mcp.requests
    assert all(h.get("authorization") == "Bearer s3cret" for _, h in mcp.requests)


async def test_allowed_tools_hides_the_others(mcp):
    toolset = mcp_toolset(mcp.url, allowed_tools=["shout", "not_on_the_server"])
    script = await run_script(toolset, ("shout", {"text": "hi"}))
    assert set(script.offered) == {"shout"}
    assert script.returned[0].content == "HI"


async def test_a_hidden_tool_cannot_be_called(mcp):
    toolset = mcp_toolset(mcp.url, allowed_tools=["shout"])
    script = await run_script(toolset, ("add", {"a": 1, "b": 1}))
    [returned] = script.returned
    assert returned.outcome != "success"
    assert "Unknown tool name: 'add'" in str(returned.content)


async def test_tool_prefix_renames_the_tools(mcp):
    toolset = mcp_toolset(mcp.url, tool_prefix="calc", allowed_tools=["add"])
    script = await run_script(toolset, ("calc_add", {"a": 20, "b": 22}))
    assert set(script.offered) == {"calc_add"}
    assert (script.returned[0].tool_name, script.returned[0].content) == (
        "calc_add",
        42,
    )


async def test_a_failing_tool_is_a_failed_result_and_the_run_goes_on(mcp):
    script = await run_script(
        mcp_toolset(mcp.url), ("broken", {}), ("shout", {"text": "still here"})
    )
    failed, ok = script.returned
    assert failed.outcome == "failed"
    assert "the widget is broken" in failed.content
    assert (ok.outcome, ok.content) == ("success", "STILL HERE")


async def test_a_call_that_times_out_is_a_failed_result(mcp):
    toolset = mcp_toolset(mcp.url, timeout_seconds=0.3)
    started = time.monotonic()
    script = await run_script(toolset, ("sleepy", {}))
    [returned] = script.returned
    assert returned.outcome == "failed"
    assert "could not run 'sleepy'" in returned.content
    assert "timed out" in returned.content
    assert time.monotonic() - started < 1


async def test_loopback_is_refused_by_default(mcp, settings):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = False
    with pytest.raises(ToolUnavailableError, match="not a public address") as refused:
        await run_script(mcp_toolset(mcp.url), ("add", {"a": 1, "b": 2}))
    assert "AGENTRY_ALLOW_PRIVATE_URLS=1" in str(refused.value)
    assert mcp.requests == []


async def test_a_private_server_is_reachable_when_private_urls_are_allowed(mcp):
    script = await run_script(mcp_toolset(mcp.url), ("add", {"a": 1, "b": 2}))
    assert script.returned[0].content == 3


def named_host_server() -> Any:
    """The demo server, answering requests addressed to any host name."""
    return demo_server().streamable_http_app(
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=False
        )
    )


def guarded_toolset(url: str, resolver: ChangingResolver, **options: Any):
    """The toolset the mcp_server kind builds, with a resolver of the test's."""
    return remote_mcp_toolset_class()(
        url,
        resolver=resolver,
        init_timeout=5,
        read_timeout=5,
        tool_error_behavior="failed",
        **options,
    )


async def test_every_connection_of_a_session_goes_to_its_one_lookup(settings):
    """The name is looked up once as the run connects; each later connection (here
    one per request) goes to that answer, not to the canary later answers name."""
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    target = serve(named_host_server())
    port = int(target.base_url.rsplit(":", 1)[1])
    canary = serve(named_host_server(), host="127.0.0.2", port=port)
    resolver = ChangingResolver([["127.0.0.1"], ["127.0.0.2"]])
    toolset = guarded_toolset(
        f"http://mcp.test:{port}/mcp",
        resolver,
        headers={"Authorization": "Bearer owner", "Connection": "close"},
    )
    try:
        script = await run_script(
            toolset, ("add", {"a": 1, "b": 2}), ("shout", {"text": "x"})
        )
    finally:
        target.stop()
        canary.stop()
    assert [r.content for r in script.returned] == [3, "X"]
    assert resolver.calls == [("mcp.test", port)]
    assert len(target.requests) >= 4 and canary.requests == []
    assert all(h["host"] == f"mcp.test:{port}" for _, h in target.requests)


async def test_a_private_answer_refuses_the_server_before_any_request(settings):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = False
    target = serve(named_host_server())
    port = int(target.base_url.rsplit(":", 1)[1])
    resolver = ChangingResolver([["127.0.0.1"], ["8.8.8.8"]])
    try:
        with pytest.raises(
            ToolUnavailableError,
            match=rf"The MCP server at mcp\.test:{port} cannot be used: .*loopback",
        ):
            await run_script(guarded_toolset(f"http://mcp.test:{port}/mcp", resolver))
    finally:
        target.stop()
    assert target.requests == []


async def test_a_lookup_that_hangs_ends_at_the_connect_timeout(settings):
    async def never_answers(host: str, port: int) -> list[str]:
        await asyncio.Event().wait()
        return []

    toolset = remote_mcp_toolset_class()(
        "http://slow-dns.test/mcp", resolver=never_answers, init_timeout=0.3
    )
    with pytest.raises(ToolUnavailableError, match=r"did not resolve within 0\.3 s"):
        await asyncio.wait_for(run_script(toolset), 3)


def huge_result_server(json_response: bool) -> Any:
    server = MCPServer("huge", log_level="WARNING")

    @server.tool()
    def huge() -> str:
        """A result larger than any server should send."""
        return "x" * (MAX_RESPONSE_BYTES + 1024)

    @server.tool()
    def small() -> str:
        """A small result."""
        return "ok"

    return server.streamable_http_app(json_response=json_response)


@pytest.mark.parametrize("json_response", [True, False])
async def test_a_response_past_the_cap_is_a_failed_call(settings, json_response):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    running = serve(huge_result_server(json_response))
    try:
        script = await run_script(
            mcp_toolset(running.url, timeout_seconds=5), ("huge", {}), ("small", {})
        )
    finally:
        running.stop()
    too_big, small = script.returned
    assert too_big.outcome == "failed"
    assert "could not run 'huge'" in too_big.content
    assert (small.outcome, small.content) == ("success", "ok")


async def test_a_redirect_to_another_origin_is_not_followed(settings):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    canary = serve(demo_server().streamable_http_app())

    async def redirecting(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 307,
                "headers": [(b"location", canary.url.encode())],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    redirector = serve(redirecting)
    try:
        with pytest.raises(ToolUnavailableError, match="could not be reached"):
            await run_script(mcp_toolset(redirector.url, timeout_seconds=2))
    finally:
        redirector.stop()
        canary.stop()
    assert redirector.requests and canary.requests == []


async def test_a_slow_drip_handshake_ends_at_the_timeout(settings):
    """One byte every 0.6 s keeps each read short; connecting still ends at 1 s."""
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True

    async def dripping(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b'{"jsonrpc": "2.0", "id": 0, "result": {}}'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        for byte in body:
            await send(
                {"type": "http.response.body", "body": bytes([byte]), "more_body": True}
            )
            await asyncio.sleep(0.6)

    dripper = serve(dripping)
    started = time.monotonic()
    try:
        with pytest.raises(ToolUnavailableError):
            await run_script(mcp_toolset(dripper.url, timeout_seconds=1))
        elapsed = time.monotonic() - started
    finally:
        dripper.stop()
    assert elapsed < 1.6


async def test_an_unreachable_server_fails_the_run_clearly(settings):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    port = _closed_port()
    with pytest.raises(
        ToolUnavailableError,
        match=rf"The MCP server at 127\.0\.0\.1:{port} could not be reached: .+",
    ):
        await run_script(mcp_toolset(f"http://127.0.0.1:{port}/mcp"))


async def test_a_url_ending_in_sse_uses_the_sse_transport(settings):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    sse = serve(demo_server().sse_app(), path="/sse")
    try:
        script = await run_script(
            mcp_toolset(sse.url, headers={"X-Team": "blue"}),
            ("add", {"a": 1, "b": 1}),
        )
    finally:
        sse.stop()
    assert script.returned[0].content == 2
    assert {path for path, _ in sse.requests} >= {"/sse", "/messages/"}
    assert all(h.get("x-team") == "blue" for _, h in sse.requests)


async def test_a_server_that_goes_away_mid_run_fails_the_call_not_the_run(settings):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    doomed = serve(demo_server().streamable_http_app())
    stopped = threading.Event()

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("add", {"a": 1, "b": 2})])
        if len(messages) == 3:
            doomed.stop()
            stopped.set()
            return ModelResponse(parts=[ToolCallPart("add", {"a": 3, "b": 4})])
        model.last = messages[-1].parts[0]
        return ModelResponse(parts=[TextPart("done")])

    result = await Agent(
        FunctionModel(model), toolsets=[mcp_toolset(doomed.url, timeout_seconds=2)]
    ).run("go")
    assert stopped.is_set() and result.output == "done"
    assert model.last.outcome == "failed"
    assert "could not run 'add'" in model.last.content


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db(transaction=True)
async def test_a_turn_over_the_websocket_stores_the_mcp_call_and_result(
    mcp, fake_llm, user, make_agent, make_session, ws_connect
):
    agent = await sync_to_async(make_agent)(
        user,
        tools=[
            {
                "tool": "mcp_server",
                "config": {"url": mcp.url, "tool_prefix": "demo"},
            }
        ],
    )
    session = await sync_to_async(make_session)(user, agent=agent)
    ws = await ws_connect(user, session)
    frames = await ws.turn('[[call demo_shout {"text": "over the wire"}]] go')
    await ws.close()

    assert frames[-1]["execution"]["status"] == "succeeded"
    stored = [
        e
        async for e in Event.objects.filter(session=session).order_by("sequence_number")
    ]
    call = next(e for e in stored if e.kind == "tool_call")
    result = next(e for e in stored if e.kind == "tool_result")
    assert call.metadata["tool_name"] == "demo_shout"
    assert call.metadata["args"] == {"text": "over the wire"}
    assert result.metadata["tool_call_id"] == call.metadata["tool_call_id"]
    assert result.metadata["is_error"] is False
    assert "OVER THE WIRE" in result.content


@pytest.mark.django_db(transaction=True)
async def test_a_turn_fails_with_tool_unavailable_when_the_server_is_down(
    fake_llm, user, make_agent, make_session, ws_connect, settings
):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    url = f"http://127.0.0.1:{_closed_port()}/mcp"
    agent = await sync_to_async(make_agent)(
        user, tools=[{"tool": "mcp_server", "config": {"url": url}}]
    )
    session = await sync_to_async(make_session)(user, agent=agent)
    ws = await ws_connect(user, session)
    frames = await ws.turn("[[tokens=3]] hello")
    await ws.close()

    execution = frames[-1]["execution"]
    assert execution["status"] == "failed"
    assert execution["error_code"] == "tool_unavailable"
    assert execution["error_message"].startswith("The MCP server at 127.0.0.1:")
    assert fake_llm.requests == []
