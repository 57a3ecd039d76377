"""The signed-in user of a request, typed as the project's User.

Views behind `IsAuthenticated` (or `login_required`) know `request.user` is a
User, but Django types it `User | AnonymousUser`; this helper narrows it in one
place instead of a cast at every call.

Public surface:
    authenticated_user(request) -> User
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from rest_framework.request import Request

from accounts.models import User


def authenticated_user(request: HttpRequest | Request) -> User:
    """The request's user; a 403 if it is anonymous (the view's permission
    checks normally answer before this can happen)."""
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied
    return user
