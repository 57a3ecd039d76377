"""ASGI entry point: HTTP goes to Django, websockets to the Channels routes.

With DEBUG=0 pages name hashed static files from the manifest `collectstatic`
writes to STATIC_ROOT; without it every page would answer 500, so the server
refuses to start and says, in one line, what to run. The production start
sequence is `manage.py migrate`, `manage.py collectstatic --noinput`, then
`daphne config.asgi:application`.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def require_collected_static_files() -> None:
    """Stops the process (exit status 1, one line on stderr) when the static
    files storage needs a manifest that `collectstatic` has not written."""
    from django.conf import settings
    from django.contrib.staticfiles.storage import (
        ManifestFilesMixin,
        staticfiles_storage,
    )

    if not isinstance(staticfiles_storage, ManifestFilesMixin):
        return
    if staticfiles_storage.manifest_storage.exists(staticfiles_storage.manifest_name):
        return
    raise SystemExit(
        f"Static files are not collected in STATIC_ROOT ({settings.STATIC_ROOT}): "
        "run `python manage.py collectstatic --noinput` before starting the server."
    )


# Before Django loads its middleware (WhiteNoise warns about a missing
# STATIC_ROOT), so the refusal is the only line the operator sees.
require_collected_static_files()

# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()


from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.ws_auth import WebsocketAuthMiddleware  # noqa: E402
from config.server import serve_request_bodies_to_the_app  # noqa: E402
from observability.middleware import RequestContextMiddleware  # noqa: E402
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


application = RequestContextMiddleware(
    TurnSupervisorMiddleware(
        ProtocolTypeRouter(
            {
                "http": django_asgi_app,
                "websocket": WebsocketAuthMiddleware(URLRouter(websocket_urlpatterns)),
            }
        )
    )
)
