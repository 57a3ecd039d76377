"""Fixtures shared by the whole suite: users, API clients, the sandbox root.

Real model requests are switched off for the whole run; tests that talk to the
fake OpenAI-compatible server switch them on for their own scope.
"""

import pytest
from pydantic_ai import models

models.ALLOW_MODEL_REQUESTS = False


@pytest.fixture(autouse=True)
def _isolated_paths(settings, tmp_path):
    """Every test gets its own REPO_ROOT and MEDIA_ROOT."""
    settings.REPO_ROOT = tmp_path / "workspace"
    settings.REPO_ROOT.mkdir()
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings
