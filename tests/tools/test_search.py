"""grep_search: patterns are only ever patterns, and every search is bounded."""

from __future__ import annotations

import json
import time

import pytest
from pydantic_ai import ToolFailed

from tests.tools.conftest import SECRET


def test_grep_finds_lines_with_numbers_and_root_relative_paths(layout, tool):
    result = tool("grep_search")("NOTHING|second", ignore_case=True)
    assert result["matches"] == [
        {"path": "hello.txt", "line": 2, "text": "second line"},
        {"path": "inner_link.txt", "line": 2, "text": "second line"},
        {"path": "sub/notes.md", "line": 2, "text": "nothing to see here"},
    ]
    assert (result["truncated"], result["timed_out"]) == (False, False)
    assert tool("grep_search")("NOTHING")["matches"] == []
    single = tool("grep_search")("notes", path="sub/notes.md")
    assert single["matches"] == [{"path": "sub/notes.md", "line": 1, "text": "# notes"}]


def test_grep_never_reads_through_links_out_of_the_root(layout, tool):
    result = tool("grep_search")("SECRET")
    assert result["matches"] == []
    assert SECRET not in json.dumps(result)
    for path in ("escape.txt", "escape_dir", "sibling_link", "../secret.txt"):
        with pytest.raises(ToolFailed):
            tool("grep_search")("SECRET", path=path)


@pytest.mark.parametrize("pattern", ["--help", "-e", "--files-with-matches", "-r"])
def test_option_like_patterns_are_plain_patterns(layout, tool, pattern):
    (layout.root / "flags.txt").write_text(f"usage: tool {pattern} value\nplain\n")
    result = tool("grep_search")(pattern)
    assert result["matches"] == [
        {"path": "flags.txt", "line": 1, "text": f"usage: tool {pattern} value"}
    ]


def test_option_like_path_is_just_a_missing_path(layout, tool):
    with pytest.raises(ToolFailed, match="No such directory"):
        tool("grep_search")("x", path="--include=*")


def test_catastrophic_regex_is_stopped_by_the_time_budget(layout, tool):
    (layout.root / "evil.txt").write_text(("a" * 1500 + "b\n") * 50)
    started = time.monotonic()
    result = tool("grep_search", timeout_seconds=1)("(a+)+$")
    assert time.monotonic() - started < 5
    assert result["timed_out"] is True
    assert result["truncated"] is True


def test_binary_files_are_skipped(layout, tool):
    (layout.root / "blob.bin").write_bytes(b"needle\x00\x01\x02")
    (layout.root / "text.txt").write_text("needle\n")
    assert [m["path"] for m in tool("grep_search")("needle")["matches"]] == ["text.txt"]


def test_caps_on_matches_line_length_and_files(layout, tool):
    (layout.root / "many.txt").write_text("hit\n" * 50)
    capped = tool("grep_search", max_matches=5)("hit")
    assert len(capped["matches"]) == 5 and capped["truncated"] is True

    (layout.root / "long.txt").write_text("x" * 5000 + "needle\n")
    assert tool("grep_search", max_line_chars=1000)("needle")["matches"] == []
    grep_long_lines = tool("grep_search", max_line_chars=9000, max_shown_chars=10)
    assert grep_long_lines("x+needle")["matches"][0]["text"] == "x" * 10

    few = tool("grep_search", max_files_scanned=1)("zzz")
    assert few["files_scanned"] == 1 and few["truncated"] is True


@pytest.mark.parametrize(
    "pattern, message",
    [("(", "Invalid regular expression"), ("", "empty"), ("a\x00", "NUL")],
)
def test_bad_patterns_are_tool_failures(layout, tool, pattern, message):
    with pytest.raises(ToolFailed, match=message):
        tool("grep_search")(pattern)
