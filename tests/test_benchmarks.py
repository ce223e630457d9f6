"""The benchmark scripts still import: they are run by hand, not by CI, so a renamed function they
use went unnoticed (`run_size.py` imported an export helper removed a session earlier, and
`tui_latency.py` imports `run_size`). Importing a script runs no benchmark: each starts in its
`main()` under `if __name__ == "__main__"`. Most of their imports of tokentui sit inside
functions: every `from tokentui… import name` anywhere in a script is checked too."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py"))


def test_every_benchmark_is_found():
    assert {"run_size", "tui_latency", "compare", "batch", "explorer_generate"} <= {p.stem for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_a_benchmark_script_imports(script, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # (their own helpers: `_models`, `run_size`)
    spec = importlib.util.spec_from_file_location(f"bench_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    if not script.stem.startswith("_"):  # (`_models`, `_memory`: helpers of the others)
        assert callable(getattr(module, "main", None)), f"{script.name} has no main()"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_every_name_a_benchmark_imports_from_tokentui_exists(script):
    tree = ast.parse(script.read_text(encoding="utf-8"))
    checked = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tokentui"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}"), (
                    f"{script.name}: {node.module} has no {alias.name}"
                )
                checked += 1
    assert checked or script.stem.startswith("_") or "tokentui" not in script.read_text(encoding="utf-8")
