"""Sessions, turns and websocket clients for the runtime tests.

`make_agent(owner, **fields)` and `make_session(user, agent=None, **fields)`
create rows directly (`await new_session(**fields)` makes one for `user` from
async tests); `ws_connect(user, session)` opens a websocket through
the real ASGI application (`config.asgi.application`) with a real access
token; `WsClient.until(predicate)` collects frames up to the first match.
Every test starts with fresh channel layers, so a layer bound to a previous
test's event loop is never reused.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from rest_framework_simplejwt.tokens import AccessToken

from agents.models import Agent
from sessions_app.frames import is_terminal
from sessions_app.models import Session
from testing.fake_openai import FAKE_MODEL


@pytest.fixture(autouse=True)
def _fresh_channel_layers():
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def make_agent(db) -> Callable[..., Agent]:
    """Factory: `make_agent(owner, tools=[...], **fields)` -> an agent made the way
    the API makes one (`agents.services.agent_create`), on the fake model."""

    def make(owner, **fields: Any) -> Agent:
        from agents.services import agent_create

        tools = fields.pop("tools", [])
        fields.setdefault("name", f"agent-{uuid.uuid4().hex[:8]}")
        fields.setdefault("model", FAKE_MODEL)
        return agent_create(owner=owner, fields=fields, tools=tools)

    return make


@pytest.fixture
def make_session(make_agent) -> Callable[..., Session]:
    def make(user, agent: Agent | None = None, **fields: Any) -> Session:
        return Session.objects.create(
            user=user, agent=agent or make_agent(user), **fields
        )

    return make


@pytest.fixture
def new_session(make_session, user) -> Callable[..., Awaitable[Session]]:
    """From async tests: `await new_session(**fields)` -> a session of `user`."""

    async def make(**fields: Any) -> Session:
        return await sync_to_async(make_session)(user, **fields)

    return make


def access_token(user) -> str:
    """A real access token; minting one touches no database table."""
    return str(AccessToken.for_user(user))


def is_status(status: str) -> Callable[[dict], bool]:
    return lambda f: f.get("type") == "execution" and f["execution"]["status"] == status


def is_partial(frame: dict) -> bool:
    return frame.get("type") == "event" and frame["event"].get("partial") is True


class WsClient:
    """A websocket client of one session, speaking JSON frames."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.closed = False

    async def send(self, frame: Any) -> None:
        if isinstance(frame, str | bytes):
            await self.communicator.send_to(
                text_data=frame if isinstance(frame, str) else None,
                bytes_data=frame if isinstance(frame, bytes) else None,
            )
        else:
            await self.communicator.send_json_to(frame)

    async def recv(self, timeout: float = 10) -> dict:
        return json.loads(await self.communicator.receive_from(timeout))

    async def until(
        self, predicate: Callable[[dict], bool], timeout: float = 30
    ) -> list[dict]:
        frames: list[dict] = []
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                frames.append(frame)
                if predicate(frame):
                    return frames

    async def turn(
        self, content: str, timeout: float = 30, **fields: Any
    ) -> list[dict]:
        await self.send({"type": "message", "content": content, **fields})
        return await self.until(is_terminal, timeout)

    async def nothing_more(self, timeout: float = 0.3) -> bool:
        return await self.communicator.receive_nothing(timeout)

    async def close(self) -> None:
        """Disconnects (once; the `ws_connect` fixture closes what is still open)."""
        if self.closed:
            return
        self.closed = True
        # A socket the server already closed has no application left to tell.
        if not self.communicator.future.done():
            await self.communicator.disconnect()


async def open_ws(
    path: str, *, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[WebsocketCommunicator, bool, Any]:
    from config.asgi import application

    communicator = WebsocketCommunicator(application, path, headers=headers or [])
    connected, code = await communicator.connect(timeout=10)
    return communicator, connected, code


@pytest.fixture
async def ws_connect():
    """Factory: `await ws_connect(user, session)` -> a connected WsClient; every
    client still open when the test ends is disconnected then."""
    clients: list[WsClient] = []

    async def connect(user, session, *, origin: str | None = None) -> WsClient:
        token = access_token(user)
        headers = [(b"origin", origin.encode())] if origin else []
        communicator, connected, _ = await open_ws(
            f"/ws/sessions/{session.pk}/?token={token}", headers=headers
        )
        assert connected
        client = WsClient(communicator)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.close()
