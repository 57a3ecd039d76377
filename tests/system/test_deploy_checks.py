"""`manage.py check --deploy` is clean under production settings.

Production is the same settings module with a production environment (see
docs/deployment.md): DEBUG off, a long random SECRET_KEY, real hosts, TLS
terminated by the proxy with secure cookies, HSTS and the HTTPS redirect.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

import yaml

from testing.live import outside_env

PROJECT_ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DEBUG": "0",
    "ALLOWED_HOSTS": "agentry.example.com",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_COOKIES": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "BEHIND_TLS_PROXY": "1",
    "DATABASE_URL": "postgresql://agentry@127.0.0.1:5432/agentry",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def _check_deploy(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = outside_env()
    env.update(PRODUCTION_ENV, SECRET_KEY=secrets.token_urlsafe(64), **overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_is_clean_under_production_settings():
    done = _check_deploy()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_check_deploy_catches_an_insecure_setting():
    # The check is live: dropping HSTS is reported and fails the run.
    done = _check_deploy(SECURE_HSTS_SECONDS="0")
    assert done.returncode != 0
    assert "security.W004" in done.stdout + done.stderr


def _compose_app_environment() -> dict[str, str]:
    """The `app` service's environment as `docker compose up` gives it with
    nothing set but SECRET_KEY (each `${VAR:-default}` at its default)."""
    compose = yaml.safe_load((PROJECT_ROOT / "compose.yaml").read_text())
    given = {"SECRET_KEY": secrets.token_urlsafe(64)}

    def substitute(value: str) -> str:
        return re.sub(
            r"\$\{(\w+)(?::?[-?]([^}]*))?\}",
            lambda m: given.get(m.group(1), m.group(2) or ""),
            value,
        )

    return {
        key: substitute(str(value))
        for key, value in compose["services"]["app"]["environment"].items()
    }


def test_check_deploy_with_composes_defaults_has_no_tls_warnings():
    compose_env = _compose_app_environment()
    assert compose_env["DEBUG"] == "0"
    env = {k: v for k, v in outside_env().items() if k not in compose_env}
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=PROJECT_ROOT,
        env={**env, **compose_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for warning in ("W004", "W008", "W012", "W016"):
        assert f"security.{warning}" not in output, output
