"""`GET /metrics`: the Prometheus text exposition, for a scraper holding the token.

Public surface:
    metrics_view(request)   404 unless AGENTRY_METRICS_TOKEN is set; then 401
                            without `Authorization: Bearer <token>`
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from core.errors import error_body
from observability.metrics import exposition


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.AGENTRY_METRICS_TOKEN
    if not token:
        return JsonResponse(error_body("not_found", "Metrics are off."), status=404)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        response = JsonResponse(
            error_body(
                "not_authenticated",
                "Send Authorization: Bearer <AGENTRY_METRICS_TOKEN>.",
            ),
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = exposition()
    return HttpResponse(body, content_type=content_type)
