"""http_endpoint: a configured HTTP call, against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic_ai import Agent, ModelResponse, TextPart, ToolCallPart, ToolFailed
from pydantic_ai.messages import ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from tools.registry import ToolConfigError, ToolContext, registry, toolset_for


class Handler(BaseHTTPRequestHandler):
    received: list = []

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, body: bytes, content_type: str = "application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.received.append(("GET", self.path, dict(self.headers), b""))
        if self.path.startswith("/slow"):
            time.sleep(1)
        if self.path.startswith("/big"):
            return self._answer(200, b"x" * 100_000, "text/plain")
        if self.path.startswith("/missing"):
            return self._answer(404, b"no such thing", "text/plain")
        if self.path.startswith("/drip"):
            return self._drip(b"0123456789")
        if self.path.startswith("/endless"):
            return self._endless()
        if self.path.startswith("/hop"):
            self.send_response(307)
            self.send_header("Location", "/landed")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return self._answer(200, json.dumps({"path": self.path}).encode())

    def _drip(self, body: bytes) -> None:
        """One byte every 0.6 s: each read is quick, the whole answer is not."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for byte in body:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            if self.server.stopping.wait(0.6):
                return

    def _endless(self) -> None:
        """A body that never ends, until the client hangs up."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        while not self.server.stopping.is_set():
            self.wfile.write(b"x" * 65536)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(("POST", self.path, dict(self.headers), body))
        self._answer(200, json.dumps({"echo": json.loads(body)}).encode())


@pytest.fixture
def endpoint(settings) -> Iterator[str]:
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    Handler.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    server.stopping = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.stopping.set()
    server.shutdown()
    server.server_close()


WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


def endpoint_tool(**config):
    base = {"name": "weather", "description": "Weather for a city.", **config}
    kind = registry.get("http_endpoint")
    toolset = kind.build(
        kind.config_schema.model_validate(base), ToolContext(repo_root=Path("."))
    )
    return toolset.tools[base["name"]]


async def test_post_sends_json_and_returns_the_text(endpoint):
    tool = endpoint_tool(
        url=f"{endpoint}/api", parameters=WEATHER_SCHEMA, headers={"X-Key": "k1"}
    )
    result = await tool.function(city="Oslo")
    assert result["status"] == 200
    assert json.loads(result["body"]) == {"echo": {"city": "Oslo"}}
    method, path, headers, body = Handler.received[-1]
    assert (method, path, headers["X-Key"], json.loads(body)) == (
        "POST",
        "/api",
        "k1",
        {"city": "Oslo"},
    )


async def test_get_sends_query_parameters(endpoint):
    tool = endpoint_tool(url=f"{endpoint}/q", method="GET", parameters=WEATHER_SCHEMA)
    result = await tool.function(city="New York")
    assert json.loads(result["body"]) == {"path": "/q?city=New+York"}


async def test_failures_are_tool_failures(endpoint):
    schema_tool = endpoint_tool(url=f"{endpoint}/api", parameters=WEATHER_SCHEMA)
    with pytest.raises(ToolFailed, match="Invalid arguments"):
        await schema_tool.function(town="Oslo")
    with pytest.raises(ToolFailed, match="HTTP 404: no such thing"):
        await endpoint_tool(url=f"{endpoint}/missing", method="GET").function()
    with pytest.raises(ToolFailed, match="HTTP 302"):
        await endpoint_tool(url=f"{endpoint}/redirect", method="GET").function()
    slow = endpoint_tool(url=f"{endpoint}/slow", method="GET", timeout_seconds=0.3)
    with pytest.raises(ToolFailed, match="did not answer"):
        await slow.function()
    with pytest.raises(ToolFailed, match="could not be reached"):
        await endpoint_tool(url="http://127.0.0.1:9/", method="GET").function()


async def test_response_is_capped(endpoint):
    tool = endpoint_tool(url=f"{endpoint}/big", method="GET", max_response_chars=100)
    result = await tool.function()
    assert (len(result["body"]), result["truncated"]) == (100, True)


async def test_an_endless_body_is_cut_at_the_cap_while_streaming(endpoint):
    tool = endpoint_tool(url=f"{endpoint}/endless", method="GET", max_response_chars=10)
    result = await tool.function()
    assert (result["body"], result["truncated"]) == ("x" * 10, True)


async def test_a_slow_drip_ends_at_the_calls_deadline(endpoint):
    """One byte every 0.6 s keeps each read short; the 1 s call still ends at 1 s."""
    tool = endpoint_tool(url=f"{endpoint}/drip", method="GET", timeout_seconds=1)
    started = time.monotonic()
    with pytest.raises(ToolFailed, match=r"did not answer within 1\.0 s"):
        await tool.function()
    assert 0.9 < time.monotonic() - started < 1.5


async def test_a_redirect_is_answered_not_followed(endpoint):
    tool = endpoint_tool(url=f"{endpoint}/hop", method="GET")
    with pytest.raises(ToolFailed, match="HTTP 307"):
        await tool.function()
    assert [path for _, path, _, _ in Handler.received] == ["/hop"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_private_addresses_are_refused_by_default(endpoint, settings, host):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = False
    port = endpoint.rsplit(":", 1)[1]
    with pytest.raises(ToolFailed, match="not a public address") as refused:
        await endpoint_tool(url=f"http://{host}:{port}/api").function()
    assert "AGENTRY_ALLOW_PRIVATE_URLS=1" in str(refused.value)
    assert Handler.received == []


@pytest.mark.parametrize(
    "config, where",
    [
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "ftp://example.com/"}, "url"),
        ({"url": "http://user:pw@example.com/"}, "url"),
        ({"url": "http://example.com", "method": "TRACE"}, "method"),
        ({"url": "http://example.com", "name": "no spaces"}, "name"),
        ({"url": "http://example.com", "parameters": {"type": "array"}}, "parameters"),
        ({"url": "http://example.com", "headers": {"X": "a\r\nB: c"}}, "headers"),
        ({"url": "http://example.com", "surprise": 1}, "surprise"),
    ],
)
def test_bad_configs_are_refused_when_saved(config, where):
    body = {"name": "weather", "description": "d", **config}
    with pytest.raises(ToolConfigError, match=where):
        registry.validate_config("http_endpoint", body)


async def test_the_model_sees_the_configured_tool(endpoint):
    toolset = toolset_for(
        [
            {
                "tool": "http_endpoint",
                "config": {
                    "name": "weather",
                    "description": "Weather for a city.",
                    "url": f"{endpoint}/api",
                    "parameters": WEATHER_SCHEMA,
                },
            }
        ],
        ToolContext(repo_root=Path(".")),
    )
    seen = {}

    def model(messages, info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            seen["tools"] = {t.name: t for t in info.function_tools}
            return ModelResponse(parts=[ToolCallPart("weather", {"city": "Rome"})])
        seen["returned"] = messages[-1].parts[0]
        return ModelResponse(parts=[TextPart("sunny")])

    result = await Agent(FunctionModel(model), toolsets=[toolset]).run("weather?")
    assert result.output == "sunny"
    assert seen["tools"]["weather"].description == "Weather for a city."
    assert seen["tools"]["weather"].parameters_json_schema == WEATHER_SCHEMA
    returned = seen["returned"]
    assert isinstance(returned, ToolReturnPart) and returned.outcome == "success"
    assert json.loads(returned.content["body"]) == {"echo": {"city": "Rome"}}
