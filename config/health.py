"""`GET /health`: is this process able to serve? (load balancers, compose, CI).

Answers 200 `{"status": "healthy", ...}` when the database answers, 503 with
the same shape (`"status": "unhealthy"`) when it does not. The cache is
reported but optional: without Redis the service still works (throttling and
caching degrade to misses), so a cache outage alone is not unhealthy.
"""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from core.errors import error_body

logger = logging.getLogger(__name__)


def _database_status() -> str:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        logger.warning("Health check: database unreachable", exc_info=True)
        return "unavailable"
    return "ok"


def _cache_status() -> str:
    key, token = "health-check", uuid.uuid4().hex
    try:
        cache.set(key, token, timeout=10)
        if cache.get(key) != token:
            return "unavailable"
    except Exception:
        logger.warning("Health check: cache unreachable", exc_info=True)
        return "unavailable"
    return "ok"


@never_cache
def health(request: HttpRequest) -> JsonResponse:
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse(
            error_body("method_not_allowed", f'Method "{request.method}" not allowed.'),
            status=405,
        )
        response["Allow"] = "GET, HEAD"
        return response
    database = _database_status()
    body = {
        "status": "healthy" if database == "ok" else "unhealthy",
        "timestamp": timezone.now().isoformat(),
        "service": settings.AGENTRY_SERVICE_NAME,
        "database": database,
        "cache": _cache_status(),
    }
    return JsonResponse(body, status=200 if database == "ok" else 503)
