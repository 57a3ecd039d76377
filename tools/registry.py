"""The registry of tool kinds an agent can be given.

Public surface:
    ToolKind, ToolContext     what a kind is, and what its builder is told about a run
    register_tool(...)        decorator that registers a builder as a kind
    registry                  the process-wide ToolRegistry (get, kinds, validate_config, clear)
    ToolConfigError, UnknownToolError
    ToolUnavailableError      a toolset's server could not be used when a run began
    toolset_for(tools, ctx)   the pydantic-ai toolset of an agent's enabled tools
    read_only_tools(tools)    names of the enabled tools safe to run again after a crash
    autodiscover()            imports the built-in kinds and every app's `agent_tools` module

A kind has a name (what `AgentTool.tool` stores), a category, a description, a
pydantic model for its config (its JSON schema is what the API shows) and a
builder that turns a validated config into a pydantic-ai toolset. Apps add kinds
by shipping an `agent_tools.py` that calls `register_tool`, the way they ship an
`admin.py`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_ai.toolsets import AbstractToolset, CombinedToolset

from tools.approval import ApprovalGate

BUILTIN_MODULES = (
    "tools.filesystem",
    "tools.search",
    "tools.multimodal",
    "tools.custom",
    "tools.mcp",
)


class UnknownToolError(KeyError):
    """No kind of that name is registered."""

    def __str__(self) -> str:
        return f"Unknown tool {self.args[0]!r}."


class ToolConfigError(ValueError):
    """A tool config does not validate against its kind's schema."""

    def __init__(self, tool: str, errors: list[dict[str, Any]]) -> None:
        self.tool, self.errors = tool, errors
        first = errors[0] if errors else {"loc": (), "msg": "invalid"}
        where = ".".join(str(p) for p in first.get("loc", ())) or "config"
        super().__init__(
            f"Invalid config for tool {tool!r}: {where}: {first.get('msg')}"
        )


class ToolUnavailableError(RuntimeError):
    """A toolset could not reach the service behind it as a run began.

    Raised on entering the toolset, before the model is asked anything, so the
    turn fails with this message instead of a transport error's.
    """


@dataclass(frozen=True)
class ToolContext:
    """What a builder may know about the run it builds tools for."""

    repo_root: Path
    user_id: Any = None
    agent_id: Any = None
    session_id: Any = None
    #: The agent's owner, whose secrets the tools resolve.
    owner_id: Any = None
    #: The session user's role (`User.tool_role`): `user`, `developer` or `admin`.
    user_role: str = "user"


#: Builds a kind's toolset from its validated config (an instance of the
#: kind's own `config_schema`, hence `Any` here) and the turn's context.
Builder = Callable[[Any, ToolContext], AbstractToolset]


@dataclass(frozen=True)
class ToolKind:
    name: str
    category: str
    description: str
    config_schema: type[BaseModel]
    build: Builder
    #: The names of this kind's tools that only read: a call of one cut off by
    #: a crash is run again when another process takes the turn over.
    read_only: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "category": self.category,
            "description": self.description,
            "config_schema": self.config_schema.model_json_schema(),
        }


class ToolRegistry:
    def __init__(self) -> None:
        self._kinds: dict[str, ToolKind] = {}
        self._lock = threading.Lock()

    def register(self, kind: ToolKind) -> ToolKind:
        with self._lock:
            existing = self._kinds.get(kind.name)
            if existing is not None and existing.build is not kind.build:
                raise ValueError(
                    f"A tool kind named {kind.name!r} is already registered."
                )
            self._kinds[kind.name] = kind
        return kind

    def unregister(self, name: str) -> None:
        with self._lock:
            self._kinds.pop(name, None)

    def clear(self) -> None:
        """Forget every kind (tests register their own)."""
        with self._lock:
            self._kinds.clear()

    def get(self, name: str) -> ToolKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise UnknownToolError(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def kinds(self) -> list[ToolKind]:
        return sorted(self._kinds.values(), key=lambda k: (k.category, k.name))

    def validate_config(
        self, name: str, config: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The config as its kind's schema normalises it; raises on any problem."""
        kind = self.get(name)
        if config is not None and not isinstance(config, Mapping):
            raise ToolConfigError(
                name, [{"loc": (), "msg": "config must be a JSON object"}]
            )
        try:
            model = kind.config_schema.model_validate(dict(config or {}))
        except ValidationError as exc:
            raise ToolConfigError(
                name,
                [
                    {"loc": e["loc"], "msg": e["msg"], "type": e["type"]}
                    for e in exc.errors()
                ],
            ) from None
        return model.model_dump(mode="json", exclude_unset=True)


registry = ToolRegistry()


def register_tool(
    name: str,
    *,
    category: str,
    description: str,
    config_schema: type[BaseModel],
    read_only: Iterable[str] = (),
) -> Callable[[Builder], Builder]:
    """Registers the decorated builder as the tool kind `name`; `read_only`
    names its tools that change nothing (safe to run twice)."""

    def decorator(build: Builder) -> Builder:
        registry.register(
            ToolKind(
                name, category, description, config_schema, build, tuple(read_only)
            )
        )
        return build

    return decorator


def toolset_for(
    tools: Iterable[Mapping[str, Any]], context: ToolContext
) -> AbstractToolset | None:
    """One toolset holding every enabled tool of an agent config.

    `tools` are entries as in `Agent.config_snapshot()["tools"]`. Tools that
    require approval are wrapped (`ApprovalGate`) so pydantic-ai defers their
    calls, each with its entry's approval TTL and edit permission.
    """
    toolsets: list[AbstractToolset] = []
    for entry in tools:
        if not entry.get("enabled", True):
            continue
        kind = registry.get(entry["tool"])
        config = kind.config_schema.model_validate(entry.get("config") or {})
        toolset = kind.build(config, context)
        if entry.get("requires_approval"):
            toolset = ApprovalGate(
                toolset,
                ttl_seconds=entry.get("approval_ttl_seconds"),
                allow_edit=bool(entry.get("allow_edit", False)),
            )
        toolsets.append(toolset)
    if not toolsets:
        return None
    return toolsets[0] if len(toolsets) == 1 else CombinedToolset(toolsets)


def read_only_tools(tools: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The names of the read-only tools among an agent config's enabled entries
    (an entry that requires approval never counts: a rerun would skip it)."""
    names: set[str] = set()
    for entry in tools:
        if not entry.get("enabled", True) or entry.get("requires_approval"):
            continue
        if entry.get("tool") in registry:
            names.update(registry.get(entry["tool"]).read_only)
    return frozenset(names)


def autodiscover() -> None:
    """Imports the built-in kinds, then each installed app's `agent_tools` module."""
    from importlib import import_module
    from importlib.util import find_spec

    from django.utils.module_loading import autodiscover_modules

    for module in BUILTIN_MODULES:
        if find_spec(module) is not None:
            import_module(module)
    autodiscover_modules("agent_tools")
