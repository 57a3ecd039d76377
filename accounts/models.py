"""The custom user (UUID primary key, unique email, a role) and the secrets
users keep for their tools' credentials.

`Secret.value` never leaves the server: it is stored encrypted and read only
when a tool of its owner's agent runs (see `accounts.secrets`).
"""

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        DEVELOPER = "developer", "Developer"
        USER = "user", "User"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField("email address", unique=True)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.USER)
    created_at = models.DateTimeField(auto_now_add=True)
    tokens_valid_after = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Tokens issued before this moment no longer work (logout everywhere).",
    )

    REQUIRED_FIELDS = ["email"]

    class Meta:
        ordering = ["username"]

    def __str__(self) -> str:
        return self.username

    @property
    def tool_role(self) -> str:
        """The role file tools go by: a superuser counts as an admin."""
        return self.Role.ADMIN if self.is_superuser else self.role


class Secret(models.Model):
    """A named credential of one user, encrypted at rest (Fernet)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(max_length=100)
    ciphertext = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"], name="secret_unique_owner_name"
            )
        ]

    def __str__(self) -> str:
        return self.name
