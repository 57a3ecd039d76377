"""Fixtures of the browser tests: Debian's Chromium driven by Playwright against
a live daphne serving the real ASGI application, with the fake OpenAI-compatible
server standing in for the model.

`chromium` finds /usr/bin/chromium; with AGENTRY_INSTALL_BROWSER=1 (set by
.ci/run) it installs the Debian package first, otherwise the tests skip with
the reason. `daphne_server` migrates and collects static files for a throwaway
database (SQLite in a temp dir, or a database of its own on the PostgreSQL
server that DATABASE_URL names), starts daphne in its own process group with
DEBUG=0 and kills the whole group at the end. Server, model and browser live
as long as this package's tests run, not for the rest of the suite.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from testing.fake_openai import FakeOpenAIThread

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FAKE_MODEL = "openai-chat:fake"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def apt_install_chromium() -> str:
    """Installs Debian's chromium; returns what went wrong, or "" on success."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "chromium"],
    ):
        try:
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=900
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(command)}: {exc}"
        if done.returncode != 0:
            return f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}"
    return ""


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists() and os.environ.get("AGENTRY_INSTALL_BROWSER") == "1":
        problem = apt_install_chromium()
        if problem and not CHROMIUM.exists():
            pytest.skip(f"Chromium could not be installed: {problem}")
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: `apt-get install chromium` "
            "(or set AGENTRY_INSTALL_BROWSER=1) to run the browser tests"
        )
    return CHROMIUM


@pytest.fixture(scope="package")
def fake_model() -> Iterator[FakeOpenAIThread]:
    server = FakeOpenAIThread(tokens=8).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def throwaway_database(workdir: Path) -> Iterator[str]:
    """A DATABASE_URL nobody else uses: a new PostgreSQL database when the
    suite runs against PostgreSQL, else a SQLite file in `workdir`."""
    configured = os.environ.get("DATABASE_URL", "")
    if not configured.startswith(("postgres://", "postgresql://")):
        yield f"sqlite:///{workdir / 'live.sqlite3'}"
        return
    import psycopg

    parts = urlsplit(configured)
    name = f"agentry_browser_{uuid.uuid4().hex[:10]}"
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class LiveServer:
    url: str
    log: Path
    repo: Path  # its REPO_ROOT, the sandbox of the file tools
    workspaces: Path  # its AGENTRY_WORKSPACES, one private directory per user

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def wait_until_serving(url: str, process: subprocess.Popen, server: LiveServer) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"daphne exited with {process.returncode}:\n{server.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/login/", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"daphne did not serve {url} within 60 s:\n{server.tail()}")


def stop_process_group(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="package")
def daphne_server(
    chromium: Path, fake_model: FakeOpenAIThread, tmp_path_factory
) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("live")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (workdir / "repo").mkdir()
    (workdir / "repo" / "notes.txt").write_text("hello from the sandbox\n")
    with throwaway_database(workdir) as database_url:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DEBUG": "0",
            "SECRET_KEY": f"browser-tests-{uuid.uuid4().hex}",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CSRF_TRUSTED_ORIGINS": url,
            "REPO_ROOT": str(workdir / "repo"),
            "AGENTRY_WORKSPACES": str(workdir / "workspaces"),
            "MEDIA_ROOT": str(workdir / "media"),
            "STATIC_ROOT": str(workdir / "static"),
            "OPENAI_BASE_URL": fake_model.base_url,
            "OPENAI_API_KEY": "test",
            "AGENTRY_REGISTER_RATE": "1000/min",
            "AGENTRY_LOGIN_RATE": "1000/min",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("AGENTRY_TESTING", None)
        python = sys.executable
        # Independent, and the slowest steps of the start: run side by side.
        setup = [
            subprocess.Popen(
                [python, "manage.py", command, "--noinput", "-v0"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for command in ("migrate", "collectstatic")
        ]
        for step in setup:
            output, _ = step.communicate(timeout=300)
            if step.returncode != 0:
                pytest.fail(f"{' '.join(step.args[1:3])} failed:\n{output[-3000:]}")

        daphne = shutil.which("daphne", path=str(Path(python).parent)) or "daphne"
        log = workdir / "daphne.log"
        server = LiveServer(
            url=url, log=log, repo=workdir / "repo", workspaces=workdir / "workspaces"
        )
        with log.open("w") as log_file:
            process = subprocess.Popen(
                [daphne, "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until_serving(url, process, server)
            yield server
        finally:
            stop_process_group(process)


@pytest.fixture(scope="package")
def browser(chromium: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Account:
    username: str
    password: str
    agent: dict[str, Any]
    api: httpx.Client


@pytest.fixture(scope="package")
def account(daphne_server: LiveServer) -> Iterator[Account]:
    """A user with one agent (the fake model, allowed to list the sandbox), set
    up through the REST API as any client would. Tests share it and each opens
    chats of its own."""
    name = f"user{uuid.uuid4().hex[:8]}"
    password = f"Pw-{uuid.uuid4().hex}"
    with httpx.Client(base_url=daphne_server.url, timeout=30) as api:
        created = api.post(
            "/api/auth/register",
            json={
                "username": name,
                "email": f"{name}@example.com",
                "password": password,
            },
        )
        assert created.status_code == 201, created.text
        tokens = api.post(
            "/api/auth/login", json={"username": name, "password": password}
        )
        assert tokens.status_code == 200, tokens.text
        api.headers["Authorization"] = f"Bearer {tokens.json()['access_token']}"
        agent = api.post(
            "/api/agents/",
            json={
                "name": "Sandbox helper",
                "model": FAKE_MODEL,
                "instructions": "Answer briefly.",
                "tools": [{"tool": "list_directory", "config": {}}],
            },
        )
        assert agent.status_code == 201, agent.text
        yield Account(name, password, agent.json(), api)


@contextlib.contextmanager
def watched_page(browser, **context_options: Any) -> Iterator[Any]:
    """A page in a fresh browser context. Any dialog (alert, confirm, ...) or
    uncaught page error fails the test."""
    context = browser.new_context(
        **{"viewport": {"width": 1280, "height": 800}, **context_options}
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on(
        "dialog",
        lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()),
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        yield page
    finally:
        context.close()
    assert not problems, problems


@pytest.fixture
def page(browser) -> Iterator[Any]:
    """An anonymous visitor's page."""
    with watched_page(browser) as page:
        yield page


@pytest.fixture(scope="package")
def signed_in(browser, daphne_server: LiveServer, account: Account) -> dict[str, Any]:
    """The cookies of `account` signed in through the sign-in form."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{daphne_server.url}/login/")
        page.get_by_label("Username").fill(account.username)
        page.get_by_label("Password").fill(account.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{daphne_server.url}/")
        return context.storage_state()
    finally:
        context.close()


@pytest.fixture
def chat_page(browser, daphne_server: LiveServer, signed_in) -> Iterator[Any]:
    """The chat page of `account`, its sidebar loaded."""
    from playwright.sync_api import expect

    with watched_page(browser, storage_state=signed_in) as page:
        page.goto(f"{daphne_server.url}/")
        expect(page.locator("#agents")).to_have_attribute("aria-busy", "false")
        yield page
