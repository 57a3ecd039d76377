"""Serializers of prices, budgets and the usage report."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied

from agents.models import Agent
from core.serializers import StrictModelSerializer, StrictUUIDField
from usage.budgets import budget_status
from usage.models import Budget, ModelPrice
from usage.pricing import usd_string

_RATE = {"min_value": Decimal(0), "max_digits": 18, "decimal_places": 6}


class ModelPriceSerializer(StrictModelSerializer):
    input_usd_per_mtok = serializers.DecimalField(**_RATE)
    output_usd_per_mtok = serializers.DecimalField(**_RATE)
    cache_read_usd_per_mtok = serializers.DecimalField(
        **_RATE, required=False, allow_null=True
    )
    cache_write_usd_per_mtok = serializers.DecimalField(
        **_RATE, required=False, allow_null=True
    )

    class Meta:
        model = ModelPrice
        fields = [
            "id",
            "model",
            "input_usd_per_mtok",
            "output_usd_per_mtok",
            "cache_read_usd_per_mtok",
            "cache_write_usd_per_mtok",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_model(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("Name a model string or a glob.")
        return value


class BudgetSerializer(StrictModelSerializer):
    """A budget with what it has spent and reserved in its current period."""

    user = StrictUUIDField(source="user_id", required=False, allow_null=True)
    agent = StrictUUIDField(source="agent_id", required=False, allow_null=True)
    limit_usd = serializers.DecimalField(**_RATE, required=False, allow_null=True)
    limit_tokens = serializers.IntegerField(
        min_value=0, max_value=2**62, required=False, allow_null=True
    )
    spent_usd = serializers.SerializerMethodField()
    spent_tokens = serializers.SerializerMethodField()
    reserved_tokens = serializers.SerializerMethodField()
    remaining_usd = serializers.SerializerMethodField()
    remaining_tokens = serializers.SerializerMethodField()
    resets_at = serializers.SerializerMethodField()

    class Meta:
        model = Budget
        fields = [
            "id",
            "scope",
            "user",
            "agent",
            "period",
            "limit_usd",
            "limit_tokens",
            "on_exceed",
            "spent_usd",
            "spent_tokens",
            "reserved_tokens",
            "remaining_usd",
            "remaining_tokens",
            "resets_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def to_representation(self, instance: Budget) -> dict[str, Any]:
        self._status = budget_status(instance)
        return super().to_representation(instance)

    def get_spent_usd(self, budget: Budget) -> str | None:
        return usd_string(self._status.spent_usd)

    def get_spent_tokens(self, budget: Budget) -> int:
        return self._status.spent_tokens

    def get_reserved_tokens(self, budget: Budget) -> int:
        return self._status.reserved_tokens

    def get_remaining_usd(self, budget: Budget) -> str | None:
        return usd_string(self._status.remaining_usd)

    def get_remaining_tokens(self, budget: Budget) -> int | None:
        return self._status.remaining_tokens

    def get_resets_at(self, budget: Budget) -> str | None:
        resets_at = self._status.resets_at
        return resets_at.isoformat() if resets_at else None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Who may set a budget on what: a user on themself and their own
        agents, staff on anyone and `global`."""
        actor = self.context["request"].user
        current = self.instance

        def value(name: str) -> Any:
            if name in attrs:
                return attrs[name]
            return getattr(current, name) if current is not None else None

        scope = value("scope")
        user_id, agent_id = value("user_id"), value("agent_id")
        if scope == Budget.Scope.USER:
            user_id = user_id or actor.pk
            agent_id = None
            if not actor.is_staff and str(user_id) != str(actor.pk):
                raise PermissionDenied("You may set budgets on yourself only.")
            if not get_user_model().objects.filter(pk=user_id).exists():
                raise serializers.ValidationError({"user": "No such user."})
        elif scope == Budget.Scope.AGENT:
            user_id = None
            if agent_id is None:
                raise serializers.ValidationError({"agent": "Name the agent."})
            agents = Agent.objects.filter(pk=agent_id)
            if not actor.is_staff:
                agents = agents.filter(owner_id=actor.pk)
            if not agents.exists():
                raise serializers.ValidationError({"agent": "No such agent of yours."})
        elif scope == Budget.Scope.GLOBAL:
            if not actor.is_staff:
                raise PermissionDenied("Only staff set global budgets.")
            user_id = agent_id = None
        if scope is None:
            raise serializers.ValidationError({"scope": "This field is required."})
        if value("period") is None:
            raise serializers.ValidationError({"period": "This field is required."})
        if value("limit_usd") is None and value("limit_tokens") is None:
            raise serializers.ValidationError(
                "A budget needs limit_usd, limit_tokens or both."
            )
        return {**attrs, "user_id": user_id, "agent_id": agent_id}


class UsageRowSerializer(serializers.Serializer):
    key = serializers.CharField(
        help_text="The agent id, user id, model string or ISO date."
    )
    executions = serializers.IntegerField()
    requests = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost_usd = serializers.CharField(allow_null=True)


class UsageTotalSerializer(serializers.Serializer):
    executions = serializers.IntegerField()
    requests = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost_usd = serializers.CharField(allow_null=True)


class UsageReportSerializer(serializers.Serializer):
    results = UsageRowSerializer(many=True)
    total = UsageTotalSerializer()
