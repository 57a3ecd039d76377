"""The browser pages: the chat at `/`, sign-in, sign-out and registration.

Like the API, each path answers with or without its trailing slash.
"""

from django.urls import path, re_path

from sessions_app.web import views

app_name = "web"

urlpatterns = [
    path("", views.ChatView.as_view(), name="chat"),
    re_path(r"^login/?$", views.SignInView.as_view(), name="login"),
    re_path(r"^logout/?$", views.SignOutView.as_view(), name="logout"),
    re_path(r"^register/?$", views.RegisterView.as_view(), name="register"),
]
