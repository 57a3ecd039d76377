"""Writes that span an agent, its tools, its versions and marketplace listings.

Public surface:
    agent_create(owner, fields, tools) -> Agent
    agent_update(agent, fields, tools, user) -> Agent
    agent_restore_version(agent, version, user) -> Agent
    agent_delete(agent) -> bool             deletes, or deactivates an agent others use
    listing_publish(publisher, agent, title, ...) -> Listing
    listing_install(listing, user) -> Agent

Secrets (`accounts.secrets`): saving tools stores plain credential header
values as secrets of the agent's owner and keeps `{"secret": name}` references,
so neither the tools nor any version holds a value; a reference to a secret
the owner does not have is an `AgentConfigError`. A listing keeps no header
value at all (every one is masked, `model_settings.extra_headers` too), and an
installed agent gets its header names with empty values for its new owner to
fill in.

The version rule lives here: a change to anything an agent runs with (the
config fields of `models.CONFIG_FIELDS` or its tools) bumps `Agent.version`
and writes an `AgentVersion` holding `Agent.config_snapshot()`; a change of
name or description does not. Callers validate input first (the serializers
and admin forms use `agents.validation`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from accounts import secrets
from accounts.models import User
from agents.factory import AgentConfigError
from agents.models import (
    CONFIG_FIELDS,
    DEFAULT_APPROVAL_TTL_SECONDS,
    EDITABLE_FIELDS,
    Agent,
    AgentTool,
    AgentVersion,
    Listing,
)


def _runtime_config(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """What decides a version: the snapshot minus name and description (and
    an unset workflow, which versions stored before workflows lack)."""
    return {
        k: v
        for k, v in snapshot.items()
        if k not in ("name", "description") and not (k == "workflow" and v is None)
    }


def _with_stored_secrets(
    agent: Agent, tools: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """`tools` with plain credential header values moved into the owner's secrets."""
    try:
        return secrets.tool_headers_store(
            owner_id=agent.owner_id, tools=tools, name_prefix=agent.slug
        )
    except secrets.SecretReferenceError as exc:
        raise AgentConfigError(str(exc)) from None


def _replace_tools(agent: Agent, tools: Iterable[Mapping[str, Any]]) -> None:
    tools = _with_stored_secrets(agent, tools)
    agent.tools.all().delete()
    AgentTool.objects.bulk_create(
        AgentTool(
            agent=agent,
            tool=entry["tool"],
            config=entry.get("config") or {},
            enabled=entry.get("enabled", True),
            requires_approval=entry.get("requires_approval", False),
            approval_ttl_seconds=entry.get(
                "approval_ttl_seconds", DEFAULT_APPROVAL_TTL_SECONDS
            ),
            allow_edit=entry.get("allow_edit", False),
            position=position,
        )
        for position, entry in enumerate(tools)
    )


def _write_version(agent: Agent, user: User | None, notes: str = "") -> AgentVersion:
    return AgentVersion.objects.create(
        agent=agent,
        version=agent.version,
        config=agent.config_snapshot(),
        created_by=user,
        notes=notes,
    )


def _save_new(agent: Agent) -> None:
    """Saves a new agent, choosing another slug if a concurrent save took it."""
    for _attempt in range(5):
        agent.slug = agent.unique_slug()
        try:
            with transaction.atomic():
                agent.save(force_insert=True)
            return
        except IntegrityError:
            continue
    agent.save(force_insert=True)


@transaction.atomic
def agent_create(
    *,
    owner: User,
    fields: Mapping[str, Any],
    tools: Iterable[Mapping[str, Any]] = (),
    notes: str = "Created.",
) -> Agent:
    """Creates an agent (dynamic, private and active unless `fields` say otherwise)
    at version 1 with its tools and its first AgentVersion."""
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"agent_create got fields it does not set: {sorted(unknown)}")
    agent = Agent(owner=owner, **fields)
    agent.version = 1
    _save_new(agent)
    _replace_tools(agent, tools)
    _write_version(agent, owner, notes)
    return agent


@transaction.atomic
def agent_update(
    *,
    agent: Agent,
    fields: Mapping[str, Any],
    tools: Iterable[Mapping[str, Any]] | None = None,
    user: User | None = None,
    notes: str = "",
) -> Agent:
    """Applies `fields` (and replaces the tools when `tools` is given).

    Bumps the version and records an AgentVersion when the runtime config
    changed. The agent row is locked for the duration, so concurrent edits
    get consecutive versions.
    """
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    before = _runtime_config(agent.config_snapshot())
    for name in EDITABLE_FIELDS:
        if name in fields:
            setattr(agent, name, fields[name])
    if tools is not None:
        _replace_tools(agent, tools)
    changed = _runtime_config(agent.config_snapshot()) != before
    if changed:
        agent.version += 1
    agent.save()
    if changed:
        _write_version(agent, user, notes)
    return agent


def agent_record_change(*, agent: Agent, user: User | None, notes: str = "") -> Agent:
    """Records a change already saved elsewhere (the admin saves the agent and
    its tool inlines itself): moves plain credential header values into
    secrets, then bumps the version if the config differs from the newest
    AgentVersion, or writes the first one."""
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        for tool in agent.tools.all():
            [entry] = _with_stored_secrets(agent, [tool.as_config()])
            if entry["config"] != tool.config:
                AgentTool.objects.filter(pk=tool.pk).update(config=entry["config"])
        latest = agent.versions.order_by("-version").first()
        current = _runtime_config(agent.config_snapshot())
        if latest is not None and _runtime_config(latest.config) == current:
            return agent
        if latest is not None:
            agent.version = max(agent.version, latest.version) + 1
            agent.save(update_fields=["version", "updated_at"])
        _write_version(agent, user, notes)
        return agent


def agent_restore_version(*, agent: Agent, version: int, user: User) -> Agent:
    """Makes the config of `version` current again, as a new version.

    Raises:
        AgentVersion.DoesNotExist: the agent has no such version.
    """
    snapshot = agent.versions.get(version=version).config
    fields = {k: snapshot[k] for k in CONFIG_FIELDS if k in snapshot}
    return agent_update(
        agent=agent,
        fields=fields,
        tools=snapshot.get("tools", []),
        user=user,
        notes=f"Restored from version {version}.",
    )


def agent_delete(*, agent: Agent) -> bool:
    """Deletes `agent`, or deactivates it when other users have sessions with it.

    Other users' sessions, events and artifacts are their history, and
    deleting the agent would cascade them away; deactivated, it stops
    answering them (and everyone), and its owner still sees it. The agent's
    row is locked meanwhile: a session opened concurrently waits for the
    outcome. Returns whether the agent was deleted.
    """
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        if agent.sessions.exclude(user_id=agent.owner_id).exists():
            if agent.is_active:
                agent.is_active = False
                agent.save(update_fields=["is_active", "updated_at"])
            return False
        agent.delete()
        return True


def listing_publish(
    *,
    publisher: User,
    agent: Agent,
    title: str,
    description: str = "",
    category: str = "",
    tags: list[str] | None = None,
) -> Listing:
    """Publishes a snapshot of `agent` (which `publisher` owns) to the marketplace.

    The snapshot's header values are masked: a listing holds no secret, nor
    the name of one. Approved at once unless AGENTRY_MARKETPLACE_MODERATION is on.
    """
    return Listing.objects.create(
        publisher=publisher,
        source_agent=agent,
        config=secrets.agent_config_mask(agent.config_snapshot()),
        title=title,
        description=description,
        category=category,
        tags=list(tags or []),
        is_approved=not settings.AGENTRY_MARKETPLACE_MODERATION,
    )


@transaction.atomic
def listing_install(*, listing: Listing, user: User) -> Agent:
    """Creates a private agent owned by `user` from the listing's snapshot.

    Header values are left empty for `user` to fill in: whatever the listing
    holds (a mask, or a value published before listings were masked) is not
    `user`'s to send.

    The copy hands work only to agents `user` may use: its delegate tools'
    targets and workflow steps are checked for the new owner as a save
    checks them.

    Raises:
        AgentConfigError: a target is one `user` cannot see (the publisher's
            private agent, say) or no longer active; nothing is created.
    """
    from agents.delegation import check_targets

    snapshot = secrets.agent_config_blank(listing.config)
    fields = {k: snapshot[k] for k in CONFIG_FIELDS if k in snapshot}
    check_targets(
        owner=user,
        agent_id=None,
        kind=fields.get("kind") or Agent.Kind.DYNAMIC,
        tools=snapshot.get("tools", []),
        workflow=fields.get("workflow"),
    )
    fields["name"] = snapshot.get("name") or listing.title
    fields["description"] = snapshot.get("description", listing.description)
    fields["visibility"] = Agent.Visibility.PRIVATE
    fields["is_active"] = True
    agent = agent_create(
        owner=user,
        fields=fields,
        tools=snapshot.get("tools", []),
        notes=f"Installed from marketplace listing {listing.pk}.",
    )
    Listing.objects.filter(pk=listing.pk).update(install_count=F("install_count") + 1)
    return agent
