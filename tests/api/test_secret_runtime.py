"""Secret references resolve when a tool runs, to the secrets of the agent's owner.

Real servers on 127.0.0.1 record the headers they receive: a plain HTTP
server for `http_endpoint`, the MCP SDK's server for `mcp_server`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from pydantic_ai import Agent as PydanticAgent

from accounts import secrets
from accounts.models import Secret
from sessions_app.models import Event
from tests.plugins.runtime import access_token
from tests.tools.test_mcp import Script, demo_server, run_script, serve
from tools.registry import ToolContext, ToolUnavailableError, toolset_for

pytestmark = pytest.mark.django_db(transaction=True)

API_KEY = "sk-live-0123456789abcdef"


class RecordingHandler(BaseHTTPRequestHandler):
    received: list[dict[str, str]] = []

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(dict(self.headers))
        body = b'{"sky": "blue"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def private_urls_allowed(settings):
    settings.AGENTRY_HTTP_TOOLS_ALLOW_PRIVATE = True
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True


@pytest.fixture
def endpoint(private_urls_allowed) -> Iterator[str]:
    RecordingHandler.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordingHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/weather"
    server.shutdown()
    server.server_close()


def weather_tool(url: str, headers: dict) -> dict:
    return {
        "tool": "http_endpoint",
        "config": {
            "name": "weather",
            "description": "Weather for a city.",
            "url": url,
            "headers": headers,
        },
    }


async def run_weather(url: str, headers: dict, owner_id) -> Script:
    toolset = toolset_for(
        [weather_tool(url, headers)],
        ToolContext(repo_root=Path("."), owner_id=owner_id),
    )
    return await run_script(toolset, ("weather", {}))


def store(owner, name: str, value: str = API_KEY) -> Secret:
    return Secret.objects.create(
        owner=owner, name=name, ciphertext=secrets.encrypt(value)
    )


async def test_an_http_header_reference_sends_the_owners_value(endpoint, user):
    secret = await sync_to_async(store)(user, "weather-key")
    headers = {"Authorization": {"secret": "weather-key"}, "X-Plan": "gold"}
    script = await run_weather(endpoint, headers, user.pk)
    assert json.loads(script.returned[0].model_response_str())["status"] == 200
    received = RecordingHandler.received[-1]
    assert (received["Authorization"], received["X-Plan"]) == (API_KEY, "gold")
    await secret.arefresh_from_db()
    assert secret.last_used_at is not None


async def test_a_reference_resolves_only_among_the_owners_secrets(
    endpoint, user, other_user
):
    await sync_to_async(store)(other_user, "weather-key")
    script = await run_weather(
        endpoint, {"Authorization": {"secret": "weather-key"}}, user.pk
    )
    answer = script.returned[0].model_response_str()
    assert "secret named in the tool's headers does not exist" in answer
    assert API_KEY not in answer and "weather-key" not in answer
    assert RecordingHandler.received == []


async def test_an_mcp_header_reference_sends_the_owners_value(
    private_urls_allowed, user
):
    await sync_to_async(store)(user, "mcp-key", "Bearer mcp-s3cret")
    server = serve(demo_server().streamable_http_app())
    try:
        toolset = toolset_for(
            [
                {
                    "tool": "mcp_server",
                    "config": {
                        "url": server.url,
                        "headers": {"Authorization": {"secret": "mcp-key"}},
                    },
                }
            ],
            ToolContext(repo_root=Path("."), owner_id=user.pk),
        )
        script = await run_script(toolset, ("add", {"a": 2, "b": 3}))
        assert script.returned[0].model_response_str() == "5"
    finally:
        server.stop()
    assert server.requests and all(
        headers.get("authorization") == "Bearer mcp-s3cret"
        for _path, headers in server.requests
    )


async def test_an_mcp_server_whose_secret_is_missing_fails_the_run_clearly(
    private_urls_allowed, user
):
    toolset = toolset_for(
        [
            {
                "tool": "mcp_server",
                "config": {
                    "url": "http://127.0.0.1:9/mcp",
                    "headers": {"Authorization": {"secret": "gone"}},
                },
            }
        ],
        ToolContext(repo_root=Path("."), owner_id=user.pk),
    )
    with pytest.raises(ToolUnavailableError, match="secret named in the tool's"):
        await PydanticAgent("test", toolsets=[toolset]).run("go")


async def test_another_user_running_a_public_agent_uses_the_owners_key_unseen(
    fake_llm, endpoint, user, other_user, make_agent
):
    await sync_to_async(store)(user, "weather-key")
    agent = await sync_to_async(make_agent)(
        user,
        visibility="public",
        tools=[weather_tool(endpoint, {"Authorization": {"secret": "weather-key"}})],
    )
    response = await AsyncClient().post(
        f"/api/agents/{agent.pk}/run/",
        {"input": "[[call weather {}]] what is the weather?"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {access_token(other_user)}"},
    )
    assert response.status_code == 200, response.content
    assert response.json()["execution"]["status"] == "succeeded"
    assert RecordingHandler.received[-1]["Authorization"] == API_KEY
    assert API_KEY not in response.content.decode()
    stored = [
        json.dumps([e.content, e.metadata])
        async for e in Event.objects.filter(session_id=response.json()["session"])
    ]
    assert stored and not any(API_KEY in text for text in stored)
