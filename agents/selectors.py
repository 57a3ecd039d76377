"""Reads of agents and listings, scoped to what a user may see.

Public surface:
    agents_visible_to(user)     own agents plus every active public agent
    agents_owned_by(user)
    agents_runnable_by(*, user) agents whose turns the user may start
    agent_answers(*, agent, user)   the same rule, on an agent already loaded
    agent_config_at(*, agent, version)  the config the agent runs with at a version
    delegation_target(*, owner_id, agent_id)  the agent a delegation of an agent
                                owned by `owner_id` may run now, or None
    listings_visible_to(user)   own listings plus every approved listing

"Runnable" is narrower than "visible": an inactive agent runs for nobody, not
even its owner (who still sees it, to switch it back on), and a private agent
runs only for its owner. Staff may run any active agent (the admin's "Try it"
page runs other users' private agents in a session of the staff user).
"""

from __future__ import annotations

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
        return agent.config_snapshot()
    config: dict[str, Any] = AgentVersion.objects.values_list("config", flat=True).get(
        agent=agent, version=version
    )
    return config


def delegation_target(*, owner_id: Any, agent_id: Any) -> Agent | None:
    """The agent `agent_id`, if an agent owned by `owner_id` may hand work to it
    now: the owner's own or a public one, and active (checked on every run)."""
    return (
        Agent.objects.filter(
            Q(owner_id=owner_id) | Q(visibility=Agent.Visibility.PUBLIC),
            pk=agent_id,
            is_active=True,
        )
        .prefetch_related("tools")
        .first()
    )


def listings_visible_to(user: User) -> QuerySet[Listing]:
    return Listing.objects.filter(Q(publisher=user) | Q(is_approved=True))
