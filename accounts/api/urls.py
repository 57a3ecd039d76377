"""Auth routes under /api/auth/; each path works with and without its trailing slash."""

from django.urls import re_path

from accounts.api import views

app_name = "auth"

urlpatterns = [
    re_path(r"^register/?$", views.RegisterView.as_view(), name="register"),
    re_path(r"^login/?$", views.LoginView.as_view(), name="login"),
    re_path(r"^refresh/?$", views.RefreshView.as_view(), name="refresh"),
    re_path(r"^logout/?$", views.LogoutView.as_view(), name="logout"),
    re_path(r"^me/?$", views.MeView.as_view(), name="me"),
    re_path(r"^ws-ticket/?$", views.WsTicketView.as_view(), name="ws-ticket"),
]
