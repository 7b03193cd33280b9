"""The core is pure: no Kafka, faust, Prometheus, clock or environment."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.fixtures.fresh import run_fresh

CORE = Path(__file__).resolve().parents[2] / "stream_rca" / "core"
FORBIDDEN_MODULES = {
    "kafka",
    "faust",
    "aiokafka",
    "mode",
    "prometheus_client",
    "os",
    "time",
    "datetime",
    "socket",
    "asyncio",
    "subprocess",
    "random",
}


def test_core_sources_import_only_pure_modules() -> None:
    for path in CORE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{path.name} imports {name}"
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
                raise AssertionError(f"{path.name} reads the environment")


def test_importing_core_loads_no_io_libraries() -> None:
    code = (
        "import sys, stream_rca.core.engine, stream_rca.core.attribution;"
        "io = ('kafka', 'faust', 'aiokafka', 'prometheus_client');"
        "bad = [m for m in io if m in sys.modules];"
        "print(','.join(bad))"
    )
    assert run_fresh(code).strip() == ""
