"""Account signal handlers, connected in `AccountsConfig.ready`.

Public surface:
    close_sockets_of_deactivated_user   a user saved inactive (admin, API, shell)
                                        loses every open websocket at once
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from accounts.models import User
from accounts.ws_auth import revoke_user_sockets


@receiver(post_save, sender=User, dispatch_uid="accounts.close_deactivated_sockets")
def close_sockets_of_deactivated_user(
    sender: type[User],
    instance: User,
    update_fields: frozenset[str] | None = None,
    **kwargs: Any,
) -> None:
    if instance.is_active or (
        update_fields is not None and "is_active" not in update_fields
    ):
        return
    user_id = instance.pk
    transaction.on_commit(lambda: revoke_user_sockets(user_id))
