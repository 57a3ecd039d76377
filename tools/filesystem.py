"""Built-in file tools: `read_file`, `write_file`, `list_directory`, `find_files`.

Each is a registry kind of category ``filesystem`` that gives the model one tool
of the same name, working inside ``REPO_ROOT/<config root>`` through
`tools.sandbox.Sandbox`. Giving an agent `write_file` is the permission to
write; the other three only read.

Results are JSON objects whose paths are relative to the configured root (so
they can be passed straight back to another file tool) and which say when a cap
cut them short (``truncated``). A refused call is a failed tool result, as
described in `tools.base`.
"""

from __future__ import annotations

import fnmatch
import re
from functools import lru_cache
from typing import Any

from pydantic import Field

from tools.base import SandboxedConfig, function_toolset, open_sandbox
from tools.registry import ToolContext, register_tool
from tools.sandbox import Deadline, SandboxError, check_relative_path, display_path

DEFAULT_EXCLUDED_DIRS = [".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv"]


class ReadFileConfig(SandboxedConfig):
    max_read_bytes: int = Field(
        default=256 * 1024,
        ge=1,
        le=16 * 1024 * 1024,
        description="Most bytes of a file one call returns.",
    )


class WriteFileConfig(SandboxedConfig):
    max_write_bytes: int = Field(
        default=1024 * 1024,
        ge=1,
        le=64 * 1024 * 1024,
        description="Largest content one call may write (UTF-8 bytes).",
    )


class ListDirectoryConfig(SandboxedConfig):
    max_entries: int = Field(
        default=500, ge=1, le=100_000, description="Most entries one call returns."
    )


class FindFilesConfig(SandboxedConfig):
    max_matches: int = Field(
        default=500, ge=1, le=100_000, description="Most paths one call returns."
    )
    max_files_scanned: int = Field(
        default=50_000,
        ge=1,
        le=10_000_000,
        description="Most files and directories one call looks at.",
    )
    exclude_dirs: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDED_DIRS),
        description="Directory names that are never descended into.",
    )


@register_tool(
    "read_file",
    category="filesystem",
    description="Read a UTF-8 text file, or a range of its lines.",
    config_schema=ReadFileConfig,
)
def build_read_file(config: ReadFileConfig, context: ToolContext):
    def read_file(path: str, offset: int = 0, limit: int | None = None) -> dict:
        """Read a UTF-8 text file inside the workspace.

        Returns the file's text from line `offset` on, at most `limit` lines and
        a byte cap. When the answer is cut short, `truncated` is true and
        `next_offset` is the line to continue from. Binary files, directories and
        anything outside the workspace are refused.

        Args:
            path: File path relative to the workspace root, e.g. "src/app.py".
            offset: Number of lines to skip from the start of the file (0-based).
            limit: Most lines to return; all remaining lines when omitted.
        """
        if offset < 0:
            raise SandboxError("offset must be 0 or more.")
        if limit is not None and limit < 1:
            raise SandboxError("limit must be 1 or more.")
        sandbox = open_sandbox(context, config)
        result = sandbox.read_text(
            path,
            offset=offset,
            limit=limit,
            max_bytes=config.max_read_bytes,
            deadline=Deadline(config.timeout_seconds),
        )
        answer: dict[str, Any] = {
            "path": display_path(path),
            "content": result.text,
            "offset": offset,
            "truncated": result.truncated,
        }
        if result.next_offset is not None:
            answer["next_offset"] = result.next_offset
        return answer

    return function_toolset(read_file)


@register_tool(
    "write_file",
    category="filesystem",
    description="Create or overwrite a text file (giving this tool grants write access).",
    config_schema=WriteFileConfig,
)
def build_write_file(config: WriteFileConfig, context: ToolContext):
    def write_file(path: str, content: str) -> dict:
        """Create or replace a UTF-8 text file inside the workspace.

        The whole file is replaced atomically with `content`; missing parent
        directories are created. Paths outside the workspace, and links that
        lead outside it, are refused.

        Args:
            path: File path relative to the workspace root, e.g. "notes/todo.md".
            content: The complete new text of the file.
        """
        if "\x00" in content:
            raise SandboxError("The content contains a NUL byte; only text is written.")
        if len(content) > config.max_write_bytes or (
            len(content.encode("utf-8", "surrogatepass")) > config.max_write_bytes
        ):
            raise SandboxError(
                f"The content is larger than {config.max_write_bytes} bytes."
            )
        sandbox = open_sandbox(context, config)
        _, written, created = sandbox.write_text(path, content)
        return {
            "path": display_path(path),
            "bytes_written": written,
            "created": created,
        }

    return function_toolset(write_file)


@register_tool(
    "list_directory",
    category="filesystem",
    description="List the files and directories in a directory.",
    config_schema=ListDirectoryConfig,
)
def build_list_directory(config: ListDirectoryConfig, context: ToolContext):
    def list_directory(path: str = ".") -> dict:
        """List the entries of a directory inside the workspace.

        Each entry has a `name` and a `type` ("file" with its `size` in bytes, or
        "directory"). Entries are sorted by name; `truncated` is true when there
        were more than the cap. Links leading outside the workspace are not shown.

        Args:
            path: Directory relative to the workspace root; "." is the root itself.
        """
        sandbox = open_sandbox(context, config)
        directory = sandbox.directory(path)
        deadline = Deadline(config.timeout_seconds)
        entries: list[dict[str, Any]] = []
        truncated = False
        for entry in sandbox.scan(directory, ".", deadline=deadline):
            if len(entries) >= config.max_entries:
                truncated = True
                break
            item: dict[str, Any] = {
                "name": entry.relative,
                "type": "directory" if entry.is_dir else "file",
            }
            if not entry.is_dir:
                item["size"] = entry.real.stat().st_size
            entries.append(item)
        return {
            "path": display_path(path),
            "entries": entries,
            "truncated": truncated or deadline.expired,
        }

    return function_toolset(list_directory)


@register_tool(
    "find_files",
    category="filesystem",
    description="Find files whose path matches a glob pattern.",
    config_schema=FindFilesConfig,
)
def build_find_files(config: FindFilesConfig, context: ToolContext):
    excluded = frozenset(config.exclude_dirs)

    def find_files(pattern: str, path: str = ".") -> dict:
        """Find files inside the workspace by glob pattern.

        A pattern without "/" matches file names anywhere below `path` (e.g.
        "*.py"); a pattern with "/" matches the whole path relative to the
        workspace root, where "**" spans directories (e.g. "src/**/test_*.py").
        Returns matching file paths relative to the workspace root, sorted
        breadth-first; `truncated` is true when a cap was reached.

        Args:
            pattern: Glob pattern: "*" any characters but "/", "?" one character,
                "[abc]" a set, "**" any number of directories.
            path: Directory to search, relative to the workspace root.
        """
        check_relative_path(pattern, what="pattern")
        matches_path = _glob_matcher(pattern)
        sandbox = open_sandbox(context, config)
        deadline = Deadline(config.timeout_seconds)
        matches: list[str] = []
        scanned, truncated = 0, False
        for entry in sandbox.walk(path, deadline=deadline, exclude_dirs=excluded):
            scanned += 1
            if scanned > config.max_files_scanned:
                truncated = True
                break
            if entry.is_dir or not matches_path(entry.relative):
                continue
            if len(matches) >= config.max_matches:
                truncated = True
                break
            matches.append(entry.relative)
        return {
            "pattern": pattern,
            "path": display_path(path),
            "matches": matches,
            "truncated": truncated or deadline.expired,
        }

    return function_toolset(find_files)


@lru_cache(maxsize=256)
def _glob_matcher(pattern: str):
    """A predicate on root-relative paths for a find_files pattern."""
    if "/" not in pattern:
        name_re = re.compile(fnmatch.translate(pattern))
        return lambda relative: bool(name_re.match(relative.rsplit("/", 1)[-1]))
    while pattern.startswith("./"):
        pattern = pattern[2:]
    path_re = re.compile(_translate_path_glob(pattern))
    return lambda relative: bool(path_re.fullmatch(relative))


def _translate_path_glob(pattern: str) -> str:
    out, i, n = [], 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            body = re.escape(body[1:] if negate else body).replace(r"\-", "-")
            out.append(f"[{'^/' if negate else ''}{body}]")
            i = end + 1
        else:
            out.append(re.escape(ch))
            i += 1
    return "".join(out)
