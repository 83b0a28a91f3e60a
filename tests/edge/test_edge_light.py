"""The edge agent stays light: no numba, nothing of the stream core, only the shared light
modules (the wire contract, logging and signal handling)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import sensing_edge

EDGE_PACKAGE = Path(sensing_edge.__file__).parent
SHARED = ("sensing.wire", "sensing.logs", "sensing.process")


def test_importing_the_agent_imports_neither_numba_nor_numpy() -> None:
    code = (
        "import sensing_edge, sensing_edge.agent, sensing_edge.cli, sensing_edge.simulated, sys; "
        "assert 'numba' not in sys.modules, 'numba imported'; "
        "assert 'numpy' not in sys.modules, 'numpy imported (12 MB on a gateway)'; "
        "core = sorted(m for m in sys.modules if m.startswith('sensing.') "
        f"and not m.startswith({SHARED!r})); "
        "assert core == [], core"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_agent_imports_only_the_wire_package_of_the_core() -> None:
    """Static guard: a later import inside a function would escape the runtime check."""
    modules = sorted(EDGE_PACKAGE.glob("*.py"))
    assert {p.name for p in modules} >= {"__init__.py", "agent.py", "cli.py", "simulated.py"}
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] != "numba", f"{path.name} imports {name}"
                if name == "sensing" or name.startswith("sensing."):
                    assert name.startswith(SHARED), f"{path.name} imports {name}"
