"""Workers in subprocesses and topic readers, for integration tests, benchmarks and demos.

One harness for everything that drives a real worker through a real broker:

- :func:`isolated_settings` writes a graphs file and makes settings on fresh topics (created)
  and a fresh consumer group, so runs never see each other's records;
- :class:`WorkerProcess` runs ``python -m stream_rca.streaming worker`` with its settings in
  ``STREAM_RCA_*`` variables, logs to a file, and can wait for a log line, stop (SIGTERM) or
  kill (SIGKILL) it;
- :func:`publish` produces ``(key, value)`` messages to the input topic, optionally paced;
  :func:`simulated_messages` makes them from a :class:`~stream_rca.streaming.Simulation`;
- :class:`TopicReader` consumes topics from the beginning in a background thread and keeps
  every record (JSON documents decoded), so a test can wait for what it expects;
- :func:`attributions_by_id` and :func:`reference_attributions` compare what the workers
  published with one uninterrupted in-process run of the same messages;
- :func:`three_faults` is the simulated scenario the integration tests share;
- :func:`wait_until` is the one bounded wait they all use (a bound against hanging forever,
  never a timing assertion).
"""

from stream_rca.streaming.testing.processes import WorkerProcess, settings_env, wait_until
from stream_rca.streaming.testing.scenarios import three_faults, three_faults_graphs
from stream_rca.streaming.testing.topics import (
    AttributionKey,
    Message,
    Record,
    TopicReader,
    attributions_by_id,
    committed_offsets,
    isolated_settings,
    publish,
    reference_attributions,
    simulated_messages,
)

__all__ = [
    "AttributionKey",
    "Message",
    "Record",
    "TopicReader",
    "WorkerProcess",
    "attributions_by_id",
    "committed_offsets",
    "isolated_settings",
    "publish",
    "reference_attributions",
    "settings_env",
    "simulated_messages",
    "three_faults",
    "three_faults_graphs",
    "wait_until",
]
