"""The path resolver refuses every way out of its root."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

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
    sandbox = Sandbox(layout.root)
    assert sandbox.is_inside(layout.root / "hello.txt")
    assert sandbox.is_inside(layout.root)
    assert not sandbox.is_inside(layout.sibling / "sibling.txt")
    assert not sandbox.is_inside(str(layout.root) + "2")
    with pytest.raises(SandboxError, match="outside"):
        sandbox.resolve("sibling_link/sibling.txt")


@pytest.mark.parametrize(
    "path", ["escape.txt", "escape_abs.txt", "escape_dir/secret.txt"]
)
def test_links_out_of_the_root_are_refused_for_reading(layout, path):
    with pytest.raises(SandboxError, match="outside"):
        Sandbox(layout.root).file_for_reading(path)


def test_a_link_that_stays_inside_is_followed(layout):
    assert Sandbox(layout.root).file_for_reading("inner_link.txt") == (
        layout.root / "hello.txt"
    )


def test_root_must_lie_inside_the_repository_root(layout):
    assert Sandbox.within(layout.root, "sub").root == layout.root / "sub"
    with pytest.raises(SandboxError, match="outside the repository root"):
        Sandbox.within(layout.root, "escape_dir")
    with pytest.raises(SandboxError, match=r"'\.\.'"):
        Sandbox.within(layout.root, "../" + layout.sibling.name)
    with pytest.raises(SandboxError, match="does not exist"):
        Sandbox.within(layout.root, "missing")


def test_dangling_link_out_of_the_root_is_refused_for_writing(layout):
    (layout.root / "dangling.txt").symlink_to(layout.root.parent / "new-outside.txt")
    with pytest.raises(SandboxError, match="outside"):
        Sandbox(layout.root).write_text("dangling.txt", "x")
    assert not (layout.root.parent / "new-outside.txt").exists()


def test_new_file_under_a_linked_parent_outside_is_refused(layout):
    with pytest.raises(SandboxError, match="outside"):
        Sandbox(layout.root).write_text("escape_dir/created.txt", "x")
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
