"""Reads of agents and listings, scoped to what a user may see.

Public surface:
    agents_visible_to(user)     own agents plus every active public agent
    agents_owned_by(user)
    agents_runnable_by(*, user) agents whose turns the user may start
    agent_answers(*, agent, user)   the same rule, on an agent already loaded
    agent_config_at(*, agent, version)  the config the agent runs with at a version
    delegation_target(*, owner_id, agent_id)  the agent a delegation of an agent
                                owned by `owner_id` may run now, or None
    agent_config_now(agent)     `agent.config_snapshot()`, its tools read once per
                                version in this process
    forget_tools(*, agent_id)   drops the kept tools of an agent (tool signals)
    listings_visible_to(user)   own listings plus every approved listing

"Runnable" is narrower than "visible": an inactive agent runs for nobody, not
even its owner (who still sees it, to switch it back on), and a private agent
runs only for its owner. Staff may run any active agent (the admin's "Try it"
page runs other users' private agents in a session of the staff user).
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from typing import Any

from django.db.models import Q, QuerySet

from accounts.models import User
from agents.models import Agent, AgentVersion, Listing


def agents_owned_by(user: User) -> QuerySet[Agent]:
    return Agent.objects.filter(owner=user)


def agents_visible_to(user: User) -> QuerySet[Agent]:
    return Agent.objects.filter(
        Q(owner=user) | Q(visibility=Agent.Visibility.PUBLIC, is_active=True)
    )


def agents_runnable_by(*, user: User) -> QuerySet[Agent]:
    """Agents whose turns `user` may start (see `agent_answers`)."""
    runnable = Agent.objects.filter(is_active=True)
    if user.is_staff:
        return runnable
    return runnable.filter(Q(owner=user) | Q(visibility=Agent.Visibility.PUBLIC))


def agent_answers(*, agent: Agent, user: User) -> bool:
    """Whether `agent`, as just loaded, still answers turns of `user`'s sessions.

    The rule of `agents_runnable_by`, checked on a row the caller already
    read, so re-checking it on every turn costs no query.
    """
    return agent.is_active and (
        agent.owner_id == user.pk
        or agent.visibility == Agent.Visibility.PUBLIC
        or user.is_staff
    )


def agent_config_at(*, agent: Agent, version: int) -> dict[str, Any]:
    """The config `agent` runs with at `version`.

    The current version is the live config (the admin writes an edit and its
    version in one transaction, so the two never disagree for a reader); an
    earlier one is its stored snapshot.

    Raises:
        AgentVersion.DoesNotExist: no snapshot of that version is stored.
    """
    if version == agent.version:
        return agent_config_now(agent)
    config: dict[str, Any] = AgentVersion.objects.values_list("config", flat=True).get(
        agent=agent, version=version
    )
    return config


def delegation_target(*, owner_id: Any, agent_id: Any) -> Agent | None:
    """The agent `agent_id`, if an agent owned by `owner_id` may hand work to it
    now: the owner's own or a public one, and active (checked on every run,
    one query; its config is `agent_config_now(agent)`)."""
    return Agent.objects.filter(
        Q(owner_id=owner_id) | Q(visibility=Agent.Visibility.PUBLIC),
        pk=agent_id,
        is_active=True,
    ).first()


_TOOL_ENTRIES: OrderedDict[tuple[Any, int], list[dict[str, Any]]] = OrderedDict()
_TOOL_ENTRIES_KEPT = 512
_tool_entries_lock = threading.Lock()


def agent_config_now(agent: Agent) -> dict[str, Any]:
    """`agent.config_snapshot()` for the row as just read, with its tools read
    once per version in this process (the most recently used 512 versions).

    Every change of an agent's tools bumps its version in the same transaction
    (`agents.services`, the admin included), so the tools of a version never
    change; everything else comes from the row. Each call gets its own copy.
    """
    key = (agent.pk, agent.version)
    with _tool_entries_lock:
        tools = _TOOL_ENTRIES.get(key)
        if tools is not None:
            _TOOL_ENTRIES.move_to_end(key)
    if tools is None:
        tools = agent.tool_entries()
        with _tool_entries_lock:
            _TOOL_ENTRIES[key] = tools
            while len(_TOOL_ENTRIES) > _TOOL_ENTRIES_KEPT:
                _TOOL_ENTRIES.popitem(last=False)
    return agent.config_snapshot(tools=copy.deepcopy(tools))


def forget_tools(*, agent_id: Any) -> None:
    """Drops this process's kept tools of an agent: a tool row written outside
    `agents.services` (a shell, a test) may not have bumped its version.
    Connected to `AgentTool`'s post_save and post_delete signals."""
    with _tool_entries_lock:
        for key in [key for key in _TOOL_ENTRIES if key[0] == agent_id]:
            del _TOOL_ENTRIES[key]


def listings_visible_to(user: User) -> QuerySet[Listing]:
    return Listing.objects.filter(Q(publisher=user) | Q(is_approved=True))
