"""Account and token operations.

Public surface:
    user_register(username, email, password) -> User
    token_pair_for(user) -> TokenPair           a fresh access + refresh token
    token_refresh(raw_refresh) -> TokenPair     rotates: the old refresh token dies
    token_revoke(raw_refresh, user)             logout: the refresh token dies
    TokenRejected                               any token problem (answered as 401)

A refresh token works exactly once. Rotation blacklists the old token by
inserting its `BlacklistedToken` row first: the row's unique constraint makes
the insert the arbiter, so of two concurrent refreshes of one token only the
transaction that inserts the row goes on to mint a new pair, whatever the
process or database.
"""

from __future__ import annotations

from typing import TypedDict

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import update_last_login
from django.db import IntegrityError, transaction
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
