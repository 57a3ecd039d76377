"""Text that PostgreSQL (or any sane client) cannot store, and ids that are not ids.

NUL characters are rejected by PostgreSQL's text type and unpaired UTF-16
surrogates cannot be encoded as UTF-8, so either would surface as a database
or encoding error deep inside a request. These checks have no web framework
in them: the API's parsers, the websocket consumer and the services all use
them.

Public surface:
    INVALID_TEXT, is_invalid_text(value)   NUL or a lone surrogate
    invalid_text_path(value)   where in a JSON-like value the first bad string is
    is_too_deep(value)         whether it nests deeper than MAX_JSON_DEPTH
    is_uuid(value)             whether an id from a URL, frame or body reads as a UUID
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

#: What PostgreSQL cannot store in text: NUL, and surrogates that pair nothing.
INVALID_TEXT = re.compile("[\x00\ud800-\udfff]")
INVALID_TEXT_MESSAGE = "Text may not contain NUL characters or unpaired surrogates."


#: Deepest nesting of arrays and objects accepted: far beyond any real
#: configuration, well short of the recursion limit that encoding the value
#: again (for the database, for a response) would hit.
MAX_JSON_DEPTH = 100
TOO_DEEP_MESSAGE = f"JSON may not nest more than {MAX_JSON_DEPTH} levels deep."


def is_too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether lists and mappings in `value` nest more than `limit` levels."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def is_invalid_text(value: str) -> bool:
    return bool(INVALID_TEXT.search(value))


def is_uuid(value: Any) -> bool:
    """Whether `value` reads as a UUID (ids from URLs, frames and bodies)."""
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def invalid_text_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) holding NUL or a lone surrogate."""
    if isinstance(value, str):
        return (path or "body") if is_invalid_text(value) else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and is_invalid_text(key):
                return path or "body"
            found = invalid_text_path(item, here)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = invalid_text_path(item, f"{path}[{index}]" if path else str(index))
            if found:
                return found
    return None
