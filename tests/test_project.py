"""Project-wide invariants: migrations match the models, and the README's
configuration table names every setting the code reads."""

import re
from pathlib import Path

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_models_have_no_missing_migrations():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


#: The product's packages: every setting they read is documented.
PRODUCT = (
    "accounts",
    "agents",
    "automation",
    "bench",
    "config",
    "core",
    "observability",
    "sessions_app",
    "testing",
    "tools",
    "usage",
)
#: Variables the product reads that belong to Django or the platform, not to it.
NOT_SETTINGS = {"DJANGO_SETTINGS_MODULE"}


def _settings_read(root: Path) -> set[str]:
    """Environment variables settings.py reads, Django settings the code reads
    (`settings.AGENTRY_*`, `getattr(settings, "...")`) and environment
    variables product modules read themselves."""
    read = set(
        re.findall(
            r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"',
            (root / "config" / "settings.py").read_text(),
        )
    )
    for package in PRODUCT:
        for module in (root / package).rglob("*.py"):
            if "migrations" in module.parts:
                continue
            text = module.read_text()
            read |= set(re.findall(r"settings\.(AGENTRY_[A-Z0-9_]+)", text))
            read |= set(
                re.findall(r'getattr\(\s*settings,\s*"([A-Z][A-Z0-9_]+)"', text)
            )
            read |= set(
                re.findall(
                    r'os\.(?:environ\.get\(|environ\[|getenv\()\s*"([A-Z][A-Z0-9_]+)"',
                    text,
                )
            )
    return read - NOT_SETTINGS


def _configuration_table(readme: str) -> str:
    """The rows of the README's tables under `## Configuration` (its
    subsections included)."""
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def test_every_setting_the_code_reads_is_in_the_readme():
    root = Path(__file__).resolve().parent.parent
    read = _settings_read(root)
    table = _configuration_table((root / "README.md").read_text())
    assert len(read) > 60
    assert sorted(name for name in read if f"`{name}`" not in table) == []
