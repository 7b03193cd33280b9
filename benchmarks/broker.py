"""A local Kafka broker and CPU accounting, shared by the benchmarks that need a broker.

- :func:`local_broker`: the ``deploy/kafka`` KRaft broker on free ports, stopped at the end
  (the script's watchdog also stops it should the benchmark die without a teardown);
- :func:`cpu_seconds`: user plus system CPU seconds of a process so far (Linux ``/proc``),
  for figures per core of a subprocess.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

__all__ = ["cpu_seconds", "free_port", "local_broker"]

REPO = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_broker(state: Path) -> Iterator[str]:
    """The deploy/kafka KRaft broker on free ports, stopped at the end; yields its bootstrap."""
    port = free_port()
    env = {
        **os.environ,
        "STREAM_RCA_KAFKA_PORT": str(port),
        "STREAM_RCA_KAFKA_CONTROLLER_PORT": str(free_port()),
        "STREAM_RCA_KAFKA_STATE_DIR": str(state),
        "STREAM_RCA_KAFKA_OWNER_PID": str(os.getpid()),
    }
    subprocess.run(["bash", str(KAFKA_SH), "start"], env=env, check=True, capture_output=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["bash", str(KAFKA_SH), "stop"], env=env, check=False, capture_output=True)


def host_cpu_seconds() -> tuple[float, float]:
    """CPU seconds of the whole host so far, busy and in all (Linux ``/proc/stat``: every
    core's user, nice, system, irq and softirq time against the same plus idle and iowait)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    user, nice, system, idle, iowait, irq, softirq = fields
    tick = os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + irq + softirq
    return busy / tick, (busy + idle + iowait) / tick


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
