"""The API as a newcomer meets it, against one live server.

A client generated from the live schema by openapi-python-client works unedited:
the schema at /api/schema/ is fetched from a running server, a client package is
generated from it offline (no formatting hooks), every one of its modules is
imported, and the generated functions register, log in, create an agent and a
session and send a message. The README's REST walk-through runs as written.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from testing.live import LiveServer, server_env

# The module's first test also waits for the server's migrations and the
# client's generation, which take minutes on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "agentry_generated_client"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("generated-client")
    env = server_env(
        database_url=f"sqlite:///{root / 'db.sqlite3'}",
        redis_url=None,
        model_url=None,
        repo_root=root / "workspace",
        AGENTRY_DEFAULT_MODEL="offline",
        AGENTRY_OFFLINE_WORD_DELAY="0",
    )
    with LiveServer(env, root / "logs") as live:
        yield live


@pytest.fixture(scope="module")
def client_package(
    server: LiveServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModuleType]:
    work = tmp_path_factory.mktemp("client")
    schema = httpx.get(f"{server.url}/api/schema/", timeout=10, trust_env=False)
    assert schema.status_code == 200, schema.text[:500]
    (work / "schema.yaml").write_bytes(schema.content)
    # No post hooks: the generator formats its output with ruff by default,
    # which a user may not have; the generated code must import without it.
    (work / "config.yaml").write_text(
        f"post_hooks: []\npackage_name_override: {PACKAGE}\n"
    )
    done = subprocess.run(
        [
            str(GENERATOR if GENERATOR.exists() else shutil.which(GENERATOR.name)),
            "generate",
            "--path",
            str(work / "schema.yaml"),
            "--config",
            str(work / "config.yaml"),
            "--meta",
            "none",
            "--output-path",
            str(work / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(work))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(work))
        for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def test_every_generated_module_imports(client_package: ModuleType) -> None:
    names = [
        info.name
        for info in pkgutil.walk_packages(client_package.__path__, f"{PACKAGE}.")
    ]
    assert f"{PACKAGE}.api.auth.auth_login_create" in names
    failures = {}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # every failure is reported, not just the first
            failures[name] = repr(exc)
    assert failures == {}


def test_a_generated_client_registers_logs_in_and_chats(
    server: LiveServer, client_package: ModuleType
) -> None:
    def load(name: str) -> ModuleType:
        return importlib.import_module(f"{PACKAGE}.{name}")

    models = load("models")
    register = load("api.auth.auth_register_create")
    login = load("api.auth.auth_login_create")
    create_agent = load("api.agents.agents_create")
    create_session = load("api.sessions.sessions_create")
    send_message = load("api.sessions.sessions_messages_create")

    # Register and log in are anonymous operations: a plain client calls them.
    anonymous = client_package.Client(base_url=server.url)
    user = register.sync(
        client=anonymous,
        body=models.RegisterRequest(
            username="generated", email="generated@example.com", password="Pw-12345678!"
        ),
    )
    assert isinstance(user, models.User), user
    assert user.username == "generated"
    tokens = login.sync(
        client=anonymous,
        body=models.LoginRequest(username="generated", password="Pw-12345678!"),
    )
    assert isinstance(tokens, models.TokenPair), tokens

    client = client_package.AuthenticatedClient(
        base_url=server.url, token=tokens.access_token
    )
    agent = create_agent.sync(
        client=client,
        body=models.AgentRequest(name="Helper", instructions="Answer briefly."),
    )
    assert isinstance(agent, models.Agent), agent
    session = create_session.sync(
        client=client, body=models.SessionRequest(agent=agent.id)
    )
    assert isinstance(session, models.Session), session

    answer = send_message.sync(
        str(session.id), client=client, body=models.MessageRequest(content="hello")
    )
    assert isinstance(answer, models.TurnAnswer), answer
    # The answer is typed all the way down: an Execution and its Events.
    assert isinstance(answer.execution, models.Execution)
    assert answer.execution.status == models.StatusEnum.SUCCEEDED
    assert answer.execution.input_ == "hello"
    assert all(isinstance(event, models.Event) for event in answer.events)
    authors = [event.author for event in answer.events]
    assert authors[0] == models.AuthorEnum.USER
    assert answer.events[-1].turn_complete is True


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_readme_rest_walk_through_runs_as_written(server: LiveServer) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## REST walk-through", 1)[1]
    script = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert script is not None
    text = script.group(1).replace("http://127.0.0.1:8000", server.url)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", text],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The last step prints the agent's answer to the message.
    assert done.stdout.strip().splitlines()[-1].strip(), done.stdout
