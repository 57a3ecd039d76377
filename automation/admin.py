"""Admin: schedules with their next and last runs, webhook delivery attempts and
the deliveries still to be made."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from automation.models import PendingWebhook, Schedule, WebhookDelivery


class _WrittenByTheDeliveries(admin.ModelAdmin):
    """Shown, never added or edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = (
        "agent",
        "owner",
        "cron",
        "timezone",
        "enabled",
        "next_run_at",
        "last_run_at",
        "last_execution",
    )
    list_filter = ("enabled", "timezone")
    search_fields = ("input", "agent__name", "owner__username")
    raw_id_fields = ("owner", "agent", "session")
    readonly_fields = ("next_run_at", "last_run_at", "last_execution", "created_at")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(_WrittenByTheDeliveries):
    list_display = ("execution", "url", "attempt", "status_code", "error", "created_at")
    list_filter = ("status_code",)
    search_fields = ("url", "execution__id")
    readonly_fields = (
        "execution",
        "url",
        "attempt",
        "status_code",
        "error",
        "created_at",
    )


@admin.register(PendingWebhook)
class PendingWebhookAdmin(_WrittenByTheDeliveries):
    """Deleting one gives that delivery up."""

    list_display = ("execution", "url", "attempt", "due_at")
    search_fields = ("url", "execution__id")
    readonly_fields = ("execution", "url", "attempt", "due_at")
