"""The compose deployment's own files: the proxy's access log keeps query
strings (websocket credentials) out, its certificate is made when none is
given, and health probes over plain HTTP are never redirected."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from testing.live import LiveServer, free_port, server_env

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


def _nginx_for_test(tmp_path: Path, upstream_port: int) -> tuple[Path, int, int]:
    """deploy/nginx.conf pointed at one local daphne, its files under tmp_path.

    Only what Docker provides changes: the upstream address, the resolver, the
    ports, and the paths of the certificate and logs.
    """
    http_port, https_port = free_port(), free_port()
    tls = tmp_path / "tls"
    subprocess.run(
        ["sh", str(PROJECT_ROOT / "deploy" / "tls-selfsigned.sh")],
        env={"PATH": "/usr/bin:/bin", "TLS_DIR": str(tls)},
        check=True,
        capture_output=True,
        timeout=60,
    )
    conf = NGINX_CONF.read_text()
    conf = conf.replace("resolver 127.0.0.11 valid=10s ipv6=off;", "")
    conf = conf.replace(
        "server app:8000 resolve;", f"server 127.0.0.1:{upstream_port};"
    )
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{http_port};")
    conf = conf.replace("listen 8443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    conf = conf.replace(":8443$request_uri", f":{https_port}$request_uri")
    conf = conf.replace("/etc/nginx/tls/", f"{tls}/")
    conf = conf.replace("/var/log/nginx/access.log", str(tmp_path / "access.log"))
    conf = conf.replace(
        "worker_processes auto;",
        f"worker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;",
    )
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        conf = conf.replace(
            "http {", f"http {{\n  {temp}_temp_path {tmp_path}/{temp};", 1
        )
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    return path, http_port, https_port


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_through_the_proxy_credentials_in_query_strings_stay_out_of_its_log(tmp_path):
    env = server_env(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        redis_url=None,
        model_url=None,
        repo_root=tmp_path / "workspace",
        BEHIND_TLS_PROXY="1",
        SECURE_SSL_REDIRECT="1",
        SECURE_COOKIES="1",
        NUM_PROXIES="1",
    )
    server = LiveServer(env, tmp_path / "logs").start()
    conf, http_port, https_port = _nginx_for_test(tmp_path, server.port)
    nginx = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(tmp_path), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        base = f"https://127.0.0.1:{https_port}"
        with httpx.Client(verify=False, timeout=10) as client:
            for _ in range(100):
                try:
                    health = client.get(f"{base}/health")
                    break
                except httpx.TransportError:
                    if nginx.poll() is not None:
                        pytest.fail(nginx.stderr.read().decode())
                    time.sleep(0.1)
            assert health.status_code == 200
            plain = client.get(f"http://127.0.0.1:{http_port}/api/auth/me")
            assert plain.status_code == 301
            assert plain.headers["location"] == f"{base}/api/auth/me"
            # Through TLS the app sees https: no redirect loop, a JSON 401.
            assert client.get(f"{base}/api/auth/me?token=SECRET-1").status_code == 401
            ws = client.get(
                f"{base}/ws/sessions/x/?ticket=SECRET-2",
                headers={"Connection": "Upgrade", "Upgrade": "websocket"},
            )
            assert ws.status_code in (400, 403, 404, 426, 101)
    finally:
        nginx.terminate()
        nginx.wait(10)
        server.stop()
    log = (tmp_path / "access.log").read_text()
    assert "/api/auth/me" in log and "/ws/sessions/x/" in log
    assert "SECRET" not in log and "?" not in log, log


def test_compose_runs_turns_on_worker_replicas_of_the_app_image():
    compose = yaml.safe_load((PROJECT_ROOT / "compose.yaml").read_text())
    app, worker = compose["services"]["app"], compose["services"]["worker"]
    assert worker["image"] == app["image"]
    assert worker["command"][-2:] == ["manage.py", "worker"]
    # Web and worker replicas agree on where turns run and share the stores.
    assert app["environment"]["AGENTRY_TURN_EXECUTION"].endswith(":-task}")
    # and on which queue carries the tasks (settable, the database by default).
    assert app["environment"]["AGENTRY_TASK_BACKEND"] == (
        "${AGENTRY_TASK_BACKEND:-database}"
    )
    for key, value in app["environment"].items():
        assert worker["environment"][key] == value, key
    assert worker["volumes"] == app["volumes"]
    assert worker["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert "ports" not in worker and "expose" not in worker
