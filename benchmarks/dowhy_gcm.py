"""DoWhy-GCM's ``attribute_anomalies`` with its default settings, in a child process with a budget.

The reference tool is fitted as its documentation shows (``gcm.auto.assign_causal_mechanisms``
then ``gcm.fit`` on the same training rows stream-rca learns from), and only
``gcm.attribute_anomalies`` is timed, one anomaly per call. It runs in a child process
(``python -m benchmarks.dowhy_gcm <case.npz>``, in a session of its own) that prints one JSON
line per result as it comes, so that a case that runs out of its time budget keeps what
finished; the child and the joblib workers it started are then stopped, and the report says
so. Progress bars are switched off; nothing else is changed from the defaults.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DowhyOutcome", "available", "run_dowhy", "version"]

FloatArray = npt.NDArray[np.float64]
REPO = Path(__file__).resolve().parents[1]


def available() -> bool:
    """Whether DoWhy-GCM can be imported."""
    try:
        import dowhy.gcm  # noqa: F401
    except ImportError:
        return False
    return True


def version() -> str:
    try:
        import dowhy
    except ImportError:
        return "not installed"
    return str(dowhy.__version__)


@dataclass
class DowhyOutcome:
    """What DoWhy-GCM did on one case within its budget."""

    status: str
    """``"ok"``, ``"partial"`` (budget hit after some anomalies), ``"timeout"``, ``"skipped"``
    or ``"error"``."""
    note: str = ""
    fit_seconds: float = math.nan
    """``assign_causal_mechanisms`` plus ``fit``."""
    seconds: list[float] = field(default_factory=list)
    """Wall time of ``attribute_anomalies`` per anomaly, for those that finished."""
    attributions: list[dict[str, float]] = field(default_factory=list)

    @property
    def median(self) -> float:
        return float(np.median(self.seconds)) if self.seconds else math.nan

    def top(self, i: int) -> str | None:
        if i >= len(self.attributions):
            return None
        att = self.attributions[i]
        return max(att, key=lambda n: att[n])


def _emit(*msg: Any) -> None:
    print(json.dumps(list(msg)), flush=True)


def _child(path: str) -> None:
    """The child process: fit, then attribute each anomaly, printing one JSON line per step."""
    import warnings

    warnings.simplefilter("ignore")
    with np.load(path, allow_pickle=False) as case:
        nodes = [str(n) for n in case["nodes"]]
        edges = [(str(a), str(b)) for a, b in case["edges"]]
        train, anomalies = case["train"], case["anomalies"]
        target, seed = str(case["target"]), int(case["seed"])
    try:
        import networkx as nx
        import pandas as pd
        from dowhy import gcm

        gcm.config.disable_progress_bars()
        gcm.util.general.set_random_seed(seed)
        graph = nx.DiGraph()
        graph.add_nodes_from(nodes)
        graph.add_edges_from(edges)
        frame = pd.DataFrame(train, columns=nodes)
        model = gcm.InvertibleStructuralCausalModel(graph)
        started = time.perf_counter()
        gcm.auto.assign_causal_mechanisms(model, frame)
        gcm.fit(model, frame)
        _emit("fit", time.perf_counter() - started)
        for i in range(anomalies.shape[0]):
            row = pd.DataFrame(anomalies[i : i + 1], columns=nodes)
            started = time.perf_counter()
            result = gcm.attribute_anomalies(model, target, anomaly_samples=row)
            seconds = time.perf_counter() - started
            _emit("attr", seconds, {str(k): float(np.asarray(v)[0]) for k, v in result.items()})
        _emit("done")
    except Exception as exc:  # reported to the parent, which prints it
        _emit("error", f"{type(exc).__name__}: {exc}")


def _stop(proc: subprocess.Popen[str]) -> None:
    """Stop the child's session (it leads its own process group), then reap it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None and sig == signal.SIGKILL:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


def run_dowhy(
    edges: Sequence[tuple[str, str]],
    nodes: Sequence[str],
    train: FloatArray,
    anomalies: FloatArray,
    target: str,
    *,
    budget: float,
    seed: int = 0,
) -> DowhyOutcome:
    """Fit DoWhy-GCM on ``train`` and attribute each row of ``anomalies``, within ``budget`` s.

    Columns of ``train`` and ``anomalies`` are ``nodes``. The budget covers fitting and all
    attributions of the case.
    """
    if not available():
        return DowhyOutcome("skipped", "DoWhy-GCM is not installed (pip install -e '.[bench]')")
    out = DowhyOutcome("ok")
    with tempfile.TemporaryDirectory(prefix="stream-rca-bench-") as tmp:
        path = os.path.join(tmp, "case.npz")
        np.savez(
            path,
            nodes=np.array(list(nodes), dtype=str),
            edges=np.array([list(e) for e in edges], dtype=str).reshape(-1, 2),
            train=train,
            anomalies=anomalies,
            target=np.array(target),
            seed=np.array(seed),
        )
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]))
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.dowhy_gcm", path],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,
        )
        assert proc.stdout is not None
        deadline = time.perf_counter() + budget
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        try:
            while True:
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or not sel.select(remaining):
                    _budget_note(out, budget, anomalies.shape[0])
                    break
                line = proc.stdout.readline()
                if not line:
                    out.status, out.note = "error", "the DoWhy-GCM process ended without a result"
                    break
                msg = json.loads(line)
                if msg[0] == "fit":
                    out.fit_seconds = float(msg[1])
                elif msg[0] == "attr":
                    out.seconds.append(float(msg[1]))
                    out.attributions.append({str(k): float(v) for k, v in msg[2].items()})
                elif msg[0] == "error":
                    out.status, out.note = "error", f"DoWhy-GCM failed: {msg[1]}"
                    break
                else:
                    break
        finally:
            sel.close()
            _stop(proc)
            proc.stdout.close()
    return out


def _budget_note(out: DowhyOutcome, budget: float, n: int) -> None:
    done = len(out.seconds)
    if math.isnan(out.fit_seconds):
        out.status = "timeout"
        out.note = f"DoWhy-GCM did not finish fitting within the {budget:.0f} s budget; stopped"
    else:
        out.status = "partial" if done else "timeout"
        out.note = (
            f"DoWhy-GCM's budget of {budget:.0f} s ran out after {done} of {n} anomalies "
            f"(its fit took {out.fit_seconds:.0f} s); stopped"
        )


if __name__ == "__main__":
    _child(sys.argv[1])
