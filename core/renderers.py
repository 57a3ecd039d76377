"""Content negotiation for answers that are not JSON when they succeed.

Public surface:
    PassThroughRenderer   the base of a renderer whose successful answer the
                          view builds itself (an SSE stream, a file download)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.renderers import BaseRenderer, JSONRenderer


class PassThroughRenderer(BaseRenderer):
    """Lets a request's `Accept` choose a media type the view answers with a
    response of its own; whatever DRF still renders through it (an error, see
    `core.errors`) is JSON, so every error body has the one shape."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        return JSONRenderer().render(data)
