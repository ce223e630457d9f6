"""The bundled demo model and the sample runs: they load offline, match their card, generate, and
every sample run validates and replays."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.factories import generate_run
from tokentui.core.run import SamplingParams
from tokentui.engine.assets import DEMO_MODEL_DIR
from tokentui.store.runfile import load_run

REPO = Path(__file__).resolve().parent.parent
SAMPLES = sorted((REPO / "sample_runs").glob("*.tokentui"))
CARD_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "README.md",
    "training.json",
}


@pytest.fixture(scope="module")
def demo():
    from tokentui.engine.hf.loading import load_model

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    return load_model("demo")


def test_demo_files_are_what_the_card_describes(demo):
    files = {p.name for p in DEMO_MODEL_DIR.iterdir()}
    assert files == CARD_FILES
    total = sum(p.stat().st_size for p in DEMO_MODEL_DIR.iterdir())
    assert total <= 20 * 2**20
    info = json.loads((DEMO_MODEL_DIR / "training.json").read_text())
    cfg = json.loads((DEMO_MODEL_DIR / "config.json").read_text())
    s = info["settings"]
    assert (cfg["n_layer"], cfg["n_embd"], cfg["n_head"], cfg["vocab_size"]) == (
        s["n_layer"],
        s["n_embd"],
        s["n_head"],
        s["vocab_size"],
    )
    assert sum(p.numel() for p in demo.model.parameters()) == info["train"]["parameters"]
    assert info["metrics"]["bits_per_byte"] < info["metrics"]["lzma_bits_per_byte"]
    card = (DEMO_MODEL_DIR / "README.md").read_text()
    for needle in ("PSF", str(info["metrics"]["bits_per_byte"]), str(info["metrics"]["lzma_bits_per_byte"])):
        assert needle in card


def test_demo_generates_python_offline_like_generate(demo):
    from tokentui.engine.hf.backend import HFBackend

    run, _ = generate_run(HFBackend(demo), "def", SamplingParams(max_new_tokens=24), k=10)
    ids = torch.tensor([demo.tokenizer("def")["input_ids"]])
    with torch.inference_mode():
        ref = demo.model.generate(ids, max_new_tokens=24, do_sample=False, pad_token_id=demo.eos_ids[0])
    assert run.sequence(0).tolist() == ref[0].tolist()
    text = run.text(0).decode("utf-8", "replace")
    assert re.match(r"def \w+\([\w, ]*\):\n    ", text), text  # a def line and an indented body
    assert demo.n_layers >= 4 and np.isfinite(run.column(0, "layer_entropy")[1:]).all()


def test_demo_prompt_opens_an_indented_block(demo):
    """The explorer's suggested prompt ends in a colon: the model goes on with an indented body."""
    from tokentui.cli import DEMO_PROMPT
    from tokentui.engine.hf.backend import HFBackend

    run, _ = generate_run(HFBackend(demo, lens_chunk=0), DEMO_PROMPT, SamplingParams(max_new_tokens=8), k=5)
    assert run.text(0).decode("utf-8", "replace").startswith(DEMO_PROMPT + "\n    ")


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_every_sample_run_validates(path, demo):
    run = load_run(path)
    assert run.meta.model == "demo" and run.meta.vocab_size == demo.vocab_size
    assert run.meta.n_layers == demo.n_layers
    assert run.meta.tokenizer == demo.tokenizer_id  # class + content hash: no path of the machine that made it
    assert b"/" not in path.read_bytes()[8:2000].replace(b"\\/", b"")  # nor anywhere in the header's start


def test_the_sample_set_covers_each_kind():
    runs = {p.stem: load_run(p) for p in SAMPLES}
    assert set(runs) >= {"generate", "tree", "sampled", "score"}
    tree = runs["tree"]
    assert len(tree.branches) >= 4 and any(b.parent not in (None, 0) for b in tree.branches)
    assert any(b.n_forced > 1 for b in tree.branches)
    sampled = runs["sampled"].branches[0].steps
    assert not runs["sampled"].meta.sampling["temperature"] == 0
    assert np.isfinite(sampled.col("sampler_logprob")).all()
    assert not np.allclose(sampled.col("sampler_logprob"), sampled.col("logprob"))
    assert runs["score"].meta.mode == "score" and len(runs["score"].prompt) > 50


async def test_the_first_readme_command_opens_the_explorer_on_the_demo(cache_dir):
    """`tokentui` with no arguments: the explorer on the demo model with a suggested prompt, which
    it generates when asked (ctrl+r), not on its own."""
    from tests.factories import wait_for, wait_generated
    from tokentui.cli import DEMO_PROMPT
    from tokentui.core.params import GenerationSettings
    from tokentui.tui.start import explorer
    from tokentui.tui.state import AppState

    app = explorer(model="demo", prompt=DEMO_PROMPT, settings=GenerationSettings(SamplingParams(max_new_tokens=16)))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="the demo model")
        assert app.run_obj is None  # nothing generated on launch
        await pilot.press("ctrl+r")
        await wait_generated(pilot, app, 0, "length")
        assert len(app.run_obj.branches[0].steps) == 16
        assert app.stream.cursor == app.run_obj.length(0) - 1
