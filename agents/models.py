"""Agents as configured in the database, their immutable versions, their tools,
and marketplace listings.

An `Agent` row plus its `AgentTool` rows is everything needed to build a
`pydantic_ai.Agent` (see `agents.factory`). `Agent.config_snapshot()` is the one
definition of "the config": versions, listings and change detection all use it.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.text import slugify

#: Fields whose change makes a new version (name and description do not).
CONFIG_FIELDS = (
    "model",
    "instructions",
    "model_settings",
    "output_schema",
    "usage_limits",
    "kind",
    "workflow",
)
DEFAULT_APPROVAL_TTL_SECONDS = 1800
MAX_APPROVAL_TTL_SECONDS = 604_800
#: The fields of one tool entry, as the API, versions and listings write it.
TOOL_ENTRY_FIELDS = (
    "tool",
    "config",
    "enabled",
    "requires_approval",
    "approval_ttl_seconds",
    "allow_edit",
)
#: Everything an owner sets on an agent (besides its tools), in form order.
EDITABLE_FIELDS = (
    "name",
    "description",
    *CONFIG_FIELDS,
    "visibility",
    "is_active",
    "webhooks",
)


class Agent(models.Model):
    class Kind(models.TextChoices):
        DYNAMIC = "dynamic", "Dynamic (configured in the database)"
        STATIC = "static", "Static (defined in code)"
        WORKFLOW = "workflow", "Workflow (delegates to sub-agents)"

    class Visibility(models.TextChoices):
        PRIVATE = "private", "Private"
        PUBLIC = "public", "Public"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agents"
    )
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=220)
    description = models.TextField(blank=True, default="")
    model = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="pydantic-ai model string; empty means the default model.",
    )
    instructions = models.TextField(blank=True, default="")
    model_settings = models.JSONField(default=dict, blank=True)
    output_schema = models.JSONField(null=True, blank=True)
    usage_limits = models.JSONField(default=dict, blank=True)
    workflow = models.JSONField(
        null=True,
        blank=True,
        help_text='Workflow agents only: {"steps": [{"name", "agent", "prompt"}]}.',
    )
    webhooks = models.JSONField(
        default=list,
        blank=True,
        help_text="URLs told when any of this agent's executions finishes.",
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.DYNAMIC)
    visibility = models.CharField(
        max_length=16, choices=Visibility.choices, default=Visibility.PRIVATE
    )
    is_active = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "slug"], name="agent_unique_owner_slug"
            )
        ]
        indexes = [
            models.Index(
                fields=["visibility", "is_active"], name="agent_visibility_idx"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.slug:
            self.slug = self.unique_slug()
        super().save(*args, **kwargs)

    def unique_slug(self) -> str:
        base = (slugify(self.name) or "agent")[:200]
        taken = set(
            Agent.objects.filter(owner_id=self.owner_id, slug__startswith=base)
            .exclude(pk=self.pk)
            .values_list("slug", flat=True)
        )
        slug, n = base, 2
        while slug in taken:
            slug, n = f"{base}-{n}", n + 1
        return slug

    def config_snapshot(
        self, tools: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Everything the agent runs with, as plain JSON (tools in a stable order).

        `tools`: the tool entries, when the caller already has them for this
        version (`agents.selectors.agent_config_now`); read otherwise."""
        if tools is None:
            tools = self.tool_entries()
        return {
            "name": self.name,
            "description": self.description,
            **{field: getattr(self, field) for field in CONFIG_FIELDS},
            "tools": tools,
        }

    def tool_entries(self) -> list[dict[str, Any]]:
        """The tools' entries of `config_snapshot()`, in their stable order."""
        return [
            tool.as_config()
            for tool in sorted(self.tools.all(), key=lambda t: (t.position, t.tool))
        ]


class AgentVersion(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    config = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    notes = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["agent", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "version"], name="agentversion_unique_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.agent} v{self.version}"


class AgentTool(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="tools")
    tool = models.CharField(
        max_length=100, help_text="Name of a tool kind in the registry."
    )
    config = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    requires_approval = models.BooleanField(default=False)
    approval_ttl_seconds = models.PositiveIntegerField(
        default=DEFAULT_APPROVAL_TTL_SECONDS,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_APPROVAL_TTL_SECONDS)],
        help_text="A pending approval of this tool is denied after this long.",
    )
    allow_edit = models.BooleanField(
        default=False,
        help_text="Whoever approves a call may change its arguments.",
    )
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "tool"]

    def __str__(self) -> str:
        return f"{self.tool} on {self.agent}"

    def as_config(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in TOOL_ENTRY_FIELDS}


class Listing(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    publisher = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="listings"
    )
    source_agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="listings"
    )
    config = models.JSONField(
        help_text="Snapshot of the agent's config when published."
    )
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    category = models.CharField(max_length=100, blank=True, default="")
    tags = models.JSONField(default=list, blank=True)
    install_count = models.PositiveIntegerField(default=0)
    rating = models.DecimalField(max_digits=3, decimal_places=2, null=True, blank=True)
    published_at = models.DateTimeField(auto_now_add=True)
    is_approved = models.BooleanField(default=False)

    class Meta:
        ordering = ["-published_at"]
        indexes = [
            models.Index(fields=["is_approved", "category"], name="listing_browse_idx")
        ]

    def __str__(self) -> str:
        return self.title
