"""Admin for sessions (events inline, read-only), executions (approval
decisions inline, read-only), events and artifacts.

Events, executions and artifacts are records of what happened: the admin
shows them and lets an operator delete them, but never edits them. The
"Try it" page (linked from each agent's change form) runs one turn of an agent
through the turn runner, in a new session of the staff user, and shows its
events.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from agents.models import Agent
from agents.selectors import agent_answers
from sessions_app import runner, services
from sessions_app.models import (
    SESSION_FIELDS,
    AgentExecution,
    ApprovalDecision,
    Artifact,
    Event,
    Session,
)


class ReadOnlyAdminMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EventInline(ReadOnlyAdminMixin, admin.TabularInline[Event, Session]):
    model = Event
    fields = (
        "sequence_number",
        "author",
        "kind",
        "content",
        "turn_complete",
        "error_code",
        "created_at",
    )
    readonly_fields = fields
    ordering = ("sequence_number",)
    extra = 0
    can_delete = False
    show_change_link = True


class SessionAdminForm(forms.ModelForm[Session]):
    class Meta:
        model = Session
        fields = SESSION_FIELDS

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        agent, user = cleaned.get("agent"), cleaned.get("user")
        adding = self.instance._state.adding
        if adding and agent and user and not agent_answers(agent=agent, user=user):
            raise forms.ValidationError(
                f"{agent} does not answer {user}: it is inactive, or another "
                "user's private agent."
            )
        return cleaned


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin[Session]):
    form = SessionAdminForm
    inlines = [EventInline]
    list_display = ("__str__", "user", "agent", "last_sequence", "updated_at")
    list_filter = ("agent__kind", "created_at")
    search_fields = ("title", "external_session_id", "user__username", "agent__name")
    readonly_fields = ("last_sequence", "created_at", "updated_at")
    raw_id_fields = ("user", "agent")
    date_hierarchy = "updated_at"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A new session's version is the pin `session_create` takes; an
        # existing one may be moved (empty: follow the latest).
        readonly = super().get_readonly_fields(request, obj)
        return readonly if obj is not None else (*readonly, "agent_version")

    def save_model(
        self, request: HttpRequest, obj: Session, form: Any, change: bool
    ) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = services.session_create(
            user=obj.user,
            agent=obj.agent,
            title=obj.title,
            external_session_id=obj.external_session_id,
            state=obj.state,
            configuration=obj.configuration,
        )
        # The admin goes on (log entry, redirect) with the row created.
        obj.pk = created.pk
        obj._state.adding = False
        obj.refresh_from_db()

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "try/<uuid:agent_id>/",
                self.admin_site.admin_view(self.try_agent),
                name="sessions_app_session_try",
            ),
            *super().get_urls(),
        ]

    def try_agent(self, request: HttpRequest, agent_id: Any) -> HttpResponse:
        """One turn of an agent, run by the turn runner in a new session."""
        if not self.has_add_permission(request):
            return HttpResponse(status=403)
        agent = get_object_or_404(Agent, pk=agent_id)
        form = TryAgentForm(request.POST or None)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": f"Try {agent.name}",
            "agent": agent,
            "form": form,
            "opts": self.model._meta,
        }
        if request.method == "POST" and form.is_valid():
            message = form.cleaned_data["message"]
            try:
                session = services.session_create(
                    user=request.user,
                    agent=agent,
                    title=f"Tried in the admin: {message[:60]}",
                )
                execution = async_to_sync(runner.run_to_completion)(
                    runner.TurnRequest(
                        session_id=str(session.pk),
                        user_id=request.user.pk,
                        content=message,
                    )
                )
            except runner.TurnRejected as exc:
                form.add_error("message", exc.message)
            else:
                context.update(
                    session=session,
                    execution=execution,
                    events=Event.objects.filter(session=session).order_by(
                        "sequence_number"
                    ),
                )
        return TemplateResponse(request, "admin/sessions_app/try_agent.html", context)


class TryAgentForm(forms.Form):
    message = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        max_length=100_000,
        help_text="Sent as the user's message; the answer runs with the agent's current config.",
    )


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[Event]):
    list_display = ("session", "sequence_number", "author", "kind", "turn_complete")
    list_filter = ("author", "kind", "turn_complete")
    search_fields = ("content", "session__title", "error_code")


class ApprovalDecisionInline(
    ReadOnlyAdminMixin, admin.TabularInline[ApprovalDecision, AgentExecution]
):
    """Who decided on each tool call that waited for approval (kept for audit)."""

    model = ApprovalDecision
    fields = ApprovalDecision.AUDIT_FIELDS
    readonly_fields = fields
    ordering = ("decided_at",)
    extra = 0
    can_delete = False


@admin.register(AgentExecution)
class AgentExecutionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[AgentExecution]):
    list_display = (
        "id",
        "agent",
        "agent_version",
        "user",
        "status",
        "depth",
        "parent",
        "model",
        "tokens",
        "duration_ms",
        "created_at",
    )
    list_filter = ("status", "depth", "model", "created_at")
    # Searching a root's id lists its whole tree.
    search_fields = (
        "id",
        "root__id",
        "input",
        "error_code",
        "agent__name",
        "user__username",
    )
    date_hierarchy = "created_at"
    exclude = ("messages",)
    inlines = [ApprovalDecisionInline]

    @admin.display(description="tokens in / out")
    def tokens(self, execution: AgentExecution) -> str:
        usage = execution.usage or {}
        return f"{usage.get('input_tokens', 0)} / {usage.get('output_tokens', 0)}"


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin[Artifact]):
    """Artifacts are uploaded through the API or written by tools, which record
    their size, digest and version; the admin views and deletes them."""

    list_display = (
        "name",
        "version",
        "session",
        "owner",
        "content_type",
        "size",
        "created_at",
    )
    list_filter = ("content_type", "created_at")
    search_fields = ("name", "sha256", "owner__username")
    readonly_fields = (
        "session",
        "execution",
        "owner",
        "name",
        "version",
        "file",
        "content_type",
        "size",
        "sha256",
        "created_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
