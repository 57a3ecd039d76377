"""Shapes of background runs, schedules and webhook deliveries."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from agents.models import Agent
from agents.selectors import agents_runnable_by
from automation.models import Schedule, WebhookDelivery
from core.serializers import StrictCharField, StrictModelSerializer, StrictUUIDField
from sessions_app.api.serializers import ExecutionSerializer
from sessions_app.models import Session
from sessions_app.selectors import sessions_of
from tools.netguard import url_refusal


def _http_url(value: str) -> str:
    """The network guard's rules that need no lookup (an agent's `webhooks`
    are checked the same way)."""
    problem = url_refusal(value) if value else None
    if problem is not None:
        raise serializers.ValidationError(f"{problem[0].upper()}{problem[1:]}.")
    return value


class BackgroundRunSerializer(serializers.Serializer):
    input = StrictCharField(trim_whitespace=False)
    session = StrictUUIDField(required=False, allow_null=True)
    webhook_url = serializers.URLField(
        required=False,
        allow_blank=True,
        max_length=2000,
        validators=[_http_url],
        help_text="Told (POST, signed) when the run ends.",
    )


class RunAcceptedSerializer(serializers.Serializer):
    execution = ExecutionSerializer()
    session = serializers.UUIDField()


class ScheduleSerializer(StrictModelSerializer):
    agent = serializers.PrimaryKeyRelatedField(
        queryset=Agent.objects.none(),
        pk_field=StrictUUIDField(),
        help_text="Your agent or a public one.",
    )
    session = serializers.PrimaryKeyRelatedField(
        queryset=Session.objects.none(),
        pk_field=StrictUUIDField(),
        required=False,
        allow_null=True,
        help_text="A session of yours with the agent; empty opens a new one per run.",
    )
    last_execution = StrictUUIDField(source="last_execution_id", read_only=True)

    class Meta:
        model = Schedule
        fields = [
            "id",
            "agent",
            "cron",
            "timezone",
            "input",
            "enabled",
            "session",
            "next_run_at",
            "last_run_at",
            "last_execution",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "next_run_at",
            "last_run_at",
            "last_execution",
            "created_at",
            "updated_at",
        ]

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        request = self.context.get("request")
        if request is not None and request.user.is_authenticated:
            agents = agents_runnable_by(user=request.user)
            if isinstance(self.instance, Schedule):
                agents |= Agent.objects.filter(pk=self.instance.agent_id)
            fields["agent"].queryset = agents
            fields["session"].queryset = sessions_of(request.user)
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        agent = attrs.get("agent") or getattr(self.instance, "agent", None)
        session = (
            attrs["session"]
            if "session" in attrs
            else getattr(self.instance, "session", None)
        )
        if session is not None and agent is not None and session.agent_id != agent.pk:
            raise serializers.ValidationError(
                {"session": ["The session talks to another agent."]}
            )
        return attrs


class WebhookDeliverySerializer(StrictModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = ["id", "url", "attempt", "status_code", "error", "created_at"]
        read_only_fields = fields


class WebhookSecretSerializer(serializers.Serializer):
    webhook_secret = serializers.CharField(
        help_text="Keys the HMAC-SHA256 of every webhook body; shown only now."
    )
