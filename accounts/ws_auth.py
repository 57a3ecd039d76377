"""Websocket authentication and origin checks.

`WebsocketAuthMiddleware` puts the user in `scope["user"]`: from a `?token=`
access token (simplejwt) when one is given, otherwise from the Django session
cookie (the browser chat page). An invalid token never falls back to the
cookie. It also records in `scope["origin_allowed"]` whether a browser `Origin`
header matches ALLOWED_HOSTS / CSRF_TRUSTED_ORIGINS; clients that send no
`Origin` (non-browser clients) are admitted on their token. The consumer
accepts and then closes refused connections, so clients see the close codes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.utils.http import url_has_allowed_host_and_scheme


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def origin_allowed(origin: str | None) -> bool:
    if origin is None:
        return True
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    return url_has_allowed_host_and_scheme(
        f"{parts.scheme}://{parts.netloc}/", allowed_hosts=set(_allowed_hosts(parts))
    )


def _allowed_hosts(parts: Any) -> list[str]:
    hosts = []
    for host in settings.ALLOWED_HOSTS:
        if host == "*" or (host.startswith(".") and parts.hostname.endswith(host)):
            hosts.append(parts.netloc)
        else:
            hosts.append(host)
            if parts.port:
                hosts.append(f"{host}:{parts.port}")
    return hosts


@database_sync_to_async
def user_from_token(raw: str) -> Any:
    from rest_framework_simplejwt.exceptions import TokenError
    from rest_framework_simplejwt.tokens import AccessToken

    try:
        token = AccessToken(raw)
        user_id = token[settings.SIMPLE_JWT.get("USER_ID_CLAIM", "user_id")]
    except (TokenError, KeyError, ValueError, TypeError):
        return AnonymousUser()
    try:
        user = get_user_model().objects.get(pk=user_id)
    except (get_user_model().DoesNotExist, ValueError, TypeError, Exception):
        return AnonymousUser()
    return user if user.is_active else AnonymousUser()


class _TokenAuthMiddleware:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        tokens = query.get("token")
        if tokens is not None:
            scope["user"] = await user_from_token(tokens[0])
        scope["origin_allowed"] = origin_allowed(_header(scope, b"origin"))
        return await self.inner(scope, receive, send)


def WebsocketAuthMiddleware(inner: Any) -> Any:
    """Session-cookie auth (Channels' stack), overridden by a `?token=` when given."""
    return AuthMiddlewareStack(_TokenAuthMiddleware(inner))
