"""Workers in subprocesses and topic readers, for integration tests, benchmarks and demos.

- :class:`WorkerProcess` runs ``python -m stream_rca.streaming worker`` with its settings in
  ``STREAM_RCA_*`` variables, logs to a file, and can wait for a log line, stop (SIGTERM) or
  kill (SIGKILL) it;
- :class:`TopicReader` consumes topics from the beginning in a background thread and keeps
  every record (JSON documents decoded), so a test can wait for what it expects.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from stream_rca.config import ENV_PREFIX, Settings

__all__ = ["Record", "TopicReader", "WorkerProcess", "settings_env"]

_ASSIGNED = re.compile(r"assigned input partitions: \[([0-9, ]*)\]")


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
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            if len(re.findall(pattern, text)) >= count:
                return text
            if not self.running() or time.monotonic() > deadline:
                tail = "\n".join(text.splitlines()[-40:])
                state = "exited" if not self.running() else f"no match in {timeout:.0f}s"
                raise TimeoutError(f"worker {self.worker_id}: {pattern!r}: {state}\n{tail}")
            time.sleep(0.1)

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


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record; ``doc`` is its value decoded as JSON (``None`` if it is not)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    doc: Any
    received: float
    """``time.monotonic()`` when the reader got it."""


class TopicReader:
    """Read topics from their beginning in a background thread and keep every record.

    Parameters
    ----------
    settings
        Broker and security options.
    topics
        Topics to read (they need not exist yet).
    """

    def __init__(self, settings: Settings, topics: Iterable[str]) -> None:
        from stream_rca.streaming.producers import _kafka

        kafka = _kafka()
        self.topics = list(topics)
        self._consumer = kafka.KafkaConsumer(
            *self.topics,
            bootstrap_servers=settings.kafka_bootstrap.split(","),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            client_id="stream-rca-reader",
            metadata_max_age_ms=1000,
            **settings.kafka_client_options(),
        )
        self._records: list[Record] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="topic-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            batches = self._consumer.poll(timeout_ms=100)
            now = time.monotonic()
            got = []
            for records in batches.values():
                for r in records:
                    try:
                        doc = json.loads(r.value) if r.value is not None else None
                    except ValueError:
                        doc = None
                    got.append(Record(r.topic, r.partition, r.offset, r.key, r.value, doc, now))
            if got:
                with self._lock:
                    self._records.extend(got)

    def records(self, topic: str | None = None) -> list[Record]:
        """Records read so far (of one topic, or all), in arrival order."""
        with self._lock:
            return [r for r in self._records if topic is None or r.topic == topic]

    def docs(self, topic: str) -> list[Any]:
        """The decoded documents of one topic."""
        return [r.doc for r in self.records(topic)]

    def wait_until(
        self, predicate: Callable[[TopicReader], bool], timeout: float, *, what: str = ""
    ) -> None:
        """Poll ``predicate(self)`` until it holds.

        Raises
        ------
        TimeoutError
            If it does not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not within {timeout:.0f}s: {what or predicate}")
            time.sleep(0.1)

    def close(self) -> None:
        """Stop the thread and close the consumer."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
