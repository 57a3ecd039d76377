"""File tool scopes: the shared `repo` tree and each user's private `workspace`.

`repo` is REPO_ROOT, read by everyone and written only by developers and
admins; `workspace` is AGENTRY_WORKSPACES/<session user id>/, created on first
use and capped by AGENTRY_WORKSPACE_QUOTA_MB. Nothing is ever written under a
`.git` directory, in either scope.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from pydantic_ai import ToolFailed

from tests.tools.conftest import SECRET

ALICE, BOB = str(uuid.uuid4()), str(uuid.uuid4())
MiB = 1024 * 1024


def tree_state(root: Path) -> dict[str, str]:
    """Every entry under `root` with its content (or link target), to prove no change."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            state[str(path)] = f"link:{os.readlink(path)}"
        elif path.is_file():
            state[str(path)] = path.read_text()
        else:
            state[str(path)] = "dir"
    return state


@pytest.fixture
def workspaces(settings) -> Path:
    return Path(settings.AGENTRY_WORKSPACES)


def test_workspace_scope_works_in_the_session_users_own_directory(
    layout, tool, workspaces
):
    assert not (workspaces / ALICE).exists()
    write = tool("write_file", user_id=ALICE, role="user", scope="workspace")
    assert write("notes/todo.md", "milk\n")["created"] is True
    assert (workspaces / ALICE / "notes" / "todo.md").read_text() == "milk\n"
    assert not (layout.root / "notes").exists()

    read = tool("read_file", user_id=ALICE, role="user", scope="workspace")
    assert read("notes/todo.md")["content"] == "milk\n"
    listing = tool("list_directory", user_id=ALICE, scope="workspace", root="notes")
    assert listing()["entries"] == [{"name": "todo.md", "type": "file", "size": 5}]


def test_no_user_sees_another_users_workspace(layout, tool, workspaces):
    tool("write_file", user_id=ALICE, scope="workspace")("mine.txt", SECRET)
    bob = workspaces / BOB
    bob.mkdir(parents=True)
    (bob / "own.txt").write_text("bob's\n")
    (bob / "alice_abs.txt").symlink_to(workspaces / ALICE / "mine.txt")
    (bob / "alice_rel.txt").symlink_to(f"../{ALICE}/mine.txt")
    (bob / "all").symlink_to("..", target_is_directory=True)
    before = tree_state(workspaces / ALICE)

    def as_bob(name: str, **config):
        return tool(name, user_id=BOB, role="user", scope="workspace", **config)

    answers = [
        as_bob("list_directory")(),
        as_bob("find_files")("*"),
        as_bob("grep_search")("SECRET"),
    ]
    assert [e["name"] for e in answers[0]["entries"]] == ["own.txt"]
    assert answers[1]["matches"] == ["own.txt"]
    assert answers[2]["matches"] == []
    for path in ("mine.txt", "alice_abs.txt", "alice_rel.txt", f"all/{ALICE}/mine.txt"):
        with pytest.raises(ToolFailed) as refused:
            as_bob("read_file")(path)
        assert SECRET not in refused.value.message
    for path in ("alice_abs.txt", "alice_rel.txt", f"all/{ALICE}/mine.txt"):
        with pytest.raises(ToolFailed):
            as_bob("write_file")(path, "pwned")
    with pytest.raises(ValueError, match=r"'\.\.'"):
        as_bob("read_file", root=f"../{ALICE}")
    assert tree_state(workspaces / ALICE) == before
    assert SECRET not in json.dumps(answers)


def test_workspace_scope_needs_a_session_user(layout, tool):
    with pytest.raises(ToolFailed, match="session user"):
        tool("read_file", scope="workspace")("hello.txt")


def test_a_write_past_the_workspace_quota_is_refused(layout, tool, settings):
    settings.AGENTRY_WORKSPACE_QUOTA_MB = 1
    write = tool(
        "write_file", user_id=ALICE, scope="workspace", max_write_bytes=2 * MiB
    )
    write("a.txt", "a" * (600 * 1024))
    with pytest.raises(ToolFailed, match="quota of 1 MB"):
        write("deep/b.txt", "b" * (600 * 1024))
    assert not (settings.AGENTRY_WORKSPACES / ALICE / "deep" / "b.txt").exists()
    # Replacing a file counts its new size instead of its old one.
    write("a.txt", "c" * (900 * 1024))
    write("small.txt", "d" * (100 * 1024))
    with pytest.raises(ToolFailed, match="quota"):
        write("one-more.txt", "e" * (100 * 1024))
    # Another user's workspace has its own quota.
    tool("write_file", user_id=BOB, scope="workspace")("b.txt", "b" * (600 * 1024))


def test_repo_scope_writes_need_the_developer_or_admin_role(layout, tool):
    with pytest.raises(ToolFailed, match="developer or admin"):
        tool("write_file", role="user")("hello.txt", "pwned\n")
    with pytest.raises(ToolFailed, match="developer or admin"):
        tool("write_file", role="user", scope="repo")("new.txt", "pwned\n")
    assert (layout.root / "hello.txt").read_text().startswith("hello from")
    assert not (layout.root / "new.txt").exists()
    # Reading the shared tree stays open to every role.
    assert tool("read_file", role="user")("hello.txt")["content"].startswith("hello")
    for role in ("developer", "admin"):
        tool("write_file", role=role)(f"{role}.txt", "ok\n")
        assert (layout.root / f"{role}.txt").read_text() == "ok\n"


@pytest.mark.parametrize("scope", ["repo", "workspace"])
@pytest.mark.parametrize(
    "root, path",
    [
        (".", ".git/config"),
        (".", ".git/hooks/post-checkout"),
        (".", ".git"),
        (".", "sub/.git/config"),
        (".", "sub/.git"),
        (".", ".GIT/config"),
        (".", "git_link/config"),
        (".", "git_link/objects/new"),
        (".git", "config"),
        ("sub", ".git"),
    ],
)
def test_nothing_is_ever_written_under_a_git_directory(
    layout, tool, settings, scope, root, path
):
    tree = layout.root if scope == "repo" else settings.AGENTRY_WORKSPACES / ALICE
    (tree / ".git" / "hooks").mkdir(parents=True)
    (tree / ".git" / "config").write_text("[core]\n")
    (tree / "sub").mkdir(exist_ok=True)
    (tree / "git_link").symlink_to(".git", target_is_directory=True)
    before = tree_state(tree)
    write = tool("write_file", user_id=ALICE, role="admin", scope=scope, root=root)
    with pytest.raises(ToolFailed, match=r"\.git"):
        write(path, "[core]\n\thooksPath = /tmp/evil\n")
    assert tree_state(tree) == before


def test_repo_scope_never_reaches_workspaces_kept_inside_repo_root(
    layout, tool, settings
):
    settings.AGENTRY_WORKSPACES = layout.root / "workspaces"
    tool("write_file", user_id=ALICE, scope="workspace")("mine.txt", SECRET)
    assert (layout.root / "workspaces" / ALICE / "mine.txt").exists()

    answers = [
        tool("list_directory", role="admin")(),
        tool("find_files", role="admin")("*"),
        tool("grep_search", role="admin")("SECRET"),
    ]
    assert "workspaces" not in json.dumps(answers)
    for name, args in (
        ("read_file", (f"workspaces/{ALICE}/mine.txt",)),
        ("list_directory", ("workspaces",)),
        ("write_file", (f"workspaces/{ALICE}/mine.txt", "pwned")),
    ):
        with pytest.raises(ToolFailed, match="outside"):
            tool(name, role="admin")(*args)
    with pytest.raises(ToolFailed, match="outside"):
        tool("read_file", role="admin", root="workspaces")("x")
    assert (layout.root / "workspaces" / ALICE / "mine.txt").read_text() == SECRET
