"""`manage.py seed_agents [FILE] [--owner USERNAME]`

Loads agent definitions from a YAML or JSON file (by default the shipped
`agents/demo_agents.yaml`): a list of agents, or an object whose `agents` key
holds one. Each definition is matched to an existing agent by owner and slug
and updated in place, so seeding twice changes nothing; an agent's version is
bumped only when what it runs with changed (the rule of `agents.services`).

A `delegate` tool's `agent` and a workflow step's `agent` may name an agent
seeded earlier in the same file by its slug; it becomes that agent's id.

Every definition is validated with `agents.factory.validate_agent_config`
before anything is written, and the writes happen in one transaction: a bad
file is a `CommandError` naming the definition, and nothing is half-written.

Without `--owner` the agents belong to the demo user "demo", created on first
use with a random password printed once (never again), so the bare command
works on a fresh database. `--demo-user` says the same explicitly (kept for
scripts that pass it). The command also creates
`REPO_ROOT`, with a small README, when it does not exist, so the repository
assistant has something to show.
"""

from __future__ import annotations

import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.text import slugify

from accounts.models import User
from agents.delegation import DELEGATE_TOOL, validate_workflow
from agents.factory import AgentConfigError, validate_agent_config
from agents.models import EDITABLE_FIELDS, Agent
from agents.services import agent_create, agent_update
from agents.validation import validate_webhooks

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "demo_agents.yaml"
DEMO_USERNAME = "demo"
#: Stands in for a slug reference until the agent it names exists (see `_by_slug`).
SLUG_REFERENCE = uuid.UUID("5eed0000-0000-4000-8000-000000000000")
DEFINITION_KEYS = {"slug", "tools", *EDITABLE_FIELDS}
WORKSPACE_README = """\
# Workspace

This directory is `REPO_ROOT`: the only place Agentry's file tools may read
(and, for agents given `write_file`, write). Put a repository here and ask the
repository assistant about it, e.g. "list the files" or "search for TODO".
"""


class Command(BaseCommand):
    help = "Load agent definitions (YAML or JSON) idempotently."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "file",
            nargs="?",
            default=str(DEFAULT_FILE),
            help="YAML or JSON file of agent definitions (default: the demo agents).",
        )
        owner = parser.add_mutually_exclusive_group()
        owner.add_argument(
            "--demo-user",
            action="store_true",
            help='Owned by the user "demo" (the default when no --owner is given).',
        )
        owner.add_argument(
            "--owner",
            help='Username of the agents\' owner (default: the user "demo", '
            "created and its password printed if missing).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        definitions = [
            self._checked(index, definition)
            for index, definition in enumerate(self._load(path), start=1)
        ]
        slugs = [d["slug"] for d in definitions]
        if duplicates := sorted({s for s in slugs if slugs.count(s) > 1}):
            raise CommandError(f"{path}: slug used twice: {', '.join(duplicates)}.")

        password = None
        with transaction.atomic():
            if options["owner"]:
                owner = self._owner(options["owner"])
            else:
                owner, password = self._demo_user()
            try:
                outcomes = [self._seed(owner, d) for d in definitions]
            except AgentConfigError as exc:
                # Checked against the owner only when written: secret references.
                raise CommandError(f"{path}: {exc}") from None

        self._ensure_workspace()
        for line in outcomes:
            self.stdout.write(line)
        if password is not None:
            self.stdout.write(
                self.style.SUCCESS(
                    f'Created the demo user "{DEMO_USERNAME}" with password: {password}\n'
                    "It is shown only this once."
                )
            )
        elif not options["owner"]:
            self.stdout.write(
                f'Sign in as "{DEMO_USERNAME}" with the password shown when it was '
                "created; to set a new one: .venv/bin/python manage.py "
                f"changepassword {DEMO_USERNAME}"
            )

    # ---- reading -----------------------------------------------------------------

    @staticmethod
    def _load(path: Path) -> list[Any]:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {path}: {exc}") from None
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                data = yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise CommandError(f"{path} is not valid YAML or JSON: {exc}") from None
        if isinstance(data, dict) and "agents" in data:
            data = data["agents"]
        if not isinstance(data, list):
            raise CommandError(
                f"{path} must hold a list of agents (or an object with an `agents` list)."
            )
        return data

    @staticmethod
    def _checked(index: int, definition: Any) -> dict[str, Any]:
        where = f"agent #{index}"
        if not isinstance(definition, dict):
            raise CommandError(f"{where} must be an object.")
        name = definition.get("name")
        if not isinstance(name, str) or not name.strip():
            raise CommandError(f"{where} needs a name.")
        where = f"agent #{index} ({name})"
        if unknown := sorted(set(definition) - DEFINITION_KEYS):
            raise CommandError(f"{where}: unknown keys {', '.join(unknown)}.")
        slug = definition.get("slug") or slugify(name)
        if not isinstance(slug, str) or slug != slugify(slug) or not slug:
            raise CommandError(
                f"{where}: slug must be lowercase letters, digits and dashes."
            )
        visibility = definition.get("visibility", Agent.Visibility.PRIVATE)
        if visibility not in Agent.Visibility.values:
            raise CommandError(f"{where}: visibility must be private or public.")
        definition = _with_slug_placeholders(definition)
        webhooks = definition.get("webhooks") or []
        try:
            validate_webhooks(webhooks)
            workflow = validate_workflow(definition.get("workflow"))
            checked = validate_agent_config(
                {
                    "model": "",
                    "instructions": "",
                    "model_settings": {},
                    "output_schema": None,
                    "usage_limits": {},
                    "kind": Agent.Kind.DYNAMIC,
                    "tools": [],
                    **{
                        k: v
                        for k, v in definition.items()
                        if v is not None or k == "output_schema"
                    },
                }
            )
        except AgentConfigError as exc:
            raise CommandError(f"{where}: {exc}") from None
        return {
            **checked,
            "workflow": workflow,
            "name": name.strip(),
            "slug": slug,
            "description": definition.get("description") or "",
            "visibility": visibility,
            "is_active": bool(definition.get("is_active", True)),
            "webhooks": webhooks,
        }

    # ---- writing -----------------------------------------------------------------

    @staticmethod
    def _owner(username: str) -> User:
        User = get_user_model()
        try:
            return User.objects.get(username=username)
        except User.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None

    @staticmethod
    def _demo_user() -> tuple[User, str | None]:
        User = get_user_model()
        existing = User.objects.filter(username=DEMO_USERNAME).first()
        if existing is not None:
            return existing, None
        password = secrets.token_urlsafe(12)
        user = User.objects.create_user(
            username=DEMO_USERNAME, email="demo@example.com", password=password
        )
        return user, password

    def _seed(self, owner: User, definition: dict[str, Any]) -> str:
        definition = _by_slug(owner, definition)
        fields = {key: definition[key] for key in EDITABLE_FIELDS}
        tools = definition["tools"]
        agent = Agent.objects.filter(owner=owner, slug=definition["slug"]).first()
        if agent is None:
            agent = agent_create(
                owner=owner, fields=fields, tools=tools, notes="Seeded."
            )
            if agent.slug != definition["slug"]:
                # The services derive a slug from the name; the file's slug is
                # what the next seed matches on.
                Agent.objects.filter(pk=agent.pk).update(slug=definition["slug"])
            return f"created  {definition['slug']} (version {agent.version})"
        before = agent.version
        agent = agent_update(
            agent=agent, fields=fields, tools=tools, user=owner, notes="Seeded."
        )
        if agent.version != before:
            return f"updated  {definition['slug']} (version {agent.version})"
        return f"unchanged {definition['slug']} (version {agent.version})"

    @staticmethod
    def _ensure_workspace() -> None:
        root = Path(settings.REPO_ROOT)
        if root.exists():
            return
        root.mkdir(parents=True)
        (root / "README.md").write_text(WORKSPACE_README, encoding="utf-8")


def _slug_placeholder(slug: str) -> str:
    return str(uuid.uuid5(SLUG_REFERENCE, slug))


def _is_id(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _with_slug_placeholders(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition with slug references replaced by placeholder ids, so that
    it validates before the agents it names exist."""
    tools = []
    for entry in definition.get("tools") or []:
        config = entry.get("config") if isinstance(entry, dict) else None
        if entry.get("tool") == DELEGATE_TOOL and isinstance(config, dict):
            agent = config.get("agent")
            if isinstance(agent, str) and not _is_id(agent):
                entry = {
                    **entry,
                    "config": {**config, "agent": _slug_placeholder(agent)},
                }
        tools.append(entry)
    workflow = definition.get("workflow")
    if isinstance(workflow, dict) and isinstance(workflow.get("steps"), list):
        workflow = {
            "steps": [
                {**step, "agent": _slug_placeholder(step["agent"])}
                if isinstance(step, dict)
                and isinstance(step.get("agent"), str)
                and not _is_id(step["agent"])
                else step
                for step in workflow["steps"]
            ]
        }
    return {**definition, "tools": tools, "workflow": workflow}


def _by_slug(owner: Any, definition: dict[str, Any]) -> dict[str, Any]:
    """Placeholder ids replaced by the ids of the owner's agents they name."""
    ids = {
        _slug_placeholder(slug): str(pk)
        for pk, slug in Agent.objects.filter(owner=owner).values_list("pk", "slug")
    }

    def real(agent_id: str) -> str:
        if agent_id not in ids and uuid.UUID(agent_id).version == 5:
            raise AgentConfigError(
                "A delegate tool or workflow step names an agent slug that is "
                "not seeded before it."
            )
        return ids.get(agent_id, agent_id)

    tools = [
        {
            **entry,
            "config": {**entry["config"], "agent": real(entry["config"]["agent"])},
        }
        if entry["tool"] == DELEGATE_TOOL
        else entry
        for entry in definition["tools"]
    ]
    workflow = definition.get("workflow")
    if workflow:
        workflow = {
            "steps": [
                {**step, "agent": real(step["agent"])} for step in workflow["steps"]
            ]
        }
    return {**definition, "tools": tools, "workflow": workflow}
