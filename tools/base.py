"""Pieces shared by the built-in tool kinds.

Public surface:
    reports_failures(fn)   wraps a tool function so expected failures reach the
                           model as a failed tool result instead of ending the run
    function_toolset(*fns) the FunctionToolset a kind's builder returns
    ToolConfig             base config schema (unknown keys refused)
    SandboxedConfig        + `scope`, `root` and `timeout_seconds`, for tools that touch files
    open_sandbox(...)      the Sandbox a config grants the run, as a tool failure if
                           unusable or (for writes) not allowed
    WRITER_ROLES           the session roles that may write in `repo` scope

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

import contextlib
import functools
import inspect
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

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


WRITER_ROLES = frozenset({"developer", "admin"})


class SandboxedConfig(ToolConfig):
    scope: Literal["repo", "workspace"] = Field(
        default="repo",
        description=(
            "Which tree the tool works in: `repo`, the server's shared REPO_ROOT "
            "(written only by developers and admins), or `workspace`, the private "
            "directory of the user whose session runs the tool."
        ),
    )
    root: str = Field(
        default=".",
        description="Directory the tool works in, relative to its scope's tree.",
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


def open_sandbox(
    context: ToolContext, config: SandboxedConfig, *, writing: bool = False
) -> Sandbox:
    """The sandbox `config` grants the run, inside its scope's tree.

    `repo` is the run's REPO_ROOT, which never shows the workspaces directory
    even when an operator keeps it inside; writing there needs a session user
    whose role is in `WRITER_ROLES`. `workspace` is
    AGENTRY_WORKSPACES/<session user id>/, made on first use, capped by
    AGENTRY_WORKSPACE_QUOTA_MB. Opened per call, so a root created after the
    agent was built is found and a missing one is a failed call, not a failed
    run.

    Raises:
        SandboxError: the root is unusable or the write is not allowed.
    """
    from django.conf import settings

    workspaces = Path(settings.AGENTRY_WORKSPACES)
    if config.scope == "workspace":
        quota = settings.AGENTRY_WORKSPACE_QUOTA_MB * 1024 * 1024
        return Sandbox.within(
            _workspace_of(workspaces, context.user_id), config.root, quota_bytes=quota
        )
    if writing and context.user_role not in WRITER_ROLES:
        raise SandboxError(
            "Writing to the shared repository needs the developer or admin role; "
            "this session's user may write in their own workspace (a tool with "
            'scope "workspace").'
        )
    return Sandbox.within(context.repo_root, config.root, hidden=[workspaces])


def _workspace_of(workspaces: Path, user_id: Any) -> Path:
    """AGENTRY_WORKSPACES/<user id>/, created (private to the server) when missing."""
    if user_id is None:
        raise SandboxError(
            "The workspace scope needs a session user, and this run has none."
        )
    name = str(user_id)
    check_relative_path(name, what="user id")
    if "/" in name or name == ".":
        raise SandboxError("The session user's id cannot name a workspace.")
    workspaces.mkdir(parents=True, exist_ok=True)
    workspace = workspaces / name
    with contextlib.suppress(FileExistsError):
        os.mkdir(workspace, 0o700)
    return workspace
