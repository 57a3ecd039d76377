"""Serializers of the auth endpoints."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import password_validation
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from accounts.models import User
from config.serializers import (
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


class TokenPairSerializer(serializers.Serializer):
    access_token = StrictCharField()
    refresh_token = StrictCharField()
    token_type = StrictCharField()
    expires_in = serializers.IntegerField(help_text="Lifetime of the access token.")
