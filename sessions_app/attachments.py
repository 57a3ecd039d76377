"""What the model sees of a message's attachments, and what is kept of them.

Public surface:
    prompt_with_attachments(text, attachments)  the user prompt of the turn
                                                the files were attached to
    messages_for_storage(messages)              a run's messages as stored JSON,
                                                attachments kept as references
    with_attachment_content(messages)           a paused turn's own messages with
                                                its attachments read again (resume)
    reference_line(attachment)                  "[attachment NAME (version V), TYPE, N bytes]"

Only the turn a file is attached to reads it: text files go to the model
inline (their first `MAX_ATTACHMENT_TEXT` bytes), media as `BinaryContent`,
each after the file's reference line. The stored history keeps the reference
line alone (a `TextContent` whose metadata names the artifact), so a row stays
small and later turns load and send no file: they see the line, and an agent
with the `artifacts` tool can look at the file again. A turn paused for
approval is resumed with its own attachments read again. Sizes are checked from
the artifact row before a file is opened: a file over `MAX_UPLOAD_BYTES`, or
past that total for one message, is named but not read.

Binary content a tool returned (an image from `view_artifact`) is dropped
from the stored history the same way, leaving a line saying what it was.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from pydantic_ai import BinaryContent, ModelMessagesTypeAdapter
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    TextContent,
    UserPromptPart,
)

from sessions_app.models import Artifact

#: Bytes of a text attachment given to the model.
MAX_ATTACHMENT_TEXT = 200_000
TEXT_TYPES = ("application/json", "application/xml", "application/x-yaml")


def reference_line(attachment: dict[str, Any]) -> str:
    return (
        f"[attachment {attachment['name']} (version {attachment['version']}), "
        f"{attachment['content_type']}, {attachment['size']} bytes]"
    )


def _reference(attachment: dict[str, Any], note: str = "") -> TextContent:
    line = reference_line(attachment)
    return TextContent(
        f"{line} {note}".rstrip(), metadata={"artifact": attachment, "line": line}
    )


def prompt_with_attachments(
    text: str, attachments: Sequence[dict[str, Any]]
) -> str | list[Any]:
    """The user prompt with its attachments (as `runner._attachments` lists
    them: id, name, version, content_type, size), in the order given."""
    if not attachments:
        return text
    return [text, *_attachment_parts(attachments)]


def with_attachment_content(messages: list[ModelMessage]) -> list[ModelMessage]:
    """A paused turn's own messages, as loaded from storage, with its
    attachments' content put back: the resumed run is the same turn, so its
    model sees the files again. Changes `messages` in place and returns them."""
    for message in messages:
        if not isinstance(message, ModelRequest):
            continue
        for part in message.parts:
            if not isinstance(part, UserPromptPart) or isinstance(part.content, str):
                continue
            kept, attachments = [], []
            for item in part.content:
                artifact = (
                    (item.metadata or {}).get("artifact")
                    if isinstance(item, TextContent)
                    else None
                )
                if isinstance(artifact, dict):
                    attachments.append(artifact)
                else:
                    kept.append(item)
            if attachments:
                part.content = [*kept, *_attachment_parts(attachments)]
    return messages


def _attachment_parts(attachments: Sequence[dict[str, Any]]) -> list[Any]:
    rows = {
        str(a.pk): a
        for a in Artifact.objects.filter(pk__in=[a["id"] for a in attachments])
    }
    parts: list[Any] = []
    budget = settings.MAX_UPLOAD_BYTES
    for attachment in attachments:
        artifact = rows.get(str(attachment["id"]))
        if artifact is None:
            parts.append(_reference(attachment, "(deleted; not shown)"))
            continue
        content_type = (
            artifact.content_type or mimetypes.guess_type(artifact.name)[0] or ""
        )
        is_text = content_type.startswith("text/") or content_type in TEXT_TYPES
        wanted = min(artifact.size, MAX_ATTACHMENT_TEXT) if is_text else artifact.size
        if wanted > budget:
            parts.append(
                _reference(
                    attachment,
                    f"(too large to show: over {settings.MAX_UPLOAD_BYTES} bytes "
                    "for one message)",
                )
            )
            continue
        try:
            with artifact.file.open("rb") as fh:
                data = fh.read(wanted)
        except OSError:
            parts.append(_reference(attachment, "(its file is no longer stored)"))
            continue
        budget -= len(data)
        if is_text:
            body = data.decode("utf-8", errors="replace")
            shown = (
                f" (the first {len(data)} bytes)" if len(data) < artifact.size else ""
            )
            reference = _reference(attachment)
            parts.append(
                TextContent(
                    f"\n\n{reference.content}{shown}:\n{body}",
                    metadata={**reference.metadata, "inline": True},
                )
            )
        else:
            parts.append(_reference(attachment))
            parts.append(
                BinaryContent(
                    data=data, media_type=content_type or "application/octet-stream"
                )
            )
    return parts


def messages_for_storage(messages: Sequence[ModelMessage]) -> list[dict[str, Any]]:
    """`ModelMessagesTypeAdapter` JSON of `messages` with attachment bytes and
    inlined file text replaced by their reference lines."""
    dumped: list[dict[str, Any]] = ModelMessagesTypeAdapter.dump_python(
        list(messages), mode="json"
    )
    for message in dumped:
        for part in message.get("parts") or ():
            kind = part.get("part_kind")
            if kind == "user-prompt" and isinstance(part.get("content"), list):
                part["content"] = _stored_prompt(part["content"])
            elif kind == "tool-return":
                part["content"] = _stored_tool_content(part.get("content"))
    return dumped


def _stored_prompt(items: list[Any]) -> list[Any]:
    stored = []
    for item in items:
        if not isinstance(item, dict):
            stored.append(item)
        elif item.get("kind") == "binary":
            # Only attachments put bytes in a prompt, each after its line.
            continue
        elif item.get("kind") == "text-content" and (item.get("metadata") or {}).get(
            "inline"
        ):
            metadata = {k: v for k, v in item["metadata"].items() if k != "inline"}
            stored.append({**item, "content": metadata["line"], "metadata": metadata})
        else:
            stored.append(item)
    return stored


def _stored_tool_content(content: Any) -> Any:
    if isinstance(content, list):
        return [_stored_tool_content(item) for item in content]
    if isinstance(content, dict) and content.get("kind") == "binary":
        data = str(content.get("data") or "")
        size = len(data) * 3 // 4 - (len(data) - len(data.rstrip("=")))
        return (
            f"[{content.get('media_type') or 'binary'} content returned by the "
            f"tool, {size} bytes; not kept in the conversation]"
        )
    return content
