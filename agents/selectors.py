"""Reads of agents and listings, scoped to what a user may see.

Public surface:
    agents_visible_to(user)     own agents plus every active public agent
    agents_owned_by(user)
    listings_visible_to(user)   own listings plus every approved listing
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from accounts.models import User
from agents.models import Agent, Listing


def agents_owned_by(user: User) -> QuerySet[Agent]:
    return Agent.objects.filter(owner=user)


def agents_visible_to(user: User) -> QuerySet[Agent]:
    return Agent.objects.filter(
        Q(owner=user) | Q(visibility=Agent.Visibility.PUBLIC, is_active=True)
    )


def listings_visible_to(user: User) -> QuerySet[Listing]:
    return Listing.objects.filter(Q(publisher=user) | Q(is_approved=True))
