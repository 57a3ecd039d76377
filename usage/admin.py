"""Admin for prices, budgets (with what each has spent and reserved),
reservations (read-only) and the usage report: the same figures as
`/api/usage/` (`usage.reports`), over every user's turns or one user's."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from sessions_app.models import AgentExecution
from usage import reports
from usage.budgets import budget_status
from usage.models import Budget, BudgetReservation, ModelPrice, UsageReport
from usage.pricing import usd_string


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = (
        "model",
        "input_usd_per_mtok",
        "output_usd_per_mtok",
        "cache_read_usd_per_mtok",
        "cache_write_usd_per_mtok",
        "updated_at",
    )
    search_fields = ("model",)


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "scope",
        "period",
        "on_exceed",
        "spent_tokens",
        "spent_usd",
        "reserved_tokens",
        "resets_at",
    )
    list_filter = ("scope", "period", "on_exceed")
    search_fields = ("user__username", "agent__name")
    autocomplete_fields = ("user", "agent")
    readonly_fields = ("created_by", "created_at", "updated_at")

    @admin.display(description="spent tokens")
    def spent_tokens(self, budget: Budget) -> int:
        return budget_status(budget).spent_tokens

    @admin.display(description="spent USD")
    def spent_usd(self, budget: Budget) -> str | None:
        return usd_string(budget_status(budget).spent_usd)

    @admin.display(description="reserved tokens")
    def reserved_tokens(self, budget: Budget) -> int:
        return budget_status(budget).reserved_tokens

    @admin.display(description="resets at")
    def resets_at(self, budget: Budget) -> Any:
        return budget_status(budget).resets_at or "never"

    def save_model(
        self, request: HttpRequest, obj: Budget, form: Any, change: bool
    ) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(BudgetReservation)
class BudgetReservationAdmin(admin.ModelAdmin):
    list_display = ("budget", "execution", "tokens", "usd", "created_at")
    search_fields = ("execution__id",)
    readonly_fields = ("budget", "execution", "tokens", "usd", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(UsageReport)
class UsageReportAdmin(admin.ModelAdmin):
    """The report instead of a list of executions (`?group_by=&from=&to=&user=`)."""

    fields = ("agent", "user", "model", "requests", "input_tokens", "output_tokens")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        error, report, query = "", None, None
        try:
            # A field of the admin's form left empty means its default.
            given = {name: value for name, value in request.GET.items() if value}
            query = reports.parse(given, timezone.now().date())
        except ValueError as exc:
            error = str(exc)
        executions = AgentExecution.objects.all()
        user = request.GET.get("user", "").strip()
        if user:
            executions = executions.filter(user__username=user)
        if query is not None:
            report = reports.report(executions, query)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Usage report",
            "groups": reports.GROUPS,
            "query": query,
            "user_filter": user,
            "report": report,
            "error": error,
        }
        return TemplateResponse(request, "admin/usage/report.html", context)
