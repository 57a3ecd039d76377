"""Prices, budgets and the allowances running turns hold (DESIGN.md section 11).

An execution's spend lives on the execution itself (`AgentExecution.requests`,
`input_tokens`, `output_tokens`, `cost_usd`, `priced`, each its own figures);
these models only say what tokens cost and who may spend how much.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from sessions_app.models import AgentExecution

_USD = {"max_digits": 18, "decimal_places": 6}


class ModelPrice(models.Model):
    """What a model's tokens cost, before the genai-prices data bundled with
    pydantic-ai is asked. `model` is a model string (`openai-chat:gpt-4o`) or
    a shell-style glob (`openai:gpt-4o*`)."""

    model = models.CharField(max_length=200, unique=True)
    input_usd_per_mtok = models.DecimalField(**_USD)
    output_usd_per_mtok = models.DecimalField(**_USD)
    cache_read_usd_per_mtok = models.DecimalField(
        **_USD, null=True, blank=True, help_text="Empty: the input price."
    )
    cache_write_usd_per_mtok = models.DecimalField(
        **_USD, null=True, blank=True, help_text="Empty: the input price."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]

    def __str__(self) -> str:
        return self.model

    @property
    def is_glob(self) -> bool:
        return any(c in self.model for c in "*?[")


class Budget(models.Model):
    """A limit on what turns may spend in a calendar period (UTC)."""

    class Scope(models.TextChoices):
        USER = "user", "User"
        AGENT = "agent", "Agent"
        GLOBAL = "global", "Global"

    class Period(models.TextChoices):
        DAY = "day", "Day"
        WEEK = "week", "Week"
        MONTH = "month", "Month"
        TOTAL = "total", "Total"

    class OnExceed(models.TextChoices):
        BLOCK = "block", "Block"
        WARN = "warn", "Warn"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    scope = models.CharField(max_length=10, choices=Scope.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="budgets",
    )
    agent = models.ForeignKey(
        "agents.Agent",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="budgets",
    )
    period = models.CharField(max_length=10, choices=Period.choices)
    limit_usd = models.DecimalField(**_USD, null=True, blank=True)
    limit_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    on_exceed = models.CharField(
        max_length=10, choices=OnExceed.choices, default=OnExceed.BLOCK
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(scope="user", user__isnull=False, agent__isnull=True)
                    | Q(scope="agent", agent__isnull=False, user__isnull=True)
                    | Q(scope="global", user__isnull=True, agent__isnull=True)
                ),
                name="budget_scope_matches_target",
            ),
            models.CheckConstraint(
                condition=Q(limit_usd__isnull=False) | Q(limit_tokens__isnull=False),
                name="budget_has_a_limit",
            ),
        ]
        indexes = [models.Index(fields=["scope", "on_exceed"], name="budget_scope_idx")]

    def __str__(self) -> str:
        target = {
            self.Scope.USER: lambda: f"user {self.user}",
            self.Scope.AGENT: lambda: f"agent {self.agent}",
        }.get(self.scope, lambda: "everyone")()
        limits = " / ".join(
            x
            for x in (
                f"{self.limit_usd} USD" if self.limit_usd is not None else "",
                f"{self.limit_tokens} tokens" if self.limit_tokens is not None else "",
            )
            if x
        )
        return f"{self.get_period_display()} {limits} for {target} ({self.on_exceed})"

    def clean(self) -> None:
        if self.limit_usd is None and self.limit_tokens is None:
            raise ValidationError("A budget needs limit_usd, limit_tokens or both.")
        if self.scope == self.Scope.USER and (self.user_id is None or self.agent_id):
            raise ValidationError("A user budget names a user (and no agent).")
        if self.scope == self.Scope.AGENT and (self.agent_id is None or self.user_id):
            raise ValidationError("An agent budget names an agent (and no user).")
        if self.scope == self.Scope.GLOBAL and (self.user_id or self.agent_id):
            raise ValidationError("A global budget names neither user nor agent.")


class BudgetReservation(models.Model):
    """The allowance a running turn holds from one `block` budget: taken as
    the turn opens, given back (its spend written on the execution) as it
    ends, in the same transactions."""

    budget = models.ForeignKey(
        Budget, on_delete=models.CASCADE, related_name="reservations"
    )
    execution = models.ForeignKey(
        AgentExecution, on_delete=models.CASCADE, related_name="reservations"
    )
    tokens = models.PositiveBigIntegerField(default=0)
    usd = models.DecimalField(max_digits=24, decimal_places=12, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "execution"], name="reservation_one_per_budget"
            )
        ]

    def __str__(self) -> str:
        return f"{self.tokens} tokens of {self.budget} for {self.execution_id}"


class UsageReport(AgentExecution):
    """The usage report in the admin (the executions, grouped)."""

    class Meta:
        proxy = True
        verbose_name = "usage report"
        verbose_name_plural = "usage report"
