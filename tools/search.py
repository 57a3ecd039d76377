"""Built-in search tool: `grep_search` (category ``search``).

Pure Python: the tree is walked through `tools.sandbox.Sandbox` (in the config's
scope, `tools.base.open_sandbox`) and each line is
matched with the third-party `regex` module, whose ``timeout=`` bounds every
match, so neither the pattern nor the path is ever handed to a program as an
option and a catastrophic pattern such as ``(a+)+$`` costs at most the call's
time budget. Lines longer than the cap are matched on their head only; binary
and non-UTF-8 files are skipped; the number of files scanned, bytes read per
file and matches returned are capped, and the answer says when any cap (or the
time budget) cut it short.
"""

from __future__ import annotations

from typing import Any

import regex
from pydantic import Field
from pydantic_ai.toolsets import FunctionToolset

from tools.base import SandboxedConfig, function_toolset, open_sandbox
from tools.filesystem import DEFAULT_EXCLUDED_DIRS
from tools.registry import ToolContext, register_tool
from tools.sandbox import Deadline, SandboxError, display_path

MAX_PATTERN_CHARS = 1000


class GrepSearchConfig(SandboxedConfig):
    max_matches: int = Field(
        default=200, ge=1, le=10_000, description="Most matching lines returned."
    )
    max_files_scanned: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Most files one call reads."
    )
    max_file_bytes: int = Field(
        default=1024 * 1024,
        ge=1,
        le=64 * 1024 * 1024,
        description="Bytes read from the start of each file.",
    )
    max_line_chars: int = Field(
        default=2000,
        ge=1,
        le=100_000,
        description="Characters of each line considered for matching.",
    )
    max_shown_chars: int = Field(
        default=300, ge=1, le=10_000, description="Characters of each match shown."
    )
    exclude_dirs: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDED_DIRS),
        description="Directory names that are never descended into.",
    )


@register_tool(
    "grep_search",
    category="search",
    description="Search file contents with a regular expression.",
    config_schema=GrepSearchConfig,
    read_only=("grep_search",),
)
def build_grep_search(
    config: GrepSearchConfig, context: ToolContext
) -> FunctionToolset:
    excluded = frozenset(config.exclude_dirs)

    def grep_search(
        pattern: str, path: str = ".", ignore_case: bool = False
    ) -> dict[str, Any]:
        """Search the text files inside the workspace for a regular expression.

        Returns matching lines as {"path", "line", "text"} (paths relative to the
        workspace root, line numbers from 1). Binary files are skipped. When a
        cap or the time budget stopped the search early, `truncated` is true.

        Args:
            pattern: Regular expression (Python syntax), e.g. "def \\w+_view" or
                "TODO". It is always a pattern, never an option.
            path: File or directory to search, relative to the workspace root.
            ignore_case: Match letters regardless of case.
        """
        compiled = _compile(pattern, ignore_case)
        sandbox = open_sandbox(context, config)
        deadline = Deadline(config.timeout_seconds)
        stopped_by_timeout = False
        files = sandbox.files(path, deadline=deadline, exclude_dirs=excluded)
        matches: list[dict[str, Any]] = []
        scanned, truncated = 0, False
        for entry in files:
            if deadline.expired:
                break
            if scanned >= config.max_files_scanned:
                truncated = True
                break
            scanned += 1
            try:
                text, cut = sandbox.read_head(entry, config.max_file_bytes)
            except (SandboxError, OSError):
                continue
            truncated |= cut
            # Numbered by "\n" alone, as editors and `read_file` count lines.
            for number, line in enumerate(text.split("\n"), start=1):
                considered = line[: config.max_line_chars].removesuffix("\r")
                try:
                    found = compiled.search(considered, timeout=deadline.remaining)
                except TimeoutError:
                    # regex keeps its own clock: it may give up a hair before
                    # the deadline reads expired.
                    stopped_by_timeout = True
                    break
                if found is None:
                    continue
                if len(matches) >= config.max_matches:
                    truncated = True
                    break
                matches.append(
                    {
                        "path": entry.relative,
                        "line": number,
                        "text": considered[: config.max_shown_chars],
                    }
                )
            if truncated and len(matches) >= config.max_matches:
                break
        timed_out = stopped_by_timeout or deadline.expired
        return {
            "pattern": pattern,
            "path": display_path(path),
            "matches": matches,
            "files_scanned": scanned,
            "truncated": truncated or timed_out,
            "timed_out": timed_out,
        }

    return function_toolset(grep_search)


def _compile(pattern: str, ignore_case: bool) -> regex.Pattern:
    if not isinstance(pattern, str) or not pattern:
        raise SandboxError("The pattern is empty.")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise SandboxError(
            f"The pattern is longer than {MAX_PATTERN_CHARS} characters."
        )
    if "\x00" in pattern:
        raise SandboxError("The pattern contains a NUL byte.")
    flags = regex.VERSION0 | (regex.IGNORECASE if ignore_case else 0)
    try:
        return regex.compile(pattern, flags)
    except (regex.error, OverflowError, RecursionError) as exc:
        raise SandboxError(f"Invalid regular expression: {exc}.") from None
