"""The browser face of Agentry: sign-in, registration and the chat page.

Public surface:
    ChatView      `/`: the chat for a signed-in user, the sign-in form otherwise
    SignInView    `/login/`: Django session login
    SignOutView   `/logout/`: POST only, ends the Django session
    RegisterView  `/register/`: creates an account and signs it in

Sign-in and registration posts count against the same rate limits as
`/api/auth/login` and `/api/auth/register`.

The chat itself is static JavaScript (`static/chat/`) that talks to the same
REST API and websocket protocol as every other client, authenticated by the
Django session cookie. These views only render pages, so they stay thin; every
page answers with a strict Content-Security-Policy so that nothing a model
writes could run as script even if it slipped past the Markdown sanitizer.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.views import LoginView, LogoutView
from django.db import IntegrityError
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
)
from django.shortcuts import resolve_url
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from django.views.generic import FormView, TemplateView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle, ScopedRateThrottle

from accounts.api.throttles import LoginAddressRateThrottle, LoginRateThrottle
from sessions_app.web.forms import RegisterForm


def content_security_policy(request: HttpRequest) -> str:
    """The policy of every page: own scripts, styles and sockets only."""
    host = request.get_host()
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            # Named explicitly: older browsers do not let 'self' cover ws(s).
            f"connect-src 'self' ws://{host} wss://{host}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class ContentSecurityPolicyMixin:
    """Adds the page policy to whatever response the view produces."""

    def dispatch(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        response: HttpResponseBase = super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
        response.headers.setdefault(
            "Content-Security-Policy", content_security_policy(request)
        )
        return response


def refused_by_throttles(
    request: HttpRequest, throttles: list[BaseThrottle], scope: str = ""
) -> float | None:
    """Seconds to wait if one of the API's rate limits refuses this form post.

    The page forms count against the same limits (and cache counters) as the
    API endpoints they mirror, so the session login is no way around them.
    """
    api_request = Request(request, parsers=[FormParser(), MultiPartParser()])
    view = SimpleNamespace(throttle_scope=scope)
    waits = [
        throttle.wait() or 1.0
        for throttle in throttles
        # A throttle reads no more of its view than `throttle_scope`.
        if not throttle.allow_request(api_request, view)  # type: ignore[arg-type]
    ]
    return max(waits) if waits else None


class ThrottledFormMixin:
    """Answers a refused post with the form again, an error and status 429."""

    throttle_scope = ""

    def throttles(self) -> list[BaseThrottle]:
        raise NotImplementedError

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = refused_by_throttles(request, self.throttles(), self.throttle_scope)
        if wait is None:
            posted: HttpResponse = super().post(request, *args, **kwargs)  # type: ignore[misc]
            return posted
        form = self.get_form()  # type: ignore[attr-defined]
        form.add_error(
            None,
            f"Too many attempts. Try again in {math.ceil(wait)} seconds.",
        )
        response: HttpResponse = self.form_invalid(form)  # type: ignore[attr-defined]
        response.status_code = 429
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response


class SignInView(ContentSecurityPolicyMixin, ThrottledFormMixin, LoginView):
    template_name = "web/sign_in.html"
    redirect_authenticated_user = True

    def throttles(self) -> list[BaseThrottle]:
        return [LoginRateThrottle(), LoginAddressRateThrottle()]


class SignOutView(LogoutView):
    """Django's LogoutView: POST only (a link could be forged), then back to `/`."""


@method_decorator([never_cache, ensure_csrf_cookie], name="dispatch")
class ChatView(ContentSecurityPolicyMixin, TemplateView):
    """The chat page; anonymous visitors get the sign-in form at the same URL."""

    template_name = "web/chat.html"

    def dispatch(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return SignInView.as_view()(request, *args, **kwargs)
        return super().dispatch(request, *args, **kwargs)


@method_decorator([never_cache, csrf_protect], name="dispatch")
class RegisterView(
    ContentSecurityPolicyMixin, ThrottledFormMixin, FormView[RegisterForm]
):
    """Creates an account (role `user`, like the API's register) and signs it in."""

    template_name = "web/register.html"
    form_class = RegisterForm
    throttle_scope = "register"

    def throttles(self) -> list[BaseThrottle]:
        return [ScopedRateThrottle()]

    def dispatch(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        if request.user.is_authenticated:
            return HttpResponseRedirect(resolve_url(settings.LOGIN_REDIRECT_URL))
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form: RegisterForm) -> HttpResponse:
        try:
            user = form.save()
        except IntegrityError:
            return self.form_invalid(form)
        login(self.request, user, backend="django.contrib.auth.backends.ModelBackend")
        return HttpResponseRedirect(resolve_url(settings.LOGIN_REDIRECT_URL))
