"""The reads a turn makes of what its user may use go through the selectors."""

from __future__ import annotations

from sessions_app import selectors
from sessions_app.models import Artifact


def test_a_turn_may_attach_only_its_users_artifacts_of_its_session(
    user, other_user, make_session
):
    session = make_session(user)
    elsewhere = make_session(user, agent=session.agent)
    mine = Artifact.objects.create(session=session, owner=user, name="a.txt", file="a")
    other_session = Artifact.objects.create(
        session=elsewhere, owner=user, name="b.txt", file="b"
    )
    theirs = Artifact.objects.create(
        session=session, owner=other_user, name="c.txt", file="c"
    )
    ids = [str(mine.pk), str(other_session.pk), str(theirs.pk), "not-an-id"]

    found = selectors.attachments_for_turn(
        user_id=user.pk, session_id=session.pk, ids=ids
    )

    assert list(found) == [str(mine.pk)]
    assert not selectors.attachments_for_turn(
        user_id=other_user.pk, session_id=elsewhere.pk, ids=ids
    )
