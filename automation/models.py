"""Schedules that start runs, and the attempts to tell webhooks a run finished.

A `Schedule` fires its agent with `input` at every slot of its five-field
`cron` expression, read in `timezone`; `next_run_at` is the next slot (UTC)
and is what the scheduler claims (`automation.schedules`). A
`WebhookDelivery` is one attempt to POST an execution's end to one URL: a
delivery retried three times is three rows with attempts 1, 2 and 3. A
`PendingWebhook` is a delivery still to be made: its next attempt and when
it is due, stored so that no restart loses it (`automation.webhooks`).
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Any

from croniter import croniter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


def validate_cron(value: str) -> None:
    """A five-field cron expression (minute hour day month weekday)."""
    if not isinstance(value, str) or len(value.split()) != 5:
        raise ValidationError(
            "Enter a five-field cron expression (minute hour day month weekday)."
        )
    if not croniter.is_valid(value):
        raise ValidationError(f"{value!r} is not a valid cron expression.")


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValidationError(f"{value!r} is not a known time zone.") from None


def next_slot(cron: str, tz: str, after: dt.datetime) -> dt.datetime:
    """The first slot of `cron` (read in `tz`) strictly after `after`, in UTC."""
    local = after.astimezone(zoneinfo.ZoneInfo(tz))
    following = croniter(cron, local).get_next(dt.datetime)
    return following.astimezone(dt.UTC)


class Schedule(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="schedules"
    )
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.CASCADE, related_name="schedules"
    )
    cron = models.CharField(
        max_length=120,
        validators=[validate_cron],
        help_text="Five fields: minute hour day-of-month month day-of-week.",
    )
    timezone = models.CharField(
        max_length=64, default="UTC", validators=[validate_timezone]
    )
    input = models.TextField(help_text="The message each run starts with.")
    enabled = models.BooleanField(default=True)
    session = models.ForeignKey(
        "sessions_app.Session",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="schedules",
        help_text="Runs go to this session; empty opens a new session per run.",
    )
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_execution = models.ForeignKey(
        "sessions_app.AgentExecution",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["enabled", "next_run_at"])]

    def __str__(self) -> str:
        return f"{self.agent} at {self.cron} ({self.timezone})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Checked on every save, whatever wrote it (API, admin, shell).
        validate_cron(self.cron)
        validate_timezone(self.timezone)
        self.next_run_at = (
            next_slot(self.cron, self.timezone, timezone.now())
            if self.enabled
            else None
        )
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "next_run_at"}
        super().save(*args, **kwargs)


class WebhookDelivery(models.Model):
    execution = models.ForeignKey(
        "sessions_app.AgentExecution",
        on_delete=models.CASCADE,
        related_name="webhook_deliveries",
    )
    url = models.URLField(max_length=2000)
    attempt = models.PositiveSmallIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.url} #{self.attempt}"

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class PendingWebhook(models.Model):
    execution = models.ForeignKey(
        "sessions_app.AgentExecution", on_delete=models.CASCADE, related_name="+"
    )
    url = models.URLField(max_length=2000)
    #: The number of the next attempt.
    attempt = models.PositiveSmallIntegerField(default=1)
    #: When it may be tried; a process trying it moves this on while it does,
    #: so an attempt its process died in is tried again later.
    due_at = models.DateTimeField()

    class Meta:
        ordering = ["due_at"]
        indexes = [models.Index(fields=["due_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["execution", "url"], name="pending_webhook_unique_target"
            )
        ]

    def __str__(self) -> str:
        return f"{self.url} #{self.attempt} at {self.due_at}"
