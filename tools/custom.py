"""Custom tools configured per agent: ``http_endpoint`` (category ``custom``).

One entry gives the model one tool, named and described by the config, whose
arguments (a JSON Schema in the config) are validated and sent to a fixed
http(s) URL: as the query string for GET and DELETE, as a JSON body otherwise.
The answer is the response's status, content type and text, cut at a cap
while it streams. Every call goes through the network guard (`tools.netguard`):
the host is resolved once and the connection goes to that checked address;
non-public addresses are refused unless ``AGENTRY_ALLOW_PRIVATE_URLS`` is set;
redirects are not followed, so the configured URL is the only place a call
goes; and ``timeout_seconds`` is the deadline of the whole call, reading the
body included, not of each read.

Transport errors, timeouts, non-2xx statuses, refused addresses and arguments
that do not match the schema are failed tool results, as described in
`tools.base`.

The URL and header checks are shared with the ``mcp_server`` kind
(`tools.mcp`): `check_http_url`, `check_header_text`, `RemoteTargetConfig`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import jsonschema
from pydantic import Field, field_validator
from pydantic_ai import FunctionToolset, Tool

from accounts.secrets import HeaderValue, SecretError, resolve_headers
from tools.base import ToolConfig, reports_failures
from tools.netguard import guarded_client, read_capped
from tools.registry import ToolContext, register_tool
from tools.sandbox import SandboxError

EMPTY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def check_http_url(value: str) -> str:
    """`value`, if it is an http(s) URL with a host and no credentials in it."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; use headers")
    return value


def check_header_text(value: dict[str, HeaderValue]) -> dict[str, HeaderValue]:
    """`value`, if no header name or value could split the request's header block."""
    for key, item in value.items():
        text = item if isinstance(item, str) else ""
        if any(ch in key + text for ch in "\r\n\x00"):
            raise ValueError("header names and values must be single-line text")
    return value


class RemoteTargetConfig(ToolConfig):
    """A server the tool talks to: an http(s) `url` and single-line `headers`."""

    url: str = Field(max_length=2000, description="http(s) URL of the server.")
    headers: dict[str, HeaderValue] = Field(
        default_factory=dict,
        description='Headers sent with every request; a value may be {"secret": name}.',
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("headers")
    @classmethod
    def _header_text(cls, value: dict[str, HeaderValue]) -> dict[str, HeaderValue]:
        return check_header_text(value)


class HttpEndpointConfig(RemoteTargetConfig):
    name: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$",
        description="The tool's name as the model sees it.",
    )
    description: str = Field(
        min_length=1, max_length=2000, description="What the tool does, for the model."
    )
    url: str = Field(max_length=2000, description="http(s) URL the call goes to.")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, HeaderValue] = Field(
        default_factory=dict,
        description='Headers sent with every call; a value may be {"secret": name}.',
    )
    parameters: dict[str, Any] = Field(
        default_factory=lambda: dict(EMPTY_OBJECT_SCHEMA),
        description="JSON Schema (an object) of the arguments the model passes.",
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    max_response_chars: int = Field(default=20_000, ge=1, le=1_000_000)

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") != "object":
            raise ValueError('must be a JSON Schema with "type": "object"')
        try:
            jsonschema.Draft202012Validator.check_schema(value)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"is not a valid JSON Schema: {exc.message}") from None
        return value


@register_tool(
    "http_endpoint",
    category="custom",
    description="Call an HTTP endpoint with arguments the model supplies.",
    config_schema=HttpEndpointConfig,
)
def build_http_endpoint(
    config: HttpEndpointConfig, context: ToolContext
) -> FunctionToolset:
    validator = jsonschema.Draft202012Validator(config.parameters)

    async def call_endpoint(**arguments: Any) -> dict[str, Any]:
        errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].path) or "arguments"
            raise SandboxError(f"Invalid arguments ({where}): {errors[0].message}")
        send: dict[str, Any] = (
            {"params": arguments}
            if config.method in ("GET", "DELETE")
            else {"json": arguments}
        )
        headers = await secret_headers(config.headers, context)
        try:
            # The deadline covers the lookup, the connection and every read: a
            # server sending a byte at a time trips no per-read timeout.
            async with (
                asyncio.timeout(config.timeout_seconds),
                guarded_client(timeout=config.timeout_seconds) as client,
                client.stream(
                    config.method, config.url, headers=headers, **send
                ) as response,
            ):
                text, cut = await _read_text(response, config.max_response_chars)
        except (TimeoutError, httpx.TimeoutException):
            raise SandboxError(
                f"The endpoint did not answer within {config.timeout_seconds} s."
            ) from None
        except httpx.HTTPError as exc:
            raise SandboxError(
                f"The endpoint could not be reached ({exc.__class__.__name__})."
            ) from None
        if not response.is_success:
            raise SandboxError(
                f"The endpoint answered HTTP {response.status_code}: {text}"
            )
        return {
            "status": response.status_code,
            "content_type": response.headers.get("content-type", ""),
            "body": text,
            "truncated": cut,
        }

    tool = Tool.from_schema(
        reports_failures(call_endpoint),
        name=config.name,
        description=config.description,
        json_schema=config.parameters,
        takes_ctx=False,
    )
    return FunctionToolset([tool])


async def secret_headers(
    headers: dict[str, HeaderValue], context: ToolContext
) -> dict[str, str]:
    """`headers` to send, `{"secret": name}` values resolved among the secrets of
    the agent's owner (`accounts.secrets`); a missing secret fails the call."""
    try:
        return await resolve_headers(headers, context.owner_id)
    except SecretError as exc:
        raise SandboxError(str(exc)) from None


async def _read_text(response: httpx.Response, max_chars: int) -> tuple[str, bool]:
    """The response's text, at most `max_chars` characters, without reading the rest."""
    body, more = await read_capped(response, max_chars * 4)
    text = body.decode(response.encoding or "utf-8", errors="replace")
    return text[:max_chars], more or len(text) > max_chars
