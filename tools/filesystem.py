"""Built-in file tools: `read_file`, `write_file`, `list_directory`, `find_files`.

Each is a registry kind of category ``filesystem`` that gives the model one tool
of the same name, working inside ``<scope's tree>/<config root>`` through
`tools.sandbox.Sandbox` (scopes: `tools.base.open_sandbox`). Giving an agent
`write_file` is the permission to write (in `repo` scope only for sessions of
developers and admins); the other three only read.

Results are JSON objects whose paths are relative to the configured root (so
they can be passed straight back to another file tool) and which say when a cap
cut them short (``truncated``). A refused call is a failed tool result, as
described in `tools.base`.

Globs are matched without regular expressions, one path segment at a time, by
a bit-parallel automaton whose work is linear in the path (times the pattern's
length, at most 1024): no pattern backtracks, and a pattern has at most
`MAX_GLOB_WILDCARDS` wildcards.

Public surface: the four registered kinds, their config classes,
`DEFAULT_EXCLUDED_DIRS`, `MAX_GLOB_WILDCARDS` and `glob_matcher(pattern)`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from pydantic import Field
from pydantic_ai.toolsets import FunctionToolset

from tools.base import SandboxedConfig, function_toolset, open_sandbox
from tools.registry import ToolContext, register_tool
from tools.sandbox import Deadline, SandboxError, check_relative_path, display_path

DEFAULT_EXCLUDED_DIRS = [".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv"]
#: Wildcards (`*` runs, `?`, `[...]`, `**` segments) one find_files pattern may hold.
MAX_GLOB_WILDCARDS = 32


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
    read_only=("read_file",),
)
def build_read_file(config: ReadFileConfig, context: ToolContext) -> FunctionToolset:
    def read_file(
        path: str, offset: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
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
def build_write_file(config: WriteFileConfig, context: ToolContext) -> FunctionToolset:
    def write_file(path: str, content: str) -> dict[str, Any]:
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
        sandbox = open_sandbox(context, config, writing=True)
        written, created = sandbox.write_text(
            path, content, deadline=Deadline(config.timeout_seconds)
        )
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
    read_only=("list_directory",),
)
def build_list_directory(
    config: ListDirectoryConfig, context: ToolContext
) -> FunctionToolset:
    def list_directory(path: str = ".") -> dict[str, Any]:
        """List the entries of a directory inside the workspace.

        Each entry has a `name` and a `type` ("file" with its `size` in bytes, or
        "directory"). Entries are sorted by name; `truncated` is true when there
        were more than the cap. Links leading outside the workspace are not shown.

        Args:
            path: Directory relative to the workspace root; "." is the root itself.
        """
        sandbox = open_sandbox(context, config)
        deadline = Deadline(config.timeout_seconds)
        entries: list[dict[str, Any]] = []
        truncated = False
        for entry in sandbox.entries(path, deadline=deadline):
            if len(entries) >= config.max_entries:
                truncated = True
                break
            item: dict[str, Any] = {
                "name": entry.relative,
                "type": "directory" if entry.is_dir else "file",
            }
            if not entry.is_dir:
                item["size"] = entry.size
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
    read_only=("find_files",),
)
def build_find_files(config: FindFilesConfig, context: ToolContext) -> FunctionToolset:
    excluded = frozenset(config.exclude_dirs)

    def find_files(pattern: str, path: str = ".") -> dict[str, Any]:
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
        matches_path = glob_matcher(pattern)
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
def glob_matcher(pattern: str) -> Callable[[str], bool]:
    """A predicate on root-relative paths for a find_files pattern.

    Without "/", the pattern matches the last segment (a file name anywhere);
    with "/", the whole path, segment by segment, where a segment that is
    exactly "**" spans any number of directories (none included). Within a
    segment "*" is any run of characters, "?" one character, "[abc]", "[a-z]"
    and "[!abc]" one of a set; an unclosed "[" is itself.

    Raises:
        SandboxError: the pattern holds more than MAX_GLOB_WILDCARDS wildcards.
    """
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    segments = [_GLOBSTAR if p == "**" else _parse_segment(p) for p in parts]
    wildcards = sum(
        segment.wildcards if isinstance(segment, _SegmentPattern) else 1
        for segment in segments
    )
    if wildcards > MAX_GLOB_WILDCARDS:
        raise SandboxError(
            f"The pattern has {wildcards} wildcards; at most {MAX_GLOB_WILDCARDS} "
            "are allowed."
        )
    if "/" not in pattern:
        only = _parse_segment(pattern)
        return lambda relative: only.matches(relative.rsplit("/", 1)[-1])
    return _PathPattern(segments).matches


class _Token:
    """One glob position: a literal character, `?`, a set, or a `*` run."""

    __slots__ = ("char", "chars", "kind", "negate", "ranges")

    def __init__(
        self,
        kind: str,
        char: str = "",
        negate: bool = False,
        chars: frozenset[str] = frozenset(),
        ranges: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.kind, self.char, self.negate = kind, char, negate
        self.chars, self.ranges = chars, ranges

    def accepts(self, ch: str) -> bool:
        if self.kind == "literal":
            return ch == self.char
        if self.kind == "any":
            return True
        inside = ch in self.chars or any(lo <= ch <= hi for lo, hi in self.ranges)
        return inside != self.negate


class _SegmentPattern:
    """A glob for one path segment, run as a bit-parallel automaton.

    Bit i of the state means "the first i tokens matched"; each character
    moves the state along in a constant number of integer operations, so a
    match costs one pass over the name whatever the pattern.
    """

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.wildcards = sum(t.kind != "literal" for t in tokens)
        self.literal = (
            "".join(t.char for t in tokens)
            if all(t.kind == "literal" for t in tokens)
            else None
        )
        self._stars = sum(1 << i for i, t in enumerate(tokens) if t.kind == "star")
        self._accept = 1 << len(tokens)
        self._by_char: dict[str, int] = {}

    def _closure(self, state: int) -> int:
        # A star may match nothing; runs of stars were merged, so one step does.
        return state | ((state & self._stars) << 1)

    def _bits_for(self, ch: str) -> int:
        bits = self._by_char.get(ch)
        if bits is None:
            bits = sum(
                1 << i
                for i, t in enumerate(self.tokens)
                if t.kind != "star" and t.accepts(ch)
            )
            if len(self._by_char) < 4096:
                self._by_char[ch] = bits
        return bits

    def matches(self, name: str) -> bool:
        if self.literal is not None:
            return name == self.literal
        stars = self._stars
        state = self._closure(1)
        for ch in name:
            moved = (state & ~stars & self._bits_for(ch)) << 1
            state = self._closure(moved | (state & stars))
            if not state:
                return False
        return bool(state & self._accept)


_GLOBSTAR = object()


class _PathPattern:
    """Segment patterns and `**` over a path's segments, as the automaton above."""

    def __init__(self, segments: list[Any]) -> None:
        merged: list[Any] = []
        for segment in segments:
            if not (segment is _GLOBSTAR and merged and merged[-1] is _GLOBSTAR):
                merged.append(segment)
        self.segments = merged
        self._spans = sum(1 << i for i, s in enumerate(merged) if s is _GLOBSTAR)
        self._accept = 1 << len(merged)

    def matches(self, relative: str) -> bool:
        spans = self._spans
        state = 1 | ((1 & spans) << 1)
        for name in relative.split("/"):
            moved = 0
            live = state & ~spans & (self._accept - 1)
            while live:
                low = live & -live
                if self.segments[low.bit_length() - 1].matches(name):
                    moved |= low << 1
                live ^= low
            state = moved | (state & spans)
            state |= (state & spans) << 1
            if not state:
                return False
        return bool(state & self._accept)


def _parse_segment(text: str) -> _SegmentPattern:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "*":
            if not (tokens and tokens[-1].kind == "star"):
                tokens.append(_Token("star"))
            i += 1
        elif ch == "?":
            tokens.append(_Token("any"))
            i += 1
        elif ch == "[" and (parsed := _parse_set(text, i)) is not None:
            token, i = parsed
            tokens.append(token)
        else:
            tokens.append(_Token("literal", ch))
            i += 1
    return _SegmentPattern(tokens)


def _parse_set(text: str, start: int) -> tuple[_Token, int] | None:
    """The `[...]` set at `start` and the index after it, as fnmatch reads one."""
    j = start + 1
    if j < len(text) and text[j] == "!":
        j += 1
    if j < len(text) and text[j] == "]":
        j += 1
    end = text.find("]", j)
    if end == -1:
        return None
    body = text[start + 1 : end]
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    chars: set[str] = set()
    ranges: list[tuple[str, str]] = []
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            if body[k] <= body[k + 2]:
                ranges.append((body[k], body[k + 2]))
            k += 3
        else:
            chars.add(body[k])
            k += 1
    token = _Token("set", negate=negate, chars=frozenset(chars), ranges=tuple(ranges))
    return token, end + 1
