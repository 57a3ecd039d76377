"""The path resolver refuses every way out of its root."""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

import pytest
from pydantic_ai import ToolFailed

from tests.tools.conftest import SECRET
from tools.sandbox import Deadline, Sandbox, SandboxError, check_relative_path


@pytest.mark.parametrize(
    "path, reason",
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("~/x", "absolute"),
        ("../secret.txt", "'..'"),
        ("sub/../../secret.txt", "'..'"),
        ("a\x00b", "NUL"),
        ("a\nb", "control"),
        ("a\x1bb", "control"),
        ("a\x7f", "control"),
        ("x" * 2000, "longer than"),
        ("a/" + "x" * 300, "longer than 255"),
        (42, "string"),
    ],
)
def test_unsafe_paths_are_refused_before_touching_the_disk(path, reason):
    with pytest.raises(SandboxError, match=re.escape(reason)):
        check_relative_path(path)


def test_containment_is_checked_on_segment_boundaries(layout):
    (layout.root / "abs_sibling.txt").symlink_to(f"{layout.root}2/sibling.txt")
    (layout.root / "abs_inside.txt").symlink_to(layout.root / "hello.txt")
    sandbox = Sandbox(layout.root)
    assert sandbox.resolve("abs_inside.txt") == layout.root / "hello.txt"
    for path in ("sibling_link/sibling.txt", "abs_sibling.txt"):
        with pytest.raises(SandboxError, match="outside"):
            sandbox.resolve(path)


@pytest.mark.parametrize(
    "path", ["escape.txt", "escape_abs.txt", "escape_dir/secret.txt"]
)
def test_links_out_of_the_root_are_refused_for_reading(layout, path):
    with pytest.raises(SandboxError, match="outside"):
        Sandbox(layout.root).read_text(path, max_bytes=100, deadline=Deadline(1))


def test_a_link_that_stays_inside_is_followed(layout):
    sandbox = Sandbox(layout.root)
    assert sandbox.resolve("inner_link.txt") == layout.root / "hello.txt"
    read = sandbox.read_text("inner_link.txt", max_bytes=100, deadline=Deadline(1))
    assert read.text.startswith("hello from the workspace")


def test_root_must_lie_inside_the_repository_root(layout):
    assert Sandbox.within(layout.root, "sub").root == layout.root / "sub"
    with pytest.raises(SandboxError, match="outside the allowed tree"):
        Sandbox.within(layout.root, "escape_dir")
    with pytest.raises(SandboxError, match=r"'\.\.'"):
        Sandbox.within(layout.root, "../" + layout.sibling.name)
    with pytest.raises(SandboxError, match="does not exist"):
        Sandbox.within(layout.root, "missing")


def test_dangling_link_out_of_the_root_is_refused_for_writing(layout):
    (layout.root / "dangling.txt").symlink_to(layout.root.parent / "new-outside.txt")
    with pytest.raises(SandboxError, match="outside"):
        Sandbox(layout.root).write_text("dangling.txt", "x", deadline=Deadline(1))
    assert not (layout.root.parent / "new-outside.txt").exists()


def test_new_file_under_a_linked_parent_outside_is_refused(layout):
    with pytest.raises(SandboxError, match="outside"):
        Sandbox(layout.root).write_text(
            "escape_dir/created.txt", "x", deadline=Deadline(1)
        )
    assert not (layout.root.parent / "created.txt").exists()


def test_fifo_is_refused_without_blocking(layout):
    os.mkfifo(layout.root / "pipe")
    with pytest.raises(SandboxError, match="not a regular file"):
        Sandbox(layout.root).read_text("pipe", max_bytes=100, deadline=Deadline(1))


def test_walk_reports_inside_links_but_never_leaves_or_descends_them(layout):
    sandbox = Sandbox(layout.root)
    seen = {e.relative for e in sandbox.walk(".", deadline=Deadline(5))}
    assert seen == {"hello.txt", "inner_link.txt", "sub", "sub/notes.md"}


def test_realpath_of_the_root_is_used(tmp_path: Path, layout):
    alias = tmp_path / "alias"
    alias.symlink_to(layout.root, target_is_directory=True)
    sandbox = Sandbox(alias)
    assert sandbox.root == layout.root
    with pytest.raises(SandboxError, match="outside"):
        sandbox.resolve("escape.txt")


class ParentSwap:
    """Swaps `sub` for a link to a decoy directory outside the root, once, at the
    moment the sandbox makes a chosen system call: the window between checking
    a path and using it, which a concurrent process could hit by chance."""

    def __init__(self, layout) -> None:
        self.sub = layout.root / "sub"
        self.decoy = layout.root.parent / "decoy"
        self.decoy.mkdir()
        (self.decoy / "notes.md").write_text(SECRET + "\n")
        self.done = False

    def __call__(self) -> None:
        if not self.done:
            self.done = True
            self.sub.rename(self.sub.with_name("sub.moved"))
            self.sub.symlink_to(self.decoy, target_is_directory=True)

    def on_open(self, monkeypatch, when) -> None:
        real_open = os.open

        def swapping_open(path, flags, *args, **kwargs):
            if when(os.path.basename(os.fspath(path)), flags):
                self()
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", swapping_open)

    def on_scandir(self, monkeypatch) -> None:
        real_scandir = os.scandir

        def swapping_scandir(path="."):
            target = (
                os.readlink(f"/proc/self/fd/{path}")
                if isinstance(path, int)
                else os.fspath(path)
            )
            if os.path.basename(target) == "sub":
                self()
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", swapping_scandir)


def opens_file(name):
    return lambda base, flags: base == name and not flags & os.O_DIRECTORY


def test_a_parent_swapped_for_a_link_before_a_read_is_not_followed(
    layout, tool, monkeypatch
):
    swap = ParentSwap(layout)
    swap.on_open(monkeypatch, opens_file("notes.md"))
    try:
        answer = json.dumps(tool("read_file")("sub/notes.md"))
    except ToolFailed as refused:
        answer = refused.message
    assert swap.done
    assert SECRET not in answer


def test_a_parent_swapped_for_a_link_before_a_write_is_not_followed(
    layout, tool, monkeypatch
):
    swap = ParentSwap(layout)
    swap.on_open(monkeypatch, lambda base, flags: bool(flags & os.O_CREAT))
    with contextlib.suppress(ToolFailed):
        tool("write_file")("sub/new.txt", "pwned\n")
    assert swap.done
    assert [p.name for p in swap.decoy.iterdir()] == ["notes.md"]
    assert (swap.decoy / "notes.md").read_text() == SECRET + "\n"


def test_a_parent_swapped_for_a_link_during_grep_is_not_followed(
    layout, tool, monkeypatch
):
    swap = ParentSwap(layout)
    swap.on_open(monkeypatch, opens_file("notes.md"))
    result = tool("grep_search")("SECRET|notes")
    assert swap.done
    assert SECRET not in json.dumps(result)


@pytest.mark.parametrize(
    "call",
    [
        lambda tool: tool("list_directory")("sub"),
        lambda tool: tool("find_files")("*.md"),
        lambda tool: tool("grep_search")("SECRET"),
    ],
)
def test_a_parent_swapped_for_a_link_during_a_listing_is_not_followed(
    layout, tool, monkeypatch, call
):
    swap = ParentSwap(layout)
    swap.on_scandir(monkeypatch)
    answer = json.dumps(call(tool))
    assert swap.done
    assert SECRET not in answer and "decoy" not in answer


def test_link_loops_are_refused_and_skipped(layout):
    (layout.root / "loop_a").symlink_to("loop_b")
    (layout.root / "loop_b").symlink_to("loop_a")
    (layout.root / "self").symlink_to(".", target_is_directory=True)
    sandbox = Sandbox(layout.root)
    with pytest.raises(SandboxError, match="too many links"):
        sandbox.read_text("loop_a", max_bytes=10, deadline=Deadline(1))
    seen = {e.relative: e.is_dir for e in sandbox.walk(".", deadline=Deadline(5))}
    assert "loop_a" not in seen and seen["self"] is True
    assert "self/hello.txt" not in seen
    assert sandbox.resolve("self/self/hello.txt") == layout.root / "hello.txt"
