"""A stream-rca worker whose engine raises for some graphs: a fault injected for the tests.

Run as ``python tests/integration/failing_worker.py worker ...`` (the arguments of
``python -m stream_rca.streaming``), with ``RCA_TEST_BROKEN_GRAPHS`` naming the graphs, comma
separated, whose every snapshot makes ``Engine.process_one`` (and every block,
``Engine.process_many`` and ``Engine.process_many_columns``) raise ``RuntimeError``.
Everything else is the real worker on the real broker.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from stream_rca.core.block import BlockResult
from stream_rca.core.engine import Engine
from stream_rca.core.types import Snapshot, StepResult
from stream_rca.streaming.__main__ import main

BROKEN = frozenset(g for g in os.environ.get("RCA_TEST_BROKEN_GRAPHS", "").split(",") if g)
_real = Engine.process_one
_real_many = Engine.process_many
_real_columns = Engine.process_many_columns


def _process_one(self: Engine, snapshot: Snapshot) -> StepResult:
    if snapshot.graph in BROKEN:
        raise RuntimeError(f"injected engine fault in graph {snapshot.graph!r}")
    return _real(self, snapshot)


def _process_many(self: Engine, snapshots: Sequence[Snapshot]) -> list[StepResult]:
    if any(s.graph in BROKEN for s in snapshots):
        raise RuntimeError(f"injected engine fault in graph {snapshots[0].graph!r}")
    return _real_many(self, snapshots)


def _process_many_columns(self: Engine, snapshots: Sequence[Snapshot]) -> BlockResult:
    if any(s.graph in BROKEN for s in snapshots):
        raise RuntimeError(f"injected engine fault in graph {snapshots[0].graph!r}")
    return _real_columns(self, snapshots)


if __name__ == "__main__":
    Engine.process_one = _process_one  # type: ignore[method-assign]
    Engine.process_many = _process_many  # type: ignore[method-assign]
    Engine.process_many_columns = _process_many_columns  # type: ignore[method-assign]
    sys.exit(main())
