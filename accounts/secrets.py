"""Users' secrets: encryption at rest, references in tool headers, and masking.

A secret is a named value of one user (`accounts.models.Secret`), stored as a
Fernet token. Its value goes in through `secret_create` and comes out only
through `resolve_headers`, when a tool of its owner's agent runs; no API,
admin page, event, log line, version snapshot or listing holds it.

Keys: `AGENTRY_SECRETS_KEY` is a list of keys, newest first (comma-separated
in the environment). The first encrypts; every one decrypts, so a key is
rotated by putting the new one first, running `manage.py rotate_secrets`
(which re-encrypts every secret with it), then dropping the old one. Each
entry is a passphrase (a `Fernet.generate_key()` value works as one): the
Fernet key is derived from it. An empty list means `[SECRET_KEY]`.

Tool configs name a secret in a header value as `{"secret": "<name>"}`
(`HeaderValue`); the name resolves among the secrets of the agent's *owner*.
On save, plain values of headers whose names look like credentials
(`is_credential_header`) become secrets of the owner and the config keeps the
reference (`tool_headers_store`). Whoever else reads a config sees every
header value as `MASK` (`agent_config_mask`), `model_settings.extra_headers`
included.

Public surface:
    NAME_PATTERN, NAME_RULES, MASK, MAX_VALUE_CHARS
    SecretReference, HeaderValue    pydantic types of header values in tool configs
    SecretError                     base of the errors below (messages never hold values)
    SecretNameError                 a secret name breaks NAME_RULES or is taken
    SecretReferenceError            a config names a secret its owner does not have
    SecretUnavailableError          a secret cannot be read when a tool runs
    encrypt(value) -> str, decrypt(ciphertext) -> str
    secret_create(*, owner, name, value) -> Secret
    secrets_rotate() -> int         re-encrypts every secret with the first key
    is_credential_header(name) -> bool
    secret_name_of(value) -> str | None
    tool_headers_check(*, owner_id, tools)
    tool_headers_store(*, owner_id, tools, name_prefix, secret_model=Secret) -> list
    tool_headers_mask(tools) -> list
    agent_config_mask(config) -> dict    what others see: every header value MASK
    agent_config_blank(config) -> dict   every header value "" (an installed copy)
    resolve_headers(headers, owner_id) -> dict[str, str]   (async)
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field

from accounts.models import Secret

logger = logging.getLogger(__name__)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
NAME_RULES = (
    "1 to 100 characters: letters, digits, '_', '-' and '.', "
    "starting with a letter or a digit"
)
MASK = "***"
MAX_VALUE_CHARS = 10_000
#: Header names that carry credentials: their plain values are stored as secrets.
CREDENTIAL_HEADER = re.compile(
    r"^(proxy-)?authorization$|^cookie$|key|token|secret", re.IGNORECASE
)
_NAME_RE = re.compile(NAME_PATTERN)
_NOT_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class SecretReference(BaseModel):
    """`{"secret": "<name>"}`: a header value that is one of the owner's secrets."""

    model_config = ConfigDict(extra="forbid")

    secret: str = Field(
        pattern=NAME_PATTERN, description="Name of a secret of the agent's owner."
    )


#: A header value in a tool config: plain text or a reference to a secret.
HeaderValue = str | SecretReference


class SecretError(ValueError):
    """A problem with a secret; the message names it but never holds its value."""


class SecretNameError(SecretError):
    pass


class SecretReferenceError(SecretError):
    pass


class SecretUnavailableError(SecretError):
    pass


# ---- encryption ----------------------------------------------------------------


def _fernet_key(passphrase: str) -> bytes:
    digest = hashlib.sha256(f"agentry-secrets:{passphrase}".encode()).digest()
    return base64.urlsafe_b64encode(digest)


def _fernet() -> MultiFernet:
    keys = [key for key in settings.AGENTRY_SECRETS_KEY if key] or [settings.SECRET_KEY]
    return MultiFernet([Fernet(_fernet_key(key)) for key in keys])


def encrypt(value: str) -> str:
    """`value` as a Fernet token under the first key of AGENTRY_SECRETS_KEY."""
    return _fernet().encrypt(value.encode()).decode()


def decrypt(ciphertext: str) -> str:
    """The value of a token made by `encrypt` under any configured key.

    Raises:
        SecretUnavailableError: no configured key opens it.
    """
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise SecretUnavailableError(
            "A stored secret cannot be decrypted with the keys in "
            "AGENTRY_SECRETS_KEY (was a key removed before rotating?)."
        ) from None


@transaction.atomic
def secrets_rotate() -> int:
    """Re-encrypts every secret with the first key (all or none); returns how many."""
    fernet = _fernet()
    count = 0
    for secret in Secret.objects.only("pk", "ciphertext").iterator():
        try:
            rotated = fernet.rotate(secret.ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretUnavailableError(
                f"The secret {secret.pk} cannot be decrypted with any key in "
                "AGENTRY_SECRETS_KEY; add the key it was encrypted with."
            ) from None
        Secret.objects.filter(pk=secret.pk).update(ciphertext=rotated)
        count += 1
    return count


# ---- the store -----------------------------------------------------------------


def secret_create(*, owner: Any, name: str, value: str) -> Secret:
    """Stores `value` encrypted as the secret `name` of `owner`.

    Raises:
        SecretNameError: the name breaks NAME_RULES or `owner` already has it.
    """
    if not _NAME_RE.match(name):
        raise SecretNameError(f"A secret name has {NAME_RULES}.")
    try:
        with transaction.atomic():
            return Secret.objects.create(
                owner=owner, name=name, ciphertext=encrypt(value)
            )
    except IntegrityError:
        raise SecretNameError(f"You already have a secret named {name!r}.") from None


# ---- references in tool configs ------------------------------------------------


def is_credential_header(name: str) -> bool:
    return bool(CREDENTIAL_HEADER.search(name))


def secret_name_of(value: Any) -> str | None:
    """The secret a header value refers to, or None for plain text."""
    if isinstance(value, SecretReference):
        return value.secret
    if isinstance(value, Mapping) and isinstance(value.get("secret"), str):
        return value["secret"]
    return None


def _headers_of(entry: Mapping[str, Any]) -> Mapping[str, Any] | None:
    config = entry.get("config")
    headers = config.get("headers") if isinstance(config, Mapping) else None
    return headers if isinstance(headers, Mapping) and headers else None


def _with_headers(tools: Iterable[Mapping[str, Any]], change) -> list[dict[str, Any]]:
    """A deep copy of `tools` whose header maps are `change(tool, headers)`."""
    changed = []
    for entry in tools:
        entry = copy.deepcopy(dict(entry))
        headers = _headers_of(entry)
        if headers is not None:
            entry["config"]["headers"] = change(entry.get("tool", ""), dict(headers))
        changed.append(entry)
    return changed


def tool_headers_check(*, owner_id: Any, tools: Iterable[Mapping[str, Any]]) -> None:
    """Raises `SecretReferenceError` if a header names a secret `owner_id` lacks."""
    wanted = {
        (entry.get("tool", ""), header, name)
        for entry in tools
        for header, value in (_headers_of(entry) or {}).items()
        if (name := secret_name_of(value)) is not None
    }
    if not wanted:
        return
    owned = set(
        Secret.objects.filter(
            owner_id=owner_id, name__in={name for _, _, name in wanted}
        ).values_list("name", flat=True)
    )
    for tool, header, name in sorted(wanted):
        if name not in owned:
            raise SecretReferenceError(
                f"Header {header!r} of tool {tool!r} names the secret {name!r}, "
                "which the agent's owner does not have; create it with "
                "POST /api/secrets/ first."
            )


def tool_headers_store(
    *,
    owner_id: Any,
    tools: Iterable[Mapping[str, Any]],
    name_prefix: str,
    secret_model: type[Any] = Secret,
) -> list[dict[str, Any]]:
    """`tools` with plain credential header values replaced by references.

    Each such value becomes a secret of `owner_id` named
    `<name_prefix>.<header>` (then `-2`, `-3`, ... when taken by another
    value); a value already stored under one of those names is reused, so
    saving the same config twice changes nothing. `secret_model` lets a data
    migration pass its historical model.

    Raises:
        SecretReferenceError: a header names a secret `owner_id` does not have.
    """
    tools = list(tools)
    if secret_model is Secret:
        tool_headers_check(owner_id=owner_id, tools=tools)

    def store(tool: str, headers: dict[str, Any]) -> dict[str, Any]:
        for header, value in headers.items():
            if isinstance(value, str) and value and is_credential_header(header):
                name = _stored_name(secret_model, owner_id, name_prefix, header, value)
                headers[header] = {"secret": name}
        return headers

    return _with_headers(tools, store)


def _stored_name(
    secret_model: type[Any], owner_id: Any, prefix: str, header: str, value: str
) -> str:
    """The name of `owner_id`'s secret holding `value`, created if need be."""
    stem = _NOT_NAME_CHARS.sub("-", f"{prefix}.{header}".lower()).strip("-._")
    base = (stem or "header")[:90]
    family = secret_model.objects.filter(owner_id=owner_id, name__startswith=base)
    taken: set[str] = set()
    for name, ciphertext in family.values_list("name", "ciphertext"):
        taken.add(name)
        if name == base or re.fullmatch(re.escape(base) + r"-\d+", name):
            try:
                if decrypt(ciphertext) == value:
                    return name
            except SecretUnavailableError:
                continue
    number = 1
    while True:
        name = base if number == 1 else f"{base}-{number}"
        number += 1
        if name in taken:
            continue
        try:
            with transaction.atomic():
                secret_model.objects.create(
                    owner_id=owner_id, name=name, ciphertext=encrypt(value)
                )
            return name
        except IntegrityError:
            # Taken meanwhile by a concurrent save: try the next number.
            taken.add(name)


def tool_headers_mask(tools: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`tools` as others see them: every header value `MASK`, no secret names."""
    return _with_headers(tools, lambda tool, headers: dict.fromkeys(headers, MASK))


def _every_header(config: Mapping[str, Any], replacement: str) -> dict[str, Any]:
    config = dict(config)
    if isinstance(config.get("tools"), list):
        config["tools"] = _with_headers(
            config["tools"], lambda tool, headers: dict.fromkeys(headers, replacement)
        )
    model_settings = config.get("model_settings")
    if isinstance(model_settings, Mapping) and isinstance(
        model_settings.get("extra_headers"), Mapping
    ):
        config["model_settings"] = {
            **model_settings,
            "extra_headers": dict.fromkeys(
                model_settings["extra_headers"], replacement
            ),
        }
    return config


def agent_config_mask(config: Mapping[str, Any]) -> dict[str, Any]:
    """An agent's config (a snapshot, or an agent as the API answers it) as
    others see it: every header value of its tools and of
    `model_settings.extra_headers` is `MASK`."""
    return _every_header(config, MASK)


def agent_config_blank(config: Mapping[str, Any]) -> dict[str, Any]:
    """An agent's config with every header value empty, for a new owner to fill in."""
    return _every_header(config, "")


# ---- resolving at run time -----------------------------------------------------


def _reveal(owner_id: Any, names: set[str]) -> dict[str, str]:
    close_old_connections()
    try:
        found = dict(
            Secret.objects.filter(owner_id=owner_id, name__in=names).values_list(
                "name", "ciphertext"
            )
        )
        if missing := sorted(names - set(found)):
            # The call's error reaches whoever runs the agent, who may not be
            # its owner: the name goes to the log only.
            logger.warning(
                "Secret %r of user %s is named in a tool's headers but does not exist.",
                missing[0],
                owner_id,
            )
            raise SecretUnavailableError(
                "A secret named in the tool's headers does not exist (the agent's "
                "owner may have deleted it)."
            )
        Secret.objects.filter(owner_id=owner_id, name__in=names).update(
            last_used_at=timezone.now()
        )
        return {name: decrypt(ciphertext) for name, ciphertext in found.items()}
    finally:
        close_old_connections()


async def resolve_headers(
    headers: Mapping[str, HeaderValue | Mapping[str, Any]], owner_id: Any
) -> dict[str, str]:
    """The headers to send: each reference replaced by the value of that secret
    of `owner_id` (the agent's owner), whose `last_used_at` is updated.

    Raises:
        SecretUnavailableError: a named secret is missing or cannot be decrypted.
    """
    names = {name for value in headers.values() if (name := secret_name_of(value))}
    if not names:
        return {header: str(value) for header, value in headers.items()}
    if owner_id is None:
        raise SecretUnavailableError(
            "The tool's headers name secrets, but the agent's owner is unknown."
        )
    # Tools run inside the event loop: the ORM runs in a worker thread.
    values = await sync_to_async(
        functools.partial(_reveal, owner_id, names), thread_sensitive=False
    )()
    return {
        header: values[name] if (name := secret_name_of(value)) else str(value)
        for header, value in headers.items()
    }
