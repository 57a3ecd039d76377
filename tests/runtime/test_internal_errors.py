"""An unexpected failure of a turn tells the client nothing of its internals:
the event carries a generic message, the server log the exception."""

from __future__ import annotations

import logging

from sessions_app.turn_events import classify_failure


def test_an_unexpected_exception_is_a_generic_internal_error(caplog):
    leak = RuntimeError("connection to db-7.internal:5432 as admin/hunter2 failed")
    with caplog.at_level(logging.ERROR, logger="sessions_app.turn_events"):
        status, code, message = classify_failure(leak)
    assert (status, code) == ("failed", "internal_error")
    assert "hunter2" not in message and "RuntimeError" not in message
    assert "internal error" in message
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is leak]
    assert logged, "the exception and its traceback stay in the server log"
