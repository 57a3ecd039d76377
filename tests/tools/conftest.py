"""Fixtures for the tool kinds: an attack layout around REPO_ROOT and direct calls.

`layout` builds, under the test's tmp_path, the REPO_ROOT workspace with a few
files and, outside it, a secret file, a sibling directory whose name extends
the root's (`workspace2`), and links inside the root that point out. `tool`
builds a registered kind with a config (and a session user and role) and
returns its model-visible function, so a test calls exactly what pydantic-ai
would call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tools.registry import ToolContext, registry


@dataclass
class Layout:
    root: Path
    secret: Path
    sibling: Path

    def outside_state(self) -> dict[str, bytes]:
        """Contents of every file outside the root, to prove nothing changed."""
        return {
            str(p): p.read_bytes()
            for p in sorted(self.root.parent.rglob("*"))
            if p.is_file() and not p.is_symlink() and self.root not in p.parents
        }


SECRET = "SECRET-outside-the-root"


@pytest.fixture
def layout(settings) -> Layout:
    root = Path(settings.REPO_ROOT)
    base = root.parent
    secret = base / "secret.txt"
    secret.write_text(SECRET + "\n")
    sibling = base / (root.name + "2")
    sibling.mkdir()
    (sibling / "sibling.txt").write_text(SECRET + " in the sibling\n")
    (root / "sub").mkdir()
    (root / "hello.txt").write_text("hello from the workspace\nsecond line\n")
    (root / "sub" / "notes.md").write_text("# notes\nnothing to see here\n")
    (root / "escape.txt").symlink_to("../secret.txt")
    (root / "escape_abs.txt").symlink_to(secret)
    (root / "escape_dir").symlink_to("..", target_is_directory=True)
    (root / "sibling_link").symlink_to(f"../{sibling.name}", target_is_directory=True)
    (root / "inner_link.txt").symlink_to("hello.txt")
    return Layout(root=root, secret=secret, sibling=sibling)


@pytest.fixture
def tool(settings) -> Callable[..., Callable[..., Any]]:
    """Factory: `tool(name, user_id=..., role=..., **config)` -> the model's function.

    The run is a developer's by default (repo-scope writes allowed); `user_id`
    is the session user whose workspace `scope: workspace` uses.
    """

    def build(
        name: str, *, user_id: Any = None, role: str = "developer", **config: Any
    ) -> Callable[..., Any]:
        validated = registry.get(name).config_schema.model_validate(config)
        context = ToolContext(
            repo_root=Path(settings.REPO_ROOT), user_id=user_id, user_role=role
        )
        toolset = registry.get(name).build(validated, context)
        return toolset.tools[name].function

    return build
