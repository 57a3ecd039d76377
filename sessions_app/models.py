"""Chat sessions and what happens in them.

A `Session` is one conversation between a user and an agent. Its `Event` rows
are an append-only log with gapless per-session sequence numbers (allocated by
`services.event_append` from `Session.last_sequence`). Each turn is one
`AgentExecution`, which also keeps the pydantic-ai messages of the run so the
model history can be rebuilt exactly. `Artifact` rows are versioned files.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, models
from django.db.models import Q

#: A session's own fields, in form order: what the admin's form edits and the
#: API shows beside the id, the log's counter and the times.
SESSION_FIELDS = (
    "agent",
    "user",
    "title",
    "external_session_id",
    "agent_version",
    "state",
    "configuration",
)


class Session(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.CASCADE, related_name="sessions"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_sessions"
    )
    title = models.CharField(max_length=200, blank=True, default="")
    external_session_id = models.CharField(max_length=200, blank=True, default="")
    agent_version = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=(
            "The agent version this session's turns run; empty follows the latest "
            "(always so for the agent's owner)."
        ),
    )
    state = models.JSONField(default=dict, blank=True)
    configuration = models.JSONField(default=dict, blank=True)
    last_sequence = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text="Sequence number of the newest stored event.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [
            models.Index(
                fields=["user", "-updated_at"], name="session_user_recent_idx"
            ),
            models.Index(
                fields=["agent", "-updated_at"], name="session_agent_recent_idx"
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"Session {self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # The event log owns `last_sequence` (services allocate numbers with an
        # UPDATE): saving a session loaded before events were appended must not
        # write its stale counter back.
        if not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                field.name
                for field in self._meta.concrete_fields
                if not field.primary_key and field.name != "last_sequence"
            ]
        try:
            super().save(*args, **kwargs)
        except DatabaseError as exc:
            # Django's own "update_fields did not affect any rows": the session
            # was deleted meanwhile (its turn, another request). Not recreated.
            if type(exc) is DatabaseError and not self._state.adding:
                raise self.DoesNotExist(f"Session {self.pk} no longer exists.") from exc
            raise


class AgentExecution(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        INTERRUPTED = "interrupted", "Interrupted"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
    FINAL_STATUSES = (
        Status.SUCCEEDED,
        Status.FAILED,
        Status.CANCELLED,
        Status.INTERRUPTED,
    )

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="executions"
    )
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="children",
        help_text="The execution whose delegate tool (or workflow step) ran this one.",
    )
    root = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="descendants",
        help_text="The turn's root execution (itself for a root).",
    )
    depth = models.PositiveSmallIntegerField(default=0)
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.CASCADE, related_name="executions"
    )
    agent_version = models.PositiveIntegerField(default=1)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="executions"
    )
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.QUEUED
    )
    input = models.TextField(blank=True, default="")
    client_message_id = models.CharField(max_length=200, blank=True, default="")
    output = models.JSONField(
        null=True, blank=True, help_text="Final text, or the JSON object."
    )
    model = models.CharField(max_length=200, blank=True, default="")
    usage = models.JSONField(default=dict, blank=True)
    # The usage figures reports and budgets add up, as columns so that they
    # aggregate in SQL; `usage` keeps every counter.
    requests = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(
        max_digits=24,
        decimal_places=12,
        null=True,
        blank=True,
        help_text="Null when the model has no known price.",
    )
    priced = models.BooleanField(default=False)
    budget_warning = models.JSONField(null=True, blank=True)
    trace_id = models.CharField(max_length=32, blank=True, default="")
    webhook_url = models.URLField(max_length=2000, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="How many times another process took this turn over."
    )
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    messages = models.JSONField(
        default=list,
        blank=True,
        help_text="pydantic-ai messages of this run (ModelMessagesTypeAdapter).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Refreshed while the turn runs; a stale one means its process died.",
    )
    approval_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="While awaiting approval: when the undecided calls are denied.",
    )
    waiting_for_worker = models.BooleanField(
        default=False,
        help_text=(
            "Queued for a worker (task mode) that has not claimed it yet: no "
            "process holds the turn, so a cancel ends it at once."
        ),
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Two turns of one session never run at once, whatever the process.
            # Children of a delegation tree run while their root does.
            models.UniqueConstraint(
                fields=["session"],
                condition=Q(status="running", parent__isnull=True),
                name="execution_one_running_root_per_session",
            ),
            models.UniqueConstraint(
                fields=["session", "client_message_id"],
                condition=~Q(client_message_id=""),
                name="execution_unique_client_message",
            ),
        ]
        indexes = [
            models.Index(
                fields=["session", "status"], name="execution_session_status_idx"
            ),
            models.Index(fields=["status", "heartbeat_at"], name="execution_lease_idx"),
            models.Index(fields=["root", "created_at"], name="execution_tree_idx"),
            models.Index(
                fields=["user", "-created_at"], name="execution_user_recent_idx"
            ),
            models.Index(
                fields=["status", "approval_expires_at"],
                name="execution_approval_expiry_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent} execution {self.pk} ({self.status})"


class Event(models.Model):
    class Author(models.TextChoices):
        USER = "user", "User"
        AGENT = "agent", "Agent"
        TOOL = "tool", "Tool"
        SYSTEM = "system", "System"

    class Kind(models.TextChoices):
        MESSAGE = "message", "Message"
        TOOL_CALL = "tool_call", "Tool call"
        TOOL_RESULT = "tool_result", "Tool result"
        ERROR = "error", "Error"
        STATE = "state", "State"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="events"
    )
    execution = models.ForeignKey(
        AgentExecution,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
    )
    author = models.CharField(max_length=16, choices=Author.choices)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.MESSAGE)
    content = models.TextField(blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    actions = models.JSONField(default=dict, blank=True)
    partial = models.BooleanField(default=False)
    turn_complete = models.BooleanField(default=False)
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    sequence_number = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["session", "sequence_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "sequence_number"],
                name="event_unique_session_sequence",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.sequence_number} {self.author}/{self.kind}"


class ApprovalDecision(models.Model):
    """One decision on one tool call that waited for a person (kept for audit)."""

    class Decision(models.TextChoices):
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"
        EXPIRED = "expired", "Expired"

    class Via(models.TextChoices):
        WEBSOCKET = "websocket", "Websocket"
        REST = "rest", "REST"
        ADMIN = "admin", "Admin"
        TERMINAL = "terminal", "Terminal"
        EXPIRY = "expiry", "Expiry"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    execution = models.ForeignKey(
        AgentExecution, on_delete=models.CASCADE, related_name="approval_decisions"
    )
    tool_call_id = models.CharField(max_length=200)
    tool_name = models.CharField(max_length=200)
    args = models.JSONField(default=dict, blank=True)
    decision = models.CharField(max_length=16, choices=Decision.choices)
    edited_args = models.JSONField(null=True, blank=True)
    message = models.TextField(blank=True, default="")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField()
    via = models.CharField(max_length=16, choices=Via.choices)

    #: What the audit shows of a decision (API and admin).
    AUDIT_FIELDS = (
        "tool_call_id",
        "tool_name",
        "args",
        "decision",
        "edited_args",
        "message",
        "decided_by",
        "decided_at",
        "via",
    )

    class Meta:
        ordering = ["execution", "decided_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["execution", "tool_call_id"],
                name="approval_decision_unique_call",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} {self.decision}"


def artifact_upload_to(instance: Artifact, filename: str) -> str:
    # The stored name is generated: the display name never reaches the filesystem.
    return f"artifacts/{instance.created_at_or_now():%Y/%m}/{uuid.uuid4().hex}"


class Artifact(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(
        Session,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="artifacts",
    )
    execution = models.ForeignKey(
        AgentExecution,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="artifacts",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="artifacts"
    )
    name = models.CharField(max_length=255)
    version = models.PositiveIntegerField(default=1)
    file = models.FileField(upload_to=artifact_upload_to, max_length=255)
    content_type = models.CharField(
        max_length=200, blank=True, default="application/octet-stream"
    )
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "name", "version"],
                name="artifact_unique_session_name_version",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    def created_at_or_now(self) -> datetime:
        from django.utils import timezone

        return self.created_at or timezone.now()
