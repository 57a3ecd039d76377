"""The custom user (UUID primary key, unique email, a role) and the secrets
users keep for their tools' credentials.

`Secret.value` never leaves the server: it is stored encrypted and read only
when a tool of its owner's agent runs (see `accounts.secrets`).
"""

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.crypto import salted_hmac


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
    webhook_secret = models.TextField(
        blank=True,
        default="",
        help_text="Signs this user's webhook deliveries (stored encrypted; shown once).",
    )

    REQUIRED_FIELDS = ["email"]

    class Meta:
        ordering = ["username"]

    def __str__(self) -> str:
        return self.username

    def _get_session_auth_hash(self, secret: str | None = None) -> str:
        # Django ends a browser session whose stored hash no longer matches
        # (that is how a password change logs other sessions out). Covering
        # `tokens_valid_after` too makes "log out everywhere" end them as well;
        # users who never did keep Django's hash, so their sessions live on.
        if self.tokens_valid_after is None:
            return super()._get_session_auth_hash(secret=secret)
        return salted_hmac(
            "accounts.User.session_auth_hash",
            f"{self.password}:{self.tokens_valid_after.isoformat()}",
            secret=secret,
            algorithm="sha256",
        ).hexdigest()

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
