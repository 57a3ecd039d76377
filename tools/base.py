"""Pieces shared by the built-in tool kinds.

Public surface:
    reports_failures(fn)   wraps a tool function so expected failures reach the
                           model as a failed tool result instead of ending the run
    function_toolset(*fns) the FunctionToolset a kind's builder returns
    ToolConfig             base config schema (unknown keys refused)
    SandboxedConfig        + `root` and `timeout_seconds`, for tools that touch files
    open_sandbox(...)      the Sandbox a config grants, as a tool failure if unusable

How a failure reaches the model: the wrapped function raises
`pydantic_ai.ToolFailed(message)`. pydantic-ai answers the call with a
`ToolReturnPart` whose `outcome` is ``"failed"`` and whose `content` is the
message (a str); the same part is carried by the `FunctionToolResultEvent` of
the stream, and the run goes on to the next model request. The model receives
it on the provider's native error channel (``{"error": "<message>"}`` as text
for providers without one). The retry budget is not consumed.

Failures that count as expected: `SandboxError` (a refused path or input),
`OSError` (the file system said no) and `TimeoutError`. Anything else is a bug
in the tool and propagates, so the run ends with a tool crash rather than
hiding it from whoever operates the server.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_ai import FunctionToolset, ToolFailed

from tools.registry import ToolContext
from tools.sandbox import Sandbox, SandboxError, check_relative_path

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

EXPECTED_FAILURES = (SandboxError, OSError, TimeoutError)


def _failure(exc: BaseException) -> ToolFailed:
    if isinstance(exc, SandboxError):
        return ToolFailed(str(exc))
    if isinstance(exc, TimeoutError):
        return ToolFailed("The operation timed out.")
    # An OSError's str() carries the absolute path; the model gets the reason only.
    reason = getattr(exc, "strerror", None) or exc.__class__.__name__
    return ToolFailed(f"The operation failed: {reason}.")


def reports_failures(fn: F) -> F:
    """`fn`, with expected failures turned into `ToolFailed` for the model."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except EXPECTED_FAILURES as exc:
                logger.info("Tool %s refused: %s", fn.__name__, exc)
                raise _failure(exc) from exc

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EXPECTED_FAILURES as exc:
            logger.info("Tool %s refused: %s", fn.__name__, exc)
            raise _failure(exc) from exc

    return wrapper  # type: ignore[return-value]


def function_toolset(*functions: Callable[..., Any]) -> FunctionToolset:
    """A toolset of context-free `functions`, with failures reported to the model."""
    toolset: FunctionToolset = FunctionToolset()
    for fn in functions:
        toolset.add_function(reports_failures(fn), takes_ctx=False)
    return toolset


class ToolConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SandboxedConfig(ToolConfig):
    root: str = Field(
        default=".",
        description="Directory the tool works in, relative to the server's REPO_ROOT.",
    )
    timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Time one call may spend."
    )

    @field_validator("root")
    @classmethod
    def _root_is_relative(cls, value: str) -> str:
        try:
            return check_relative_path(value, what="root")
        except SandboxError as exc:
            raise ValueError(str(exc)) from None


def open_sandbox(context: ToolContext, config: SandboxedConfig) -> Sandbox:
    """The sandbox `config` grants under the run's REPO_ROOT.

    Opened per call, so a root created after the agent was built is found and a
    missing one is a failed call, not a failed run.
    """
    return Sandbox.within(context.repo_root, config.root)
