"""Bearer-token authentication for the REST API.

`BearerTokenAuthentication` is simplejwt's `JWTAuthentication` hardened so that
every malformed token is a 401: a correctly signed token whose user id is not
a UUID would otherwise surface as a database lookup error. A token issued
before its user logged out everywhere (`User.tokens_valid_after`) is a 401 too.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed

from accounts.services import token_revoked_for


class BearerTokenAuthentication(JWTAuthentication):
    def get_user(self, validated_token: Any):
        try:
            user = super().get_user(validated_token)
        except (ValidationError, ValueError, TypeError):
            raise AuthenticationFailed(
                "Token names no valid user.", code="user_not_found"
            ) from None
        if token_revoked_for(user, validated_token.payload):
            raise AuthenticationFailed(
                "Token has been revoked (logged out everywhere).",
                code="token_not_valid",
            )
        return user


class BearerTokenScheme(SimpleJWTScheme):
    """Describes `BearerTokenAuthentication` in the OpenAPI schema."""

    target_class = BearerTokenAuthentication
    name = "bearerAuth"
