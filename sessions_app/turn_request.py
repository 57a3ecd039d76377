"""A request for a turn, as every way of starting one hands it over: checked once.

Public surface:
    TurnRequest                  a turn request, validated as it is built: an invalid
                                 one raises TurnRejected and never exists
    TurnRequest.from_message(message, *, session_id, user_id)
                                 one from a client's message (a websocket `message`
                                 frame, a REST body), missing fields defaulted
    POLICIES                     the multitask policies (a request's, a session's
                                 configuration)
    MAX_ATTACHMENTS, MAX_CLIENT_MESSAGE_ID
                                 limits of a request's fields

The websocket consumer, the REST views, the admin's "try it" page and
`manage.py chat` all build one; the runner takes it as valid. What needs the
database (the session, its agent, the attachments' rows) is checked by the
runner when it opens the turn. The REST serializer states the same limits for
the API schema and its field-by-field `validation_error`s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from core.text import is_invalid_text
from sessions_app.services import TurnRejected

POLICIES = ("reject", "enqueue", "interrupt")
MAX_ATTACHMENTS = 20
MAX_CLIENT_MESSAGE_ID = 200
MAX_TRACEPARENT = 512


@dataclass(frozen=True)
class TurnRequest:
    session_id: Any
    user_id: Any
    content: str
    attachments: Sequence[Any] = ()
    client_message_id: str = ""
    multitask: str | None = None
    #: The caller's W3C trace context; the turn's span joins that trace.
    traceparent: str = ""
    #: Told when the turn's execution ends (background runs; checked by their API).
    webhook_url: str = ""

    def __post_init__(self) -> None:
        if (
            not isinstance(self.attachments, list | tuple)
            or not isinstance(self.client_message_id, str)
            or not (self.multitask is None or isinstance(self.multitask, str))
            or not isinstance(self.traceparent, str)
            or len(self.traceparent) > MAX_TRACEPARENT
        ):
            raise TurnRejected(
                "invalid_frame",
                "attachments must be a list, client_message_id, multitask and "
                f"traceparent strings (traceparent at most {MAX_TRACEPARENT} characters).",
            )
        _check_content(self.content)
        if len(self.client_message_id) > MAX_CLIENT_MESSAGE_ID:
            raise TurnRejected(
                "invalid_message",
                f"client_message_id is longer than {MAX_CLIENT_MESSAGE_ID} characters.",
            )
        if self.multitask is not None and self.multitask not in POLICIES:
            raise TurnRejected(
                "invalid_multitask", f"multitask must be one of {', '.join(POLICIES)}."
            )
        if len(self.attachments) > MAX_ATTACHMENTS:
            raise TurnRejected(
                "invalid_attachments",
                f"at most {MAX_ATTACHMENTS} attachments per message.",
            )
        # Attachment ids as the database compares them (REST hands over UUIDs).
        object.__setattr__(self, "attachments", tuple(str(a) for a in self.attachments))

    @classmethod
    def from_message(
        cls, message: Mapping[str, Any], *, session_id: Any, user_id: Any
    ) -> TurnRequest:
        return cls(
            session_id=session_id,
            user_id=user_id,
            content=message.get("content"),  # type: ignore[arg-type]
            attachments=message.get("attachments") or [],
            client_message_id=message.get("client_message_id") or "",
            multitask=message.get("multitask"),
            traceparent=message.get("traceparent") or "",
        )


def _check_content(content: Any) -> None:
    if not isinstance(content, str) or not content.strip():
        raise TurnRejected("invalid_message", "content must be a non-empty string.")
    if len(content) > settings.AGENTRY_MAX_MESSAGE_CHARS:
        raise TurnRejected(
            "message_too_large",
            f"content is longer than {settings.AGENTRY_MAX_MESSAGE_CHARS} characters.",
            413,
        )
    if is_invalid_text(content):
        raise TurnRejected(
            "invalid_message",
            "content must not contain NUL characters or lone surrogates.",
        )
