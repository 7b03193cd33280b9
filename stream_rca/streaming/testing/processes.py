"""A stream-rca worker in a subprocess, and the bounded wait every part of the harness uses."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from stream_rca.config import ENV_PREFIX, Settings

__all__ = ["WorkerProcess", "settings_env", "wait_until"]

_ASSIGNED = re.compile(r"assigned input partitions: \[([0-9, ]*)\]")


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    alive: Callable[[], bool] | None = None,
    detail: Callable[[], str] | None = None,
    interval: float = 0.1,
) -> None:
    """Poll ``condition()`` every ``interval`` seconds until it holds.

    Parameters
    ----------
    condition
        What to wait for.
    timeout
        Give up after this many seconds (a bound, not an expectation).
    what
        Says what was awaited, in the error.
    alive
        Give up early as soon as this returns False (e.g. the process exited).
    detail
        Appended to the error (e.g. the end of a log).

    Raises
    ------
    TimeoutError
        If ``condition`` does not hold in time, or ``alive`` turns False first.

    Examples
    --------
    >>> wait_until(lambda: True, 1.0, "nothing")
    >>> wait_until(lambda: False, 0.0, "the impossible")
    Traceback (most recent call last):
    ...
    TimeoutError: the impossible: not within 0s
    """
    deadline = time.monotonic() + timeout
    while not condition():
        stopped = alive is not None and not alive()
        if stopped or time.monotonic() > deadline:
            state = "exited" if stopped else f"not within {timeout:.0f}s"
            extra = f"\n{detail()}" if detail is not None else ""
            raise TimeoutError(f"{what}: {state}{extra}")
        time.sleep(interval)


def settings_env(settings: Settings) -> dict[str, str]:
    """``STREAM_RCA_*`` variables that reproduce ``settings`` (``None`` fields left out)."""
    env: dict[str, str] = {}
    for name, value in dataclasses.asdict(settings).items():
        if value is None:
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        env[ENV_PREFIX + name.upper()] = text
    return env


class WorkerProcess:
    """A stream-rca worker in a subprocess.

    Parameters
    ----------
    settings
        The worker's settings (``settings.config`` is the graphs file), passed as
        ``STREAM_RCA_*`` variables.
    log_path
        File that receives the worker's stdout and stderr.
    worker_id
        The worker's id (its data directory).
    session_timeout
        Consumer-group session timeout, seconds (6 is the broker's minimum by default).
    loglevel
        The worker's log level.
    """

    def __init__(
        self,
        settings: Settings,
        log_path: str | Path,
        *,
        worker_id: str,
        session_timeout: float = 6.0,
        loglevel: str = "info",
    ) -> None:
        self.settings = settings
        self.log_path = Path(log_path)
        self.worker_id = worker_id
        self.session_timeout = session_timeout
        self.loglevel = loglevel
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        """Start the process (its log file is truncated)."""
        env = {**os.environ, **settings_env(self.settings), "PYTHONUNBUFFERED": "1"}
        cmd = [
            sys.executable,
            "-m",
            "stream_rca.streaming",
            "worker",
            "--worker-id",
            self.worker_id,
            "--session-timeout",
            str(self.session_timeout),
            "--loglevel",
            self.loglevel,
        ]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    @property
    def pid(self) -> int:
        """The process id."""
        if self.proc is None:
            raise RuntimeError("the worker was not started")
        return self.proc.pid

    def log(self) -> str:
        """Everything the worker logged so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        """True while the process lives."""
        return self.proc is not None and self.proc.poll() is None

    def wait_for(self, pattern: str, timeout: float, *, count: int = 1) -> str:
        """Wait until the log matches ``pattern`` (a regex) ``count`` times; return the log.

        Raises
        ------
        TimeoutError
            With the end of the log, if it does not happen in time or the process exits.
        """
        wait_until(
            lambda: len(re.findall(pattern, self.log())) >= count,
            timeout,
            f"worker {self.worker_id}: {pattern!r}",
            alive=self.running,
            detail=lambda: self.tail(40),
        )
        return self.log()

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.log().splitlines()[-lines:])

    def ready(self, timeout: float = 60.0) -> WorkerProcess:
        """Wait until the worker has partitions assigned and is ready."""
        self.wait_for(r"Worker\]: Ready", timeout)
        return self

    def assigned(self) -> list[int] | None:
        """Input partitions of the worker's latest assignment (``None`` before the first)."""
        found = _ASSIGNED.findall(self.log())
        if not found:
            return None
        return [int(p) for p in found[-1].split(",") if p.strip()]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default SIGKILL) and reap the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
