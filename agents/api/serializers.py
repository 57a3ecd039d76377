"""Serializers of agents, their versions and tools, the tool registry and listings.

Header values are secrets' business (`accounts.secrets`): an agent's owner
reads its config as stored (plain values and `{"secret": name}` references),
anyone else reads every header value (tools' and `model_settings.extra_headers`)
masked, and listings are always read masked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from rest_framework import serializers

from accounts import secrets
from agents import delegation, selectors, services
from agents.factory import (
    MAX_INSTRUCTIONS_CHARS,
    AgentConfigError,
    validate_model_name,
    validate_output_schema,
)
from agents.models import (
    CONFIG_FIELDS,
    TOOL_ENTRY_FIELDS,
    Agent,
    AgentTool,
    AgentVersion,
    Listing,
)
from agents.validation import (
    validate_model_settings,
    validate_tool_entry,
    validate_usage_limits,
    validate_webhooks,
)
from core.serializers import (
    JSONObjectField,
    StrictCharField,
    StrictModelSerializer,
    StrictUUIDField,
)


def _config_check(check: Callable[[Any], object], value: Any) -> Any:
    try:
        check(value)
    except AgentConfigError as exc:
        raise serializers.ValidationError(str(exc)) from None
    return value


class AgentToolSerializer(StrictModelSerializer):
    tool = StrictCharField(max_length=100)
    config = JSONObjectField(required=False, default=dict)

    class Meta:
        model = AgentTool
        fields = list(TOOL_ENTRY_FIELDS)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A PATCH makes nested fields optional too, but `tools` replaces the
        # whole list: every entry must name its tool.
        if "tool" not in attrs:
            raise serializers.ValidationError({"tool": ["This field is required."]})
        try:
            attrs["config"] = validate_tool_entry(attrs["tool"], attrs.get("config"))
        except AgentConfigError as exc:
            raise serializers.ValidationError({"config": [str(exc)]}) from None
        return attrs


class AgentSerializer(StrictModelSerializer):
    """An agent with its `tools`, which are written and read as one list."""

    owner = StrictUUIDField(source="owner_id", read_only=True)
    tools = AgentToolSerializer(many=True, required=False)
    model_settings = JSONObjectField(required=False)
    output_schema = JSONObjectField(required=False, allow_null=True)
    usage_limits = JSONObjectField(required=False)
    workflow = JSONObjectField(
        required=False,
        allow_null=True,
        help_text='Workflow agents only: {"steps": [{"name", "agent", "prompt"}]}, '
        "1 to 20 steps; a prompt may use {input} and {previous} (its default).",
    )
    webhooks = serializers.ListField(
        child=StrictCharField(max_length=2000),
        required=False,
        max_length=10,
        help_text="Up to 10 distinct http(s) URLs told (POST, signed with the "
        "owner's webhook secret) when any run of the owner's with this agent "
        "ends; an address literal must be public (the network guard).",
    )

    class Meta:
        model = Agent
        fields = [
            "id",
            "owner",
            "name",
            "slug",
            "description",
            *CONFIG_FIELDS,
            "visibility",
            "is_active",
            "webhooks",
            "version",
            "tools",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "owner",
            "slug",
            "version",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {"instructions": {"max_length": MAX_INSTRUCTIONS_CHARS}}

    def validate_model(self, value: str) -> str:
        model: str = _config_check(validate_model_name, value)
        return model

    def validate_model_settings(self, value: Any) -> Any:
        return _config_check(validate_model_settings, value)

    def validate_output_schema(self, value: Any) -> Any:
        return _config_check(validate_output_schema, value)

    def validate_usage_limits(self, value: Any) -> Any:
        return _config_check(validate_usage_limits, value)

    def validate_webhooks(self, value: Any) -> Any:
        return _config_check(validate_webhooks, value)

    def validate_workflow(self, value: Any) -> Any:
        try:
            return delegation.validate_workflow(value)
        except AgentConfigError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        request = self.context.get("request")
        owner = self.instance.owner if self.instance is not None else None
        if owner is None and request is not None:
            owner = request.user
        if "tools" in attrs and owner is not None:
            try:
                secrets.tool_headers_check(owner_id=owner.pk, tools=attrs["tools"])
            except secrets.SecretReferenceError as exc:
                raise serializers.ValidationError({"tools": [str(exc)]}) from None
        if owner is not None:
            self._check_delegation(owner, attrs)
        return attrs

    def _check_delegation(self, owner: Any, attrs: dict[str, Any]) -> None:
        """Delegate targets and workflow steps: visible, no cycle, not too deep."""
        instance = self.instance
        tools = attrs.get("tools")
        if tools is None:
            tools = (
                [tool.as_config() for tool in instance.tools.all()] if instance else []
            )
        try:
            delegation.check_targets(
                owner=owner,
                agent_id=instance.pk if instance is not None else None,
                kind=attrs.get("kind", instance.kind if instance else "dynamic"),
                tools=tools,
                workflow=attrs.get("workflow", instance.workflow if instance else None),
            )
        except AgentConfigError as exc:
            field = "workflow" if "workflow" in str(exc).lower() else "tools"
            raise serializers.ValidationError({field: [str(exc)]}) from None

    def to_representation(self, instance: Agent) -> dict[str, Any]:
        data = super().to_representation(instance)
        request = self.context.get("request")
        viewer = getattr(request, "user", None)
        if getattr(viewer, "pk", None) != instance.owner_id:
            data = secrets.agent_config_mask(data)
        return data

    def create(self, validated_data: dict[str, Any]) -> Agent:
        tools = validated_data.pop("tools", [])
        owner = validated_data.pop("owner")
        try:
            return services.agent_create(
                owner=owner, fields=validated_data, tools=tools
            )
        except AgentConfigError as exc:
            raise serializers.ValidationError({"tools": [str(exc)]}) from None

    def update(self, instance: Agent, validated_data: dict[str, Any]) -> Agent:
        tools = validated_data.pop("tools", None)
        user = validated_data.pop("user", None)
        try:
            return services.agent_update(
                agent=instance, fields=validated_data, tools=tools, user=user
            )
        except AgentConfigError as exc:
            raise serializers.ValidationError({"tools": [str(exc)]}) from None


class AgentVersionSerializer(StrictModelSerializer):
    created_by = StrictUUIDField(source="created_by_id", read_only=True)

    class Meta:
        model = AgentVersion
        fields = [
            "id",
            "agent",
            "version",
            "config",
            "created_by",
            "created_at",
            "notes",
        ]
        read_only_fields = fields


class ToolKindSerializer(serializers.Serializer[Any]):
    name = StrictCharField()
    category = StrictCharField()
    description = StrictCharField()
    config_schema = serializers.JSONField(help_text="JSON Schema of the tool's config.")


class ListingSerializer(StrictModelSerializer):
    agent = serializers.PrimaryKeyRelatedField(
        queryset=Agent.objects.none(),
        pk_field=StrictUUIDField(),
        write_only=True,
        help_text="An agent you own; its current config is published.",
    )
    source_agent = StrictUUIDField(source="source_agent_id", read_only=True)
    publisher = StrictUUIDField(source="publisher_id", read_only=True)
    tags = serializers.ListField(
        child=StrictCharField(max_length=50), max_length=20, required=False
    )

    class Meta:
        model = Listing
        fields = [
            "id",
            "agent",
            "source_agent",
            "publisher",
            "title",
            "description",
            "category",
            "tags",
            "config",
            "install_count",
            "rating",
            "published_at",
            "is_approved",
        ]
        read_only_fields = [
            "id",
            "config",
            "install_count",
            "rating",
            "published_at",
            "is_approved",
        ]

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        request = self.context.get("request")
        if request is not None and request.user.is_authenticated:
            agent_field = cast(
                "serializers.PrimaryKeyRelatedField[Agent]", fields["agent"]
            )
            # The stubs type `queryset` as a Manager descriptor too.
            agent_field.queryset = selectors.agents_owned_by(request.user)  # type: ignore[arg-type]
        return fields

    def to_representation(self, instance: Listing) -> dict[str, Any]:
        data = super().to_representation(instance)
        # Listings are stored masked; one published before that is masked here.
        if isinstance(data.get("config"), dict):
            data["config"] = secrets.agent_config_mask(data["config"])
        return data

    def create(self, validated_data: dict[str, Any]) -> Listing:
        return services.listing_publish(
            publisher=validated_data.pop("publisher"),
            agent=validated_data.pop("agent"),
            **validated_data,
        )
