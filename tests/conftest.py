"""Fixtures shared by the whole suite.

Each area keeps its fixtures in a plugin module under `tests/plugins/`:
`accounts` (users, API clients), `llm` (the fake OpenAI-compatible server),
`runtime` (sessions, turns, websocket clients). Real model requests are
switched off for the whole run; the fake-server fixture switches them on for
its own scope.
"""

from pathlib import Path

import pytest
from pydantic_ai import models

pytest_plugins = [
    "tests.plugins.accounts",
    "tests.plugins.llm",
    "tests.plugins.migrations",
    "tests.plugins.runtime",
]

models.ALLOW_MODEL_REQUESTS = False


@pytest.fixture(autouse=True, scope="session")
def _static_root_exists():
    """WhiteNoise serves STATIC_ROOT and warns on every handler it builds when
    the directory is missing (nothing is collected for the test suite)."""
    from django.conf import settings

    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """The webhook delivery loop, started by the first turn a test runs, reads
    the test database on a thread of its own: it ends before that database is
    dropped."""
    yield
    from automation import webhooks

    webhooks.stop_delivering()


@pytest.fixture(autouse=True)
def _test_configuration(settings):
    """The suite's agents run on pydantic-ai's `test` model, which a server
    allows only when asked (it follows DEBUG, off under tests), and its tests
    start many turns per user: the turn limits are raised as the contract kit
    raises them. Tests of the limits set low ones themselves."""
    settings.AGENTRY_ALLOW_TEST_MODEL = True
    settings.AGENTRY_TURN_RATE = "100000/min"
    settings.AGENTRY_MAX_QUEUED_TURNS = 1000
    settings.AGENTRY_MAX_ACTIVE_TURNS = 100_000


@pytest.fixture(autouse=True)
def _isolated_paths(settings, tmp_path):
    """Every test gets its own REPO_ROOT, MEDIA_ROOT and AGENTRY_WORKSPACES."""
    settings.REPO_ROOT = tmp_path / "workspace"
    settings.REPO_ROOT.mkdir()
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.AGENTRY_WORKSPACES = tmp_path / "workspaces"
    return settings
