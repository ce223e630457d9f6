"""`tokentui runs` prints a run file's metadata (date, model, prompt) with every control,
escape, bidi and markup payload escaped."""

from __future__ import annotations

import pytest

from tests.factories import HOSTILE_TEXTS as PAYLOADS
from tests.factories import RAW_CONTROLS as RAW
from tests.factories import make_run
from tokentui.store.runfile import save_run


@pytest.mark.parametrize("payload", PAYLOADS)
def test_runs_lists_metadata_payloads_escaped(run_tokentui, cache_dir, payload):
    cache_dir.mkdir(parents=True, exist_ok=True)
    run = make_run()
    run.meta.created = f"2026-01-01T00:00:00{payload}"
    run.meta.model, run.meta.prompt, run.meta.tokenizer = f"model{payload}", f"prompt{payload}", f"tok{payload}"
    save_run(run, cache_dir / f"{run.id}.tokentui")
    res = run_tokentui("runs")
    assert res.returncode == 0, res.stderr
    assert not [ch for ch in RAW if ch in res.stdout + res.stderr], payload
    assert "model" in res.stdout
