"""`manage.py worker` processes for system tests and benchmarks.

Public surface:
    LiveWorker(env, log_dir, name="worker", args=())   one worker process:
        start(), stop() (SIGTERM), kill() (SIGKILL), restart(), running(), log_tail()

A worker gets the same environment as the `LiveServer`s it serves (usually
with `AGENTRY_TURN_EXECUTION=task`), runs in its own process group and logs to
`<log_dir>/<name>.log`. It has no port: `start()` returns once the process
runs; tasks queued before it is ready simply wait in the database.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path

from testing.live import (
    PROJECT_ROOT,
    PYTHON,
    ProcessError,
    _signal_group,
    _tail,
    outside_env,
    stop_process_group,
)


class LiveWorker:
    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        *,
        name: str = "worker",
        args: tuple[str, ...] = (),
    ) -> None:
        self.env = {**outside_env(), **env}
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.args = args
        self.log_path = self.log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> LiveWorker:
        if self.running():
            return self
        with self.log_path.open("ab") as log:
            log.write(f"$ manage.py worker {' '.join(self.args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [PYTHON, "manage.py", "worker", *self.args],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(0.5)
        if self.proc.poll() is not None:
            raise ProcessError(
                f"{self.name} exited with {self.proc.returncode}; "
                f"{self.log_path}:\n{_tail(self.log_path)}"
            )
        return self

    def stop(self, timeout: float = 20.0) -> int | None:
        return stop_process_group(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL: the worker gets no chance to clean up."""
        if self.proc is not None:
            _signal_group(self.proc, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> LiveWorker:
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)

    def __enter__(self) -> LiveWorker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
