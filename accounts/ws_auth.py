"""Websocket authentication, for the whole life of a socket, and origin checks.

`WebsocketAuthMiddleware` puts the user in `scope["user"]` and what authorised
the socket in `scope["socket_auth"]` (a `SocketAuth`), from, in this order:
a single-use `?ticket=` (`POST /api/auth/ws-ticket/`, so no long-lived token
travels in a URL), a `?token=` access token (simplejwt), or the Django session
cookie (the browser chat page). An invalid ticket or token never falls back to
the cookie. It also records in `scope["origin_allowed"]` whether a browser
`Origin` may open a socket here: one listed in CSRF_TRUSTED_ORIGINS, or the
very scheme-less host and port the client connected to (its `Host`, which must
be one of ALLOWED_HOSTS). Clients that send no `Origin` (non-browser clients)
are admitted on their credentials. The consumer accepts and then closes
refused connections, so clients see the close codes.

A socket stays authorised only while its credentials would still be accepted:
the consumer closes it (4401) when its token expires, re-checks the user on
a client frame when the last check is older than `recheck_seconds()`
(`AGENTRY_WS_AUTH_RECHECK_SECONDS`, 5 s by default; 0 checks every frame),
and joins `user_group(user id)`, where `revoke_user_sockets` reaches every
socket of a user on any process at once (logout everywhere, deactivation).
The interval only bounds changes that bypass those signals (a bulk update):
one query per turn was a measurable share of a turn's cost
(docs/performance.md).

Public surface:
    WebsocketAuthMiddleware(inner)        the ASGI middleware described above
    SocketAuth                            user id, issued_at, expires_at (epoch seconds)
    origin_allowed(origin, host)          whether a browser Origin may connect
    user_group(user_id)                   the channel-layer group of a user's sockets
    revoke_user_sockets(user_id, cutoff)  closes the user's sockets authorised before
                                          `cutoff` (every one when None)
    socket_still_authorised(auth)         the re-check of a socket's user (database read)
    recheck_seconds()                     how long one re-check holds
    expired(auth)                         whether the socket's credentials expired
    refusal_reason(scope)                 why a socket was not authenticated, as the
                                          reason of its 4401 close
    REVOKED_MESSAGE                       the group message type consumers handle
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from asgiref.sync import async_to_sync
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

logger = logging.getLogger(__name__)

REVOKED_MESSAGE = "auth.revoked"


@dataclass(frozen=True)
class SocketAuth:
    """What authorised a socket: whose it is, and when those credentials were
    issued and stop being valid (None: they do not expire on their own)."""

    user_id: Any
    issued_at: float
    expires_at: float | None


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _trusted(origin: str, scheme: str, netloc: str) -> bool:
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        if trusted == origin:
            return True
        parts = urlsplit(trusted)
        # Django's wildcard form, `https://*.example.com`, as the CSRF check reads it.
        if (
            "*" in parts.netloc
            and parts.scheme == scheme
            and is_same_domain(netloc, parts.netloc.replace("*", "", 1))
        ):
            return True
    return False


def origin_allowed(origin: str | None, host: str | None = None) -> bool:
    """Whether a browser page at `origin` may open a socket on `host`.

    The port counts: `http://localhost:9999` is another origin than
    `http://localhost:8000`, whatever ALLOWED_HOSTS says.
    """
    if origin is None:
        return True
    parts = urlsplit(origin)
    try:
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    netloc = parts.hostname + (f":{port}" if port is not None else "")
    if _trusted(origin, parts.scheme, netloc):
        return True
    if host is None or netloc != host.lower():
        return False
    domain, _ = split_domain_port(host)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


def user_group(user_id: Any) -> str:
    return f"user_{user_id}"


def revoke_user_sockets(user_id: Any, cutoff: float | None = None) -> None:
    """Closes (4401) every open socket of the user, on every process, whose
    credentials were issued before `cutoff` (all of them when None).

    Called from synchronous code (services, signals). An unreachable channel
    layer is logged, not raised: every socket re-checks its user on its next
    frame anyway.
    """
    try:
        async_to_sync(get_channel_layer().group_send)(
            user_group(user_id), {"type": REVOKED_MESSAGE, "cutoff": cutoff}
        )
    except Exception:
        logger.warning("cannot reach the sockets of user %s to close them", user_id)


def _credentials_revoked(user: Any, issued_at: float) -> bool:
    cutoff = getattr(user, "tokens_valid_after", None)
    return cutoff is not None and issued_at < cutoff.timestamp()


def recheck_seconds() -> float:
    return float(settings.AGENTRY_WS_AUTH_RECHECK_SECONDS)


def expired(auth: SocketAuth) -> bool:
    return auth.expires_at is not None and time.time() >= auth.expires_at


def socket_still_authorised(auth: SocketAuth) -> bool:
    """Whether the socket's credentials still hold: not expired, the user
    active and not logged out everywhere since they were issued."""
    if expired(auth):
        return False
    user = (
        get_user_model()
        .objects.filter(pk=auth.user_id, is_active=True)
        .only("tokens_valid_after")
        .first()
    )
    return user is not None and not _credentials_revoked(user, auth.issued_at)


def _active_user(user_id: Any, issued_at: float) -> Any:
    try:
        user = get_user_model().objects.get(pk=user_id)
    except Exception:
        # A missing user, or an id that is not even a UUID: not authenticated.
        return None
    if not user.is_active or _credentials_revoked(user, issued_at):
        return None
    return user


@database_sync_to_async
def _authorise_token(raw: str) -> tuple[Any, SocketAuth | None]:
    from rest_framework_simplejwt.exceptions import TokenError
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.services import token_issued_at

    try:
        token = AccessToken(raw)
        user_id = token[settings.SIMPLE_JWT.get("USER_ID_CLAIM", "user_id")]
        expires_at = float(token["exp"])
    except (TokenError, KeyError, ValueError, TypeError):
        return AnonymousUser(), None
    issued_at = token_issued_at(token.payload)
    user = _active_user(user_id, issued_at)
    if user is None:
        return AnonymousUser(), None
    return user, SocketAuth(user.pk, issued_at, expires_at)


@database_sync_to_async
def _authorise_ticket(raw: str) -> tuple[Any, SocketAuth | None]:
    from accounts.services import ws_ticket_redeem

    grant = ws_ticket_redeem(raw)
    if grant is None:
        return AnonymousUser(), None
    user = _active_user(grant["user_id"], grant["issued_at"])
    if user is None:
        return AnonymousUser(), None
    return user, SocketAuth(user.pk, grant["issued_at"], grant["expires_at"])


def refusal_reason(scope: dict[str, Any]) -> str:
    """The close reason of an unauthenticated socket, naming what was wrong
    with its credentials (a close reason holds at most 123 bytes)."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "ticket" in query:
        return "ticket invalid, expired or already used"
    if "token" in query:
        return "access token invalid or expired"
    return "authentication required: ?ticket= (POST /api/auth/ws-ticket/) or ?token="


class _SocketAuthMiddleware:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "ticket" in query:
            scope["user"], scope["socket_auth"] = await _authorise_ticket(
                query["ticket"][0]
            )
        elif "token" in query:
            scope["user"], scope["socket_auth"] = await _authorise_token(
                query["token"][0]
            )
        else:
            user = scope.get("user")
            # The session cookie: valid until the user logs out, everywhere
            # or here (Django then refuses the session on the next connect).
            scope["socket_auth"] = (
                SocketAuth(user.pk, time.time(), None)
                if user is not None and user.is_authenticated
                else None
            )
        scope["origin_allowed"] = origin_allowed(
            _header(scope, b"origin"), _header(scope, b"host")
        )
        return await self.inner(scope, receive, send)


def WebsocketAuthMiddleware(inner: Any) -> Any:
    """Session-cookie auth (Channels' stack), overridden by `?ticket=` or `?token=`."""
    return AuthMiddlewareStack(_SocketAuthMiddleware(inner))
