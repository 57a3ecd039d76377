"""With DEBUG=0 pages name hashed static files from STATIC_ROOT's manifest.

The production start sequence is `migrate`, `collectstatic`, then daphne. A
server started without `collectstatic` refuses to start, saying in one line
what to run, instead of answering 500 on every page.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from testing.live import DAPHNE, LiveServer, free_port, outside_env

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def production_env(tmp_path: Path) -> dict[str, str]:
    env = outside_env()
    (tmp_path / "workspace").mkdir(exist_ok=True)
    env.update(
        DEBUG="0",
        SECRET_KEY="static-test-" + "k" * 50,
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        STATIC_ROOT=str(tmp_path / "static"),
        REPO_ROOT=str(tmp_path / "workspace"),
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    return env


def manage(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_without_collectstatic_daphne_refuses_to_start_in_one_line(tmp_path):
    env = production_env(tmp_path)
    manage(env, "migrate", "--noinput")
    port = free_port()
    proc = subprocess.Popen(
        [DAPHNE, "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            if health.status_code == 200:
                page = httpx.get(f"http://127.0.0.1:{port}/login/", timeout=10)
                pytest.fail(f"daphne started without static files; /login/ {page}")
        assert proc.poll() is not None, "daphne neither started nor stopped"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        _stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode != 0
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert "collectstatic" in lines[0], lines


def test_after_collectstatic_pages_and_their_static_files_are_served(tmp_path):
    env = production_env(tmp_path)
    manage(env, "collectstatic", "--noinput")
    with_static = LiveServer(env, tmp_path / "logs")
    with_static.start()
    try:
        page = httpx.get(f"{with_static.url}/login/", timeout=10)
        assert page.status_code == 200, page.text[:500]
        assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
        assert assets, page.text[:500]
        for asset in assets:
            answer = httpx.get(f"{with_static.url}{asset}", timeout=10)
            assert answer.status_code == 200, asset
    finally:
        with_static.stop()
