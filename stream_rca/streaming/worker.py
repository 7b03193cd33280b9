"""Run one stream-rca worker: topics, metrics endpoint, the faust app, until stopped.

SIGTERM or SIGINT stops the worker cleanly (a last checkpoint, offsets committed); SIGKILL
loses nothing either: the next owner of its partitions resumes from the last checkpoint and
replays the rest.
"""

from __future__ import annotations

import gc
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry

from stream_rca.config import GraphSpec, Settings, load_graphs
from stream_rca.errors import ConfigError
from stream_rca.observability import MetricsServer, PipelineMetrics, serve
from stream_rca.parallel import attribution_pool
from stream_rca.streaming.app import make_app
from stream_rca.streaming.connect import check_broker
from stream_rca.streaming.producers import ensure_topics

__all__ = ["run_worker"]

log = logging.getLogger("stream_rca.streaming")


def run_worker(
    settings: Settings,
    specs: Sequence[GraphSpec] | None = None,
    *,
    loglevel: str = "info",
    worker_id: str | None = None,
    session_timeout: float = 30.0,
    create_topics: bool = True,
) -> int:
    """Run a worker in this process until it is stopped; return its exit code.

    Parameters
    ----------
    settings
        The settings; ``settings.config`` names the graphs file unless ``specs`` is given.
    specs
        The graphs to serve (default: loaded from ``settings.config``).
    loglevel
        Log level of the worker (``debug``, ``info``, ``warning``...).
    worker_id
        Names the worker's data directory (default ``<hostname>-<pid>``).
    session_timeout
        Seconds after which the consumer group gives a silent worker's partitions to others.
    create_topics
        Create missing topics (input, attributions, scores, dead letters) first, and check
        that the input topic has ``settings.partitions`` partitions.

    Returns
    -------
    int
        0 after a clean stop.

    Raises
    ------
    ConfigError
        Without a graphs file, for a graph that cannot be checkpointed, or when the input
        topic's partition count is wrong.
    BrokerUnavailableError
        When ``create_topics`` and no broker answers (one line saying what to check).
    """
    if specs is None:
        if not settings.config:
            raise ConfigError("the worker needs a graphs file: --config FILE (STREAM_RCA_CONFIG)")
        specs = load_graphs(settings.config)
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    # the app first: a graph that cannot be checkpointed is refused before any broker is asked
    app = make_app(
        settings, specs, metrics=metrics, worker_id=worker_id, session_timeout=session_timeout
    )
    if create_topics:
        check_broker(settings)
        ensure_topics(settings)
    server: MetricsServer | None = None
    if settings.metrics_port is not None:
        server = serve(registry, settings.metrics_port, settings.metrics_addr)
    datadir = Path(app.conf.datadir)
    datadir.parent.mkdir(parents=True, exist_ok=True)
    log.info(
        "stream-rca worker %s: graphs %s; input %s; metrics %s",
        app.conf.id,
        ", ".join(s.name for s in specs),
        settings.input_topic,
        server.url + "/metrics" if server is not None else "off",
    )
    worker = app.Worker(loglevel=loglevel, quiet=True, redirect_stdouts=False)
    # the attribution's kernel compiled (or loaded) before the first message, not during it
    attribution_pool()
    # What exists now (modules, graphs, the app) lives as long as the worker: keep it out of
    # the collector's full scans, which otherwise grow with it and slow every batch.
    gc.freeze()
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(datadir, ignore_errors=True)
    return code
