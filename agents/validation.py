"""Validation of the JSON parts of an agent's config.

Public surface:
    validate_model_settings(value)   a pydantic-ai `ModelSettings` mapping (its
                                     timeout at most AGENTRY_MAX_MODEL_TIMEOUT)
    validate_usage_limits(value)     a pydantic-ai `UsageLimits` mapping, each
                                     limit at most the server's maximum (null
                                     means that maximum)
    validate_tool_entry(tool, config) -> dict   the normalised config of one tool
    validate_webhooks(value)         the agent's webhook URLs: a list of at most
                                     MAX_WEBHOOKS distinct http(s) URLs the
                                     network guard accepts

Each raises `agents.factory.AgentConfigError` with a message a person can act on;
the REST serializers and the admin forms both call them, so both refuse the
same configs with the same words.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from agents.factory import AgentConfigError, usage_limit_maxima
from tools.netguard import url_refusal
from tools.registry import ToolConfigError, UnknownToolError, registry

#: How many URLs an agent's `webhooks` may list.
MAX_WEBHOOKS = 10
MAX_URL_CHARS = 2000

USAGE_LIMIT_KEYS = (
    "request_limit",
    "total_tokens_limit",
    "tool_calls_limit",
    "input_tokens_limit",
    "output_tokens_limit",
)

# Provider-specific settings (`openai_reasoning_effort`, ...) are passed through
# to pydantic-ai untouched; the provider validates them when the agent runs.
PROVIDER_SETTING_PREFIXES = (
    "openai_",
    "anthropic_",
    "google_",
    "gemini_",
    "groq_",
    "mistral_",
    "bedrock_",
    "cohere_",
    "huggingface_",
)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number_between(low: float, high: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not _is_number(value) or not low <= value <= high:
            return f"must be a number from {low:g} to {high:g}"
        return None

    return check


def _positive_int(value: Any) -> str | None:
    return None if _is_int(value) and value > 0 else "must be a positive integer"


def _positive_number(value: Any) -> str | None:
    return None if _is_number(value) and value > 0 else "must be a positive number"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _integer(value: Any) -> str | None:
    return None if _is_int(value) else "must be an integer"


def _string_list(value: Any) -> str | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return None
    return "must be a list of strings"


def _logit_bias(value: Any) -> str | None:
    if isinstance(value, dict) and all(_is_int(v) for v in value.values()):
        return None
    return "must be an object mapping token ids to integers"


def _string_map(value: Any) -> str | None:
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return None
    return "must be an object of strings"


def _json_object(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be a JSON object"


MODEL_SETTING_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "max_tokens": _positive_int,
    "temperature": _number_between(0, 2),
    "top_p": _number_between(0, 1),
    "timeout": _positive_number,
    "parallel_tool_calls": _boolean,
    "seed": _integer,
    "presence_penalty": _number_between(-2, 2),
    "frequency_penalty": _number_between(-2, 2),
    "logit_bias": _logit_bias,
    "stop_sequences": _string_list,
    "extra_headers": _string_map,
    "extra_body": _json_object,
}


def validate_model_settings(value: Any) -> None:
    if not isinstance(value, Mapping):
        raise AgentConfigError("model_settings must be a JSON object.")
    for key, setting in value.items():
        check = MODEL_SETTING_CHECKS.get(key)
        if check is None:
            if key.startswith(PROVIDER_SETTING_PREFIXES):
                continue
            known = ", ".join(sorted(MODEL_SETTING_CHECKS))
            raise AgentConfigError(
                f"model_settings: unknown setting {key!r}; known settings are "
                f"{known}, or a provider-prefixed one such as openai_..."
            )
        problem = check(setting)
        if problem:
            raise AgentConfigError(f"model_settings.{key} {problem}.")
    _check_timeout_maximum(value.get("timeout"))


def _check_timeout_maximum(timeout: Any) -> None:
    from django.conf import settings

    maximum = settings.AGENTRY_MAX_MODEL_TIMEOUT
    if timeout is not None and timeout > maximum:
        raise AgentConfigError(
            f"model_settings.timeout may be at most {maximum:g} seconds on this "
            "server (AGENTRY_MAX_MODEL_TIMEOUT)."
        )


def validate_usage_limits(value: Any) -> None:
    if not isinstance(value, Mapping):
        raise AgentConfigError("usage_limits must be a JSON object.")
    for key, limit in value.items():
        if key not in USAGE_LIMIT_KEYS:
            raise AgentConfigError(
                f"usage_limits: unknown limit {key!r}; known limits are "
                f"{', '.join(USAGE_LIMIT_KEYS)}."
            )
        if limit is not None and _positive_int(limit):
            raise AgentConfigError(f"usage_limits.{key} must be a positive integer.")
        maximum = usage_limit_maxima().get(key)
        if limit is not None and maximum is not None and limit > maximum:
            raise AgentConfigError(
                f"usage_limits.{key} may be at most {maximum} on this server; "
                "null means that maximum."
            )


def validate_tool_entry(tool: str, config: Any) -> dict[str, Any]:
    """The config of tool kind `tool` as the registry normalises it."""
    try:
        return registry.validate_config(tool, config)
    except (UnknownToolError, ToolConfigError) as exc:
        raise AgentConfigError(str(exc)) from None


def validate_webhooks(value: Any) -> None:
    if not isinstance(value, list):
        raise AgentConfigError("webhooks must be a list of URLs.")
    if len(value) > MAX_WEBHOOKS:
        raise AgentConfigError(f"webhooks may list at most {MAX_WEBHOOKS} URLs.")
    for index, url in enumerate(value):
        if not isinstance(url, str) or not url:
            raise AgentConfigError(f"webhooks[{index}] must be a URL.")
        if len(url) > MAX_URL_CHARS:
            raise AgentConfigError(
                f"webhooks[{index}] may be at most {MAX_URL_CHARS} characters."
            )
        problem = url_refusal(url)
        if problem is not None:
            raise AgentConfigError(f"webhooks[{index}]: {problem}.")
    if len(set(value)) != len(value):
        raise AgentConfigError("webhooks lists a URL twice.")
