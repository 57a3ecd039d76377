"""Admin for agents (with their tools inline and versions read-only) and listings.

The forms validate with the same functions as the REST API, and saving an
agent goes through `agents.services.agent_record_change`, so an edit in the
admin bumps the version exactly like one through the API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import secrets
from accounts.authenticated import authenticated_user
from agents import delegation, services
from agents.factory import AgentConfigError, validate_model_name, validate_output_schema
from agents.models import (
    EDITABLE_FIELDS,
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
from tools.registry import registry


def _tool_choices() -> list[tuple[str, str]]:
    return [(kind.name, f"{kind.name} ({kind.category})") for kind in registry.kinds()]


class AgentToolForm(forms.ModelForm[AgentTool]):
    tool = forms.ChoiceField(choices=_tool_choices)

    class Meta:
        model = AgentTool
        fields = [*TOOL_ENTRY_FIELDS, "position"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.initial.get("tool") or getattr(self.instance, "tool", "")
        tool_field = self.fields["tool"]
        if current and current not in registry:
            assert isinstance(tool_field, forms.ChoiceField)
            # Keep a kind that is no longer registered visible (and refusable).
            tool_field.choices = [
                *_tool_choices(),
                (current, f"{current} (not registered)"),
            ]

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        tool = cleaned.get("tool")
        if tool and "config" not in self.errors:
            try:
                cleaned["config"] = validate_tool_entry(
                    tool, cleaned.get("config") or {}
                )
            except AgentConfigError as exc:
                self.add_error("config", str(exc))
        return cleaned


class AgentToolFormSet(
    forms.BaseInlineFormSet[AgentTool, Agent, forms.ModelForm[AgentTool]]
):
    def clean(self) -> None:
        """Header values may name only secrets of the agent's owner."""
        super().clean()
        owner_id = getattr(self.instance, "owner_id", None)
        tools = [
            {
                "tool": form.cleaned_data["tool"],
                "config": form.cleaned_data["config"],
                "enabled": form.cleaned_data.get("enabled", True),
            }
            for form in self.forms
            if form.is_valid()
            and form.cleaned_data.get("tool")
            and not form.cleaned_data.get("DELETE")
        ]
        if owner_id is None:
            return
        # Delegate targets and workflow steps (the agent form's, as cleaned).
        try:
            delegation.check_targets(
                owner=owner_id,
                agent_id=self.instance.pk if not self.instance._state.adding else None,
                kind=self.instance.kind,
                tools=tools,
                workflow=self.instance.workflow,
            )
        except AgentConfigError as exc:
            raise forms.ValidationError(str(exc)) from None
        if not tools:
            return
        try:
            secrets.tool_headers_check(owner_id=owner_id, tools=tools)
        except secrets.SecretReferenceError as exc:
            raise forms.ValidationError(str(exc)) from None


class AgentToolInline(admin.TabularInline[AgentTool, Agent]):
    model = AgentTool
    form = AgentToolForm
    formset = AgentToolFormSet
    extra = 0


class AgentVersionInline(admin.TabularInline[AgentVersion, Agent]):
    model = AgentVersion
    fields = ("version", "created_by", "created_at", "notes")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("-version",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AgentAdminForm(forms.ModelForm[Agent]):
    class Meta:
        model = Agent
        fields = ["owner", *EDITABLE_FIELDS]

    def _check(self, field: str, check: Callable[[Any], object]) -> Any:
        value = self.cleaned_data.get(field)
        try:
            check(value)
        except AgentConfigError as exc:
            raise forms.ValidationError(str(exc)) from None
        return value

    def clean_model(self) -> str:
        model: str = self._check("model", validate_model_name)
        return model

    def clean_model_settings(self) -> Any:
        return self._check("model_settings", validate_model_settings)

    def clean_output_schema(self) -> Any:
        return self._check("output_schema", validate_output_schema)

    def clean_usage_limits(self) -> Any:
        return self._check("usage_limits", validate_usage_limits)

    def clean_webhooks(self) -> Any:
        # The field left empty is no webhooks, not null.
        if self.cleaned_data.get("webhooks") is None:
            self.cleaned_data["webhooks"] = []
        return self._check("webhooks", validate_webhooks)

    def clean_workflow(self) -> Any:
        try:
            return delegation.validate_workflow(self.cleaned_data.get("workflow"))
        except AgentConfigError as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin[Agent]):
    form = AgentAdminForm
    inlines = [AgentToolInline, AgentVersionInline]
    list_display = (
        "name",
        "owner",
        "model",
        "kind",
        "visibility",
        "is_active",
        "version",
        "updated_at",
    )
    list_filter = ("kind", "visibility", "is_active")
    search_fields = ("name", "slug", "description", "model", "owner__username")
    readonly_fields = ("slug", "version", "created_at", "updated_at")
    raw_id_fields = ("owner",)
    date_hierarchy = "created_at"

    def delete_model(self, request: HttpRequest, obj: Agent) -> None:
        if not services.agent_delete(agent=obj):
            self.message_user(
                request,
                f"{obj} was deactivated, not deleted: other users have sessions "
                "with it, and their history stays.",
                messages.WARNING,
            )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        kept = [agent for agent in queryset if not services.agent_delete(agent=agent)]
        if kept:
            self.message_user(
                request,
                f"{len(kept)} agent(s) were deactivated, not deleted: other users "
                "have sessions with them, and their history stays.",
                messages.WARNING,
            )

    def save_related(
        self, request: HttpRequest, form: Any, formsets: Any, change: bool
    ) -> None:
        super().save_related(request, form, formsets, change)
        services.agent_record_change(
            agent=form.instance,
            user=authenticated_user(request),
            notes="Changed in the admin." if change else "Created in the admin.",
        )


@admin.register(AgentVersion)
class AgentVersionAdmin(admin.ModelAdmin[AgentVersion]):
    list_display = ("agent", "version", "created_by", "created_at")
    list_filter = ("created_at",)
    search_fields = ("agent__name", "agent__slug", "notes")
    readonly_fields = (
        "agent",
        "version",
        "config",
        "created_by",
        "created_at",
        "notes",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Listing)
class ListingAdmin(admin.ModelAdmin[Listing]):
    list_display = (
        "title",
        "publisher",
        "category",
        "is_approved",
        "install_count",
        "rating",
        "published_at",
    )
    list_filter = ("is_approved", "category")
    search_fields = ("title", "description", "category", "publisher__username")
    readonly_fields = ("install_count", "published_at")
    raw_id_fields = ("publisher", "source_agent")
    actions = ["approve", "unapprove"]

    @admin.action(description="Approve selected listings")
    def approve(self, request: HttpRequest, queryset: QuerySet[Listing]) -> None:
        count = queryset.update(is_approved=True)
        self.message_user(request, f"{count} listing(s) approved.", messages.SUCCESS)

    @admin.action(description="Withdraw approval of selected listings")
    def unapprove(self, request: HttpRequest, queryset: QuerySet[Listing]) -> None:
        count = queryset.update(is_approved=False)
        self.message_user(request, f"{count} listing(s) unapproved.", messages.SUCCESS)
