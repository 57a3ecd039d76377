"""Built-in multimodal tools: the session's artifacts, shown to the model.

The kind ``artifacts`` (category ``multimodal``) gives the model two tools:

    list_artifacts()                 name, version, content type and size of each file
    view_artifact(name, version)     text for text files, the image itself for images

Only artifacts of the run's session (`ToolContext.session_id`) that belong to
the run's user (`ToolContext.user_id`) are visible; a run without both sees
none. Images are returned as `pydantic_ai.BinaryContent`, which pydantic-ai
sends to the model as image input alongside the tool result. Sizes are capped;
refusals are failed tool results, as described in `tools.base`.

The artifact model is looked up through the app registry when a tool runs, so
this module does not import the sessions app.
"""

from __future__ import annotations

import asyncio
import codecs
from typing import Any

from django.apps import apps
from django.db.models import QuerySet
from pydantic import Field
from pydantic_ai import BinaryContent
from pydantic_ai.toolsets import FunctionToolset

from tools.base import ToolConfig, function_toolset
from tools.registry import ToolContext, register_tool
from tools.sandbox import BINARY_SNIFF_BYTES, SandboxError

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


class ArtifactsConfig(ToolConfig):
    max_listed: int = Field(
        default=200, ge=1, le=10_000, description="Most artifacts one listing shows."
    )
    max_text_bytes: int = Field(
        default=256 * 1024,
        ge=1,
        le=16 * 1024 * 1024,
        description="Bytes of a text artifact one call returns.",
    )
    max_image_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1,
        le=25 * 1024 * 1024,
        description="Largest image passed to the model.",
    )


@register_tool(
    "artifacts",
    category="multimodal",
    description="Let the model list and look at the session's files and images.",
    config_schema=ArtifactsConfig,
    read_only=("list_artifacts", "view_artifact"),
)
def build_artifacts(config: ArtifactsConfig, context: ToolContext) -> FunctionToolset:
    def visible_artifacts() -> QuerySet[Any]:
        if context.session_id is None or context.user_id is None:
            raise SandboxError("This conversation has no artifacts.")
        artifact_model = apps.get_model("sessions_app", "Artifact")
        return artifact_model.objects.filter(
            session_id=context.session_id, owner_id=context.user_id
        )

    async def list_artifacts() -> dict[str, Any]:
        """List the files attached to this conversation.

        Returns each artifact's `name`, `version`, `content_type` and `size` in
        bytes, newest version first within a name. Pass a name (and optionally a
        version) to `view_artifact` to see its content.
        """
        rows = visible_artifacts().order_by("name", "-version")
        listed = [
            {
                "name": artifact.name,
                "version": artifact.version,
                "content_type": artifact.content_type,
                "size": artifact.size,
            }
            async for artifact in rows[: config.max_listed + 1]
        ]
        return {
            "artifacts": listed[: config.max_listed],
            "truncated": len(listed) > config.max_listed,
        }

    async def view_artifact(name: str, version: int | None = None) -> Any:
        """Show the content of a file attached to this conversation.

        Text files come back as text (cut at a size cap, with `truncated`);
        images (PNG, JPEG, GIF, WebP) come back as the image itself so you can
        look at it. Other binary files cannot be shown.

        Args:
            name: The artifact's name, as `list_artifacts` shows it.
            version: A specific version; the newest when omitted.
        """
        rows = visible_artifacts().filter(name=name)
        if version is not None:
            rows = rows.filter(version=version)
        artifact = await rows.order_by("-version").afirst()
        if artifact is None:
            wanted = (
                f"{name!r} version {version}" if version is not None else repr(name)
            )
            raise SandboxError(f"No artifact {wanted} in this conversation.")
        content_type = (artifact.content_type or "").split(";")[0].strip().lower()
        if content_type in IMAGE_TYPES:
            if artifact.size > config.max_image_bytes:
                raise SandboxError(
                    f"The image {name!r} is larger than {config.max_image_bytes} bytes."
                )
            data = await _read(artifact, config.max_image_bytes)
            return BinaryContent(data=data, media_type=content_type)
        data = await _read(artifact, config.max_text_bytes + 1)
        cut = len(data) > config.max_text_bytes
        data = data[: config.max_text_bytes]
        if b"\x00" in data[:BINARY_SNIFF_BYTES]:
            raise SandboxError(
                f"{name!r} is binary ({artifact.content_type}) and cannot be shown."
            )
        try:
            text = codecs.getincrementaldecoder("utf-8")().decode(data, not cut)
        except UnicodeDecodeError:
            raise SandboxError(f"{name!r} is not UTF-8 text.") from None
        return {
            "name": artifact.name,
            "version": artifact.version,
            "content_type": artifact.content_type,
            "content": text,
            "truncated": cut,
        }

    return function_toolset(list_artifacts, view_artifact)


async def _read(artifact: Any, max_bytes: int) -> bytes:
    """Up to `max_bytes` of the artifact's stored file, read off the event loop."""

    def read() -> bytes:
        with artifact.file.storage.open(artifact.file.name, "rb") as fh:
            data: bytes = fh.read(max_bytes)
            return data

    return await asyncio.to_thread(read)
