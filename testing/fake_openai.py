"""A fake OpenAI-compatible Chat Completions server for tests and benchmarks.

Standard library only: an asyncio HTTP/1.1 server (keep-alive, chunked request
bodies) bound to 127.0.0.1, so pydantic-ai's own `OpenAIChatModel` talks to it
over real HTTP exactly as it talks to OpenAI, Ollama or vLLM.

Public surface:
    FAKE_MODEL          "openai-chat:fake": the model string an agent names to reach
                        this server (through OPENAI_BASE_URL)
    FakeOpenAI          the server; `async with FakeOpenAI(...) as server:` in a running loop
    FakeOpenAIThread    the same server on its own event loop in a background thread
                        (`with FakeOpenAIThread() as server: server.url`)
    parse_directives    what a message asks of the server (see below)
    main()              `python -m testing.fake_openai --port P [--tokens N --delay-ms D --ttft-ms T]`

Endpoints: `POST /v1/chat/completions` (streaming and not), `GET /v1/models`,
`GET /stats` (counters as JSON), `POST /stats/reset`. Anything else is a 404
with an OpenAI error body.

The answer is shaped by the server's defaults (`tokens`, `delay_ms`, `ttft_ms`)
and, per request, by directives in the last user message; several combine:

    [[tokens=N delay=MS ttft=MS]]  answer N words "word0 word1 ...", the first after
                                   ttft ms, the next ones delay ms apart
    [[reply TEXT]]                 answer exactly TEXT, streamed word by word
    [[call TOOL {json}]]           call TOOL with those arguments if the request offers
                                   TOOL (several directives: parallel calls); once tool
                                   results follow the user message, answer
                                   "The tool said: <start of the last result>"
    [[error=STATUS]]               answer that status (400, 429, 500, ...) with an
                                   OpenAI error body
    [[hang]]                       never answer; the handler ends when the client leaves
    [[disconnect_after=N]]         streaming: send N chunks, then drop the connection;
                                   non-streaming: drop it without an answer

Every request is recorded (`server.requests`: the parsed JSON bodies, so tests
can assert which messages and tools reached the model), and `server.stats`
counts requests, streamed answers, tool calls, errors, hangs, disconnects,
completion tokens and the peak number of requests in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

#: The model string an agent names to reach this server: pydantic-ai's OpenAI
#: chat model, pointed here by OPENAI_BASE_URL.
FAKE_MODEL = "openai-chat:fake"

__all__ = ["Directives", "FakeOpenAI", "FakeOpenAIThread", "main", "parse_directives"]

_CALL = re.compile(r"\[\[call\s+([\w.-]+)\s*(\{.*?\})?\s*\]\]", re.DOTALL)
_REPLY = re.compile(r"\[\[reply\s(.*?)\]\]", re.DOTALL)
_FLAGS = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    429: "rate_limit_exceeded",
}
_MAX_BODY = 64 * 1024 * 1024
_COUNTERS = (
    "http_requests",
    "requests",
    "streamed",
    "tool_calls",
    "tool_results",
    "errors",
    "hangs",
    "disconnects",
    "prompt_tokens",
    "completion_tokens",
    "in_flight",
    "max_in_flight",
)


def _dumps(value: Any) -> str:
    # Compact, as OpenAI sends it: benchmarks parse thousands of chunks.
    return json.dumps(value, separators=(",", ":"))


@dataclass
class Directives:
    """What the last user message asks the server to do."""

    tokens: int | None = None
    delay_ms: float | None = None
    ttft_ms: float | None = None
    reply: str | None = None
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    error: int | None = None
    hang: bool = False
    disconnect_after: int | None = None


def parse_directives(text: str) -> Directives:
    """Reads `[[...]]` directives; unknown or malformed ones are ignored."""
    found = Directives()
    for name, raw_args in _CALL.findall(text):
        try:
            args = json.loads(raw_args) if raw_args else {}
        except json.JSONDecodeError:
            args = {}
        found.calls.append((name, args if isinstance(args, dict) else {}))
    if match := _REPLY.search(text):
        found.reply = match.group(1)
    rest = _REPLY.sub("", _CALL.sub("", text))
    for group in _FLAGS.findall(rest):
        for item in group.split():
            key, _, value = item.partition("=")
            try:
                if key == "tokens":
                    found.tokens = max(0, int(value))
                elif key == "delay":
                    found.delay_ms = max(0.0, float(value))
                elif key == "ttft":
                    found.ttft_ms = max(0.0, float(value))
                elif key == "error":
                    found.error = int(value)
                elif key == "disconnect_after":
                    found.disconnect_after = max(0, int(value))
                elif key == "hang":
                    found.hang = True
            except ValueError:
                continue
    return found


def _text_of(content: Any) -> str:
    """The text of a message's content: a string or a list of content parts."""
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict)
        )
    return "" if content is None else str(content)


def _word_chunks(text: str) -> list[str]:
    """Pieces that join back to exactly `text`: each word with the space after it."""
    if not text:
        return []
    words = text.split(" ")
    return [word + " " for word in words[:-1]] + [words[-1]]


def _error_body(status: int, message: str) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "server_error"),
            "param": None,
            "code": str(status),
        }
    }


@dataclass
class _Answer:
    """What one completion request is answered with."""

    text_chunks: list[str]
    tool_calls: list[dict[str, Any]]
    delay: float
    ttft: float

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    @property
    def completion_tokens(self) -> int:
        return len(self.text_chunks) + sum(
            max(1, len(call["function"]["arguments"]) // 4) for call in self.tool_calls
        )


class FakeOpenAI:
    """The fake server on the running event loop.

    Args:
        tokens: words per answer when a request names no `tokens=`.
        delay_ms: time between two streamed words.
        ttft_ms: time before the first word (or the whole non-streamed answer).
        port: 0 picks a free port; `url` tells which.
        retry_after_ms: sent with error answers as `retry-after-ms`, so a client
            that retries (the OpenAI SDK does, twice by default) does so at once.
    """

    def __init__(
        self,
        *,
        tokens: int = 8,
        delay_ms: float = 0.0,
        ttft_ms: float = 0.0,
        port: int = 0,
        host: str = "127.0.0.1",
        retry_after_ms: int = 0,
    ) -> None:
        self.tokens, self.delay_ms, self.ttft_ms = tokens, delay_ms, ttft_ms
        self.host, self.port = host, port
        self.retry_after_ms = retry_after_ms
        self.requests: list[dict[str, Any]] = []
        self.stats: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`; the OpenAI base URL is this plus `/v1`."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def reset(self) -> None:
        """Forgets recorded requests and zeroes the counters."""
        self.requests.clear()
        in_flight = self.stats["in_flight"]
        self.stats = dict.fromkeys(_COUNTERS, 0)
        self.stats["in_flight"] = in_flight

    async def start(self) -> FakeOpenAI:
        self._server = await asyncio.start_server(
            self._handle_connection, self.host, self.port, limit=_MAX_BODY
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        # Hanging handlers and keep-alive connections would otherwise keep
        # `wait_closed` (and the loop) alive forever.
        for writer in list(self._connections):
            writer.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), timeout=2)
        self._server = None

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---- HTTP -----------------------------------------------------------------

    async def _handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._connections.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, _version = [*request_line.split(" ", 2), "", ""][:3]
                headers = {}
                for line in header_lines:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                body = await self._read_body(reader, headers)
                self.stats["http_requests"] += 1
                path = target.split("?", 1)[0].rstrip("/")
                keep_alive = await self._route(method, path, body, reader, writer)
                if not keep_alive or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()

    @staticmethod
    async def _read_body(
        reader: asyncio.StreamReader, headers: dict[str, str]
    ) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append((await reader.readexactly(size + 2))[:-2])
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        return await reader.readexactly(int(headers.get("content-length") or 0))

    async def _route(
        self,
        method: str,
        path: str,
        body: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        if method == "POST" and path == "/v1/chat/completions":
            return await self._chat_completions(body, reader, writer)
        if method == "GET" and path == "/stats":
            return await self._send_json(writer, 200, self.stats)
        if method == "POST" and path == "/stats/reset":
            snapshot = dict(self.stats)
            self.reset()
            return await self._send_json(writer, 200, snapshot)
        if method == "GET" and path == "/v1/models":
            listing = {"object": "list", "data": [{"id": "fake", "object": "model"}]}
            return await self._send_json(writer, 200, listing)
        return await self._send_json(
            writer, 404, _error_body(404, f"No route for {method} {path}.")
        )

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        extra_headers: dict[str, str] | None = None,
    ) -> bool:
        body = _dumps(payload).encode()
        headers = {
            "content-type": "application/json",
            "content-length": str(len(body)),
            **(extra_headers or {}),
        }
        writer.write(self._head(status, headers) + body)
        await writer.drain()
        return True

    @staticmethod
    def _head(status: int, headers: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    # ---- Chat Completions -----------------------------------------------------

    async def _chat_completions(
        self, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        try:
            request = json.loads(body or b"{}")
            if not isinstance(request, dict) or not isinstance(
                request.get("messages"), list
            ):
                raise ValueError("`messages` must be a list")
        except ValueError as exc:
            self.stats["errors"] += 1
            return await self._send_json(writer, 400, _error_body(400, str(exc)))

        self.requests.append(request)
        self.stats["requests"] += 1
        self.stats["in_flight"] += 1
        self.stats["max_in_flight"] = max(
            self.stats["max_in_flight"], self.stats["in_flight"]
        )
        try:
            return await self._answer(request, reader, writer)
        finally:
            self.stats["in_flight"] -= 1

    async def _answer(
        self,
        request: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        messages = request["messages"]
        last_user = next(
            (
                i
                for i in range(len(messages) - 1, -1, -1)
                if messages[i].get("role") == "user"
            ),
            None,
        )
        prompt = (
            _text_of(messages[last_user]["content"]) if last_user is not None else ""
        )
        directives = parse_directives(prompt)
        stream = bool(request.get("stream"))

        if directives.error:
            self.stats["errors"] += 1
            status = directives.error if 400 <= directives.error <= 599 else 500
            return await self._send_json(
                writer,
                status,
                _error_body(status, f"Fake error {status} as requested."),
                {"retry-after-ms": str(self.retry_after_ms)},
            )
        if directives.hang:
            self.stats["hangs"] += 1
            # Nothing is ever sent; reading until EOF notices the client leaving.
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):
                    pass
            return False

        tool_results = [
            m for m in messages[(last_user or 0) + 1 :] if m.get("role") == "tool"
        ]
        self.stats["tool_results"] += len(tool_results)
        answer = self._plan(request, directives, tool_results)
        prompt_tokens = sum(len(_text_of(m.get("content")).split()) for m in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": prompt_tokens + answer.completion_tokens,
        }
        self.stats["prompt_tokens"] += prompt_tokens
        self.stats["completion_tokens"] += answer.completion_tokens
        self.stats["tool_calls"] += len(answer.tool_calls)
        model = str(request.get("model") or "fake")
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"

        if not stream:
            if directives.disconnect_after is not None:
                self.stats["disconnects"] += 1
                writer.transport.abort()
                return False
            await asyncio.sleep(
                answer.ttft + answer.delay * max(0, len(answer.text_chunks) - 1)
            )
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(answer.text_chunks) or None,
            }
            if answer.tool_calls:
                message["tool_calls"] = answer.tool_calls
            return await self._send_json(
                writer,
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": answer.finish_reason,
                            "logprobs": None,
                        }
                    ],
                    "usage": usage,
                },
            )

        self.stats["streamed"] += 1
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        writer.write(
            self._head(
                200,
                {
                    "content-type": "text/event-stream",
                    "cache-control": "no-cache",
                    "transfer-encoding": "chunked",
                },
            )
        )
        await writer.drain()
        for sent, (delta, finish_reason, pause) in enumerate(
            self._stream_deltas(answer)
        ):
            if (
                directives.disconnect_after is not None
                and sent >= directives.disconnect_after
            ):
                self.stats["disconnects"] += 1
                writer.transport.abort()
                return False
            if pause:
                await asyncio.sleep(pause)
            chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "finish_reason": finish_reason,
                        "logprobs": None,
                    }
                ],
            }
            await self._send_event(writer, _dumps(chunk))
        if include_usage:
            usage_chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [],
                "usage": usage,
            }
            await self._send_event(writer, _dumps(usage_chunk))
        await self._send_event(writer, "[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    @staticmethod
    async def _send_event(writer: asyncio.StreamWriter, data: str) -> None:
        payload = f"data: {data}\n\n".encode()
        writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        await writer.drain()

    def _plan(
        self,
        request: dict[str, Any],
        directives: Directives,
        tool_results: list[dict[str, Any]],
    ) -> _Answer:
        delay = (
            self.delay_ms if directives.delay_ms is None else directives.delay_ms
        ) / 1000
        ttft = (
            self.ttft_ms if directives.ttft_ms is None else directives.ttft_ms
        ) / 1000
        offered = {
            (tool.get("function") or {}).get("name")
            for tool in request.get("tools") or []
            if isinstance(tool, dict)
        }
        if tool_results:
            last = _text_of(tool_results[-1].get("content"))
            return _Answer(
                _word_chunks(f"The tool said: {last[:200]}"), [], delay, ttft
            )
        calls = [
            {
                "id": f"call_{uuid.uuid4().hex[:16]}",
                "type": "function",
                "function": {"name": name, "arguments": _dumps(args)},
            }
            for name, args in directives.calls
            if name in offered
        ]
        if calls:
            return _Answer([], calls, delay, ttft)
        if directives.reply is not None:
            return _Answer(_word_chunks(directives.reply), [], delay, ttft)
        count = self.tokens if directives.tokens is None else directives.tokens
        return _Answer(
            _word_chunks(" ".join(f"word{i}" for i in range(count))), [], delay, ttft
        )

    @staticmethod
    def _stream_deltas(
        answer: _Answer,
    ) -> Iterator[tuple[dict[str, Any], str | None, float]]:
        """(delta, finish_reason, pause before it) for each streamed chunk."""
        pause = answer.ttft
        yield {"role": "assistant", "content": ""}, None, 0.0
        for i, text in enumerate(answer.text_chunks):
            yield {"content": text}, None, pause if i == 0 else answer.delay
        for index, call in enumerate(answer.tool_calls):
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            yield {"tool_calls": [head]}, None, pause if index == 0 else 0.0
            arguments = call["function"]["arguments"]
            # Arguments arrive in pieces, as real servers stream them.
            for start in range(0, len(arguments), 16):
                piece = {
                    "index": index,
                    "function": {"arguments": arguments[start : start + 16]},
                }
                yield {"tool_calls": [piece]}, None, 0.0
        yield {}, answer.finish_reason, 0.0


class FakeOpenAIThread:
    """A `FakeOpenAI` serving from its own event loop in a daemon thread.

    For synchronous code and for tests whose client runs on another loop:
    `with FakeOpenAIThread(tokens=5) as server: ... server.url ...`.
    """

    def __init__(self, **options: Any) -> None:
        self.server = FakeOpenAI(**options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.server.requests

    @property
    def stats(self) -> dict[str, int]:
        return self.server.stats

    def reset(self) -> None:
        self._call(self.server.reset)

    def start(self) -> FakeOpenAIThread:
        self._thread = threading.Thread(
            target=self._run, name="fake-openai", daemon=True
        )
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self.server.close(), self._loop)
        with contextlib.suppress(Exception):
            future.result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop = self._thread = None

    def __enter__(self) -> FakeOpenAIThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, fn: Any) -> None:
        if self._loop is None:
            fn()
        else:
            self._loop.call_soon_threadsafe(fn)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m testing.fake_openai",
        description="Fake OpenAI-compatible Chat Completions server on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--tokens", type=int, default=8, help="words per answer")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="between words")
    parser.add_argument(
        "--ttft-ms", type=float, default=0.0, help="before the first word"
    )
    args = parser.parse_args(argv)

    async def serve() -> None:
        server = FakeOpenAI(
            tokens=args.tokens,
            delay_ms=args.delay_ms,
            ttft_ms=args.ttft_ms,
            port=args.port,
        )
        await server.start()
        print(f"fake_openai listening on {server.url}", flush=True)
        await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
