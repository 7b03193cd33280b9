"""Input and output adapters: the event codec, the aligner and the file readers.

- :mod:`~stream_rca.io.events`: JSON metric events to :class:`Sample` values and back.
- :mod:`~stream_rca.io.deadletter`: dead-letter records with stable reason codes
  (:data:`DEAD_LETTER_REASONS`).
- :mod:`~stream_rca.io.aligner`: samples to per-window snapshots behind a watermark.
- :mod:`~stream_rca.io.tables`, :mod:`~stream_rca.io.petshop`, :mod:`~stream_rca.io.sources`:
  wide CSV and PetShop files to arrays or snapshots.
"""

from stream_rca.io.aligner import Aligner, AlignResult, AlignStatus
from stream_rca.io.deadletter import DEAD_LETTER_REASONS, DEAD_LETTER_SCHEMA, dead_letter_record
from stream_rca.io.events import Sample, decode_event, encode_batch, encode_event
from stream_rca.io.petshop import (
    PetshopTarget,
    is_petshop_csv,
    iter_petshop_snapshots,
    read_petshop_graph,
    read_petshop_metrics,
    read_petshop_target,
)
from stream_rca.io.sources import detect_format, read_snapshots
from stream_rca.io.tables import MetricTable, iter_wide_csv, read_wide_csv
from stream_rca.io.timestamps import parse_rfc3339, parse_timestamp

__all__ = [
    "DEAD_LETTER_REASONS",
    "DEAD_LETTER_SCHEMA",
    "AlignResult",
    "AlignStatus",
    "Aligner",
    "MetricTable",
    "PetshopTarget",
    "Sample",
    "dead_letter_record",
    "decode_event",
    "detect_format",
    "encode_batch",
    "encode_event",
    "is_petshop_csv",
    "iter_petshop_snapshots",
    "iter_wide_csv",
    "parse_rfc3339",
    "parse_timestamp",
    "read_petshop_graph",
    "read_petshop_metrics",
    "read_petshop_target",
    "read_snapshots",
    "read_wide_csv",
]
