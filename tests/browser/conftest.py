"""Fixtures of the browser tests: Debian's Chromium driven by Playwright against
a live daphne serving the real ASGI application, with the fake OpenAI-compatible
server standing in for the model.

`chromium` finds /usr/bin/chromium; with AGENTRY_INSTALL_BROWSER=1 (set by
.ci/run) it installs the Debian package first, otherwise the tests skip with
the reason. `daphne_server` migrates and collects static files for a throwaway
database (SQLite in a temp dir, or a database of its own on the PostgreSQL
server that DATABASE_URL names) and starts daphne with DEBUG=0 through
`testing.live`, which stops its whole process group at the end. Server, model and browser live
as long as this package's tests run, not for the rest of the suite.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from testing.fake_openai import FAKE_MODEL, FakeOpenAIThread
from testing.live import LiveServer, free_port, server_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


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
class Site:
    """The live server the browser drives, and the directories it writes to."""

    server: LiveServer
    repo: Path  # its REPO_ROOT, the sandbox of the file tools
    workspaces: Path  # its AGENTRY_WORKSPACES, one private directory per user

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="package")
def daphne_server(
    chromium: Path, fake_model: FakeOpenAIThread, tmp_path_factory
) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("live")
    port = free_port()
    repo = workdir / "repo"
    repo.mkdir()
    (repo / "notes.txt").write_text("hello from the sandbox\n")
    with throwaway_database(workdir) as database_url:
        env = server_env(
            database_url=database_url,
            redis_url=None,
            model_url=fake_model.base_url,
            repo_root=repo,
            media_root=workdir / "media",
            CSRF_TRUSTED_ORIGINS=f"http://127.0.0.1:{port}",
            AGENTRY_WORKSPACES=workdir / "workspaces",
            STATIC_ROOT=workdir / "static",
            PYTHONUNBUFFERED="1",
        )
        with LiveServer(env, workdir, port=port) as server:
            yield Site(server, repo=repo, workspaces=workdir / "workspaces")


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
def account(daphne_server: Site) -> Iterator[Account]:
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
def signed_in(browser, daphne_server: Site, account: Account) -> dict[str, Any]:
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
def chat_page(browser, daphne_server: Site, signed_in) -> Iterator[Any]:
    """The chat page of `account`, its sidebar loaded."""
    from playwright.sync_api import expect

    with watched_page(browser, storage_state=signed_in) as page:
        page.goto(f"{daphne_server.url}/")
        expect(page.locator("#agents")).to_have_attribute("aria-busy", "false")
        yield page
