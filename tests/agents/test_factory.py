"""`agents.factory` builds runnable pydantic-ai agents from stored configs, and
refuses configs that could not run."""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from pydantic_ai import FunctionToolset, ModelMessagesTypeAdapter
from pydantic_ai.exceptions import UsageLimitExceeded
from pydantic_ai.models.function import FunctionModel
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.models.test import TestModel

from agents.factory import (
    DEFAULT_USAGE_LIMITS,
    AgentConfigError,
    ModelUnavailableError,
    TurnDeps,
    build_agent,
    fill_placeholders,
    model_settings_for,
    resolve_model,
    usage_limits_for,
    validate_agent_config,
)
from agents.offline import OFFLINE_MODEL_NAME
from testing.fake_openai import FAKE_MODEL
from tools.registry import register_tool, registry

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def config(**overrides):
    return {
        "name": "Tester",
        "description": "",
        "model": "",
        "instructions": "",
        "model_settings": {},
        "output_schema": None,
        "usage_limits": {},
        "kind": "dynamic",
        "tools": [],
        **overrides,
    }


class EchoConfig(BaseModel):
    prefix: str = "echo"


@pytest.fixture
def echo_tool():
    """A tool kind `test_echo` whose builder records the context it was given."""
    contexts = []

    @register_tool(
        "test_echo", category="test", description="Echoes.", config_schema=EchoConfig
    )
    def build(config: EchoConfig, context):
        contexts.append(context)
        toolset = FunctionToolset()

        @toolset.tool_plain
        def echo(text: str) -> str:
            return f"{config.prefix}: {text}"

        return toolset

    yield contexts
    registry.unregister("test_echo")


# ---- models ----------------------------------------------------------------------


def test_empty_model_is_the_offline_default(settings):
    settings.AGENTRY_DEFAULT_MODEL = "offline"
    agent = build_agent(config())
    assert isinstance(agent.model, FunctionModel)
    result = agent.run_sync("hello")
    assert OFFLINE_MODEL_NAME in result.output
    assert result.response.model_name == OFFLINE_MODEL_NAME


def test_empty_model_follows_the_default_model_setting(settings):
    settings.AGENTRY_DEFAULT_MODEL = "test"
    assert isinstance(build_agent(config()).model, TestModel)
    assert isinstance(build_agent(config(model="offline")).model, FunctionModel)


async def test_openai_chat_model_talks_to_the_configured_base_url(fake_llm):
    agent = build_agent(config(model=FAKE_MODEL, instructions="Be brief."))
    assert isinstance(agent.model, OpenAIChatModel)
    result = await agent.run("[[tokens=3]] hi")
    assert result.output == "word0 word1 word2"
    assert result.usage.output_tokens == 3
    sent = fake_llm.requests[0]
    assert sent["model"] == "fake"
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_history_of_an_earlier_run_reaches_the_model(fake_llm):
    agent = build_agent(config(model=FAKE_MODEL))
    first = await agent.run("[[reply My name is Ann.]] remember me")
    stored = ModelMessagesTypeAdapter.dump_python(first.all_messages(), mode="json")
    history = ModelMessagesTypeAdapter.validate_python(stored)
    await build_agent(config(model=FAKE_MODEL)).run(
        "[[reply ok]] who am I?", message_history=history
    )
    messages = fake_llm.requests[1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == "[[reply My name is Ann.]] remember me"
    assert messages[1]["content"] == "My name is Ann."


def test_openai_responses_model_uses_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    model = resolve_model("openai:gpt-4o-mini")
    assert isinstance(model, OpenAIResponsesModel)
    assert model.model_name == "gpt-4o-mini"
    assert model.base_url.rstrip("/") == "http://127.0.0.1:9/v1"


def test_models_are_cached_per_name_and_base_url(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    first = resolve_model("openai-chat:a")
    assert resolve_model("openai-chat:a") is first
    assert resolve_model("openai-chat:b") is not first
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:10/v1")
    moved = resolve_model("openai-chat:a")
    assert moved is not first
    assert moved.base_url.rstrip("/") == "http://127.0.0.1:10/v1"


def test_openai_without_key_or_base_url_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ModelUnavailableError, match="OPENAI_API_KEY"):
        build_agent(config(model="openai-chat:nokey"))


async def test_openai_chat_without_key_works_against_a_base_url(fake_llm, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    result = await build_agent(config(model=FAKE_MODEL)).run("[[reply local]]")
    assert result.output == "local"


def test_model_override_replaces_the_configured_model():
    agent = build_agent(config(model="openai-chat:x"), model_override=TestModel())
    assert isinstance(agent.model, TestModel)
    assert isinstance(build_agent(config(), model_override="test").model, TestModel)


# ---- instructions, settings, limits, output ---------------------------------------


def test_placeholders_are_filled_and_other_braces_kept():
    text = 'Hi {name}, {missing} {{name}} {0} { "json": true } {age}'
    assert (
        fill_placeholders(text, {"name": "Ann", "age": 7})
        == 'Hi Ann, {missing} {{name}} {0} { "json": true } 7'
    )
    assert fill_placeholders("{a.__class__}", {"a": "x"}) == "{a.__class__}"


async def test_instructions_come_from_the_turn_state(fake_llm):
    agent = build_agent(
        config(model=FAKE_MODEL, instructions="Help {user} with {topic}. {x")
    )
    await agent.run("[[tokens=1]]", deps=TurnDeps(state={"user": "Ann", "topic": 3}))
    await agent.run("[[tokens=1]]")
    first, second = (r["messages"][0]["content"] for r in fake_llm.requests)
    assert first == "Help Ann with 3. {x"
    assert second == "Help {user} with {topic}. {x"


async def test_model_settings_and_timeout_default_reach_the_request(fake_llm, settings):
    settings.AGENTRY_MODEL_TIMEOUT = 12.5
    assert model_settings_for(config())["timeout"] == 12.5
    assert model_settings_for(config(model_settings={"timeout": 3}))["timeout"] == 3
    agent = build_agent(
        config(model=FAKE_MODEL, model_settings={"temperature": 0.25, "max_tokens": 9})
    )
    await agent.run("[[tokens=1]]")
    sent = fake_llm.requests[0]
    assert sent["temperature"] == 0.25
    assert sent["max_completion_tokens"] == 9


def test_usage_limits_have_defaults_and_config_wins_up_to_the_maximum(settings):
    limits = usage_limits_for(config())
    assert limits.request_limit == DEFAULT_USAGE_LIMITS["request_limit"]
    assert limits.tool_calls_limit == DEFAULT_USAGE_LIMITS["tool_calls_limit"]
    custom = usage_limits_for(
        config(usage_limits={"request_limit": 2, "tool_calls_limit": None})
    )
    # null is the server's maximum, never unlimited
    assert custom.request_limit == 2
    assert custom.tool_calls_limit == settings.AGENTRY_MAX_TOOL_CALLS


async def test_request_limit_stops_a_run(fake_llm, echo_tool):
    cfg = config(model=FAKE_MODEL, tools=[{"tool": "test_echo", "config": {}}])
    cfg["usage_limits"] = {"request_limit": 1}
    agent = build_agent(cfg)
    with pytest.raises(UsageLimitExceeded):
        await agent.run(
            '[[call echo {"text": "x"}]]', usage_limits=usage_limits_for(cfg)
        )
    assert len(fake_llm.requests) == 1


async def test_structured_output_is_a_dict(fake_llm):
    agent = build_agent(config(model=FAKE_MODEL, output_schema=PERSON))
    result = await agent.run('[[call final_result {"name": "Ann", "age": 40}]]')
    assert type(result.output) is dict
    assert result.output == {"name": "Ann", "age": 40}
    offered = fake_llm.requests[0]["tools"][0]["function"]
    assert offered["name"] == "final_result"
    assert set(offered["parameters"]["required"]) == {"name", "age"}
    from_test_model = await build_agent(config(model="test", output_schema=PERSON)).run(
        "x"
    )
    assert from_test_model.output == {"name": "a", "age": 0}


# ---- tools -------------------------------------------------------------------------


async def test_tools_are_built_for_the_turn_and_called(fake_llm, echo_tool, settings):
    cfg = config(
        model=FAKE_MODEL, tools=[{"tool": "test_echo", "config": {"prefix": "P"}}]
    )
    deps = TurnDeps(user_id=1, agent_id=2, session_id=3, state={})
    result = await build_agent(cfg, deps=deps).run(
        '[[call echo {"text": "hi"}]]', deps=deps
    )
    assert result.output == "The tool said: P: hi"
    (context,) = echo_tool
    assert (context.user_id, context.agent_id, context.session_id) == (1, 2, 3)
    assert context.repo_root == settings.REPO_ROOT


async def test_disabled_tools_are_left_out(echo_tool):
    agent = build_agent(
        config(
            model="test", tools=[{"tool": "test_echo", "config": {}, "enabled": False}]
        )
    )
    await agent.run("x")
    assert not echo_tool
    assert agent.model.last_model_request_parameters.function_tools == []


# ---- validation ---------------------------------------------------------------------


def test_a_good_config_validates_and_tool_configs_are_normalised(echo_tool):
    checked = validate_agent_config(
        config(
            model="openai-chat:gpt-4o-mini",
            instructions="{name}",
            output_schema=PERSON,
            model_settings={"temperature": 0.1},
            usage_limits={"request_limit": 3},
            tools=[{"tool": "test_echo", "config": {"prefix": "x"}}],
        )
    )
    assert checked["tools"] == [
        {
            "tool": "test_echo",
            "config": {"prefix": "x"},
            "enabled": True,
            "requires_approval": False,
            "approval_ttl_seconds": 1800,
            "allow_edit": False,
        }
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": "nosuchprovider:model"}, "Unknown model provider"),
        ({"model": "gpt-4o"}, "names no provider"),
        ({"output_schema": {"type": "array"}}, "object"),
        (
            {"output_schema": {"type": "object", "properties": 3}},
            "not a valid JSON Schema",
        ),
        ({"tools": [{"tool": "no_such_tool", "config": {}}]}, "Unknown tool"),
        ({"tools": [{"tool": "test_echo", "config": {"prefix": 5}}]}, "Invalid config"),
        (
            {
                "tools": [
                    {"tool": "test_echo", "config": {"prefix": "x"}, "x": 1},
                    "bad",
                ]
            },
            "tool",
        ),
        ({"usage_limits": {"request_limit": 0}}, "usage_limits"),
        ({"usage_limits": {"bogus_limit": 1}}, "usage_limits"),
        ({"model_settings": {"temperature": "hot"}}, "temperature"),
        ({"model_settings": {"no_such_setting": 1}}, "no_such_setting"),
        ({"kind": "robot"}, "kind"),
    ],
)
def test_bad_configs_are_refused(echo_tool, overrides, message):
    with pytest.raises(AgentConfigError, match=message):
        validate_agent_config(config(**overrides))


def test_building_an_unknown_tool_or_provider_fails_cleanly():
    with pytest.raises(AgentConfigError, match="Unknown tool"):
        build_agent(config(tools=[{"tool": "no_such_tool", "config": {}}]))
    with pytest.raises(AgentConfigError, match="Unknown model provider"):
        build_agent(config(model="nosuchprovider:m"))


def test_other_providers_are_inferred_and_a_missing_key_is_clear(monkeypatch):
    from pydantic_ai.models.anthropic import AnthropicModel

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ModelUnavailableError, match="anthropic:claude-sonnet-4-5"):
        resolve_model("anthropic:claude-sonnet-4-5")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    assert isinstance(resolve_model("anthropic:claude-sonnet-4-5"), AnthropicModel)
