"""What every benchmark shares: backends, workloads, clients, statistics, reports.

Public surface:
    Backend, open_backend(name)      a fresh database (SQLite file or PostgreSQL) and
                                     channel layer (in-memory or Redis db 9) for one run
    Workload, prompt_for(...)        one kind of answer, and the prompt that asks the
                                     fake model for it
    Load                             C sessions x M turns, repeated over R rounds
    TurnRecord, Sample               what one turn and one round of turns measured
    overhead_summary(samples, w)     a load's time to first token and turn overhead
    throughput_row(label, ...)       a table row of turns per second against bare
    throughput_results(bare, ...)    the report's turns per second and ratios to bare
    run_bare(...)                    bare pydantic-ai (`bench.baseline`) in its own process
    run_agentry_ws(...)              the same turns through Agentry's websocket endpoint
    Deployment                       fake model + daphne process(es) + a user and agent;
                                     `round(...)` runs one round on fresh sessions
    alternate_rounds(load, w, ...)   bare pydantic-ai and each deployment, round by round
    cpu_seconds(pid), median(), percentile()
    Report                           the readable table and the final one-line JSON;
                                     `finish()` exits 0 when every target is met
    scenario(name)                   makes a benchmark's `main()`: command line and skips

Every comparison follows the same recipe: one fake model server process, the
same prompt, the same number of concurrent sessions and turns, Agentry and bare
pydantic-ai alternating round by round in the same run, medians over rounds.
The machine has two cores shared with other work, so single runs are noisy and
only ratios from the same run are compared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from testing.live import (
    PYTHON,
    ApiClient,
    FakeModelServer,
    LiveServer,
    PostgresDatabase,
    postgres_available,
    redis_available,
    server_env,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Benchmarks flush this Redis database; point two concurrent runs at different ones.
BENCH_REDIS = os.environ.get("AGENTRY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
BENCH_DB_PREFIX = "agentry_bench"
TERMINAL = {"succeeded", "failed", "cancelled", "interrupted"}
BACKENDS = ("embedded", "postgres")


# --------------------------------------------------------------------- backends


@dataclass
class Backend:
    """Where one benchmark run keeps its data and sends its frames."""

    name: str
    database_url: str
    redis_url: str | None
    workdir: Path
    _database: PostgresDatabase | None = None

    def env(self, model_url: str | None, **overrides: Any) -> dict[str, str]:
        """A production-like server environment for this backend."""
        return server_env(
            database_url=self.database_url,
            redis_url=self.redis_url,
            model_url=model_url,
            repo_root=self.workdir / "repo",
            media_root=self.workdir / "media",
            SECRET_KEY="bench-secret-key-" + "x" * 40,
            LOG_LEVEL="WARNING",
            **overrides,
        )

    def close(self) -> None:
        if self._database is not None:
            self._database.drop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def available(name: str) -> str | None:
    """Why a backend cannot run here, or None when it can."""
    if name == "postgres":
        if not postgres_available():
            return "PostgreSQL is not reachable on 127.0.0.1:5432"
        if not redis_available(BENCH_REDIS):
            return "Redis is not reachable on 127.0.0.1:6379"
    return None


@contextlib.contextmanager
def open_backend(name: str) -> Iterator[Backend]:
    """A fresh, empty (unmigrated) database for one run; dropped afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=f"agentry-bench-{name}-"))
    if name == "embedded":
        backend = Backend(name, f"sqlite:///{workdir / 'db.sqlite3'}", None, workdir)
    elif name == "postgres":
        import redis

        client = redis.Redis.from_url(BENCH_REDIS)
        client.flushdb()
        client.close()
        database = PostgresDatabase.fresh(BENCH_DB_PREFIX)
        backend = Backend(name, database.url, BENCH_REDIS, workdir, database)
    else:
        raise ValueError(f"unknown backend {name!r}")
    try:
        yield backend
    finally:
        backend.close()


def setup_django(env: dict[str, str]) -> None:
    """Configures Django in this process with a server's environment (seeding,
    query counts, in-process runs)."""
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raises this process's open-file limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Workload:
    """An answer of `tokens` words, the first after `ttft_ms`, then `delay_ms` apart."""

    tokens: int
    delay_ms: float = 0.0
    ttft_ms: float = 0.0

    @property
    def prompt(self) -> str:
        return prompt_for(self.tokens, self.delay_ms, self.ttft_ms)

    @property
    def model_seconds(self) -> float:
        """The fake model's own time for one answer (its sleeps)."""
        return (self.ttft_ms + self.delay_ms * max(0, self.tokens - 1)) / 1000

    @property
    def ttft_seconds(self) -> float:
        return self.ttft_ms / 1000

    def describe(self) -> dict[str, float]:
        """What a report's config says of the workload."""
        return {
            "tokens": self.tokens,
            "delay_ms": self.delay_ms,
            "model_seconds": self.model_seconds,
        }


@dataclass(frozen=True)
class Load:
    """C concurrent sessions running M turns each, measured over R rounds."""

    sessions: int
    turns: int
    rounds: int


def prompt_for(tokens: int, delay_ms: float = 0.0, ttft_ms: float = 0.0) -> str:
    return f"Tell me something. [[tokens={tokens} delay={delay_ms} ttft={ttft_ms}]]"


@dataclass
class TurnRecord:
    ttft: float | None
    latency: float
    ok: bool
    error: str = ""
    frames: int = 0


@dataclass
class Sample:
    """One round: every turn of C sessions x M turns, and what it cost."""

    records: list[TurnRecord]
    wall: float
    cpu: float = 0.0

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.records)

    @property
    def turns(self) -> int:
        return len(self.records)

    @property
    def throughput(self) -> float:
        return (self.turns - self.failed) / self.wall if self.wall else 0.0

    def latencies(self) -> list[float]:
        return [r.latency for r in self.records if r.ok]

    def ttfts(self) -> list[float]:
        return [r.ttft for r in self.records if r.ok and r.ttft is not None]

    def frames_per_turn(self) -> float:
        ok = [r.frames for r in self.records if r.ok]
        return sum(ok) / len(ok) if ok else 0.0

    def errors(self) -> list[str]:
        return sorted({r.error for r in self.records if r.error})[:5]


def overhead_summary(samples: list[Sample], workload: Workload) -> dict[str, float]:
    """A load's figures: time to first token and per turn, and what each adds
    to the fake model's own sleeps."""
    latencies = [x for s in samples for x in s.latencies()]
    ttfts = [x for s in samples for x in s.ttfts()]
    # Medians of each round's median: rounds alternate, so a burst of load
    # from elsewhere on the machine hits one round, not the statistic.
    turn = median([median(s.latencies()) for s in samples if s.latencies()])
    first = median([median(s.ttfts()) for s in samples if s.ttfts()])
    return {
        "turns": sum(s.turns for s in samples),
        "failed": sum(s.failed for s in samples),
        "ttft_p50": first,
        "ttft_p95": percentile(ttfts, 95),
        "latency_p50": turn,
        "latency_p95": percentile(latencies, 95),
        "ttft_overhead": first - workload.ttft_seconds,
        "turn_overhead": turn - workload.model_seconds,
        # Bare: its whole process; Agentry: the server process(es).
        "cpu_per_turn": median([s.cpu / s.turns for s in samples if s.turns]),
    }


def throughput_row(
    label: str, samples: list[Sample], bare_tput: float, *, frames: bool = False
) -> tuple[str, ...]:
    """Turns, failures, turns per second, latency, CPU per turn (and frames
    per turn) of one contender, and its turns per second against bare's."""
    tput = median([s.throughput for s in samples])
    latencies = [x for s in samples for x in s.latencies()]
    cpu = median([s.cpu / max(1, s.turns) for s in samples])
    bare = label == "bare"
    frames_cell = f"{median([s.frames_per_turn() for s in samples]):.1f}"
    return (
        label,
        str(sum(s.turns for s in samples)),
        str(sum(s.failed for s in samples)),
        f"{tput:.1f}",
        fmt(percentile(latencies, 50)),
        fmt(percentile(latencies, 95)),
        fmt(cpu),
        *(("" if bare else frames_cell,) if frames else ()),
        "" if bare else fmt(tput / bare_tput, "x"),
    )


def throughput_results(
    bare: list[Sample], contenders: dict[str, list[Sample]]
) -> tuple[dict[str, Any], dict[str, float]]:
    """What a throughput comparison reports: the turns per second of bare
    pydantic-ai and of each contender, each contender's ratio to bare (also
    returned unrounded, for the targets) and the contenders' failures."""
    bare_tput = median([s.throughput for s in bare])
    tputs = {
        name: median([s.throughput for s in samples])
        for name, samples in contenders.items()
    }
    ratios = {name: tput / bare_tput for name, tput in tputs.items()}
    everyone = [s for samples in contenders.values() for s in samples]
    results = {
        "bare_turns_per_s": rounded(bare_tput, 2),
        **{f"{name}_turns_per_s": rounded(tput, 2) for name, tput in tputs.items()},
        **{f"{name}_ratio": rounded(ratio, 3) for name, ratio in ratios.items()},
        "failed": sum(s.failed for s in everyone),
        "errors": sorted({e for s in everyone for e in s.errors()}),
    }
    return results, ratios


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process so far (this one by default)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------- bare pydantic-ai


def run_bare(
    model_base_url: str,
    workload: Workload,
    *,
    sessions: int,
    turns: int,
    history_messages: int = 0,
    timeout: float = 300.0,
) -> Sample:
    """Bare pydantic-ai in a process of its own (as a server process would be)."""
    command = [
        PYTHON,
        "-m",
        "bench.baseline",
        "--base-url",
        model_base_url,
        "--sessions",
        str(sessions),
        "--turns",
        str(turns),
        "--tokens",
        str(workload.tokens),
        "--delay-ms",
        str(workload.delay_ms),
        "--ttft-ms",
        str(workload.ttft_ms),
        "--history-messages",
        str(history_messages),
    ]
    done = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"bench.baseline failed:\n{done.stderr[-3000:]}")
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    return Sample(
        [TurnRecord(**r) for r in payload["records"]], payload["wall"], payload["cpu"]
    )


# --------------------------------------------------------------------- Agentry


@dataclass
class Deployment:
    """A fake model server, one or more daphne processes, and a user with an agent."""

    backend: Backend
    servers: list[LiveServer] = field(default_factory=list)
    model: FakeModelServer | None = None
    api: ApiClient | None = None
    agent_id: str = ""

    @classmethod
    def start(
        cls, backend: Backend, *, processes: int = 1, **env_overrides: Any
    ) -> Deployment:
        deployment = cls(backend)
        logs = backend.workdir / "logs"
        try:
            deployment.model = FakeModelServer(logs).start()
            env = backend.env(deployment.model.base_url, **env_overrides)
            for index in range(processes):
                server = LiveServer(
                    env, logs, name=f"daphne-{index}", migrate=index == 0
                )
                deployment.servers.append(server.start())
            deployment.api = ApiClient(deployment.servers[0].url, timeout=60)
            deployment.api.register_and_login()
            deployment.agent_id = deployment.api.create_agent()["id"]
        except BaseException:
            deployment.stop()
            raise
        return deployment

    @property
    def env(self) -> dict[str, str]:
        return self.servers[0].env

    def create_sessions(self, count: int) -> list[str]:
        assert self.api is not None
        return [self.api.create_session(self.agent_id)["id"] for _ in range(count)]

    def ws_urls(self, session_ids: Sequence[str]) -> list[str]:
        """Each session's websocket URL, sessions spread over the processes."""
        assert self.api is not None
        return [
            self.api.ws_url(self.servers[i % len(self.servers)].ws_url, session_id)
            for i, session_id in enumerate(session_ids)
        ]

    def server_cpu(self) -> float:
        return sum(cpu_seconds(s.pid) for s in self.servers if s.running())

    def round(self, workload: Workload, *, sessions: int, turns: int) -> Sample:
        """One round on `sessions` fresh sessions (`run_agentry_ws`)."""
        return run_agentry_ws(
            self, self.create_sessions(sessions), workload, turns=turns
        )

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.api is not None:
            self.api.close()
        if self.model is not None:
            self.model.stop()

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


async def _ws_session(
    url: str,
    prompt: str,
    turns: int,
    timeout: float,
    start_gate: asyncio.Event,
    ready: asyncio.Queue[None],
) -> list[TurnRecord]:
    import websockets

    records: list[TurnRecord] = []
    announced = False
    try:
        async with websockets.connect(
            url, max_size=None, open_timeout=timeout, ping_interval=None
        ) as ws:
            # The server has accepted, authenticated and joined the group only
            # once a frame round-trips; a pong proves it.
            await ws.send('{"type": "ping"}')
            await ws.recv()
            announced = True
            ready.put_nowait(None)
            await start_gate.wait()
            message = json.dumps({"type": "message", "content": prompt})
            for _ in range(turns):
                records.append(await _ws_turn(ws, message, timeout))
    except Exception as exc:
        if not announced:
            ready.put_nowait(None)
        error = f"{type(exc).__name__}: {exc}"[:200]
        records.extend(
            TurnRecord(None, timeout, False, error) for _ in range(turns - len(records))
        )
    return records


async def _ws_turn(ws: Any, message: str, timeout: float) -> TurnRecord:
    started = time.perf_counter()
    first: float | None = None
    frames = 0
    await ws.send(message)
    try:
        async with asyncio.timeout(timeout):
            while True:
                raw = await ws.recv()
                frames += 1
                # Cheap checks first: the client must not be the bottleneck.
                if first is None and '"partial": true' in raw:
                    first = time.perf_counter() - started
                elif raw.startswith('{"type": "execution"'):
                    status = json.loads(raw)["execution"]["status"]
                    if status in TERMINAL:
                        return TurnRecord(
                            first,
                            time.perf_counter() - started,
                            status == "succeeded",
                            "" if status == "succeeded" else f"execution {status}",
                            frames,
                        )
                elif raw.startswith('{"type": "error"'):
                    code = json.loads(raw)["error"]["code"]
                    return TurnRecord(
                        first,
                        time.perf_counter() - started,
                        False,
                        f"error {code}",
                        frames,
                    )
    except TimeoutError:
        return TurnRecord(first, timeout, False, "timeout")


async def _ws_round(
    urls: Sequence[str],
    prompt: str,
    turns: int,
    timeout: float,
    cpu: Callable[[], float],
) -> tuple[list[TurnRecord], float, float]:
    gate = asyncio.Event()
    ready: asyncio.Queue[None] = asyncio.Queue()
    tasks = [
        asyncio.create_task(_ws_session(url, prompt, turns, timeout, gate, ready))
        for url in urls
    ]
    # Every socket is open and answering before the clock starts: a turn is
    # what is timed, not a connection.
    for _ in urls:
        await ready.get()
    cpu_before = cpu()
    started = time.perf_counter()
    gate.set()
    results = await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    return [r for rs in results for r in rs], wall, cpu() - cpu_before


def run_agentry_ws(
    deployment: Deployment,
    session_ids: Sequence[str],
    workload: Workload,
    *,
    turns: int,
    timeout: float = 300.0,
) -> Sample:
    """C sessions (one websocket each) running M turns each, all at once.

    The clock and the server's CPU count start once every socket answers.
    """
    urls = deployment.ws_urls(session_ids)
    records, wall, cpu = asyncio.run(
        _ws_round(urls, workload.prompt, turns, timeout, deployment.server_cpu)
    )
    return Sample(records, wall, cpu)


def alternate_rounds(
    load: Load,
    workload: Workload,
    deployments: dict[str, Deployment],
    *,
    label: str = "",
) -> dict[str, list[Sample]]:
    """`load.rounds` rounds of bare pydantic-ai (against the first deployment's
    fake model) then each deployment in turn, every round on fresh sessions, so
    load from elsewhere on the machine hits each contender alike. The samples
    by contender: `bare` and the deployments' names."""
    first = next(iter(deployments.values()))
    assert first.model is not None
    samples: dict[str, list[Sample]] = {"bare": []}
    samples.update({name: [] for name in deployments})
    for index in range(load.rounds):
        progress(f"{label}{load.sessions} sessions: round {index + 1}/{load.rounds}")
        samples["bare"].append(
            run_bare(
                first.model.base_url,
                workload,
                sessions=load.sessions,
                turns=load.turns,
            )
        )
        for name, deployment in deployments.items():
            samples[name].append(
                deployment.round(workload, sessions=load.sessions, turns=load.turns)
            )
    return samples


# --------------------------------------------------------------------- reports


def fmt(value: float | None, unit: str = "ms", digits: int = 1) -> str:
    if value is None or value != value:
        return "-"
    if unit == "ms":
        return f"{value * 1000:.{digits}f} ms"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.{digits}f}{(' ' + unit) if unit else ''}"


@dataclass
class Target:
    name: str
    value: float
    limit: float
    kind: str  # "max" (value <= limit) or "min" (value >= limit)

    @property
    def met(self) -> bool:
        if self.value != self.value:
            return False
        return (
            self.value <= self.limit if self.kind == "max" else self.value >= self.limit
        )


class Report:
    """Rows of a readable table, the targets, and the final one-line JSON."""

    def __init__(self, benchmark: str, backend: str, config: dict[str, Any]) -> None:
        self.benchmark, self.backend, self.config = benchmark, backend, config
        self.results: dict[str, Any] = {}
        self.targets: list[Target] = []
        self.notes: list[str] = []

    def table(
        self, title: str, header: Sequence[str], rows: list[Sequence[Any]]
    ) -> None:
        cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        print(f"\n{title}")
        for index, row in enumerate(cells):
            print(
                "  " + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True))
            )
            if index == 0:
                print("  " + "  ".join("-" * w for w in widths))
        sys.stdout.flush()

    def target(self, name: str, value: float, limit: float, kind: str = "max") -> None:
        self.targets.append(Target(name, value, limit, kind))

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    @property
    def ok(self) -> bool:
        return all(t.met for t in self.targets)

    def finish(self) -> int:
        if self.targets:
            rows = [
                (
                    t.name,
                    f"{t.value:.3f}",
                    ("<= " if t.kind == "max" else ">= ") + f"{t.limit:g}",
                    "met" if t.met else "MISSED",
                )
                for t in self.targets
            ]
            self.table(
                f"{self.benchmark} [{self.backend}] targets",
                ("target", "value", "limit", ""),
                rows,
            )
        line = {
            "benchmark": self.benchmark,
            "backend": self.backend,
            "config": self.config,
            "results": self.results,
            "targets": [asdict(t) | {"met": t.met} for t in self.targets],
            "notes": self.notes,
            "ok": self.ok,
        }
        print(json.dumps(line, separators=(",", ":"), default=_jsonable), flush=True)
        return 0 if self.ok else 1


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    return str(value)


def rounded(value: float, digits: int = 5) -> float | None:
    return None if value != value else round(value, digits)


def cli(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--backend", choices=BACKENDS, default="embedded")
    parser.add_argument("--size", choices=("quick", "full"), default="quick")
    # SIGTERM unwinds like Ctrl-C, so servers and databases are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return parser.parse_args()


def scenario(
    name: str, *, postgres_only: str = ""
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[], int]]:
    """Makes a benchmark's `main()` of `run(args)`: reads the command line (its
    help is the module docstring's first line) and reports a skip, not a
    failure, when the backend cannot run here. `postgres_only` is why the
    benchmark needs PostgreSQL and Redis, for one that does."""

    def wrap(run: Callable[[argparse.Namespace], int]) -> Callable[[], int]:
        def main() -> int:
            doc = sys.modules[run.__module__].__doc__ or name
            args = cli(doc.splitlines()[0])
            if postgres_only and args.backend != "postgres":
                return skip(name, args.backend, postgres_only)
            reason = available(args.backend)
            if reason:
                return skip(name, args.backend, reason)
            return run(args)

        main.__doc__ = run.__doc__
        return main

    return wrap


def progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def skip(benchmark: str, backend: str, reason: str) -> int:
    """A run that cannot happen here (service missing): reported, not failed."""
    print(f"{benchmark} [{backend}] skipped: {reason}")
    print(
        json.dumps(
            {"benchmark": benchmark, "backend": backend, "skipped": reason, "ok": True},
            separators=(",", ":"),
        ),
        flush=True,
    )
    return 0
