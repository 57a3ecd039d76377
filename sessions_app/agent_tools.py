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
    from sessions_app.delegation import run_delegated

    target = str(config.agent)

    async def delegate(ctx: RunContext[Any], task: str) -> str:
        return await run_delegated(ctx, target, task)

    description = config.description or f"Hand a task to the agent {config.name}."
    # Sequential: the calls of one response run one at a time, so each child's
    # own usage is exactly what the shared run usage grew by while it ran.
    tool = Tool(
        delegate,
        takes_ctx=True,
        name=config.name,
        description=description,
        sequential=True,
    )
    return FunctionToolset([tool])
