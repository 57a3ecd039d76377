"""Real server processes for system tests and benchmarks.

Everything here runs the product the way it is deployed: `manage.py migrate`,
then `daphne -b 127.0.0.1 -p PORT config.asgi:application` as a child process
with its own environment, talking to a real PostgreSQL database, a real Redis
and a fake OpenAI-compatible model server (`testing.fake_openai`) over HTTP.
Nothing is imported from the project into the server; tests and benchmarks see
it only through HTTP and websockets.

Public surface:
    free_port()                       a free TCP port on 127.0.0.1
    LiveProcess                       what a spawned product process shares (process group,
                                      log, stop/kill/restart, context manager)
    LiveServer(env, log_dir, ...)     one daphne process: start(), stop() (SIGTERM),
                                      kill() (SIGKILL), restart(), rss_bytes(), url, ws_url
    FakeModelServer(log_dir, ...)     `python -m testing.fake_openai` as a process: start(), stop()
    RedisServer(log_dir)              a private `redis-server` on a free port: start(), stop(), url(db)
    PostgresDatabase(name)            create() / drop() a database on 127.0.0.1:5432 (user postgres);
                                      `fresh(prefix, migrated=True)` copies the migrated template
    migrated_template()               a database migrated to this checkout, built once, kept
    postgres_available(), redis_available(url)   whether the services answer
    ApiClient(base_url)               httpx client: register_and_login(), create_agent(),
                                      create_session(), send_message(), all_events(), ws_url()
    server_env(...)                   the environment a LiveServer needs, from the parts above
    outside_env()                     this environment without the product's settings (for
                                      any spawned product process)
    stop_process_group(proc, timeout) SIGTERM to a child's process group, SIGKILL after timeout
    spawn(command, log), wait_until_up(proc, up, ...)
                                      start a child in its own process group; wait
                                      until it answers (or say why it died)

Every process is started in its own process group (`start_new_session=True`)
and stopping signals the whole group, so nothing it spawned outlives it. Logs
go to files in `log_dir` (`<name>.log`), which failing tests print.

Typical use:

    db = PostgresDatabase.fresh("agentry_sys")
    model = FakeModelServer(log_dir).start()
    env = server_env(database_url=db.url, redis_url="redis://127.0.0.1:6379/7",
                     model_url=model.base_url, repo_root=tmp / "repo")
    with LiveServer(env, log_dir) as server:
        api = ApiClient(server.url)
        api.register_and_login()
        agent = api.create_agent(model=FAKE_MODEL)
        session = api.create_session(agent["id"])
        answer = api.send_message(session["id"], "[[tokens=5]] hi")
    model.stop(); db.drop()
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Self

import httpx

from testing.fake_openai import FAKE_MODEL

__all__ = [
    "ApiClient",
    "FakeModelServer",
    "LiveServer",
    "PostgresDatabase",
    "ProcessError",
    "RedisServer",
    "free_port",
    "migrated_template",
    "postgres_available",
    "redis_available",
    "server_env",
    "stop_process_group",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DAPHNE = str(Path(sys.executable).with_name("daphne"))
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
#: Variables of the calling process that must not leak into a server's settings.
_PRODUCT_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "REPO_ROOT",
    "MEDIA_ROOT",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "DJANGO_SETTINGS_MODULE",
    "STATIC_ROOT",
)
_PRODUCT_PREFIXES = ("AGENTRY_", "DATABASE_POOL_", "PYTEST_", "JWT_", "SECURE_")


class ProcessError(RuntimeError):
    """A process did not start or answer in time; the message holds its log tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


def outside_env() -> dict[str, str]:
    """This process's environment without anything that configures the product:
    the start of every environment a spawned product process gets."""
    return {
        **{
            key: value
            for key, value in os.environ.items()
            if key not in _PRODUCT_VARIABLES and not key.startswith(_PRODUCT_PREFIXES)
        },
        # Nor the development `.env` that `make run` leaves in the checkout.
        "AGENTRY_ENV_FILE": "",
    }


def spawn(
    command: list[str],
    log: IO[bytes],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = PROJECT_ROOT,
) -> subprocess.Popen[bytes]:
    """Starts `command` in a process group of its own (so stopping it reaches
    whatever it spawned), its output appended to `log`, no stdin."""
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_until_up(
    proc: subprocess.Popen[bytes],
    up: Callable[[], bool],
    *,
    what: str,
    log_path: Path,
    timeout: float,
) -> bool:
    """Polls `up()` until it holds (True) or `timeout` passes (False); raises
    ProcessError, with the log's tail, when the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ProcessError(f"{what} exited:\n{_tail(log_path)}")
        if up():
            return True
        time.sleep(0.05)
    return False


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_process_group(
    proc: subprocess.Popen[bytes] | None, timeout: float
) -> int | None:
    """SIGTERM to the group, SIGKILL after `timeout`; returns the exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(10)
    # Children that ignored the group signal (none expected) go too.
    _signal_group(proc, signal.SIGKILL)
    return proc.returncode


def server_env(
    *,
    database_url: str,
    redis_url: str | None,
    model_url: str | None,
    repo_root: Path,
    media_root: Path | None = None,
    **overrides: Any,
) -> dict[str, str]:
    """A production-like environment (DEBUG=0) for a LiveServer.

    `overrides` are extra variables (`AGENTRY_TURN_LEASE="3"`, ...); a value of
    None removes the variable.
    """
    repo_root.mkdir(parents=True, exist_ok=True)
    media = media_root or repo_root.parent / "media"
    media.mkdir(parents=True, exist_ok=True)
    env = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": "live-" + uuid.uuid4().hex * 2,
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "REPO_ROOT": str(repo_root),
        "MEDIA_ROOT": str(media),
        "OPENAI_API_KEY": "fake-key",
        "LOG_LEVEL": "INFO",
        # Rates that let a test or benchmark log in many users from one address.
        "AGENTRY_LOGIN_RATE": "100000/min",
        "AGENTRY_LOGIN_IP_RATE": "100000/min",
        "AGENTRY_REGISTER_RATE": "100000/min",
        "AGENTRY_REFRESH_RATE": "100000/min",
        # and start many turns per user, as the contract kit does.
        "AGENTRY_TURN_RATE": "100000/min",
        "AGENTRY_MAX_QUEUED_TURNS": "1000",
        "AGENTRY_MAX_ACTIVE_TURNS": "100000",
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    if model_url:
        env["OPENAI_BASE_URL"] = model_url
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


class LiveProcess:
    """What every spawned product process shares: its process group, its log
    file under `log_dir`, a graceful `stop()` (SIGTERM), `kill()` (SIGKILL),
    and use as a context manager. Subclasses start it."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str) -> None:
        self.env = {**outside_env(), **env}
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = self.log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """Graceful stop (SIGTERM); returns the exit status."""
        return stop_process_group(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        if self.proc is not None:
            _signal_group(self.proc, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> Self:
        self.stop()
        self.proc = None
        return self.start()

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class LiveServer(LiveProcess):
    """One daphne process serving `config.asgi:application` on 127.0.0.1.

    `start()` migrates the database (first start only), collects static files
    when STATIC_ROOT holds none (a DEBUG=0 server refuses to start without
    them) and waits until `GET /health` answers 200. `stop()` sends SIGTERM (daphne's graceful
    shutdown), `kill()` SIGKILL; `restart()` starts again on the same port.
    """

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        *,
        port: int | None = None,
        name: str = "daphne",
        migrate: bool = True,
        startup_timeout: float = 60.0,
    ) -> None:
        super().__init__(env, log_dir, name)
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self._migrate = migrate

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def manage(self, *args: str) -> None:
        """Runs `manage.py <args>` with the server's environment, logged beside it."""
        command = " ".join(args)
        with self.log_path.open("ab") as log:
            log.write(f"$ manage.py {command}\n".encode())
            log.flush()
            done = subprocess.run(
                [PYTHON, "manage.py", *args],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=300,
                check=False,
            )
        if done.returncode:
            raise ProcessError(
                f"{command} failed ({done.returncode}); {self.log_path}:\n{_tail(self.log_path)}"
            )

    def migrate(self) -> None:
        self.manage("migrate", "--noinput")

    def collect_static(self) -> None:
        """`collectstatic` once per STATIC_ROOT (the checkout's by default)."""
        root = Path(self.env.get("STATIC_ROOT") or PROJECT_ROOT / "staticfiles")
        if not (root / "staticfiles.json").is_file():
            self.manage("collectstatic", "--noinput")

    def start(self) -> LiveServer:
        if self.running():
            return self
        if self._migrate:
            self.migrate()
            self._migrate = False
        if self.env.get("DEBUG") != "1":
            self.collect_static()
        deadline = time.monotonic() + 15
        # A restart may find the port briefly held by the previous process.
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        log = self.log_path.open("ab")
        log.write(f"$ daphne -p {self.port}\n".encode())
        log.flush()
        self.proc = spawn(
            [
                DAPHNE,
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "config.asgi:application",
            ],
            log,
            env=self.env,
        )
        log.close()
        self.wait_healthy(self.startup_timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline, last = time.monotonic() + timeout, "no answer"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ProcessError(
                    f"{self.name} exited with {self.proc.returncode}; "
                    f"{self.log_path}:\n{_tail(self.log_path)}"
                )
            try:
                response = httpx.get(f"{self.url}/health", timeout=2, trust_env=False)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise ProcessError(
            f"{self.name} not healthy within {timeout}s ({last}); "
            f"{self.log_path}:\n{_tail(self.log_path)}"
        )

    def rss_bytes(self) -> int:
        """Resident memory of the daphne process (from /proc)."""
        if self.proc is None:
            return 0
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0


class FakeModelServer:
    """`python -m testing.fake_openai` in its own process (own CPU, own crash domain)."""

    def __init__(
        self,
        log_dir: Path,
        *,
        port: int | None = None,
        tokens: int = 8,
        delay_ms: float = 0.0,
        ttft_ms: float = 0.0,
        name: str = "fake_openai",
    ) -> None:
        self.port = port or free_port()
        self.args = [
            "--tokens",
            str(tokens),
            "--delay-ms",
            str(delay_ms),
            "--ttft-ms",
            str(ttft_ms),
        ]
        self.log_path = Path(log_dir) / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What OPENAI_BASE_URL must be."""
        return f"{self.url}/v1"

    def start(self, timeout: float = 20.0) -> FakeModelServer:
        with self.log_path.open("ab") as log:
            args = ["--port", str(self.port), *self.args]
            self.proc = spawn(
                [PYTHON, "-m", "testing.fake_openai", *args],
                log,
                env=outside_env(),
            )
        if wait_until_up(
            self.proc,
            lambda: _port_open(self.port),
            what="fake model server",
            log_path=self.log_path,
            timeout=timeout,
        ):
            return self
        self.stop()
        raise ProcessError(f"fake model server did not listen on {self.port}")

    def stats(self) -> dict[str, int]:
        return httpx.get(f"{self.url}/stats", timeout=5, trust_env=False).json()

    def stop(self) -> None:
        stop_process_group(self.proc, 5.0)

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class RedisServer:
    """A private `redis-server` (no persistence) on a free port, to stop at will."""

    def __init__(self, log_dir: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_path = Path(log_dir) / f"redis-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ProcessError("redis-server is not installed")
        with self.log_path.open("ab") as log:
            # Loopback only, nothing written to disk.
            options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            self.proc = spawn(
                [binary, "--port", str(self.port), *options],
                log,
                cwd=None,
            )
        if wait_until_up(
            self.proc,
            lambda: redis_available(self.url()),
            what="redis-server",
            log_path=self.log_path,
            timeout=timeout,
        ):
            return self
        raise ProcessError(f"redis-server did not answer on {self.port}")

    def stop(self) -> None:
        stop_process_group(self.proc, 5.0)
        self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def redis_available(url: str) -> bool:
    """PING answered at `url` (a redis:// URL)."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _pg_connect(dbname: str = "postgres") -> Any:
    import psycopg

    return psycopg.connect(
        host=PG_HOST,
        port=PG_PORT,
        user=PG_USER,
        dbname=dbname,
        autocommit=True,
        connect_timeout=3,
    )


def postgres_available() -> bool:
    try:
        with _pg_connect() as conn:
            conn.execute("SELECT 1")
    except Exception:
        return False
    return True


class PostgresDatabase:
    """A database of its own on the local PostgreSQL, created empty and dropped after."""

    def __init__(self, name: str) -> None:
        if not name.replace("_", "").isalnum():
            raise ValueError(f"unsafe database name {name!r}")
        self.name = name

    @classmethod
    def fresh(
        cls, prefix: str = "agentry_sys", *, migrated: bool = False
    ) -> PostgresDatabase:
        """A new, uniquely named database (`<prefix>_<random>`), created empty
        or, `migrated`, as a copy of the migrated template (`migrated_template`)."""
        database = cls(f"{prefix}_{uuid.uuid4().hex[:10]}")
        return database.create(template=migrated_template() if migrated else None)

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.name}"

    def create(self, *, template: str | None = None) -> PostgresDatabase:
        with _pg_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            copy = f' TEMPLATE "{template}"' if template else ""
            conn.execute(f'CREATE DATABASE "{self.name}"{copy}')
        return self

    def drop(self) -> None:
        with contextlib.suppress(Exception), _pg_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def execute(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Runs one statement in this database (autocommit); returns its rows."""
        with _pg_connect(self.name) as conn:
            cursor = conn.execute(sql, params or None)
            return cursor.fetchall() if cursor.description else []

    def connection_count(self) -> int:
        """Backends connected to this database, not counting this query's own."""
        with _pg_connect() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                (self.name,),
            ).fetchone()
        return int(row[0])

    def terminate_connections(self) -> int:
        """`pg_terminate_backend` on every connection to this database."""
        with _pg_connect() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            ).fetchall()
        return len(rows)


TEMPLATE_PREFIX = "agentry_tpl"
# Any constant both sides agree on: the lock of building a template.
_TEMPLATE_LOCK = 0x6167_7470


def _migrations_digest() -> str:
    """What a migrated database depends on: every migration of the checkout
    and the locked dependency versions (third-party apps migrate too)."""
    digest = hashlib.sha256()
    files = sorted(PROJECT_ROOT.glob("*/migrations/*.py"))
    for path in [*files, PROJECT_ROOT / "uv.lock"]:
        if path.is_file():
            digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def migrated_template() -> str:
    """The name of a database migrated to this checkout, built once and kept
    between runs (named by `_migrations_digest`, so a changed migration builds
    a new one): copying it with `CREATE DATABASE ... TEMPLATE` takes a fraction
    of a second where `manage.py migrate` takes many."""
    name = f"{TEMPLATE_PREFIX}_{_migrations_digest()}"
    with _pg_connect() as conn:
        # One builder at a time, across processes; the others wait and reuse.
        conn.execute("SELECT pg_advisory_lock(%s)", (_TEMPLATE_LOCK,))
        try:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                _build_template(conn, name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_TEMPLATE_LOCK,))
    return name


def _build_template(conn: Any, name: str) -> None:
    # Earlier checkouts' templates go; one still being copied stays (no FORCE).
    stale = conn.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE %s AND datname <> %s",
        (f"{TEMPLATE_PREFIX}%", name),
    ).fetchall()
    for (old,) in stale:
        with contextlib.suppress(Exception):
            conn.execute(f'DROP DATABASE IF EXISTS "{old}"')
    building = PostgresDatabase(f"{name}_building").create()
    workdir = Path(tempfile.mkdtemp(prefix="agentry-template-"))
    try:
        env = server_env(
            database_url=building.url,
            redis_url=None,
            model_url=None,
            repo_root=workdir / "repo",
        )
        try:
            LiveServer(env, workdir / "logs", name="template").migrate()
        except ProcessError:
            building.drop()
            raise
        # Renamed only once complete: a crashed build never passes for one.
        conn.execute(f'ALTER DATABASE "{building.name}" RENAME TO "{name}"')
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class ApiClient:
    """A user of the REST API over real HTTP (httpx), with its Bearer token."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url, timeout=timeout, trust_env=False
        )
        self.token = ""
        self.username = ""

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    @staticmethod
    def _ok(response: httpx.Response, *expected: int) -> Any:
        if response.status_code not in (expected or (200,)):
            raise AssertionError(
                f"{response.request.method} {response.request.url} -> "
                f"{response.status_code}: {response.text[:500]}"
            )
        return response.json() if response.content else None

    def register_and_login(
        self, username: str | None = None, password: str = "Sturdy-passw0rd!"
    ) -> str:
        self.username = username or f"user_{uuid.uuid4().hex[:12]}"
        self._ok(
            self.http.post(
                "/api/auth/register",
                json={
                    "username": self.username,
                    "email": f"{self.username}@example.com",
                    "password": password,
                },
            ),
            201,
        )
        return self.login(self.username, password)

    def login(self, username: str, password: str = "Sturdy-passw0rd!") -> str:
        body = self._ok(
            self.http.post(
                "/api/auth/login", json={"username": username, "password": password}
            )
        )
        self.username, self.token = username, body["access_token"]
        return self.token

    def create_agent(
        self, model: str = FAKE_MODEL, name: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        body = {
            "name": name or f"agent {uuid.uuid4().hex[:8]}",
            "model": model,
            "instructions": "Answer briefly.",
            **fields,
        }
        return self._ok(self.post("/api/agents/", json=body), 201)

    def create_session(self, agent_id: str, **fields: Any) -> dict[str, Any]:
        return self._ok(
            self.post("/api/sessions/", json={"agent": agent_id, **fields}), 201
        )

    def send_message(self, session_id: str, content: str, **fields: Any) -> Any:
        """Blocking turn: `{execution, events}` once the turn has ended."""
        return self._ok(
            self.post(
                f"/api/sessions/{session_id}/messages/",
                json={"content": content, **fields},
            )
        )

    def cancel(self, session_id: str) -> Any:
        return self._ok(self.post(f"/api/sessions/{session_id}/cancel/"), 202)

    def execution(self, execution_id: str) -> dict[str, Any]:
        return self._ok(self.get(f"/api/executions/{execution_id}/"))

    def executions(self, session_id: str) -> list[dict[str, Any]]:
        return self._pages(f"/api/executions/?session={session_id}")

    def all_events(self, session_id: str) -> list[dict[str, Any]]:
        """Every stored event of a session, in sequence order (all pages)."""
        events: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self._ok(
                self.get(
                    f"/api/sessions/{session_id}/events/",
                    params={"after_sequence": after, "limit": 1000},
                )
            )
            results = page["results"] if isinstance(page, dict) else page
            events.extend(results)
            if len(results) < 1000:
                return events
            after = results[-1]["sequence_number"]

    def _pages(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        url: str | None = path
        while url:
            page = self._ok(self.get(url))
            items.extend(page["results"])
            url = page.get("next")
        return items

    def ws_url(self, ws_base: str, session_id: str) -> str:
        return f"{ws_base}/ws/sessions/{session_id}/?token={self.token}"
