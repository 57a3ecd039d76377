"""Users and API clients: `user`, `other_user`, `admin_user`, `api_client`, `auth_client`.

`auth_client(user)` is a DRF `APIClient` that sends a real Bearer access token
issued for `user`, so requests go through the same JWT authentication as any
client's.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.services import token_pair_for
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttle counters (and anything else cached) start empty in every test."""
    cache.clear()
    yield


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def admin_user(db):
    return UserFactory(is_staff=True, is_superuser=True, role="admin")


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def auth_client(db) -> Callable[..., APIClient]:
    """Factory: `auth_client(user)` is an APIClient authenticated as `user`."""

    def make(user) -> APIClient:
        client = APIClient()
        client.credentials(
            HTTP_AUTHORIZATION=f"Bearer {token_pair_for(user)['access_token']}"
        )
        return client

    return make


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Hashing at production cost would dominate the suite's run time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
