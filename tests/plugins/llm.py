"""The `fake_llm` fixture: a fake OpenAI-compatible server for one test.

The server (`testing.fake_openai`) runs on its own event loop in a background
thread on a free port of 127.0.0.1, so sync tests, async tests and ASGI apps
reach it alike. For the test's duration `OPENAI_BASE_URL` points at it,
`OPENAI_API_KEY` is `test`, and pydantic-ai model requests are allowed, so any
`openai-chat:<name>` model (and `openai:<name>` class) built by
`agents.factory` talks to it over real HTTP. Steer an answer with directives
in the user message (`[[tokens=5]]`, `[[call read_file {"path": "a"}]]`,
`[[error=500]]`, `[[hang]]`, ...; see `testing.fake_openai`), then assert on
`fake_llm.requests` (the JSON bodies it received) and `fake_llm.stats`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic_ai import models

from testing.fake_openai import FakeOpenAIThread


@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIThread]:
    """A running fake model server; `openai-chat:fake` reaches it."""
    server = FakeOpenAIThread(tokens=5).start()
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    monkeypatch.setattr(models, "ALLOW_MODEL_REQUESTS", True)
    try:
        yield server
    finally:
        server.stop()
