"""Websocket routes."""

from django.urls import re_path

from sessions_app.consumers import ChatConsumer

websocket_urlpatterns = [
    re_path(r"^ws/sessions/(?P<session_id>[^/]+)/?$", ChatConsumer.as_asgi()),
]
