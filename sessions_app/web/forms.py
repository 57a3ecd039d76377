"""Forms of the browser pages.

Public surface:
    RegisterForm  username, email and password (twice). The rules are the
                  API's: it validates through `RegisterSerializer` and creates
                  the account with `accounts.services.user_register`, so a
                  page registration and `POST /api/auth/register` never differ.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import password_validation
from django.db import IntegrityError

from accounts import services
from accounts.api.serializers import RegisterSerializer
from accounts.models import User


class RegisterForm(forms.Form):
    username = forms.CharField(
        max_length=150,
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    email = forms.EmailField(
        max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if self.errors:
            return cleaned
        if cleaned["password1"] != cleaned["password2"]:
            self.add_error("password2", "The two passwords differ.")
            return cleaned
        serializer = RegisterSerializer(
            data={
                "username": cleaned["username"],
                "email": cleaned["email"],
                "password": cleaned["password1"],
            }
        )
        if not serializer.is_valid():
            for field, messages in serializer.errors.items():
                target = {"password": "password1"}.get(field, field)
                for message in messages:
                    self.add_error(target if target in self.fields else None, message)
            return cleaned
        self.validated = serializer.validated_data
        return cleaned

    def save(self) -> User:
        try:
            return services.user_register(**self.validated)
        except IntegrityError:
            # Lost a race against a concurrent registration of the same name.
            self.add_error(None, "A user with that username or email already exists.")
            raise
