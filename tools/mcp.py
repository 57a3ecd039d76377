"""Remote MCP servers as tools: the ``mcp_server`` kind (category ``custom``).

One entry gives the model the tools of one MCP server reached over HTTP:
streamable HTTP, or SSE when the URL's path ends in ``/sse`` (pydantic-ai's
`MCPToolset` picks the transport from the URL). ``allowed_tools`` narrows what
the model is offered to the listed server tools, and ``tool_prefix`` renames
them ``<prefix>_<name>`` so two servers (or a server and a built-in kind)
cannot clash.

Only remote servers: agent configs are written by ordinary users, and a stdio
server is a command line this server would execute, so offering one would let
any user run programs on it. For the same reason every connection the MCP
client opens goes through the network guard (`tools.netguard`): the server's
host is resolved once per session, when the run connects, and every later
connection of that session (the event stream, each message POST) goes to that
checked address; non-public addresses are refused unless
``AGENTRY_ALLOW_PRIVATE_URLS`` is set; the HTTP client follows no redirects
(the MCP SDK itself follows one only within the configured origin, so it stays
on the checked address), and a response body is capped at
`MAX_RESPONSE_BYTES` (each event of an event stream at the SDK's 1 MiB).
``timeout_seconds`` bounds the handshake and each request as a whole. The
server's own instructions are not added to the agent's: the server's author is
not the agent's.

A connection is opened for each run, when the run starts. If the server cannot
be used then (refused address, unreachable, failed handshake), the run fails
with `ToolUnavailableError` naming the server's host. Once connected, any error
of a call (the tool failed, a protocol error, a timeout, the server went away)
is a failed tool result the model sees, as described in `tools.base`; closing
the connection to a server that went away mid-run does not fail the run.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_ai import ModelRetry, RunContext, ToolDefinition, ToolFailed
from pydantic_ai.toolsets import AbstractToolset

from accounts.secrets import HeaderValue, SecretError, resolve_headers, secret_name_of
from tools.custom import RemoteTargetConfig
from tools.netguard import (
    DestinationRefused,
    PinnedResolver,
    Resolver,
    mcp_client_factory,
)
from tools.registry import ToolContext, ToolUnavailableError, register_tool

if TYPE_CHECKING:
    from pydantic_ai.mcp import CallToolFunc

logger = logging.getLogger(__name__)

# The largest response body (a tool's result, a listing) read from a server.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024


class MCPServerConfig(RemoteTargetConfig):
    url: str = Field(
        max_length=2000,
        description=(
            "http(s) URL of the MCP server: streamable HTTP, or SSE when the "
            "path ends in /sse."
        ),
    )
    headers: dict[str, HeaderValue] = Field(
        default_factory=dict,
        description=(
            "Headers sent with every request, e.g. Authorization; a value may be "
            '{"secret": name}.'
        ),
    )
    tool_prefix: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$",
        description="The model sees the server's tools as <tool_prefix>_<name>.",
    )
    allowed_tools: list[str] | None = Field(
        default=None,
        max_length=200,
        description="Only these of the server's tools are offered (all if absent).",
    )
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=300,
        description="Time the connection, and each request on it, may take.",
    )

    @field_validator("allowed_tools")
    @classmethod
    def _tool_names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not 0 < len(name) <= 128 for name in value):
            raise ValueError("tool names must have 1 to 128 characters")
        return value


@functools.cache
def remote_mcp_toolset_class() -> Callable[..., AbstractToolset[Any]]:
    """The toolset class, defined on first use: `pydantic_ai.mcp` imports the
    MCP SDK and fastmcp, about 1.8 s of every process's start-up that only
    processes running an MCP tool need to pay."""
    import httpx2
    from fastmcp.client.transports import SSETransport, StreamableHttpTransport
    from pydantic_ai.mcp import MCPToolset

    class RemoteMCPToolset(MCPToolset[Any]):
        """An `MCPToolset` whose every connection goes through the network guard.

        The server's host is resolved and checked once per session, as it
        connects; `resolver` replaces the system's lookup. Failing to connect
        raises `ToolUnavailableError`; failing to disconnect is logged, as the
        run's work is done by then.
        """

        def __init__(
            self, url: str, *, resolver: Resolver | None = None, **options: Any
        ) -> None:
            self.resolver = resolver
            super().__init__(url, **options)
            # The lookup is part of connecting, so the handshake's time bounds it.
            self.lookup_timeout = options.get("init_timeout") or 30.0
            self.url = url
            parts = urlsplit(url)
            self.host = parts.hostname if parts.port is None else parts.netloc
            # The host as the HTTP client spells it when it connects (IDNA,
            # lower case), so the session's one lookup is the one it uses.
            target = httpx2.URL(url)
            self.connect_host = target.raw_host.decode("ascii")
            self.connect_port = target.port or (443 if target.scheme == "https" else 80)

        def _build_client(self, **options: Any) -> Any:
            # pydantic-ai builds the FastMCP client here, once for a fixed
            # config and again for each run's copy when headers come from the
            # run: each client gets its own pins and connects through them.
            client = super()._build_client(**options)
            if not isinstance(client.transport, StreamableHttpTransport | SSETransport):
                raise TypeError(f"Unexpected MCP transport {client.transport!r}")
            self.pins = PinnedResolver(self.resolver)
            client.transport.httpx_client_factory = mcp_client_factory(
                self.pins, max_response_bytes=MAX_RESPONSE_BYTES
            )
            return client

        async def __aenter__(self) -> Any:
            # A toolset whose headers come from each run only connects as the
            # run's copy (pydantic-ai's `for_run`), which comes through here.
            if self.is_running or self._resolves_per_run:
                return await super().__aenter__()
            self.pins.forget()
            try:
                async with asyncio.timeout(self.lookup_timeout):
                    await self.pins.address(self.connect_host, self.connect_port)
            except DestinationRefused as exc:
                raise ToolUnavailableError(
                    f"The MCP server at {self.host} cannot be used: {exc}"
                ) from None
            except TimeoutError:
                raise ToolUnavailableError(
                    f"The MCP server at {self.host} could not be reached: its host "
                    f"name did not resolve within {self.lookup_timeout} s."
                ) from None
            try:
                return await super().__aenter__()
            except Exception as exc:
                raise ToolUnavailableError(
                    f"The MCP server at {self.host} could not be reached: {_reason(exc)}"
                ) from exc

        async def __aexit__(self, *args: Any) -> bool | None:
            try:
                return await super().__aexit__(*args)
            except Exception as exc:
                logger.warning(
                    "Closing the MCP session with %s failed: %s", self.host, exc
                )
                return None

    return RemoteMCPToolset


async def _report_failures(
    ctx: RunContext[Any], call_tool: CallToolFunc, name: str, args: dict[str, Any]
) -> Any:
    """Calls the server's tool; a protocol error or a timeout becomes a failed call.

    `MCPToolset` raises `ModelRetry` for those, which spends the run's retry
    budget and ends the run when it is spent; the model is told the same thing
    either way.
    """
    try:
        return await call_tool(name, args)
    except ModelRetry as exc:
        raise ToolFailed(f"The MCP server could not run {name!r}: {exc}") from exc


def _reason(exc: BaseException) -> str:
    """What went wrong, without the task-group wrapping around it."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or exc.__class__.__name__
    return text if len(text) <= 300 else text[:299] + "…"


def _headers_for_runs(config: MCPServerConfig, context: ToolContext) -> Any:
    """The toolset's `headers`: the plain map, or, when a value names a secret,
    a function pydantic-ai calls as each run connects, resolving the secrets of
    the agent's owner then (never while the builder runs in the event loop)."""
    if not any(secret_name_of(value) for value in config.headers.values()):
        return dict(config.headers) or None

    async def headers_for_run(ctx: RunContext[Any]) -> dict[str, str]:
        try:
            return await resolve_headers(config.headers, context.owner_id)
        except SecretError as exc:
            host = urlsplit(config.url).netloc
            raise ToolUnavailableError(
                f"The MCP server at {host} cannot be used: {exc}"
            ) from None

    return headers_for_run


@register_tool(
    "mcp_server",
    category="custom",
    description="The tools of a remote MCP server (streamable HTTP or SSE).",
    config_schema=MCPServerConfig,
)
def build_mcp_server(
    config: MCPServerConfig, context: ToolContext
) -> AbstractToolset[Any]:
    toolset: AbstractToolset[Any] = remote_mcp_toolset_class()(
        config.url,
        headers=_headers_for_runs(config, context),
        init_timeout=config.timeout_seconds,
        read_timeout=config.timeout_seconds,
        tool_error_behavior="failed",
        process_tool_call=_report_failures,
    )
    if config.allowed_tools is not None:
        allowed = frozenset(config.allowed_tools)

        def is_allowed(ctx: RunContext[Any], tool_def: ToolDefinition) -> bool:
            return tool_def.name in allowed

        toolset = toolset.filtered(is_allowed)
    if config.tool_prefix:
        toolset = toolset.prefixed(config.tool_prefix)
    return toolset
