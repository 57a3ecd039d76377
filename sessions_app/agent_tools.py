"""The `delegate` tool kind (category `agents`): one tool that hands a task to
another agent, run as a child execution of the same turn (DESIGN.md section 10).

Public surface:
    DelegateConfig   `{agent, name, description}`: the model sees one tool
                     `name(task: str)` described by `description`

Discovered with the other apps' `agent_tools` modules (`tools.registry.autodiscover`).
The run itself is `sessions_app.delegation.run_delegated`; a refused or failed
child is a failed tool result (`ToolFailed`), never a failed parent.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from pydantic import Field
from pydantic_ai import FunctionToolset, RunContext, Tool

from agents.delegation import DELEGATE_TOOL
from tools.base import ToolConfig
from tools.registry import ToolContext, register_tool


class DelegateConfig(ToolConfig):
    agent: uuid.UUID = Field(description="Id of the agent the task is handed to.")
    name: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="The tool's name as the model sees it, e.g. `ask_helper`.",
    )
    description: str = Field(
        default="",
        max_length=2000,
        description="What the model is told the tool does (when to hand work over).",
    )


@register_tool(
    DELEGATE_TOOL,
    category="agents",
    description=(
        "Hands a task to another agent, which answers it as a child execution of "
        "the same session; its answer is the tool's result."
    ),
    config_schema=DelegateConfig,
)
def build_delegate(config: DelegateConfig, context: ToolContext) -> FunctionToolset:
    description = config.description or f"Hand a task to the agent {config.name}."
    return FunctionToolset(
        [_delegate_tool(str(config.agent), config.name, description)]
    )


@functools.lru_cache(maxsize=1024)
def _delegate_tool(target: str, name: str, description: str) -> Tool[Any]:
    """The tool, built once per target, name and description: building a
    `Tool` derives its schema from the function (milliseconds), and every
    run of a delegating agent would otherwise pay for it. It holds nothing
    of a run (the child's turn comes from `ctx.deps`), so runs share it."""
    from sessions_app.delegation import run_delegated

    async def delegate(ctx: RunContext[Any], task: str) -> str:
        return await run_delegated(ctx, target, task)

    # Sequential: the calls of one response run one at a time, so each child's
    # own usage is exactly what the shared run usage grew by while it ran.
    return Tool(
        delegate,
        takes_ctx=True,
        name=name,
        description=description,
        sequential=True,
    )
