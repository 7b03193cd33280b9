"""Streaming mode: faust-streaming workers over Kafka, and kafka-python producers.

- :func:`make_app` builds the worker's faust app; :func:`run_worker` runs it.
- :class:`Pipeline` is the broker-free processing of one message (decode, align, engine).
- :func:`simulate`, :func:`publish_snapshots` and :func:`replay_to_kafka` produce input events.
- :func:`register` adds the ``worker`` and ``simulate`` subcommands to a command line.

See ``docs/streaming.md``.
"""

from stream_rca.streaming.app import AGENT_NAME, TABLE_NAME, make_app, runtime_of
from stream_rca.streaming.brokers import Broker, KafkaBroker, MemoryBroker
from stream_rca.streaming.commands import register
from stream_rca.streaming.pipeline import Pipeline
from stream_rca.streaming.producers import (
    ensure_topics,
    publish_snapshots,
    replay_to_kafka,
    simulate,
)
from stream_rca.streaming.records import SCORES_SCHEMA, Outcome, Output
from stream_rca.streaming.runtime import Runtime
from stream_rca.streaming.simulator import (
    TRUTH_SCHEMA,
    Simulation,
    SimulationConfig,
    graphs_document,
)
from stream_rca.streaming.state import CHECKPOINT_SCHEMA, CheckpointError, GraphState
from stream_rca.streaming.worker import run_worker

__all__ = [
    "AGENT_NAME",
    "CHECKPOINT_SCHEMA",
    "SCORES_SCHEMA",
    "TABLE_NAME",
    "TRUTH_SCHEMA",
    "Broker",
    "CheckpointError",
    "GraphState",
    "KafkaBroker",
    "MemoryBroker",
    "Outcome",
    "Output",
    "Pipeline",
    "Runtime",
    "Simulation",
    "SimulationConfig",
    "ensure_topics",
    "graphs_document",
    "make_app",
    "publish_snapshots",
    "register",
    "replay_to_kafka",
    "run_worker",
    "runtime_of",
    "simulate",
]
