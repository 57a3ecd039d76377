"""Turns an agent's config into a `pydantic_ai.Agent`.

Public surface:
    AgentConfigError              a config that cannot be built (raised when it is saved)
    ModelUnavailableError         a valid model this server cannot reach now (no key)
    TurnDeps                      the deps of one turn (who, which agent/session, state)
    build_agent(config, ...)      the `pydantic_ai.Agent` for a config, tools included
    usage_limits_for(config)      the run's `UsageLimits` (defaults filled in,
                                  clamped to the server's maxima)
    usage_limit_maxima()          those maxima (AGENTRY_MAX_*)
    model_settings_for(config)    the `ModelSettings` the agent runs with
                                  (timeout at most AGENTRY_MAX_MODEL_TIMEOUT)
    test_model_allowed()          whether pydantic-ai's `test` model may run
    resolve_model(name)           a model string -> a pydantic-ai `Model` (cached)
    clear_model_cache()           forget the cached `Model` objects
    fill_placeholders(text, state) `{key}` -> state[key]; anything else left as written
    validate_agent_config(config) every check a save must make (model, schema,
                                  settings, limits, tools)
    validate_model_name(s), validate_output_schema(s)

`config` is the shape of `Agent.config_snapshot()` (and `AgentVersion.config`):
model, instructions, model_settings, output_schema, usage_limits, kind, tools,
name, description. A turn runs as::

    deps = TurnDeps(user_id=..., agent_id=..., session_id=..., state=session.state)
    agent = build_agent(config, deps=deps)
    async with agent.run_stream_events(
        prompt, deps=deps, message_history=history,
        usage_limits=usage_limits_for(config),
        timeout=settings.AGENTRY_TURN_TIMEOUT, cancellation_token=token,
    ) as events: ...

Building per turn. Measured on the 2-core dev box: constructing the `Agent`
takes ~0.05 ms for a text agent and ~1 ms with structured output, and the
registry's toolsets ~0.6 ms per tool; constructing an OpenAI `Model` (its
provider creates an HTTP client) takes ~30 ms. So `Model` objects are cached
per (model string, base URL, key) and shared by every turn (pydantic-ai models
are safe to share across concurrent runs and re-create their HTTP client when
used from another event loop), while the `Agent` and its toolsets are built
for each turn: the tools need the turn's `ToolContext` (user, agent, session),
and a per-turn agent cannot serve a stale config.

Defaults a config may override in `model_settings`: `timeout` is
`AGENTRY_MODEL_TIMEOUT` and `max_retries` is 0, so a hung or failing provider
becomes the turn's error after that time rather than after the SDK's own
hidden retries (two, with backoff, each re-arming the timeout).
"""

from __future__ import annotations

import fnmatch
import os
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from pydantic_ai import Agent
    from pydantic_ai.models import Model
    from pydantic_ai.settings import ModelSettings
    from pydantic_ai.usage import UsageLimits

OFFLINE_MODEL = "offline"
TEST_MODEL = "test"
#: An agent's instructions are sent with every request and copied into every
#: version; past this they are refused when saved.
MAX_INSTRUCTIONS_CHARS = 100_000

#: Applied when a config leaves a limit unset; a config may raise or lower them
#: up to the server's maxima (`usage_limit_maxima`).
#: No token limit by default: with one set, pydantic-ai re-counts the whole
#: response after every streamed chunk, which doubled the CPU of a 2,000-token
#: answer (docs/performance.md). Requests and tool calls bound a runaway turn.
DEFAULT_USAGE_LIMITS: dict[str, int | None] = {
    "request_limit": 50,
    "tool_calls_limit": 50,
}
_PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")


class AgentConfigError(ValueError):
    """The agent config names something that cannot be built."""


class ModelUnavailableError(AgentConfigError):
    """The model is valid but this server cannot reach it as configured (e.g. no key)."""


@dataclass
class TurnDeps:
    """What a turn's instructions and tools know about it (pydantic-ai `deps`)."""

    user_id: Any = None
    agent_id: Any = None
    session_id: Any = None
    #: The agent's owner: whose secrets its tools may use.
    owner_id: Any = None
    #: The session user's role: what its file tools may do (`User.tool_role`).
    user_role: str = "user"
    state: dict[str, Any] = field(default_factory=dict)
    #: Where the run sits in its turn's tree (`sessions_app.delegation.Tree`),
    #: for `delegate` tools; None outside a turn.
    tree: Any = None


# ---- validation ----------------------------------------------------------------


def test_model_allowed() -> bool:
    """Whether pydantic-ai's `test` model may run here: `AGENTRY_ALLOW_TEST_MODEL`,
    or with it unset, `DEBUG` (it answers canned text, so never in production)."""
    from django.conf import settings

    allowed = getattr(settings, "AGENTRY_ALLOW_TEST_MODEL", None)
    return bool(settings.DEBUG if allowed is None else allowed)


def validate_model_name(name: str) -> None:
    """Accepts "" (the default model), the offline model, the `test` model where
    `test_model_allowed()`, and `provider:model` strings that
    `AGENTRY_ALLOWED_MODELS` allows (every one when it is empty) whose provider
    pydantic-ai knows and whose SDK is installed.

    Checked when an agent is saved and again when a turn resolves its model,
    so narrowing the settings stops agents saved before.
    """
    from django.conf import settings
    from pydantic_ai.models import parse_model_id
    from pydantic_ai.providers import infer_provider_class

    if name in ("", OFFLINE_MODEL):
        return
    if name == TEST_MODEL:
        if not test_model_allowed():
            raise AgentConfigError(
                "The `test` model is for development only (DEBUG=1 or "
                "AGENTRY_ALLOW_TEST_MODEL=1); use a provider's model or `offline`."
            )
        return
    if not isinstance(name, str) or any(c.isspace() for c in name):
        raise AgentConfigError(
            "Model must be a `provider:model` string without spaces."
        )
    provider, model_name = parse_model_id(name)
    if not provider or not model_name:
        raise AgentConfigError(
            f"Model {name!r} names no provider; use `provider:model`, "
            "e.g. `openai-chat:gpt-4o-mini` or `anthropic:claude-sonnet-4-5`."
        )
    patterns = [p.strip() for p in settings.AGENTRY_ALLOWED_MODELS if p.strip()]
    if (
        patterns
        and name != settings.AGENTRY_DEFAULT_MODEL
        and not any(fnmatch.fnmatchcase(name, p) for p in patterns)
    ):
        raise AgentConfigError(
            f"Model {name!r} is not allowed on this server; allowed: "
            f"{', '.join(patterns)} (and `{OFFLINE_MODEL}`)."
        )
    try:
        infer_provider_class(provider)
    except ImportError:
        raise AgentConfigError(
            f"The SDK for provider {provider!r} is not installed on this server."
        ) from None
    except ValueError:
        raise AgentConfigError(f"Unknown model provider {provider!r}.") from None


def validate_output_schema(schema: Any) -> None:
    """None (text output) or a JSON Schema object describing a JSON object."""
    if schema is None:
        return
    if not isinstance(schema, dict):
        raise AgentConfigError("output_schema must be a JSON Schema object or null.")
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise AgentConfigError(
            f"output_schema is not a valid JSON Schema: {exc.message}"
        ) from None
    if schema.get("type", "object") != "object":
        raise AgentConfigError(
            'output_schema must describe an object ("type": "object").'
        )


def validate_agent_config(config: dict[str, Any]) -> dict[str, Any]:
    """Runs every check a save must make; returns the config with tool configs
    normalised by their kinds' schemas. Raises `AgentConfigError`.

    The shapes of model_settings and usage_limits are checked by
    `agents.validation`, the rules the REST serializers and admin forms share.
    """
    from agents.validation import (
        validate_model_settings,
        validate_tool_entry,
        validate_usage_limits,
    )

    if not isinstance(config, dict):
        raise AgentConfigError("An agent definition must be a JSON object.")
    model = config.get("model") or ""
    if not isinstance(model, str):
        raise AgentConfigError("model must be a string.")
    validate_model_name(model)
    instructions = config.get("instructions") or ""
    if not isinstance(instructions, str):
        raise AgentConfigError("instructions must be a string.")
    if len(instructions) > MAX_INSTRUCTIONS_CHARS:
        raise AgentConfigError(
            f"instructions are longer than {MAX_INSTRUCTIONS_CHARS} characters."
        )
    validate_model_settings(config.get("model_settings") or {})
    validate_output_schema(config.get("output_schema"))
    validate_usage_limits(config.get("usage_limits") or {})
    kind = config.get("kind") or "dynamic"
    if kind not in ("dynamic", "static", "workflow"):
        raise AgentConfigError(f"Unknown agent kind {kind!r}.")
    tools = config.get("tools") or []
    if not isinstance(tools, list):
        raise AgentConfigError("tools must be a list.")
    normalised = []
    for entry in tools:
        if not isinstance(entry, dict) or not isinstance(entry.get("tool"), str):
            raise AgentConfigError(
                'Each tool must be an object like {"tool": "<name>", "config": {}}.'
            )
        normalised.append(
            {
                "tool": entry["tool"],
                "config": validate_tool_entry(entry["tool"], entry.get("config")),
                "enabled": bool(entry.get("enabled", True)),
                "requires_approval": bool(entry.get("requires_approval", False)),
                "approval_ttl_seconds": _approval_ttl(entry),
                "allow_edit": bool(entry.get("allow_edit", False)),
            }
        )
    return {**config, "tools": normalised}


def _approval_ttl(entry: dict[str, Any]) -> int:
    from agents.models import DEFAULT_APPROVAL_TTL_SECONDS, MAX_APPROVAL_TTL_SECONDS

    ttl = entry.get("approval_ttl_seconds", DEFAULT_APPROVAL_TTL_SECONDS)
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise AgentConfigError("approval_ttl_seconds must be a whole number.")
    if not 1 <= ttl <= MAX_APPROVAL_TTL_SECONDS:
        raise AgentConfigError(
            f"approval_ttl_seconds must be between 1 and {MAX_APPROVAL_TTL_SECONDS}."
        )
    return ttl


# ---- building ------------------------------------------------------------------


def build_agent(
    config: dict[str, Any],
    *,
    model_override: Model | str | None = None,
    deps: TurnDeps | None = None,
) -> Agent[TurnDeps, Any]:
    """The `pydantic_ai.Agent` for `config`, with its enabled tools.

    Args:
        config: an `Agent.config_snapshot()` or `AgentVersion.config`.
        model_override: a `Model` or model string used instead of the config's.
        deps: the turn the tools are built for (user, agent, session); without
            it they are built for an anonymous context under `REPO_ROOT`.
            Pass the same `deps` to the run, for the instructions.

    Raises:
        AgentConfigError: the config cannot be built (unknown model, tool, ...).
        ModelUnavailableError: the model needs a key this server lacks.
    """
    from pydantic_ai import Agent, DeferredToolRequests, StructuredDict

    from agents.delegation import DELEGATE_TOOL

    model = (
        model_override
        if model_override is not None and not isinstance(model_override, str)
        else resolve_model(model_override or config.get("model") or "")
    )
    schema = config.get("output_schema")
    output_type: Any = str
    if schema is not None:
        validate_output_schema(schema)
        output_type = StructuredDict(
            schema,
            name=schema.get("title") or "final_result",
            description=schema.get("description"),
        )
    tools = config.get("tools") or []
    if any(
        t.get("enabled", True)
        and (t.get("requires_approval") or t.get("tool") == DELEGATE_TOOL)
        for t in tools
    ):
        # Calls to these tools pause the run; it ends with the pending requests
        # and resumes with the user's decisions. A delegating call pauses
        # with its child when the child's tool needs approval.
        output_type = [output_type, DeferredToolRequests]
    toolset = _toolset_for(tools, deps)
    return Agent(
        model,
        name=config.get("name") or None,
        description=config.get("description") or None,
        instructions=_instructions_for(config.get("instructions") or ""),
        deps_type=TurnDeps,
        output_type=output_type,
        model_settings=model_settings_for(config),
        toolsets=[toolset] if toolset is not None else None,
    )


def usage_limit_maxima() -> dict[str, int | None]:
    """The server's maximum of each usage limit (None: no maximum).

    `AGENTRY_MAX_REQUESTS` and `AGENTRY_MAX_TOOL_CALLS` always bound a turn;
    the token limits are bounded by `AGENTRY_MAX_TOTAL_TOKENS` when it is set
    (0 sets none: a token limit makes every streamed chunk re-check usage).
    """
    from django.conf import settings

    tokens = settings.AGENTRY_MAX_TOTAL_TOKENS or None
    return {
        "request_limit": settings.AGENTRY_MAX_REQUESTS,
        "tool_calls_limit": settings.AGENTRY_MAX_TOOL_CALLS,
        "total_tokens_limit": tokens,
        "input_tokens_limit": tokens,
        "output_tokens_limit": tokens,
    }


def usage_limits_for(config: dict[str, Any]) -> UsageLimits:
    """The config's limits over `DEFAULT_USAGE_LIMITS`, each clamped to the
    server's maximum (`usage_limit_maxima`): a null limit means the maximum,
    never unlimited."""
    from pydantic_ai.usage import UsageLimits

    wanted = {**DEFAULT_USAGE_LIMITS, **(config.get("usage_limits") or {})}
    # Keyword arguments of UsageLimits (each an int, or None for no limit).
    limits: dict[str, Any] = {}
    for key, maximum in usage_limit_maxima().items():
        value = wanted.get(key)
        limits[key] = (
            maximum
            if value is None
            else value
            if maximum is None
            else min(value, maximum)
        )
    return UsageLimits(**limits)


def model_settings_for(config: dict[str, Any]) -> ModelSettings:
    """The config's model settings with the server's `timeout` and `max_retries`
    defaults filled in; `timeout` is at most `AGENTRY_MAX_MODEL_TIMEOUT`."""
    from django.conf import settings

    merged: dict[str, Any] = {
        "timeout": settings.AGENTRY_MODEL_TIMEOUT,
        "max_retries": 0,
        **(config.get("model_settings") or {}),
    }
    timeout = merged["timeout"]
    if (
        not isinstance(timeout, int | float)
        or timeout > settings.AGENTRY_MAX_MODEL_TIMEOUT
    ):
        merged["timeout"] = settings.AGENTRY_MAX_MODEL_TIMEOUT
    # The agent config's model settings plus the server's defaults.
    return cast("ModelSettings", merged)


def fill_placeholders(text: str, state: dict[str, Any] | None) -> str:
    """Replaces `{key}` with `state[key]`; unknown keys, `{{...}}` and any other
    brace stay exactly as written."""
    if not state:
        return text

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in state:
            return match.group(0)
        found = state[key]
        if isinstance(found, str):
            return found
        import json

        return json.dumps(found, default=str)

    return _PLACEHOLDER.sub(value, text)


def _instructions_for(instructions: str) -> Any:
    if not _PLACEHOLDER.search(instructions):
        return instructions or None
    from pydantic_ai import RunContext

    def from_state(ctx: RunContext[TurnDeps]) -> str:
        state = ctx.deps.state if isinstance(ctx.deps, TurnDeps) else None
        return fill_placeholders(instructions, state)

    return from_state


def _toolset_for(tools: list[dict[str, Any]], deps: TurnDeps | None) -> Any:
    if not any(entry.get("enabled", True) for entry in tools):
        return None
    from django.conf import settings

    from tools.registry import ToolConfigError, ToolContext, UnknownToolError
    from tools.registry import toolset_for as registry_toolset_for

    deps = deps or TurnDeps()
    context = ToolContext(
        repo_root=settings.REPO_ROOT,
        user_id=deps.user_id,
        agent_id=deps.agent_id,
        session_id=deps.session_id,
        owner_id=deps.owner_id,
        user_role=deps.user_role,
    )
    try:
        return registry_toolset_for(tools, context)
    except (UnknownToolError, ToolConfigError) as exc:
        raise AgentConfigError(str(exc)) from None
    except ValueError as exc:  # pydantic's ValidationError, from a stale config
        raise AgentConfigError(f"Invalid tool config: {exc}") from None


# ---- models --------------------------------------------------------------------

_model_cache: dict[tuple[str, str, str], Model] = {}
_model_cache_lock = threading.Lock()


def resolve_model(name: str) -> Model:
    """A pydantic-ai `Model` for a model string.

    "" is `AGENTRY_DEFAULT_MODEL`; "offline" the built-in offline model; "test"
    pydantic-ai's `TestModel`; `openai-chat:<name>` / `openai:<name>` the Chat
    Completions / Responses models with `OPENAI_BASE_URL` and `OPENAI_API_KEY`
    as they are now (so any OpenAI-compatible server is reachable); anything
    else what pydantic-ai infers from the string.
    """
    from django.conf import settings

    name = name or settings.AGENTRY_DEFAULT_MODEL or OFFLINE_MODEL
    if name == OFFLINE_MODEL:
        from agents.offline import offline_model

        return offline_model()
    if name == TEST_MODEL:
        validate_model_name(name)
        from pydantic_ai.models.test import TestModel

        return TestModel()
    validate_model_name(name)
    base_url = os.environ.get("OPENAI_BASE_URL", "")
    api_key = os.environ.get("OPENAI_API_KEY", "")
    key = (name, base_url, api_key)
    with _model_cache_lock:
        cached = _model_cache.get(key)
    if cached is not None:
        return cached
    model = _new_model(name, base_url, api_key)
    with _model_cache_lock:
        return _model_cache.setdefault(key, model)


def clear_model_cache() -> None:
    """Forgets cached models (their HTTP clients are left to the garbage collector)."""
    with _model_cache_lock:
        _model_cache.clear()


def _new_model(name: str, base_url: str, api_key: str) -> Model:
    from pydantic_ai.exceptions import UserError
    from pydantic_ai.models import infer_model, parse_model_id

    provider, model_name = parse_model_id(name)
    if provider in ("openai-chat", "openai", "openai-responses"):
        from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
        from pydantic_ai.providers.openai import OpenAIProvider

        if not api_key and not base_url:
            raise ModelUnavailableError(
                f"Model {name!r} needs OPENAI_API_KEY (or OPENAI_BASE_URL pointing at "
                "an OpenAI-compatible server such as Ollama or vLLM)."
            )
        # Local servers often need no key, but the SDK insists on one.
        openai_provider = OpenAIProvider(
            base_url=base_url or None, api_key=api_key or "api-key-not-set"
        )
        model_class = (
            OpenAIChatModel if provider == "openai-chat" else OpenAIResponsesModel
        )
        return model_class(model_name, provider=openai_provider)
    try:
        return infer_model(name)
    except UserError as exc:
        raise ModelUnavailableError(
            f"Model {name!r} cannot be used here: {exc}"
        ) from None
    except (ImportError, ValueError) as exc:
        raise AgentConfigError(f"Model {name!r} cannot be built: {exc}") from None
