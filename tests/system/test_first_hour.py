"""The commands a newcomer types first, run as they would run them.

`make run` leaves a development `.env` that the same checkout's `manage.py`
commands read, prints the demo password once and, later, how to set a new one;
a `manage.py` command without a key says so in one line.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from testing.live import free_port, outside_env, stop_process_group

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_command_without_a_key_says_so_in_one_line() -> None:
    done = manage("createsuperuser", "--noinput", env=outside_env())
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: SECRET_KEY is not set.")
    assert "make run" in lines[0]


def test_the_rq_task_backend_without_redis_says_so_in_one_line() -> None:
    env = {**outside_env(), "DEBUG": "1", "AGENTRY_TASK_BACKEND": "rq"}
    done = manage("check", env=env)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: AGENTRY_TASK_BACKEND=rq keeps its queue in Redis: set REDIS_URL."
    )


def _data_env(tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REPO_ROOT": str(tmp_path / "workspace"),
        "MEDIA_ROOT": str(tmp_path / "uploads"),
        "AGENTRY_WORKSPACES": str(tmp_path / "workspaces"),
    }


# Four product processes in a row (migrate, seed, daphne, two commands after).
@pytest.mark.timeout(300)
def test_make_run_leaves_an_env_that_the_same_checkouts_commands_read(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / ".env"
    port = free_port()
    log_path = tmp_path / "make-run.log"
    env = {**outside_env(), **_data_env(tmp_path)}
    with log_path.open("wb") as log:
        run = subprocess.Popen(
            [
                "make",
                "--no-print-directory",
                "run",
                f"ENV_FILE={env_file}",
                f"PORT={port}",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert run.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).is_success:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"make run did not serve:\n{log_path.read_text()}")
    finally:
        stop_process_group(run, timeout=20)
    output = log_path.read_text()
    assert 'Created the demo user "demo" with password: ' in output

    lines = env_file.read_text().splitlines()
    assert "DEBUG=1" in lines
    assert any(line.startswith("SECRET_KEY=") and len(line) > 40 for line in lines)

    # The same checkout's commands, with nothing exported but where the data is.
    later = {**outside_env(), **_data_env(tmp_path), "AGENTRY_ENV_FILE": str(env_file)}
    admin = manage(
        "createsuperuser",
        "--noinput",
        "--username",
        "admin",
        "--email",
        "admin@example.com",
        env={**later, "DJANGO_SUPERUSER_PASSWORD": "Admin-password-1"},
    )
    assert admin.returncode == 0, admin.stderr
    assert "Superuser created successfully." in admin.stdout
    # Seeding again (as every `make run` does) tells how to set a new password.
    again = manage("seed_agents", env=later)
    assert again.returncode == 0, again.stderr
    assert "password: " not in again.stdout
    assert "manage.py changepassword demo" in again.stdout
