"""`manage.py rotate_secrets`: re-encrypts every stored secret with the first
key of AGENTRY_SECRETS_KEY.

Rotating a key: set `AGENTRY_SECRETS_KEY=<new>,<old>` (the old one is the
previous value, or SECRET_KEY when none was set), restart, run this command,
then set `AGENTRY_SECRETS_KEY=<new>` and restart again.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.secrets import SecretUnavailableError, secrets_rotate


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the first key of AGENTRY_SECRETS_KEY."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = secrets_rotate()
        except SecretUnavailableError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Re-encrypted {count} secret(s) with the first key.")
