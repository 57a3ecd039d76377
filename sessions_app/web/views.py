"""The browser face of Agentry: sign-in, registration and the chat page.

Public surface:
    ChatView      `/`: the chat for a signed-in user, the sign-in form otherwise
    SignInView    `/login/`: Django session login
    SignOutView   `/logout/`: POST only, ends the Django session
    RegisterView  `/register/`: creates an account and signs it in

The chat itself is static JavaScript (`static/chat/`) that talks to the same
REST API and websocket protocol as every other client, authenticated by the
Django session cookie. These views only render pages, so they stay thin; every
page answers with a strict Content-Security-Policy so that nothing a model
writes could run as script even if it slipped past the Markdown sanitizer.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.views import LoginView, LogoutView
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from django.views.generic import FormView, TemplateView

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

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
        response.headers.setdefault(
            "Content-Security-Policy", content_security_policy(request)
        )
        return response


class SignInView(ContentSecurityPolicyMixin, LoginView):
    template_name = "web/sign_in.html"
    redirect_authenticated_user = True


class SignOutView(LogoutView):
    """Django's LogoutView: POST only (a link could be forged), then back to `/`."""


@method_decorator([never_cache, ensure_csrf_cookie], name="dispatch")
class ChatView(ContentSecurityPolicyMixin, TemplateView):
    """The chat page; anonymous visitors get the sign-in form at the same URL."""

    template_name = "web/chat.html"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return SignInView.as_view()(request, *args, **kwargs)
        return super().dispatch(request, *args, **kwargs)


@method_decorator([never_cache, csrf_protect], name="dispatch")
class RegisterView(ContentSecurityPolicyMixin, FormView):
    """Creates an account (role `user`, like the API's register) and signs it in."""

    template_name = "web/register.html"
    form_class = RegisterForm

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
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
