"""Serializers of the auth and secrets endpoints."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth import password_validation
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from accounts import secrets
from accounts.models import Secret, User
from core.serializers import (
    StrictBooleanField,
    StrictCharField,
    StrictEmailField,
    StrictModelSerializer,
)


class UserSerializer(StrictModelSerializer):
    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "role",
            "is_active",
            "created_at",
        ]
        read_only_fields = fields


class RegisterSerializer(serializers.Serializer):
    username = StrictCharField(
        max_length=150,
        validators=[
            UnicodeUsernameValidator(),
            UniqueValidator(
                queryset=User.objects.all(),
                lookup="iexact",
                message="A user with that username already exists.",
            ),
        ],
    )
    email = StrictEmailField(
        max_length=254,
        validators=[
            UniqueValidator(
                queryset=User.objects.all(),
                lookup="iexact",
                message="A user with that email already exists.",
            )
        ],
    )
    password = StrictCharField(write_only=True, max_length=128, trim_whitespace=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        candidate = User(username=attrs["username"], email=attrs["email"])
        try:
            password_validation.validate_password(attrs["password"], user=candidate)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(
                {"password": list(exc.messages)}
            ) from None
        return attrs


class LoginSerializer(serializers.Serializer):
    username = StrictCharField(max_length=254)
    password = StrictCharField(max_length=128, trim_whitespace=False)


class RefreshTokenSerializer(serializers.Serializer):
    refresh_token = StrictCharField(max_length=4096)


class LogoutSerializer(serializers.Serializer):
    refresh_token = StrictCharField(
        max_length=4096,
        required=False,
        help_text="The refresh token that ends; optional with `all`.",
    )
    all = StrictBooleanField(
        default=False,
        help_text="End every token, browser session and open websocket of the user.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs["all"] and not attrs.get("refresh_token"):
            raise serializers.ValidationError(
                {"refresh_token": ["This field is required."]}
            )
        return attrs


class WsTicketSerializer(serializers.Serializer):
    ticket = StrictCharField(help_text="Use as `?ticket=` on the websocket URL, once.")
    expires_in = serializers.IntegerField(help_text="Seconds the ticket stays valid.")


class TokenPairSerializer(serializers.Serializer):
    access_token = StrictCharField()
    refresh_token = StrictCharField()
    token_type = StrictCharField()
    expires_in = serializers.IntegerField(help_text="Lifetime of the access token.")


class SecretSerializer(StrictModelSerializer):
    """A secret: its value is write-only and never answered."""

    name = StrictCharField(
        max_length=100,
        help_text=f"Unique among your secrets; {secrets.NAME_RULES}.",
    )
    value = StrictCharField(
        write_only=True,
        max_length=secrets.MAX_VALUE_CHARS,
        trim_whitespace=False,
        help_text="The secret's value (single-line text); never shown again.",
    )

    class Meta:
        model = Secret
        fields = ["id", "name", "value", "created_at", "last_used_at"]
        read_only_fields = ["id", "created_at", "last_used_at"]

    def validate_name(self, value: str) -> str:
        if not re.match(secrets.NAME_PATTERN, value):
            raise serializers.ValidationError(
                f"A secret name has {secrets.NAME_RULES}."
            )
        return value

    def validate_value(self, value: str) -> str:
        # Secrets are sent as header values, which must stay on one line.
        if any(ch in value for ch in "\r\n\x00"):
            raise serializers.ValidationError("A secret's value must be one line.")
        return value
