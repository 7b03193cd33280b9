"""Shared fixtures; the broker and Prometheus fixtures live in ``tests/fixtures``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures.kafka import kafka_bootstrap  # noqa: F401
from tests.fixtures.prometheus import prometheus_factory  # noqa: F401

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference data folder ``../shared/data``; skips outside CI when it is absent."""
    if not SHARED_DATA.is_dir():
        if IN_CI:
            pytest.fail(f"reference data not found at {SHARED_DATA} (required under CI=true)")
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA
