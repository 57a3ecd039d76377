"""Project-wide invariants: migrations match the models, and the README's
configuration table names every setting the code reads."""

import re
from pathlib import Path

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_models_have_no_missing_migrations():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_every_setting_the_code_reads_is_in_the_readme():
    root = Path(__file__).resolve().parent.parent
    read = set(
        re.findall(
            r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"',
            (root / "config" / "settings.py").read_text(),
        )
    )
    for app in (
        "accounts",
        "agents",
        "config",
        "sessions_app",
        "tools",
        "observability",
    ):
        for module in (root / app).rglob("*.py"):
            read |= set(
                re.findall(
                    r'os\.environ(?:\.get\(|\[)"([A-Z][A-Z0-9_]+)"', module.read_text()
                )
            )
    readme = (root / "README.md").read_text()
    assert len(read) > 40
    assert sorted(name for name in read if f"`{name}`" not in readme) == []
