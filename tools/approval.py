"""Tools whose calls wait for a person before they run.

Public surface:
    ApprovalGate(wrapped, ttl_seconds, allow_edit)   a toolset wrapper

Like pydantic-ai's `approval_required()`, but each deferred call carries what
the person deciding needs to know, as the call's metadata in
`DeferredToolRequests.metadata`: how long the request stays open
(`approval_ttl_seconds`, None for the server's default), whether its arguments
may be edited (`allow_edit`) and, when they may, the JSON schema pydantic-ai
holds for them (`args_schema`), against which edited arguments are checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic_ai import RunContext
from pydantic_ai.exceptions import ApprovalRequired
from pydantic_ai.toolsets import WrapperToolset
from pydantic_ai.toolsets.abstract import ToolsetTool


@dataclass
class ApprovalGate(WrapperToolset[Any]):
    """Defers every call of the wrapped toolset's tools until it is approved."""

    ttl_seconds: int | None = None
    allow_edit: bool = False

    async def call_tool(
        self,
        name: str,
        tool_args: dict[str, Any],
        ctx: RunContext[Any],
        tool: ToolsetTool[Any],
    ) -> Any:
        if not ctx.tool_call_approved:
            raise ApprovalRequired(
                metadata={
                    "approval_ttl_seconds": self.ttl_seconds,
                    "allow_edit": self.allow_edit,
                    "args_schema": (
                        tool.tool_def.parameters_json_schema
                        if self.allow_edit
                        else None
                    ),
                }
            )
        return await super().call_tool(name, tool_args, ctx, tool)
