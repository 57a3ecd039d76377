"""Serializers of sessions, events, executions and artifacts.

Events and executions are rendered by `sessions_app.frames`, so REST lists and
streamed frames carry exactly the same fields.
"""

from __future__ import annotations

from typing import Any, cast

from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from agents.models import Agent
from agents.selectors import agent_answers, agents_visible_to
from core.serializers import (
    JSONObjectField,
    StrictCharField,
    StrictModelSerializer,
    StrictURLField,
    StrictUUIDField,
)
from sessions_app.frames import event_payload, execution_payload
from sessions_app.models import (
    SESSION_FIELDS,
    AgentExecution,
    ApprovalDecision,
    Artifact,
    Event,
    Session,
)
from sessions_app.turn_request import POLICIES

FOLLOW_LATEST = "latest"


class AgentVersionPinField(serializers.Field[Any, Any, int | str, Session]):
    """`Session.agent_version` as clients see it: the pinned number, or
    "latest" for null. Only "latest" may be written: a pin is taken when the
    session opens, never chosen."""

    default_error_messages = {
        "only_latest": f'agent_version can only be set to "{FOLLOW_LATEST}".'
    }

    def __init__(self, **kwargs: Any) -> None:
        # The whole session, so that null reads as "latest" (DRF would
        # render a null attribute as null without asking the field).
        super().__init__(source="*", **kwargs)

    def to_representation(self, session: Session) -> int | str:
        pinned = session.agent_version
        return FOLLOW_LATEST if pinned is None else pinned

    def to_internal_value(self, data: Any) -> dict[str, None]:
        if not isinstance(data, str) or data != FOLLOW_LATEST:
            self.fail("only_latest")
        return {"agent_version": None}


# drf-spectacular registers extensions in an untyped __init_subclass__.
class AgentVersionPinFieldSchema(OpenApiSerializerFieldExtension):  # type: ignore[no-untyped-call]
    """Answers carry a number or "latest"; requests may only say "latest"."""

    target_class = AgentVersionPinField

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        latest = {"type": "string", "enum": [FOLLOW_LATEST]}
        if direction == "request":
            return {
                **latest,
                "description": "Follow the agent's latest version from now on.",
            }
        return {
            "oneOf": [{"type": "integer", "minimum": 1}, latest],
            "description": "The agent version the session's turns run, or "
            '"latest". A session on another user\'s agent is pinned to the '
            "version current when it opened; the owner's sessions always "
            "follow the latest.",
        }


class SessionSerializer(StrictModelSerializer):
    agent = serializers.PrimaryKeyRelatedField(
        queryset=Agent.objects.none(),
        pk_field=StrictUUIDField(),
        help_text="Your agent or a public one.",
    )
    user = StrictUUIDField(source="user_id", read_only=True)
    agent_version = AgentVersionPinField(required=False)
    state = JSONObjectField(required=False)
    configuration = JSONObjectField(
        required=False,
        help_text='Session options, e.g. {"multitask": "reject" | "enqueue" | "interrupt"}.',
    )

    class Meta:
        model = Session
        fields = ["id", *SESSION_FIELDS, "last_sequence", "created_at", "updated_at"]
        read_only_fields = ["id", "user", "last_sequence", "created_at", "updated_at"]

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        request = self.context.get("request")
        if request is not None and request.user.is_authenticated:
            agents = agents_visible_to(request.user)
            if isinstance(self.instance, Session):
                # A session echoed back names its agent even when that agent
                # has since become private or inactive.
                agents |= Agent.objects.filter(pk=self.instance.agent_id)
            agent_field = cast(
                "serializers.PrimaryKeyRelatedField[Agent]", fields["agent"]
            )
            # The stubs type `queryset` as a Manager descriptor too.
            agent_field.queryset = agents  # type: ignore[arg-type]
        return fields

    def validate_agent(self, agent: Agent) -> Agent:
        if self.instance is not None:
            if agent.pk != self.instance.agent_id:
                raise serializers.ValidationError(
                    "A session's agent cannot be changed."
                )
            return agent
        request = self.context.get("request")
        if request is not None and not agent_answers(agent=agent, user=request.user):
            raise serializers.ValidationError(
                "This agent is inactive: activate it to open sessions with it."
            )
        return agent

    def validate_state(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise serializers.ValidationError("state must be a JSON object.")
        return value

    def validate_configuration(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise serializers.ValidationError("configuration must be a JSON object.")
        policy = value.get("multitask")
        if policy is not None and policy not in POLICIES:
            raise serializers.ValidationError(
                f"multitask must be one of {', '.join(POLICIES)}."
            )
        return value


class EventSerializer(StrictModelSerializer):
    session = StrictUUIDField(source="session_id")
    execution = StrictUUIDField(source="execution_id", allow_null=True)
    error_code = StrictCharField(allow_null=True)
    error_message = StrictCharField(allow_null=True)

    class Meta:
        model = Event
        fields = [
            "id",
            "session",
            "execution",
            "author",
            "kind",
            "content",
            "metadata",
            "actions",
            "partial",
            "turn_complete",
            "error_code",
            "error_message",
            "sequence_number",
            "created_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Event) -> dict[str, Any]:
        return event_payload(instance)


class EventPageSerializer(serializers.Serializer[Any]):
    results = EventSerializer(many=True)
    next = StrictURLField(allow_null=True)
    previous = StrictURLField(allow_null=True)


class ExecutionSerializer(StrictModelSerializer):
    session = StrictUUIDField(source="session_id")
    # The serializer's metaclass collects declared fields, so these two do
    # not replace Field's `parent` and `root` (which the stubs see in the body).
    parent = StrictUUIDField(  # type: ignore[assignment]
        source="parent_id",
        allow_null=True,
        help_text="The execution whose delegate tool or workflow step ran this one; "
        "null for a turn's root.",
    )
    root = StrictUUIDField(  # type: ignore[assignment]
        source="root_id", help_text="The turn's root execution (itself for a root)."
    )
    agent = StrictUUIDField(source="agent_id")
    user = StrictUUIDField(source="user_id")
    output = serializers.JSONField(
        allow_null=True, help_text="Final text, or the JSON object."
    )
    usage = serializers.JSONField(
        help_text="requests, input_tokens, output_tokens, cache_read_tokens, "
        "cache_write_tokens, tool_calls, cost_usd (decimal string or null), priced"
    )
    budget_warning = serializers.JSONField(
        allow_null=True, help_text="The `warn` budgets used up as the turn started."
    )
    client_message_id = StrictCharField(allow_null=True)
    error_code = StrictCharField(allow_null=True)
    error_message = StrictCharField(allow_null=True)
    trace_id = StrictCharField(
        allow_null=True,
        help_text="The W3C trace id (32 lowercase hex digits) of the turn's spans.",
    )

    class Meta:
        model = AgentExecution
        fields = [
            "id",
            "session",
            "agent",
            "agent_version",
            "parent",
            "root",
            "depth",
            "user",
            "status",
            "input",
            "client_message_id",
            "output",
            "model",
            "usage",
            "budget_warning",
            "error_code",
            "error_message",
            "created_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "trace_id",
        ]
        read_only_fields = fields

    def to_representation(self, instance: AgentExecution) -> dict[str, Any]:
        return execution_payload(instance)


class ApprovalDecisionSerializer(StrictModelSerializer):
    """One kept decision on a tool call that waited for approval."""

    args = serializers.JSONField(help_text="The arguments the model called with.")
    edited_args = serializers.JSONField(
        allow_null=True, help_text="The arguments the decider ran it with instead."
    )
    decided_by = StrictUUIDField(
        source="decided_by_id",
        allow_null=True,
        help_text="The deciding user's id; null when the approval expired.",
    )

    class Meta:
        model = ApprovalDecision
        fields = list(ApprovalDecision.AUDIT_FIELDS)
        read_only_fields = fields


class ArtifactSerializer(StrictModelSerializer):
    session = StrictUUIDField(source="session_id", read_only=True)
    execution = StrictUUIDField(source="execution_id", read_only=True, allow_null=True)
    owner = StrictUUIDField(source="owner_id", read_only=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = [
            "id",
            "session",
            "execution",
            "owner",
            "name",
            "version",
            "content_type",
            "size",
            "sha256",
            "created_at",
            "download_url",
        ]
        read_only_fields = fields

    def get_download_url(self, artifact: Artifact) -> str:
        path = f"/api/artifacts/{artifact.pk}/download/"
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class DisplayNameField(StrictCharField):
    """Any text: `sessions_app.artifacts.sanitize_display_name` cleans it up
    (NUL included) instead of refusing it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators = [
            v
            for v in self.validators
            if not isinstance(v, ProhibitNullCharactersValidator)
        ]


class ArtifactUploadSerializer(serializers.Serializer[Any]):
    file = serializers.FileField(allow_empty_file=True, use_url=False)
    name = DisplayNameField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=4096,
        help_text="Display name; defaults to the uploaded file's name.",
    )
