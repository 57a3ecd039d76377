"""The websocket endpoint of a session: `/ws/sessions/<id>/`.

`ChatConsumer` authenticates, joins the session's group and relays: frames
from the group go to the client; client frames become calls to the turn
runner. It holds no agent logic. Refused connections are accepted and then
closed, so clients see 4401 (authentication), 4403 (origin) or 4404 (session).
Every close carries a reason string saying why.

Authorisation lasts as long as the credentials do (`accounts.ws_auth`): the
socket closes with 4401 when its token expires, when a client frame finds the
user deactivated or logged out everywhere, and at once when the user's group
is told so (`ws_auth.revoke_user_sockets`, from any process).

When the channel layer (Redis) cannot be reached, the socket gets an `error`
frame `stream_unavailable` and is closed with 4503, at
connect or as soon as `stream_health` notices the outage: frames would
otherwise stop without a word. Clients reconnect and `resume`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts import ws_auth
from core.text import TOO_DEEP_MESSAGE, is_too_deep
from sessions_app import broadcast, runner, selectors, stream_health
from sessions_app.db import run_db
from sessions_app.frames import ErrorFrame, Frame, error_frame, event_frame
from sessions_app.models import Event

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_STREAM_UNAVAILABLE = 4503
STREAM_UNAVAILABLE = (
    "stream_unavailable",
    "Live streaming is unavailable (the channel layer cannot be reached). "
    "Reconnect and resume from your last sequence number.",
)
STREAM_UNAVAILABLE_REASON = "stream unavailable: reconnect and resume"
RESUME_PAGE = 500


#: An ASGI application's `receive` and `send` callables, as this module uses them.
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def refuse_unavailable(receive: Receive, send: Send) -> None:
    """Accepts, sends the `stream_unavailable` error frame and closes (4503)."""
    message = await receive()
    if message.get("type") != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send(
        {"type": "websocket.send", "text": json.dumps(error_frame(*STREAM_UNAVAILABLE))}
    )
    await send(
        {
            "type": "websocket.close",
            "code": CLOSE_STREAM_UNAVAILABLE,
            "reason": STREAM_UNAVAILABLE_REASON,
        }
    )


def refusal_frame(exc: runner.TurnRejected, client_message_id: str) -> ErrorFrame:
    """The error frame of a refused message; it names the message's
    `client_message_id` (in `details`), as messages' answers arrive out of order."""
    details = dict(getattr(exc, "details", None) or {})
    if client_message_id:
        details["client_message_id"] = client_message_id
    frame = error_frame(exc.code, exc.message)
    if details:
        frame["error"]["details"] = details
    return frame


# channels ships no type hints, so its consumer base class is untyped.
class ChatConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    session_id: str | None = None
    listening: broadcast.Listening | None = None
    relay_down = False
    socket_auth: ws_auth.SocketAuth | None = None
    expiry_task: asyncio.Task[None] | None = None
    unauthorised = False
    #: Until when (monotonic) the last re-check of the user holds.
    authorised_until = float("-inf")

    async def __call__(
        self, scope: dict[str, Any], receive: Receive, send: Send
    ) -> None:
        try:
            await super().__call__(scope, receive, send)
        except Exception:
            # Channels creates the consumer's channel before `connect`; with
            # the layer down that fails, and the client would see a bare 500.
            if getattr(self, "channel_receive", None) is not None:
                raise
            logger.warning("websocket refused: the channel layer is unreachable")
            await refuse_unavailable(receive, send)

    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        if not self.scope.get("origin_allowed", False):
            await self.close(CLOSE_FORBIDDEN_ORIGIN, reason="origin not allowed")
            return
        if user is None or not user.is_authenticated:
            await self.close(
                CLOSE_UNAUTHENTICATED, reason=ws_auth.refusal_reason(self.scope)
            )
            return
        self.socket_auth = self.scope.get("socket_auth")
        session_id = str(self.scope["url_route"]["kwargs"]["session_id"])
        # A session stays open to its user when its agent stops answering:
        # its history is theirs, and a refused turn is an error frame.
        owned = await run_db(
            lambda: selectors.session_of(user=user, session_id=session_id) is not None
        )
        if not owned:
            await self.close(CLOSE_NOT_FOUND, reason="no such session")
            return
        self.session_id = session_id
        try:
            self.listening = await broadcast.listen(session_id, self.relay_frames)
            await self.channel_layer.group_add(
                ws_auth.user_group(user.pk), self.channel_name
            )
        except Exception:
            logger.warning("cannot join the group of session %s", session_id)
            await self.stream_unavailable()
            return
        stream_health.watch(self.stream_unavailable)
        # Revocations from now on reach the user's group; one that happened
        # since the credentials were checked above is caught here.
        if not await self.still_authorised():
            return
        if self.socket_auth is not None and self.socket_auth.expires_at is not None:
            self.expiry_task = asyncio.create_task(
                self.close_at(self.socket_auth.expires_at)
            )

    async def disconnect(self, code: int) -> None:
        # The running turn is left alone: it finishes and is stored.
        stream_health.unwatch(self.stream_unavailable)
        if self.expiry_task is not None:
            self.expiry_task.cancel()
        if self.listening is not None:
            await self.listening.close()
        if self.session_id is not None:
            try:
                await self.channel_layer.group_discard(
                    ws_auth.user_group(self.scope["user"].pk), self.channel_name
                )
            except Exception:
                logger.debug("cannot leave the group of %s", self.session_id)

    async def close_unauthorised(self, reason: str) -> None:
        """Closes with 4401: the socket's credentials no longer hold."""
        if self.unauthorised:
            return
        self.unauthorised = True
        await self.close(CLOSE_UNAUTHENTICATED, reason=reason)

    async def close_at(self, expires_at: float) -> None:
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        await self.close_unauthorised("token expired")

    async def still_authorised(self) -> bool:
        """Re-checks the user before acting on a client frame: one query at
        most every `ws_auth.recheck_seconds()` (revocations through the
        user's group close the socket at once, whatever the interval)."""
        auth = self.socket_auth
        if auth is None:
            return False
        now = time.monotonic()
        if now < self.authorised_until and not ws_auth.expired(auth):
            return True
        if await run_db(ws_auth.socket_still_authorised, auth):
            self.authorised_until = now + ws_auth.recheck_seconds()
            return True
        await self.close_unauthorised("credentials no longer valid")
        return False

    async def stream_unavailable(self) -> None:
        """Tells the client the live relay is down, then closes (it resumes later)."""
        self.relay_down = True
        await self.send_frame(error_frame(*STREAM_UNAVAILABLE))
        await self.close(CLOSE_STREAM_UNAVAILABLE, reason=STREAM_UNAVAILABLE_REASON)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        if self.session_id is None or self.relay_down or self.unauthorised:
            return
        if not await self.still_authorised():
            return
        raw = text_data if text_data is not None else bytes_data
        if raw is not None and len(raw) > settings.AGENTRY_MAX_WS_FRAME_BYTES:
            await self.send_frame(
                error_frame(
                    "message_too_large",
                    "The frame is larger than "
                    f"{settings.AGENTRY_MAX_WS_FRAME_BYTES} bytes.",
                )
            )
            return
        try:
            frame = json.loads(raw or "")
        except (ValueError, UnicodeDecodeError):
            await self.send_frame(
                error_frame("invalid_frame", "Frames must be JSON objects.")
            )
            return
        except RecursionError:
            # The decoder recurses per nesting level: a frame of nothing but `[`.
            await self.send_frame(error_frame("invalid_frame", TOO_DEEP_MESSAGE))
            return
        if is_too_deep(frame):
            await self.send_frame(error_frame("invalid_frame", TOO_DEEP_MESSAGE))
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self.send_frame(
                error_frame(
                    "invalid_frame", 'Frames must be JSON objects with a "type".'
                )
            )
            return
        handler = getattr(self, f"on_{frame['type']}", None)
        if handler is None:
            await self.send_frame(
                error_frame("invalid_frame", f"Unknown frame type {frame['type']!r}.")
            )
            return
        await handler(frame)

    async def send_frame(self, frame: Frame) -> None:
        await self.send(text_data=json.dumps(frame, ensure_ascii=False))

    # ---- client frames

    async def on_ping(self, frame: dict[str, Any]) -> None:
        await self.send_frame({"type": "pong"})

    async def on_message(self, frame: dict[str, Any]) -> None:
        try:
            request = runner.TurnRequest.from_message(
                frame, session_id=self.session_id, user_id=self.scope["user"].pk
            )
        except runner.TurnRejected as exc:
            await self.send_frame(error_frame(exc.code, exc.message))
            return
        if not stream_health.layer_available() and not await stream_health.probe():
            # Nothing is started: its frames could not reach this socket.
            await self.send_frame(error_frame(*STREAM_UNAVAILABLE))
            return
        try:
            submission = await runner.submit_turn(request)
        except runner.TurnRejected as exc:
            await self.send_frame(refusal_frame(exc, request.client_message_id))
            return
        if submission.duplicate:
            await self.send_frame(submission.frame)

    async def on_approve(self, frame: dict[str, Any]) -> None:
        try:
            await runner.submit_approval(
                execution_id=str(frame.get("execution") or ""),
                user_id=self.scope["user"].pk,
                decisions=frame.get("decisions"),
                via="websocket",
            )
        except runner.TurnRejected as exc:
            await self.send_frame(error_frame(exc.code, exc.message))

    async def on_cancel(self, frame: dict[str, Any]) -> None:
        await runner.cancel_turn(self.session_id)

    async def on_resume(self, frame: dict[str, Any]) -> None:
        after = frame.get("after_sequence", 0)
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            await self.send_frame(
                error_frame(
                    "invalid_frame", "after_sequence must be a non-negative integer."
                )
            )
            return

        def page_after(sequence: int) -> list[Event]:
            return list(selectors.events_after(self.session_id, sequence, RESUME_PAGE))

        while True:
            events = await run_db(page_after, after)
            for event in events:
                await self.send_frame(event_frame(event))
            if len(events) < RESUME_PAGE:
                return
            after = events[-1].sequence_number

    # ---- group messages

    async def auth_revoked(self, message: dict[str, Any]) -> None:
        """The user was deactivated or logged out everywhere (any process)."""
        cutoff = message.get("cutoff")
        auth = self.socket_auth
        if cutoff is None or auth is None or auth.issued_at < cutoff:
            await self.close_unauthorised("logged out")

    async def relay_frames(self, batch: broadcast.Batch) -> None:
        """The session's frames, from this process or another (`broadcast`)."""
        for text in batch.texts:
            await self.send(text_data=text)
