"""`manage.py worker` processes for system tests and benchmarks.

Public surface:
    LiveWorker(env, log_dir, name="worker", args=())   one worker process:
        start(), stop() (SIGTERM), kill() (SIGKILL), restart(), running(), log_tail()

A worker gets the same environment as the `LiveServer`s it serves (usually
with `AGENTRY_TURN_EXECUTION=task`), runs in its own process group and logs to
`<log_dir>/<name>.log`. It has no port: `start()` returns once the process
says it is ready (loaded, claiming tasks).
"""

from __future__ import annotations

import time
from pathlib import Path

from testing.live import PYTHON, LiveProcess, ProcessError, _tail, spawn


class LiveWorker(LiveProcess):
    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        *,
        name: str = "worker",
        args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(env, log_dir, name)
        self.args = args
        self._log_start = 0

    def start(self, *, wait: bool = True) -> LiveWorker:
        """Starts the process; with `wait`, returns once it is ready."""
        if self.running():
            return self
        with self.log_path.open("ab") as log:
            self._log_start = log.tell()
            log.write(f"$ manage.py worker {' '.join(self.args)}\n".encode())
            log.flush()
            self.proc = spawn(
                [PYTHON, "manage.py", "worker", *self.args], log, env=self.env
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until the worker says it is ready (it has loaded and claims tasks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ProcessError(
                    f"{self.name} exited with {self.proc.returncode}; "
                    f"{self.log_path}:\n{_tail(self.log_path)}"
                )
            with self.log_path.open("rb") as log:
                log.seek(self._log_start)
                if b" ready: " in log.read():
                    return
            time.sleep(0.1)
        raise ProcessError(f"{self.name} not ready within {timeout}s")
