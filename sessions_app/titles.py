"""A chat's title: named by its first message until its user names it.

Public surface:
    title_from_message(content)             the title a message gives an untitled
                                            chat: one line, trimmed, at most
                                            TITLE_LENGTH characters
    title_untitled_session(session, content)  gives `session` that title when it
                                            has none (one UPDATE, only then)
    TITLE_LENGTH
"""

from __future__ import annotations

from sessions_app.models import Session

TITLE_LENGTH = 60
_ELLIPSIS = "…"


def title_from_message(content: str) -> str:
    words = " ".join(content.split())
    if len(words) <= TITLE_LENGTH:
        return words
    cut = words[: TITLE_LENGTH - len(_ELLIPSIS) + 1]
    # Cut at the last word boundary unless that loses most of the line.
    space = cut.rfind(" ")
    if space >= TITLE_LENGTH // 2:
        cut = cut[:space]
    return cut[: TITLE_LENGTH - len(_ELLIPSIS)].rstrip() + _ELLIPSIS


def title_untitled_session(session: Session, content: str) -> None:
    if session.title:
        return
    title = title_from_message(content)
    if not title:
        return
    # Guarded by the stored title too: a rename that landed meanwhile wins.
    Session.objects.filter(pk=session.pk, title="").update(title=title)
    session.title = title
