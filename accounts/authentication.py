"""Bearer-token authentication for the REST API.

`BearerTokenAuthentication` is simplejwt's `JWTAuthentication` hardened so that
every malformed token is a 401: a correctly signed token whose user id is not
a UUID would otherwise surface as a database lookup error.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed


class BearerTokenAuthentication(JWTAuthentication):
    def get_user(self, validated_token: Any):
        try:
            return super().get_user(validated_token)
        except (ValidationError, ValueError, TypeError):
            raise AuthenticationFailed(
                "Token names no valid user.", code="user_not_found"
            ) from None


class BearerTokenScheme(SimpleJWTScheme):
    """Describes `BearerTokenAuthentication` in the OpenAPI schema."""

    target_class = BearerTokenAuthentication
    name = "bearerAuth"
