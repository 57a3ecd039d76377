"""REST endpoints of agents (with versions), the tool registry and the marketplace.

Visibility follows DESIGN.md §8: what a user cannot see is a 404; another
user's public agent or approved listing is readable and a 403 on writes. An
agent's version history is its owner's only (others get 404), and others read
its tools' header values masked (DESIGN.md §9).
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import Model, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from accounts import secrets
from accounts.authenticated import authenticated_user
from agents import selectors, services
from agents.api.serializers import (
    AgentSerializer,
    AgentVersionSerializer,
    ListingSerializer,
    ToolKindSerializer,
)
from agents.factory import AgentConfigError
from agents.models import Agent, Listing
from agents.validation import validate_tool_entry
from core.filters import StrictBooleanFilter, StrictFilterSet
from tools.registry import registry


class IsOwnerOrReadOnly(permissions.BasePermission):
    """Reads for anyone who can see the object; writes only for its owner."""

    owner_field = "owner_id"

    def has_object_permission(
        self, request: Request, view: APIView, obj: Model
    ) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        owner_field = getattr(view, "owner_field", self.owner_field)
        return bool(getattr(obj, owner_field) == request.user.pk)


class AgentFilter(StrictFilterSet):
    kind = django_filters.ChoiceFilter(choices=Agent.Kind.choices)
    visibility = django_filters.ChoiceFilter(choices=Agent.Visibility.choices)
    is_active = StrictBooleanFilter()

    class Meta:
        model = Agent
        fields = ["kind", "visibility", "is_active"]


@extend_schema_view(
    list=extend_schema(
        description="Your agents; with `visibility=public`, every public agent."
    ),
)
class AgentViewSet(viewsets.ModelViewSet[Agent]):
    serializer_class = AgentSerializer
    permission_classes = [permissions.IsAuthenticated, IsOwnerOrReadOnly]
    filterset_class = AgentFilter
    search_fields = ["name", "description", "slug"]
    ordering_fields = ["created_at", "updated_at", "name"]

    def get_queryset(self) -> QuerySet[Agent]:
        if getattr(self, "swagger_fake_view", False):
            return Agent.objects.none()
        user = authenticated_user(self.request)
        listing_public = self.request.query_params.get("visibility") == "public"
        if self.action == "list" and not listing_public:
            queryset = selectors.agents_owned_by(user)
        else:
            queryset = selectors.agents_visible_to(user)
        return queryset.prefetch_related("tools")

    def perform_create(self, serializer: BaseSerializer[Agent]) -> None:
        serializer.save(owner=self.request.user)

    def perform_update(self, serializer: BaseSerializer[Agent]) -> None:
        serializer.save(user=self.request.user)

    @extend_schema(
        description="Deletes the agent; when other users have sessions with it, "
        "deactivates it instead, so their history stays (204 either way)."
    )
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().destroy(request, *args, **kwargs)

    def perform_destroy(self, instance: Agent) -> None:
        services.agent_delete(agent=instance)

    def _owned_object(self) -> Agent:
        """The agent, if the caller owns it: its history is no one else's (404)."""
        owned = self.get_queryset().filter(owner=authenticated_user(self.request))
        agent = get_object_or_404(owned, pk=self.kwargs["pk"])
        self.check_object_permissions(self.request, agent)
        return agent

    @extend_schema(responses=AgentVersionSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], filter_backends=[])
    def versions(self, request: Request, pk: str | None = None) -> Response:
        agent = self._owned_object()
        # The stubs tie paginate_queryset to the viewset's own model.
        page = self.paginate_queryset(agent.versions.order_by("-version"))  # type: ignore[arg-type]
        return self.get_paginated_response(AgentVersionSerializer(page, many=True).data)

    @extend_schema(
        request=None,
        responses=AgentSerializer,
        parameters=[
            OpenApiParameter("version", OpenApiTypes.INT, OpenApiParameter.PATH)
        ],
    )
    @action(
        detail=True,
        methods=["post"],
        url_path=r"versions/(?P<version>[0-9]{1,9})/restore",
        filter_backends=[],
    )
    def restore(
        self, request: Request, pk: str | None = None, version: str = ""
    ) -> Response:
        agent = self._owned_object()
        snapshot = agent.versions.filter(version=int(version)).first()
        if snapshot is None:
            raise NotFound(f"Agent has no version {version}.")
        for entry in snapshot.config.get("tools", []):
            try:
                validate_tool_entry(entry.get("tool", ""), entry.get("config"))
            except AgentConfigError as exc:
                raise ValidationError({"tools": [str(exc)]}) from None
        try:
            secrets.tool_headers_check(
                owner_id=agent.owner_id, tools=snapshot.config.get("tools", [])
            )
        except secrets.SecretReferenceError as exc:
            raise ValidationError({"tools": [str(exc)]}) from None
        agent = services.agent_restore_version(
            agent=agent, version=int(version), user=authenticated_user(request)
        )
        return Response(self.get_serializer(agent).data)


class ToolViewSet(viewsets.ViewSet):
    """The tool kinds an agent's `tools` entries may name."""

    @extend_schema(responses=ToolKindSerializer(many=True))
    def list(self, request: Request) -> Response:
        return Response([kind.describe() for kind in registry.kinds()])


class ListingFilter(StrictFilterSet):
    category = django_filters.CharFilter(field_name="category", lookup_expr="iexact")

    class Meta:
        model = Listing
        fields = ["category"]


class ListingViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Listing],
):
    """Marketplace: approved listings of everyone, plus your own."""

    serializer_class = ListingSerializer
    permission_classes = [permissions.IsAuthenticated, IsOwnerOrReadOnly]
    owner_field = "publisher_id"
    filterset_class = ListingFilter
    search_fields = ["title", "description", "category"]
    ordering_fields = ["published_at", "install_count", "rating", "title"]
    ordering = ["-published_at"]

    def get_queryset(self) -> QuerySet[Listing]:
        if getattr(self, "swagger_fake_view", False):
            return Listing.objects.none()
        return selectors.listings_visible_to(authenticated_user(self.request))

    def perform_create(self, serializer: BaseSerializer[Listing]) -> None:
        serializer.save(publisher=self.request.user)

    @extend_schema(request=None, responses={201: AgentSerializer})
    @action(
        detail=True,
        methods=["post"],
        permission_classes=[permissions.IsAuthenticated],
        filter_backends=[],
    )
    def install(self, request: Request, pk: str | None = None) -> Response:
        listing = self.get_object()
        for entry in listing.config.get("tools", []):
            try:
                validate_tool_entry(entry.get("tool", ""), entry.get("config"))
            except AgentConfigError as exc:
                raise ValidationError(
                    {"tools": [f"This listing cannot be installed here: {exc}"]}
                ) from None
        try:
            agent = services.listing_install(
                listing=listing, user=authenticated_user(request)
            )
        except AgentConfigError as exc:
            # A delegate tool or workflow step the installer may not use.
            field = "workflow" if listing.config.get("workflow") else "tools"
            raise ValidationError(
                {field: [f"This listing cannot be installed here: {exc}"]}
            ) from None
        agent = Agent.objects.prefetch_related("tools").get(pk=agent.pk)
        return Response(
            AgentSerializer(agent, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED,
        )
