"""`manage.py seed_agents` loads agent definitions idempotently, all or nothing."""

from __future__ import annotations

import io
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.management import CommandError, call_command

from agents.factory import build_agent, validate_agent_config
from agents.management.commands.seed_agents import DEFAULT_FILE
from agents.models import Agent, AgentVersion
from testing.live import outside_env

pytestmark = pytest.mark.django_db

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEMO_SLUGS = {
    "repository-assistant",
    "task-extractor",
    "chat",
    "delegating-assistant",
    "research-planner",
    "research-writer",
    "research-workflow",
}


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_agents", *args, stdout=out)
    return out.getvalue()


def rows():
    return sorted(
        (a.slug, a.version, a.owner_id, a.tools.count()) for a in Agent.objects.all()
    )


def write(tmp_path, data, name="agents.yaml"):
    path = tmp_path / name
    text = json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data)
    path.write_text(text)
    return str(path)


def test_demo_agents_are_seeded_and_usable(user):
    seed("--owner", user.username)
    agents = {a.slug: a for a in Agent.objects.filter(owner=user)}
    assert set(agents) == DEMO_SLUGS
    assert all(a.model == "" and a.version == 1 for a in agents.values())
    assistant = agents["repository-assistant"]
    assert sorted(t.tool for t in assistant.tools.all()) == [
        "find_files",
        "grep_search",
        "list_directory",
        "read_file",
    ]
    assert agents["task-extractor"].output_schema["required"] == ["title", "priority"]
    assert AgentVersion.objects.filter(agent__owner=user).count() == len(DEMO_SLUGS)
    # Slugs in the file became the ids of the agents seeded before.
    [delegate] = agents["delegating-assistant"].tools.all()
    assert delegate.config["agent"] == str(assistant.pk)
    steps = agents["research-workflow"].workflow["steps"]
    assert [(s["name"], s["agent"]) for s in steps] == [
        ("plan", str(agents["research-planner"].pk)),
        ("write", str(agents["research-writer"].pk)),
    ]
    for agent in agents.values():
        validate_agent_config(agent.config_snapshot())
        build_agent(agent.config_snapshot())


def test_seeded_repository_assistant_reads_the_workspace(user, settings):
    (settings.REPO_ROOT / "NOTES.md").write_text("Remember the milk.")
    seed("--owner", user.username)
    agent = Agent.objects.get(owner=user, slug="repository-assistant")
    result = build_agent(agent.config_snapshot()).run_sync("read NOTES.md")
    assert "Remember the milk." in result.output


def test_seeding_twice_changes_nothing(user):
    seed("--owner", user.username)
    before = rows(), AgentVersion.objects.count()
    output = seed("--owner", user.username)
    assert (rows(), AgentVersion.objects.count()) == before
    assert output.count("unchanged") == len(DEMO_SLUGS)


def test_a_config_change_bumps_only_that_agent(user, tmp_path):
    data = yaml.safe_load(DEFAULT_FILE.read_text())
    seed(write(tmp_path, data), "--owner", user.username)
    data["agents"][2]["instructions"] = "Answer in French."
    data["agents"][1]["description"] = "Renamed description only."
    seed(write(tmp_path, data), "--owner", user.username)
    versions = dict(Agent.objects.values_list("slug", "version"))
    assert versions == {**dict.fromkeys(DEMO_SLUGS, 1), "chat": 2}
    assert (
        Agent.objects.get(slug="task-extractor").description
        == "Renamed description only."
    )
    assert AgentVersion.objects.filter(agent__slug="chat").count() == 2


def test_demo_user_is_created_once_with_a_password_printed_once():
    first = seed("--demo-user")
    password = re.search(r"password: (\S+)", first).group(1)
    demo = get_user_model().objects.get(username="demo")
    assert demo.check_password(password)
    assert (
        set(Agent.objects.filter(owner=demo).values_list("slug", flat=True))
        == DEMO_SLUGS
    )
    second = seed("--demo-user")
    assert password not in second and "password: " not in second
    # Instead, how to set a new one.
    assert "manage.py changepassword demo" in second
    assert get_user_model().objects.filter(username="demo").count() == 1


def test_json_files_and_explicit_slugs(user, tmp_path):
    data = [{"name": "Helper Bot", "slug": "helper", "model": "test"}]
    path = write(tmp_path, data, "agents.json")
    seed(path, "--owner", user.username)
    seed(path, "--owner", user.username)
    assert list(Agent.objects.values_list("slug", "name", "version")) == [
        ("helper", "Helper Bot", 1)
    ]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"name": "Broken", "tools": [{"tool": "no_such_tool"}]},
            "Broken.*Unknown tool",
        ),
        (
            {"name": "Broken", "tools": [{"tool": "read_file", "config": {"root": 5}}]},
            "Invalid config",
        ),
        ({"name": "Broken", "model": "nosuch:model"}, "Unknown model provider"),
        ({"name": "Broken", "output_schema": {"type": "string"}}, "output_schema"),
        ({"name": "Broken", "usage_limits": {"request_limit": -1}}, "usage_limits"),
        ({"name": "Broken", "colour": "red"}, "unknown keys colour"),
        ({"description": "no name"}, "needs a name"),
    ],
)
def test_a_bad_definition_writes_nothing(tmp_path, bad, message):
    path = write(tmp_path, {"agents": [{"name": "Fine", "model": "test"}, bad]})
    with pytest.raises(CommandError, match=message):
        seed(path, "--demo-user")
    assert not Agent.objects.exists()
    assert not get_user_model().objects.filter(username="demo").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [("agents: [", "not valid YAML"), ("just a string", "list of agents")],
)
def test_unreadable_files_are_command_errors(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        seed(str(path), "--demo-user")
    with pytest.raises(CommandError, match="Cannot read"):
        seed(str(tmp_path / "missing.yaml"), "--demo-user")


def test_a_named_owner_must_exist():
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        seed("--owner", "nobody")


# Three cold starts of manage.py (migrate, then seed twice): each imports the
# whole project, several seconds of CPU on a busy machine.
@pytest.mark.slow
@pytest.mark.timeout(360)
def test_bare_command_seeds_the_demo_user_once_in_a_real_process(tmp_path):
    """`manage.py seed_agents` with no arguments (DESIGN section 7): the demo
    user owns the agents, its password is printed once, a second run changes
    nothing."""
    env = outside_env()
    database = tmp_path / "seed.sqlite3"
    env.update(
        DEBUG="0",
        SECRET_KEY="seed-test-" + "x" * 50,
        DATABASE_URL=f"sqlite:///{database}",
        REPO_ROOT=str(tmp_path / "workspace"),
    )

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    migrated = manage("migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    first = manage("seed_agents")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("created ") == len(DEMO_SLUGS)
    password = re.search(r"password: (\S+)", first.stdout).group(1)

    second = manage("seed_agents")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("unchanged") == len(DEMO_SLUGS)
    assert password not in second.stdout and "password: " not in second.stdout
    assert "manage.py changepassword demo" in second.stdout

    with sqlite3.connect(database) as db:
        owners = db.execute(
            "SELECT DISTINCT u.username, u.password FROM agents_agent a"
            " JOIN accounts_user u ON u.id = a.owner_id"
        ).fetchall()
        versions = db.execute("SELECT COUNT(*) FROM agents_agentversion").fetchone()
    assert [username for username, _ in owners] == ["demo"]
    # The process hashed it with Django's default hasher (the suite's is MD5).
    assert PBKDF2PasswordHasher().verify(password, owners[0][1])
    assert versions == (len(DEMO_SLUGS),)


def test_missing_workspace_is_created_with_a_readme(user, settings, tmp_path):
    settings.REPO_ROOT = tmp_path / "fresh" / "workspace"
    seed("--owner", user.username)
    assert "REPO_ROOT" in (settings.REPO_ROOT / "README.md").read_text()
    (settings.REPO_ROOT / "README.md").write_text("mine")
    seed("--owner", user.username)
    assert (settings.REPO_ROOT / "README.md").read_text() == "mine"
