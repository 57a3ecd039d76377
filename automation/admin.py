"""Admin: schedules with their next and last runs, webhook delivery attempts."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from automation.models import Schedule, WebhookDelivery


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
class WebhookDeliveryAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
