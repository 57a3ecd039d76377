"""The registry: kinds, their config schemas, and discovery."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict
from pydantic_ai import FunctionToolset

from tools.registry import (
    ToolConfigError,
    ToolContext,
    ToolKind,
    ToolRegistry,
    UnknownToolError,
    autodiscover,
    register_tool,
    registry,
    toolset_for,
)

BUILT_IN = {
    "read_file": "filesystem",
    "write_file": "filesystem",
    "list_directory": "filesystem",
    "find_files": "filesystem",
    "grep_search": "search",
    "artifacts": "multimodal",
    "http_endpoint": "custom",
}


def test_built_in_kinds_are_registered_with_their_categories():
    registered = {k.name: k.category for k in registry.kinds()}
    assert {name: registered.get(name) for name in BUILT_IN} == BUILT_IN


def test_describe_gives_name_category_description_and_json_schema():
    described = registry.get("read_file").describe()
    assert set(described) == {"name", "category", "description", "config_schema"}
    schema = described["config_schema"]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["root"]["default"] == "."
    assert {"max_read_bytes", "timeout_seconds"} <= set(schema["properties"])
    assert schema.get("required", []) == []


@pytest.mark.parametrize(
    "name", ["read_file", "write_file", "list_directory", "find_files", "grep_search"]
)
def test_file_tools_work_with_an_empty_config(name):
    assert registry.validate_config(name, {}) == {}
    assert registry.validate_config(name, None) == {}


@pytest.mark.parametrize(
    "name, config, where",
    [
        ("read_file", {"unknown": 1}, "unknown"),
        ("read_file", {"max_read_bytes": "lots"}, "max_read_bytes"),
        ("read_file", {"max_read_bytes": 0}, "max_read_bytes"),
        ("read_file", {"root": "/etc"}, "absolute"),
        ("list_directory", {"root": "../elsewhere"}, "root"),
        ("grep_search", {"root": "a\x00b"}, "NUL"),
        ("grep_search", {"timeout_seconds": 3600}, "timeout_seconds"),
        ("find_files", {"exclude_dirs": "node_modules"}, "exclude_dirs"),
        ("artifacts", {"max_image_bytes": -1}, "max_image_bytes"),
    ],
)
def test_invalid_configs_are_refused_with_the_field_named(name, config, where):
    with pytest.raises(ToolConfigError, match=where):
        registry.validate_config(name, config)


def test_config_must_be_an_object_and_the_kind_must_exist():
    with pytest.raises(ToolConfigError, match="JSON object"):
        registry.validate_config("read_file", ["root"])
    with pytest.raises(UnknownToolError, match="shell"):
        registry.validate_config("shell", {})


def test_valid_config_is_normalised():
    assert registry.validate_config(
        "read_file", {"root": "docs", "max_read_bytes": "10"}
    ) == {
        "root": "docs",
        "max_read_bytes": 10,
    }


class EchoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    word: str = "hi"


def test_register_unregister_and_a_name_taken_by_another_builder():
    def build(config: EchoConfig, context: ToolContext) -> FunctionToolset:
        toolset: FunctionToolset = FunctionToolset()
        toolset.add_function(lambda: config.word, name="echo", takes_ctx=False)
        return toolset

    register_tool(
        "test_echo", category="testing", description="Echo.", config_schema=EchoConfig
    )(build)
    try:
        assert "test_echo" in registry
        combined = toolset_for(
            [
                {"tool": "test_echo", "config": {"word": "yo"}},
                {"tool": "read_file", "enabled": False},
            ],
            ToolContext(repo_root=Path(".")),
        )
        assert set(combined.tools) == {"echo"}
        # The same builder again (a re-import) is fine; another one is refused.
        register_tool(
            "test_echo",
            category="testing",
            description="Echo.",
            config_schema=EchoConfig,
        )(build)
        with pytest.raises(ValueError, match="already registered"):
            registry.register(
                ToolKind("test_echo", "testing", "x", EchoConfig, lambda c, x: None)
            )
    finally:
        registry.unregister("test_echo")
    assert "test_echo" not in registry


def test_clear_empties_a_registry():
    own = ToolRegistry()
    own.register(registry.get("read_file"))
    assert [k.name for k in own.kinds()] == ["read_file"]
    own.clear()
    assert own.kinds() == []


def test_autodiscover_is_idempotent():
    before = {k.name: k for k in registry.kinds()}
    autodiscover()
    autodiscover()
    assert {k.name: k for k in registry.kinds()} == before


def test_toolset_for_nothing_enabled_is_none():
    assert toolset_for([], ToolContext(repo_root=Path("."))) is None
    assert (
        toolset_for(
            [{"tool": "read_file", "enabled": False}], ToolContext(repo_root=Path("."))
        )
        is None
    )


def test_approval_wraps_the_toolset_with_the_entrys_ttl_and_edit_permission():
    from tools.approval import ApprovalGate

    toolset = toolset_for(
        [
            {
                "tool": "write_file",
                "requires_approval": True,
                "approval_ttl_seconds": 60,
                "allow_edit": True,
            }
        ],
        ToolContext(repo_root=Path(".")),
    )
    assert isinstance(toolset, ApprovalGate)
    assert (toolset.ttl_seconds, toolset.allow_edit) == (60, True)
