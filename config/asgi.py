"""ASGI entry point: HTTP goes to Django, websockets to the Channels routes."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.ws_auth import WebsocketAuthMiddleware  # noqa: E402
from config.server import serve_request_bodies_to_the_app  # noqa: E402
from sessions_app.lifecycle import ensure_supervisor  # noqa: E402
from sessions_app.routing import websocket_urlpatterns  # noqa: E402

serve_request_bodies_to_the_app()


class TurnSupervisorMiddleware:
    """Starts the process's turn housekeeping with its first connection (the
    event loop only exists once the server runs)."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            ensure_supervisor()
        return await self.inner(scope, receive, send)


application = TurnSupervisorMiddleware(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": WebsocketAuthMiddleware(URLRouter(websocket_urlpatterns)),
        }
    )
)
