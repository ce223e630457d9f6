"""core/ and store/ (and the worker's message API) never pull in torch, transformers or textual."""

import subprocess
import sys
from pathlib import Path


def test_core_and_store_import_without_torch_or_textual():
    code = (
        "import sys, tokentui.core, tokentui.core.metrics, tokentui.store, tokentui.store.export, "
        "tokentui.store.cache, tokentui.engine.events, tokentui.engine.worker, tokentui.engine.errors, tokentui.cli\n"
        "bad = [m for m in ('torch', 'transformers', 'textual') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_import_linter_contracts_hold():
    out = subprocess.run(
        ["lint-imports", "--no-cache"], capture_output=True, text=True, cwd=Path(__file__).parent.parent
    )
    assert out.returncode == 0, out.stdout + out.stderr
