"""Artifact files: upload with a versioned display name, and download headers.

Public surface:
    sanitize_display_name(name) -> str
    artifact_create(owner, upload, session, name, execution) -> Artifact
    UploadQuotaExceeded                  the upload would pass the owner's quota
    upload_quota_bytes()                 AGENTRY_UPLOAD_QUOTA_MB in bytes
    content_disposition(name) -> str     an RFC 6266 `attachment` header value

The file is stored under a generated name (`models.artifact_upload_to`); the
display name a client sends is only ever data. Versions count per
(session, name) from 1; the unique constraint on (session, name, version)
decides races, and the loser retries with the next number.

Each user's artifacts together stay within `AGENTRY_UPLOAD_QUOTA_MB`: an
upload is refused before its file is stored when it would pass the quota, and
checked again with the owner's row locked as the artifact is inserted, so
concurrent uploads cannot pass it together (on PostgreSQL; SQLite serialises
writers anyway).
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import unicodedata
from urllib.parse import quote

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Max, Sum

from accounts.models import User
from sessions_app.models import AgentExecution, Artifact, Session, artifact_upload_to

MAX_NAME_LENGTH = 255
DEFAULT_NAME = "upload"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$")
_VERSION_ATTEMPTS = 10


def sanitize_display_name(name: str | None) -> str:
    """The last path component of `name` without control, format or surrogate
    characters, at most 255 characters (the extension kept); "upload" if
    nothing is left."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(
        ch
        for ch in unicodedata.normalize("NFC", name)
        if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
    ).strip()
    if name in ("", ".", ".."):
        return DEFAULT_NAME
    if len(name) > MAX_NAME_LENGTH:
        stem, dot, ext = name.rpartition(".")
        if dot and stem and 0 < len(ext) <= 16:
            name = f"{stem[: MAX_NAME_LENGTH - len(ext) - 1]}.{ext}"
        else:
            name = name[:MAX_NAME_LENGTH]
    return name


def _content_type(upload: UploadedFile[bytes], name: str) -> str:
    declared = (upload.content_type or "").split(";", 1)[0].strip().lower()
    if declared and declared != DEFAULT_CONTENT_TYPE and _CONTENT_TYPE.match(declared):
        charset = upload.charset
        if charset and re.fullmatch(r"[\w.:-]{1,40}", charset):
            return f"{declared}; charset={charset}"[:200]
        return declared[:200]
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or DEFAULT_CONTENT_TYPE


def _digest(upload: UploadedFile[bytes]) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    upload.seek(0)
    for chunk in upload.chunks():
        sha.update(chunk)
        size += len(chunk)
    upload.seek(0)
    return sha.hexdigest(), size


class UploadQuotaExceeded(Exception):
    """The upload would take the owner's artifacts past their quota."""

    def __init__(self, *, quota: int, used: int, size: int) -> None:
        super().__init__(
            f"This upload ({size} bytes) would pass your upload quota: "
            f"{used} of {quota} bytes are in use. Delete sessions or files "
            "you no longer need."
        )
        self.quota, self.used, self.size = quota, used, size


def upload_quota_bytes() -> int:
    return int(settings.AGENTRY_UPLOAD_QUOTA_MB * 1024 * 1024)


def _check_quota(owner: User, size: int) -> None:
    used = (
        Artifact.objects.filter(owner=owner).aggregate(total=Sum("size"))["total"] or 0
    )
    quota = upload_quota_bytes()
    if used + size > quota:
        raise UploadQuotaExceeded(quota=quota, used=used, size=size)


def _next_version(session: Session | None, owner: User, name: str) -> int:
    siblings = Artifact.objects.filter(name=name)
    siblings = (
        siblings.filter(session=session)
        if session is not None
        else siblings.filter(session__isnull=True, owner=owner)
    )
    return (siblings.aggregate(top=Max("version"))["top"] or 0) + 1


def artifact_create(
    *,
    owner: User,
    upload: UploadedFile[bytes],
    session: Session | None = None,
    name: str | None = None,
    execution: AgentExecution | None = None,
) -> Artifact:
    """Stores `upload` as the next version of `name` (or of the upload's own file
    name) in `session`.

    Raises:
        UploadQuotaExceeded: the owner's artifacts would pass their quota.
    """
    _check_quota(owner, upload.size or 0)
    display_name = sanitize_display_name(name or upload.name)
    sha256, size = _digest(upload)
    artifact = Artifact(
        owner=owner,
        session=session,
        execution=execution,
        name=display_name,
        content_type=_content_type(upload, display_name),
        size=size,
        sha256=sha256,
    )
    field = Artifact._meta.get_field("file")
    stored = field.storage.save(artifact_upload_to(artifact, display_name), upload)
    artifact.file.name = stored
    try:
        for _attempt in range(_VERSION_ATTEMPTS):
            artifact.version = _next_version(session, owner, display_name)
            try:
                with transaction.atomic():
                    # The owner's row lock orders concurrent uploads of one user.
                    list(
                        User.objects.select_for_update()
                        .filter(pk=owner.pk)
                        .values_list("pk", flat=True)
                    )
                    _check_quota(owner, size)
                    artifact.save(force_insert=True)
                return artifact
            except IntegrityError:
                continue
        raise IntegrityError("Could not allocate an artifact version.")
    except BaseException:
        field.storage.delete(stored)
        raise


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback `filename` and the exact `filename*`."""
    fallback = (
        unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    )
    fallback = re.sub(r"[^\w .()+,;=@\[\]{}~-]", "_", fallback).strip() or DEFAULT_NAME
    return (
        f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
    )
