"""read_file, write_file, list_directory and find_files inside their root."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from pydantic_ai import ToolFailed

from tests.tools.conftest import SECRET


def test_read_file_returns_text_and_line_ranges(layout, tool):
    read_file = tool("read_file")
    assert read_file("hello.txt") == {
        "path": "hello.txt",
        "content": "hello from the workspace\nsecond line\n",
        "offset": 0,
        "truncated": False,
    }
    part = read_file("./hello.txt", offset=1, limit=1)
    assert part["content"] == "second line\n"
    assert part["truncated"] is False
    first = read_file("hello.txt", limit=1)
    assert first["content"] == "hello from the workspace\n"
    assert (first["truncated"], first["next_offset"]) == (True, 1)


@pytest.mark.parametrize(
    "path, message",
    [
        ("../secret.txt", "'..'"),
        ("/etc/passwd", "absolute"),
        ("escape.txt", "outside"),
        ("escape_abs.txt", "outside"),
        ("escape_dir/secret.txt", "outside"),
        (f"escape_dir/{os.sep}secret.txt", "outside"),
        ("sibling_link/sibling.txt", "outside"),
        ("hello.txt\x00.png", "NUL"),
        ("hello\r.txt", "control"),
        ("sub", "directory"),
        ("missing.txt", "No such file"),
    ],
)
def test_read_file_refusals_are_tool_failures_without_leaks(
    layout, tool, path, message
):
    with pytest.raises(ToolFailed, match=re.escape(message)) as caught:
        tool("read_file")(path)
    assert SECRET not in caught.value.message
    assert str(layout.root.parent) not in caught.value.message


def test_read_file_never_opens_a_fifo(layout, tool):
    os.mkfifo(layout.root / "pipe")
    started = time.monotonic()
    with pytest.raises(ToolFailed, match="not a regular file"):
        tool("read_file")("pipe")
    assert time.monotonic() - started < 1


def test_binary_and_non_utf8_files_are_refused(layout, tool):
    (layout.root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (layout.root / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ToolFailed, match="binary"):
        tool("read_file")("image.png")
    with pytest.raises(ToolFailed, match="not UTF-8"):
        tool("read_file")("latin1.txt")


def test_huge_file_is_cut_at_the_byte_cap_with_the_flag(layout, tool):
    (layout.root / "huge.txt").write_text("é" * 3_000_000)
    result = tool("read_file", max_read_bytes=1001)("huge.txt")
    assert result["truncated"] is True
    assert result["next_offset"] == 0
    # 1001 bytes end inside a two-byte character: the partial one is dropped.
    assert result["content"] == "é" * 500


def test_read_file_rejects_negative_offset_and_zero_limit(layout, tool):
    with pytest.raises(ToolFailed, match="offset"):
        tool("read_file")("hello.txt", offset=-1)
    with pytest.raises(ToolFailed, match="limit"):
        tool("read_file")("hello.txt", limit=0)


def test_missing_configured_root_is_a_tool_failure(layout, tool):
    with pytest.raises(ToolFailed, match="does not exist"):
        tool("read_file", root="not-there")("hello.txt")
    assert tool("read_file", root="sub")("notes.md")["content"].startswith("# notes")


def test_write_file_creates_and_replaces_atomically(layout, tool):
    write_file = tool("write_file")
    assert write_file("new/dir/out.txt", "one\n") == {
        "path": "new/dir/out.txt",
        "bytes_written": 4,
        "created": True,
    }
    (layout.root / "new/dir/out.txt").chmod(0o640)
    assert write_file("new/dir/out.txt", "twö\n")["created"] is False
    target = layout.root / "new/dir/out.txt"
    assert target.read_text() == "twö\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_write_through_an_inside_link_keeps_the_link(layout, tool):
    tool("write_file")("inner_link.txt", "rewritten\n")
    assert (layout.root / "inner_link.txt").is_symlink()
    assert (layout.root / "hello.txt").read_text() == "rewritten\n"


@pytest.mark.parametrize(
    "path",
    [
        "escape.txt",
        "escape_abs.txt",
        "escape_dir/secret.txt",
        "escape_dir/brand-new.txt",
        "sibling_link/sibling.txt",
        "../secret.txt",
        "/tmp/agentry-absolute.txt",
        "dangling.txt",
    ],
)
def test_writes_never_touch_anything_outside(layout, tool, path):
    (layout.root / "dangling.txt").symlink_to("../dangling-target.txt")
    before = layout.outside_state()
    with pytest.raises(ToolFailed):
        tool("write_file")(path, "pwned\n")
    assert layout.outside_state() == before
    assert (layout.root / "escape.txt").is_symlink()
    assert not (layout.root.parent / "dangling-target.txt").exists()
    assert not os.path.exists("/tmp/agentry-absolute.txt")


def test_write_file_refuses_oversized_and_nul_content(layout, tool):
    with pytest.raises(ToolFailed, match="larger than 8 bytes"):
        tool("write_file", max_write_bytes=8)("a.txt", "ééééé")
    with pytest.raises(ToolFailed, match="NUL"):
        tool("write_file")("a.txt", "a\x00b")
    with pytest.raises(ToolFailed, match="not a regular file"):
        tool("write_file")("sub", "x")
    assert not (layout.root / "a.txt").exists()


def test_list_directory_hides_links_that_leave_the_root(layout, tool):
    result = tool("list_directory")()
    assert result == {
        "path": ".",
        "entries": [
            {"name": "hello.txt", "type": "file", "size": 37},
            {"name": "inner_link.txt", "type": "file", "size": 37},
            {"name": "sub", "type": "directory"},
        ],
        "truncated": False,
    }
    with pytest.raises(ToolFailed, match="outside"):
        tool("list_directory")("escape_dir")
    with pytest.raises(ToolFailed, match="not a directory"):
        tool("list_directory")("hello.txt")


def test_list_directory_caps_entries(layout, tool):
    for i in range(10):
        (layout.root / "sub" / f"f{i}.txt").write_text("x")
    result = tool("list_directory", max_entries=4)("sub")
    assert [e["name"] for e in result["entries"]] == [
        "f0.txt",
        "f1.txt",
        "f2.txt",
        "f3.txt",
    ]
    assert result["truncated"] is True


def test_find_files_matches_names_and_paths_without_leaving(layout, tool):
    (layout.root / "sub" / "deep").mkdir()
    (layout.root / "sub" / "deep" / "more.md").write_text("x")
    (layout.root / ".git").mkdir()
    (layout.root / ".git" / "HEAD.md").write_text("x")
    find_files = tool("find_files")
    assert find_files("*.md")["matches"] == ["sub/notes.md", "sub/deep/more.md"]
    assert find_files("sub/**/*.md")["matches"] == ["sub/notes.md", "sub/deep/more.md"]
    assert find_files("sub/*.md")["matches"] == ["sub/notes.md"]
    assert find_files("*.md", path="sub/deep")["matches"] == ["sub/deep/more.md"]
    everything = json.dumps(find_files("*"))
    assert "secret" not in everything and "sibling" not in everything
    with pytest.raises(ToolFailed, match=r"'\.\.'"):
        find_files("../*")


def test_find_files_caps_matches(layout, tool):
    for i in range(10):
        (layout.root / f"f{i}.log").write_text("x")
    result = tool("find_files", max_matches=3)("*.log")
    assert len(result["matches"]) == 3
    assert result["truncated"] is True


def test_find_files_glob_with_slashes_runs_in_linear_time(layout, tool):
    """This pattern took 7.5 s on one 40-character path as a backtracking regex."""
    (layout.root / "d").mkdir()
    (layout.root / "d" / ("a" * 38)).write_text("x")
    find_files = tool("find_files", timeout_seconds=1)
    started = time.monotonic()
    result = find_files("**/*?*?*?*?*?*?*?*?*?*?*Q")
    assert time.monotonic() - started < 1
    assert result["matches"] == [] and result["truncated"] is False
    assert find_files("**/*?*?*?*?*?*?*?*?*?*?*a")["matches"] == ["d/" + "a" * 38]
    started = time.monotonic()
    long_name = "d/" + "?*" * 15 + "Q"
    assert find_files(long_name)["matches"] == []
    assert time.monotonic() - started < 1


def test_find_files_caps_the_number_of_wildcards(layout, tool):
    with pytest.raises(ToolFailed, match="wildcards"):
        tool("find_files")("*?" * 20)
    with pytest.raises(ToolFailed, match="wildcards"):
        tool("find_files")("/".join(["**"] * 40))


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("*.py", [".hidden.py", "a.py", "src/b.py", "src/x/c.py", "src/x/e.py"]),
        ("src/*.py", ["src/b.py"]),
        ("./src/*.py", ["src/b.py"]),
        ("src/**/*.py", ["src/b.py", "src/x/c.py", "src/x/e.py"]),
        ("**/c.py", ["src/x/c.py"]),
        (
            "**/*",
            [
                ".hidden.py",
                "[x].txt",
                "a.py",
                "src/b.py",
                "src/x/c.py",
                "src/x/e.py",
                "src/x/y/d.txt",
            ],
        ),
        ("src/**", ["src/b.py", "src/x/c.py", "src/x/e.py", "src/x/y/d.txt"]),
        ("src/**/y/*", ["src/x/y/d.txt"]),
        ("src/?/[cd].*", ["src/x/c.py"]),
        ("src/[!x]*", ["src/b.py"]),
        ("src/x/[a-d]*", ["src/x/c.py"]),
        ("[[]x].txt", ["[x].txt"]),
        ("src/[x", []),
        ("*/*/*/*", ["src/x/y/d.txt"]),
        ("src/x", []),
    ],
)
def test_find_files_glob_semantics(tool, settings, pattern, expected):
    """`**` as a whole segment spans directories; `*`, `?` and `[...]` stay in one."""
    for name in (
        "a.py",
        ".hidden.py",
        "[x].txt",
        "src/b.py",
        "src/x/c.py",
        "src/x/e.py",
        "src/x/y/d.txt",
    ):
        (settings.REPO_ROOT / name).parent.mkdir(parents=True, exist_ok=True)
        (settings.REPO_ROOT / name).write_text("x")
    assert tool("find_files")(pattern)["matches"] == expected
