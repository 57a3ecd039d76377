"""Account and token operations.

Public surface:
    user_register(username, email, password) -> User
    token_pair_for(user) -> TokenPair           a fresh access + refresh token
    token_refresh(raw_refresh) -> TokenPair     rotates: the old refresh token dies
    token_revoke(raw_refresh, user)             logout: the refresh token dies
    user_logout_everywhere(user)                every token, session and socket of the
                                                user ends (`tokens_valid_after`)
    token_issued_at(payload) -> float           when a token was issued (epoch seconds)
    token_revoked_for(user, payload) -> bool    issued before the user's last
                                                logout everywhere
    ws_ticket_issue(user, issued_at, expires_at) -> str   a websocket ticket
    ws_ticket_redeem(ticket) -> WsTicketGrant | None      single use
    WS_TICKET_SECONDS                           a ticket's lifetime (30)
    TokenRejected                               any token problem (answered as 401)

A refresh token works exactly once. Rotation blacklists the old token by
inserting its `BlacklistedToken` row first: the row's unique constraint makes
the insert the arbiter, so of two concurrent refreshes of one token only the
transaction that inserts the row goes on to mint a new pair, whatever the
process or database.

Logging out everywhere stamps `User.tokens_valid_after`: every token issued
before it is refused (REST, refresh, websockets), browser sessions end (the
session hash covers the stamp), and open sockets are closed. Tokens carry
their issue time to the microsecond (`iat_us`), so a login right after the
stamp is not caught by it; a token without that claim falls back to its
whole-second `iat`.

A websocket ticket is a random string whose hash names a cache entry (Redis
in deployments, so any process redeems it) for 30 seconds; redeeming deletes
the entry, and only the caller whose delete removed it gets the grant.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any, TypedDict

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import update_last_login
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import (
    BlacklistedToken,
    OutstandingToken,
)
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from accounts.models import User


class TokenRejected(Exception):
    """The refresh token is malformed, expired, revoked or not for this user."""


class TokenPair(TypedDict):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class WsTicketGrant(TypedDict):
    user_id: str
    issued_at: float
    expires_at: float | None


#: The claim holding a token's issue time in microseconds since the epoch.
ISSUED_AT_CLAIM = "iat_us"
WS_TICKET_SECONDS = 30
_WS_TICKET_MAX_CHARS = 128


def user_register(*, username: str, email: str, password: str) -> User:
    """Creates an ordinary (role `user`) active account.

    The caller validates the password against Django's validators first.
    """
    return get_user_model().objects.create_user(
        username=username, email=email, password=password, role=User.Role.USER
    )


def token_pair_for(user: User) -> TokenPair:
    """Issues a new token pair (recorded as outstanding, so it can be revoked)."""
    refresh = RefreshToken.for_user(user)
    # Copied into the access token too (it is not one of the no-copy claims).
    refresh[ISSUED_AT_CLAIM] = int(refresh.current_time.timestamp() * 1_000_000)
    if settings.SIMPLE_JWT.get("UPDATE_LAST_LOGIN"):
        update_last_login(None, user)
    return {
        "access_token": str(refresh.access_token),
        "refresh_token": str(refresh),
        "token_type": "bearer",
        "expires_in": int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds()),
    }


def _decode_refresh(raw: str) -> RefreshToken:
    try:
        # Verifies signature, expiry, token type and the blacklist.
        return RefreshToken(raw)
    except TokenError as exc:
        raise TokenRejected(str(exc)) from None


def _active_user_of(token: RefreshToken) -> User:
    user_id = token.payload.get(jwt_settings.USER_ID_CLAIM)
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        raise TokenRejected("The user of this token is unknown or inactive.")
    if token_revoked_for(user, token.payload):
        raise TokenRejected("Token has been revoked (logged out everywhere).")
    return user


def _blacklist_once(token: RefreshToken, user: User) -> None:
    """Blacklists the token; raises TokenRejected if it already was."""
    jti = token.payload[jwt_settings.JTI_CLAIM]
    outstanding, _ = OutstandingToken.objects.get_or_create(
        jti=jti,
        defaults={
            "user": user,
            "token": str(token),
            "created_at": token.current_time,
            "expires_at": datetime_from_epoch(token.payload["exp"]),
        },
    )
    try:
        with transaction.atomic():
            BlacklistedToken.objects.create(token=outstanding)
    except IntegrityError:
        raise TokenRejected("Token is blacklisted") from None


def token_refresh(raw_refresh: str) -> TokenPair:
    """Exchanges a refresh token for a new pair; the presented token dies.

    Raises:
        TokenRejected: invalid, expired, already used or revoked token, or an
            inactive user.
    """
    token = _decode_refresh(raw_refresh)
    with transaction.atomic():
        user = _active_user_of(token)
        _blacklist_once(token, user)
        return token_pair_for(user)


def token_revoke(raw_refresh: str, *, user: User) -> None:
    """Logs out: the refresh token (which must be the caller's) no longer works."""
    token = _decode_refresh(raw_refresh)
    if str(token.payload.get(jwt_settings.USER_ID_CLAIM)) != str(user.pk):
        raise TokenRejected("This refresh token belongs to another user.")
    with transaction.atomic():
        _blacklist_once(token, user)


def token_issued_at(payload: dict[str, Any]) -> float:
    """When a token was issued, in epoch seconds (0 when it does not say)."""
    precise = payload.get(ISSUED_AT_CLAIM)
    if isinstance(precise, int) and not isinstance(precise, bool):
        return precise / 1_000_000
    whole = payload.get("iat")
    if isinstance(whole, int | float) and not isinstance(whole, bool):
        return float(whole)
    return 0.0


def token_revoked_for(user: User, payload: dict[str, Any]) -> bool:
    """Whether the token was issued before the user last logged out everywhere."""
    cutoff = user.tokens_valid_after
    return cutoff is not None and token_issued_at(payload) < cutoff.timestamp()


def user_logout_everywhere(*, user: User) -> None:
    """Ends every token, browser session and open socket of the user.

    Tokens issued from now on work as usual.
    """
    from accounts.ws_auth import revoke_user_sockets

    now = timezone.now()
    get_user_model().objects.filter(pk=user.pk).update(tokens_valid_after=now)
    user.tokens_valid_after = now
    transaction.on_commit(lambda: revoke_user_sockets(user.pk, cutoff=now.timestamp()))


def _ws_ticket_key(ticket: str) -> str:
    # The cache key is a hash, so the ticket itself is never stored anywhere.
    return "ws-ticket:" + hashlib.sha256(ticket.encode()).hexdigest()


def ws_ticket_issue(*, user: User, issued_at: float, expires_at: float | None) -> str:
    """A single-use ticket that opens one websocket as `user` within 30 s.

    `issued_at` and `expires_at` are those of the credentials the ticket was
    bought with: the socket is refused or closed when they would be.
    """
    ticket = secrets.token_urlsafe(32)
    grant: WsTicketGrant = {
        "user_id": str(user.pk),
        "issued_at": issued_at,
        "expires_at": expires_at,
    }
    cache.set(_ws_ticket_key(ticket), grant, timeout=WS_TICKET_SECONDS)
    return ticket


def ws_ticket_redeem(ticket: str) -> WsTicketGrant | None:
    """The ticket's grant, once: None when unknown, expired or already used."""
    if not ticket or len(ticket) > _WS_TICKET_MAX_CHARS:
        return None
    key = _ws_ticket_key(ticket)
    grant = cache.get(key)
    # Of two processes redeeming one ticket, only one deletes the entry.
    if grant is None or not cache.delete(key):
        return None
    return grant
