"""How one run's pydantic-ai events become the session's events and frames.

Public surface:
    TurnStream             partial text frames, stored tool calls and results
    classify_failure(exc, *, cancel_reason)
                           (status, error_code, message) for what ended a run,
                           cancels and shutdowns included
    classify_cancel(cancel_reason)
                           the same for a turn a cancel stopped outside its run
                           (still queued, between workflow steps)
    usage_of(run_usage), add_usage(a, b), tool_args(part)
    tool_call_spec(part), tool_result_spec(...)   the stored events of a call and its result

The runner owns the run; this module only translates what it yields.
Streamed text is coalesced over a few milliseconds (see `TurnStream`): each
partial frame costs a channel-layer publish and a websocket send, which for a
fast model streaming thousands of tiny chunks was most of the server's work
(docs/performance.md). The window widens with the number of turns streaming
in the process, so a busy process sends fewer, larger frames instead of
spending its CPU on frames.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from django.conf import settings
from django.utils import timezone
from pydantic_ai import (
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    RunCancelled,
    RunTimedOut,
    UsageLimitExceeded,
)
from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelHTTPError,
    ModelRateLimitError,
    ModelTimeoutError,
    UnexpectedModelBehavior,
)

from observability.turns import note_first_token
from sessions_app import broadcast, services
from sessions_app.db import run_db
from sessions_app.frames import event_frame, partial_payload
from sessions_app.models import AgentExecution, Event

logger = logging.getLogger(__name__)

Status = AgentExecution.Status

#: However busy the process, a streaming answer shows new text every second.
MAX_WINDOW = 1.0


class TurnStream:
    """Publishes a turn's text as partial frames and stores its tool events.

    Text goes out at once when the previous partial frame is older than the
    coalescing window; text arriving faster is held until the window ends and
    sent as one frame. A model streaming slower than the window gets a frame
    per chunk and never waits; the first chunk of an answer is never delayed.
    Stored events first send whatever text is held, so frames keep their
    order.

    The window is `AGENTRY_STREAM_COALESCE_MS`, widened so that the turns
    streaming in this process together send at most
    `AGENTRY_STREAM_FRAMES_PER_SECOND` partial frames per second: up to 10
    concurrent turns keep the base window; at 50 and the default budget of
    100, each turn's text goes out every 500 ms, and never less often than
    every `MAX_WINDOW` (1 s). Under such load the chunks of
    one turn arrive slower than any fixed window (the event loop serves every
    turn in between), so only a window that follows the load saves frames;
    each frame costs the process about 1 ms of CPU (publish, relay, send).
    """

    #: Turns streaming in this process (between construction and `close`).
    streaming: ClassVar[set[TurnStream]] = set()
    #: Seconds on the clock the window is measured with (the event loop's
    #: clock); tests that count frames hold it still.
    clock: ClassVar[Callable[[], float]] = time.monotonic

    def __init__(
        self,
        execution_id: str,
        session_id: str,
        announced: set[str] | None = None,
        *,
        fence: int | None = None,
    ) -> None:
        self.execution_id, self.session_id = execution_id, session_id
        # The takeover count the run holds the turn at: its writes fence on it.
        self.fence = fence
        self.segment: list[str] = []
        # Calls already stored: a resumed run re-announces the approved ones.
        self.announced = set(announced or ())
        self._earlier = frozenset(self.announced)
        # Set once a call's event is stored (a delegated run waits for it).
        self._stored_calls: dict[str, asyncio.Event] = {}
        # Results already stored: a taken-over run answers calls with them.
        self.resulted: set[str] = set()
        self._held: list[str] = []
        self._last_sent = float("-inf")
        self._timer: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()
        TurnStream.streaming.add(self)

    def close(self) -> None:
        """The turn's run is over (or torn down): held text and any scheduled
        send are dropped, and it no longer counts towards the load."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._held = []
        TurnStream.streaming.discard(self)

    @staticmethod
    def window() -> float:
        """Seconds over which one turn's text is coalesced, at the current load."""
        base: float = settings.AGENTRY_STREAM_COALESCE_MS / 1000
        budget: float = settings.AGENTRY_STREAM_FRAMES_PER_SECOND
        if budget <= 0:
            return base
        return max(base, min(MAX_WINDOW, len(TurnStream.streaming) / budget))

    async def partial(self, text: str) -> None:
        if not text:
            return
        note_first_token()
        self.segment.append(text)
        self._held.append(text)
        if self._timer is not None:
            return  # the scheduled send takes this text too
        wait = self._last_sent + self.window() - TurnStream.clock()
        if wait <= 0:
            await self._send_held()
        else:
            self._timer = asyncio.create_task(self._send_later(wait))

    async def _send_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        # From here on the send must not be cancelled: `flush` waits for it.
        self._timer = None
        await self._send_held()

    async def _send_held(self) -> None:
        async with self._sending:
            if not self._held:
                return
            text, self._held = "".join(self._held), []
            self._last_sent = TurnStream.clock()
            payload = partial_payload(
                session_id=self.session_id,
                execution_id=self.execution_id,
                content=text,
                created_at=timezone.now(),
            )
            await broadcast.publish(
                self.session_id, {"type": "event", "event": payload}
            )

    async def flush(self) -> None:
        """Sends any held text now (before a stored event, or at the end)."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        await self._send_held()

    async def store(self, *specs: services.EventSpec) -> None:
        await self.flush()
        events = await run_db(
            services.events_append,
            self.session_id,
            list(specs),
            execution_id=self.execution_id,
            fence=self.fence,
        )
        await broadcast.publish(self.session_id, *(event_frame(e) for e in events))

    def _call_stored(self, tool_call_id: str) -> asyncio.Event:
        return self._stored_calls.setdefault(tool_call_id, asyncio.Event())

    async def call_stored(self, tool_call_id: str, timeout: float = 10.0) -> None:
        """Waits until the call's event is stored: a tool that stores events of
        its own (a delegated run) stores them after its call, in order."""
        if tool_call_id in self._earlier:
            return
        try:
            await asyncio.wait_for(self._call_stored(tool_call_id).wait(), timeout)
        except TimeoutError:
            logger.warning("tool call %s was not stored in time", tool_call_id)

    def take_segment(self) -> str:
        """The text streamed since the last stored event (and forgets it)."""
        text, self.segment = "".join(self.segment), []
        return text

    async def tool_call(self, event: FunctionToolCallEvent) -> None:
        part = event.part
        if part.tool_call_id in self.announced:
            return
        self.announced.add(part.tool_call_id)
        specs = []
        text = self.take_segment()
        if text:
            # Text the model wrote before deciding to call a tool stays in the log.
            specs.append(services.EventSpec(author=Event.Author.AGENT, content=text))
        specs.append(tool_call_spec(part))
        await self.store(*specs)
        self._call_stored(part.tool_call_id).set()

    def already_stored(self, calls: Iterable[str], results: Iterable[str]) -> None:
        """Tool events stored before this run (a taken-over turn's): not again."""
        self.announced.update(calls)
        self.resulted.update(results)

    async def tool_result(self, event: FunctionToolResultEvent) -> None:
        part = event.part
        if part.tool_call_id in self.resulted:
            return
        self.resulted.add(part.tool_call_id)
        is_error = getattr(part, "outcome", "success") != "success"
        try:
            content = part.model_response_str(wrap_if_error=False)
        except Exception:
            content = str(part.content)
        await self.store(
            tool_result_spec(
                part.tool_name, part.tool_call_id, content, is_error=is_error
            )
        )


def tool_call_spec(part: Any) -> services.EventSpec:
    """The stored event of a model's tool call."""
    return services.EventSpec(
        author=Event.Author.AGENT,
        kind=Event.Kind.TOOL_CALL,
        content=part.tool_name,
        metadata={
            "tool_name": part.tool_name,
            "tool_call_id": part.tool_call_id,
            "args": tool_args(part),
        },
    )


def tool_result_spec(
    tool_name: str, tool_call_id: str, content: str, *, is_error: bool
) -> services.EventSpec:
    """The stored event of a tool's result."""
    return services.EventSpec(
        author=Event.Author.TOOL,
        kind=Event.Kind.TOOL_RESULT,
        content=content,
        metadata={
            "tool_name": tool_name,
            "tool_call_id": tool_call_id,
            "is_error": is_error,
        },
    )


def tool_args(part: Any) -> Any:
    try:
        return part.args_as_dict()
    except Exception:
        return {"raw": str(part.args)}


def usage_of(usage: Any) -> dict[str, int]:
    if usage is None:
        return {"requests": 0, "input_tokens": 0, "output_tokens": 0, "tool_calls": 0}
    return {
        "requests": usage.requests,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "tool_calls": usage.tool_calls,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def add_usage(before: dict[str, int], now: dict[str, int]) -> dict[str, int]:
    """A resumed turn's usage is the sum of its runs."""
    return {key: before.get(key, 0) + value for key, value in now.items()}


def classify_cancel(cancel_reason: str) -> tuple[str, str, str]:
    """(status, error_code, message) for a turn a cancel stopped while no run
    was under way (queued behind another turn, between workflow steps): what
    `classify_failure` says of a run's own cancel, so a queued turn a shutdown
    stops is `interrupted` exactly as a running one is."""
    return classify_failure(RunCancelled("Cancelled."), cancel_reason=cancel_reason)


def classify_failure(
    exc: BaseException, *, cancel_reason: str = "cancelled"
) -> tuple[str, str, str]:
    """(status, error_code, message) for an exception that ended a run.

    `cancel_reason` is what a cancel of the turn was asked as (`LiveTurn.reason`):
    a user's cancel, or `interrupted` when this process is shutting down. A
    task cancelled under the turn (the event loop closing) is interrupted too.
    """
    if isinstance(exc, RunTimedOut):
        return Status.FAILED, "turn_timeout", "The turn took longer than allowed."
    if isinstance(exc, asyncio.CancelledError) or (
        isinstance(exc, RunCancelled) and cancel_reason == "interrupted"
    ):
        return Status.INTERRUPTED, "interrupted", services.INTERRUPTED_MESSAGE
    if isinstance(exc, RunCancelled):
        return Status.CANCELLED, "cancelled", "The turn was cancelled."
    if isinstance(exc, services.TurnRejected):
        # Found as a queued turn starts or a paused one resumes: its agent no
        # longer answers the session's user, or its version is gone.
        return Status.FAILED, exc.code, exc.message
    if isinstance(exc, UsageLimitExceeded):
        return Status.FAILED, "usage_limit_exceeded", str(exc)
    if isinstance(exc, ModelTimeoutError):
        return Status.FAILED, "model_timeout", "The model did not answer in time."
    if isinstance(exc, ModelRateLimitError) or (
        isinstance(exc, ModelHTTPError) and exc.status_code == 429
    ):
        return (
            Status.FAILED,
            "model_rate_limited",
            "The model provider is rate limiting requests.",
        )
    if isinstance(exc, ModelAPIError | UnexpectedModelBehavior):
        return Status.FAILED, "model_error", f"The model failed: {exc}"
    from agents.factory import AgentConfigError
    from tools.registry import ToolUnavailableError

    if isinstance(exc, AgentConfigError):
        return Status.FAILED, "agent_config_error", str(exc)
    if isinstance(exc, ToolUnavailableError):
        return Status.FAILED, "tool_unavailable", str(exc)
    import httpx

    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return Status.FAILED, "model_timeout", "The model did not answer in time."
    if isinstance(exc, httpx.TransportError | ConnectionError):
        return Status.FAILED, "model_error", f"The model could not be reached: {exc}"
    # A bug, not an outcome: its text may name hosts, paths or credentials,
    # so the client gets a generic message and the log keeps the traceback.
    logger.error("turn failed with an unexpected error", exc_info=exc)
    return (
        Status.FAILED,
        "internal_error",
        "The turn failed because of an internal error; the server log has details.",
    )
