"""Turns an agent's config into a `pydantic_ai.Agent`.

Public surface:
    AgentConfigError          a config that cannot be built (raised when it is saved)
    validate_model_name(s)    a model string pydantic-ai (or the offline model) can serve
    validate_output_schema(s) a JSON Schema usable as structured output
"""

from __future__ import annotations

from typing import Any

OFFLINE_MODEL = "offline"


class AgentConfigError(ValueError):
    """The agent config names something that cannot be built."""


def validate_model_name(name: str) -> None:
    """Accepts "" (the default model), the offline model and `provider:model` strings
    whose provider pydantic-ai knows and whose SDK is installed."""
    from pydantic_ai.models import parse_model_id
    from pydantic_ai.providers import infer_provider_class

    if name in ("", OFFLINE_MODEL, "test"):
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
