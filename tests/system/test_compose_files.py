"""The compose deployment's own files: the proxy's access log keeps query
strings (websocket credentials) out, its certificate is made when none is
given, and health probes over plain HTTP are never redirected."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = PROJECT_ROOT / "deploy" / "nginx.conf"
QUERY_VARIABLES = (
    "$request ",
    "$request'",
    "$request_uri",
    "$args",
    "$query_string",
    "$is_args",
    "$arg_",
)


def _log_formats(conf: str) -> dict[str, str]:
    formats = {}
    for name, body in re.findall(r"log_format\s+(\w+)\s+((?:'[^']*'\s*)+);", conf):
        formats[name] = "".join(re.findall(r"'([^']*)'", body))
    return formats


def test_the_proxy_access_log_leaves_query_strings_out():
    conf = NGINX_CONF.read_text()
    access_logs = re.findall(r"^\s*access_log\s+([^;]+);", conf, re.MULTILINE)
    assert access_logs, (
        "an explicit access_log, or nginx's default format logs $request"
    )
    formats = _log_formats(conf)
    for directive in access_logs:
        parts = directive.split()
        if parts[0] == "off":
            continue
        assert len(parts) >= 2 and parts[1] in formats, directive
        line = formats[parts[1]] + " "
        assert "$uri" in line
        for variable in QUERY_VARIABLES:
            assert variable not in line, (variable, line)


def test_compose_serves_https_with_the_tls_script_mounted():
    compose = yaml.safe_load((PROJECT_ROOT / "compose.yaml").read_text())
    proxy = compose["services"]["proxy"]
    assert "8443:8443" in proxy["ports"]
    script_mount = next(v for v in proxy["volumes"] if "tls-selfsigned.sh" in v)
    source = PROJECT_ROOT / script_mount.split(":")[0].removeprefix("./")
    # The nginx entrypoint skips scripts that are not executable.
    assert source.stat().st_mode & 0o111
    assert "ssl_certificate /etc/nginx/tls/tls.crt;" in NGINX_CONF.read_text()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_tls_script_makes_a_certificate_once(tmp_path):
    script = PROJECT_ROOT / "deploy" / "tls-selfsigned.sh"
    env = {"PATH": "/usr/bin:/bin", "TLS_DIR": str(tmp_path / "tls")}
    first = subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert first.returncode == 0, first.stderr
    cert = (tmp_path / "tls" / "tls.crt").read_bytes()
    assert (tmp_path / "tls" / "tls.key").stat().st_mode & 0o077 == 0
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text"],
        input=cert,
        capture_output=True,
        timeout=30,
    ).stdout.decode()
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    second = subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 0
    assert (tmp_path / "tls" / "tls.crt").read_bytes() == cert, (
        "a given certificate is kept"
    )


@pytest.mark.django_db
def test_health_is_not_redirected_to_https(settings, client):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/health").status_code == 200
    assert client.get("/api/auth/me").status_code == 301
