"""The browser pages: the chat at `/`, sign-in, sign-out and registration.

Like the API, each path also answers without its trailing slash (no redirect);
links and `{% url %}` use the slashed form.
"""

from collections.abc import Callable

from django.http import HttpResponseBase
from django.urls import URLPattern, path

from sessions_app.web import views

app_name = "web"


def page(
    route: str, view: Callable[..., HttpResponseBase], name: str
) -> list[URLPattern]:
    return [path(f"{route}/", view, name=name), path(route, view)]


urlpatterns = [
    path("", views.ChatView.as_view(), name="chat"),
    *page("login", views.SignInView.as_view(), "login"),
    *page("logout", views.SignOutView.as_view(), "logout"),
    *page("register", views.RegisterView.as_view(), "register"),
]
