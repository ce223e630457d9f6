"""Loading: architecture lookups on several families, token bytes, and a clear error for every
way a model can fail to load."""

from __future__ import annotations

import json

import pytest
import torch

from tests.factories import generate_run, model_config
from tokentui.engine.errors import EngineError, ModelLoadError
from tokentui.engine.hf.backend import HFBackend
from tokentui.engine.hf.loading import load_model


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2", "gemma", "gpt_neox", "phi", "mistral"])
def test_lens_parts_reproduce_the_model_output(family):
    """final norm → unembedding applied to the last layer's pre-norm output equals the logits."""
    from transformers import AutoModelForCausalLM

    from tokentui.engine.hf.arch import lens_parts

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(model_config(family, 97)).eval()
    parts = lens_parts(model)
    assert parts.n_layers == 3
    captured = {}
    last_layer = list(model.modules())
    layers = next(m for m in last_layer if isinstance(m, torch.nn.ModuleList))
    layers[-1].register_forward_hook(
        lambda mod, inp, out: captured.__setitem__("h", out[0] if isinstance(out, tuple) else out)
    )
    with torch.inference_mode():
        out = model(torch.tensor([[1, 2, 3, 4]]))
        lensed = parts.project(parts.normed(captured["h"][0]))
    torch.testing.assert_close(lensed, out.logits[0].float(), atol=1e-4, rtol=1e-4)


def test_token_bytes_byte_level_and_sentencepiece(loaded, tmp_path):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tokentui.engine.hf.token_bytes import vocab_bytes

    lm = loaded("gpt2")
    tok = lm.tokenizer
    text = "héllo ✓ naïve"
    ids = tok(text)["input_ids"]
    assert b"".join(lm.vocab_bytes[i] for i in ids) == text.encode()
    # a SentencePiece-style vocabulary with byte fallback
    vocab = {"<unk>": 0, "▁hi": 1, "<0xC3>": 2, "<0xA9>": 3, "▁": 4, "a": 5}
    sp = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    sp.normalizer = normalizers.Replace(" ", "▁")
    sp.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    sp.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    fast = PreTrainedTokenizerFast(tokenizer_object=sp, unk_token="<unk>")
    table = vocab_bytes(fast, 8)
    assert table[1] == b" hi" and table[2] == b"\xc3" and table[3] == b"\xa9" and table[0] == b"<unk>"
    assert table[7] == b"<id 7>"


def test_load_errors_are_one_clear_line(tmp_path, model_dirs):
    cases = {
        "./no/such/dir": "no such folder",
        str(tmp_path): "not a model folder",
        "nobody-xyz/not-a-model-123": "offline",
        "": "no model",
    }
    for spec, expect in cases.items():
        with pytest.raises(ModelLoadError, match=expect) as info:
            load_model(spec)
        assert "\n" not in str(info.value)
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(
        json.dumps(
            {
                "model_type": "mything",
                "architectures": ["MyThing"],
                "auto_map": {
                    "AutoConfig": "configuration_mything.MyConfig",
                    "AutoModelForCausalLM": "modeling_mything.MyThing",
                },
            }
        )
    )
    with pytest.raises(ModelLoadError, match="--trust-remote-code"):
        load_model(str(remote))
    with pytest.raises(ModelLoadError, match="dtype"):
        load_model(str(model_dirs["gpt2"]), dtype="float8")


def test_bad_requests_to_a_session(loaded):
    from tokentui.core.params import GenerationSettings, RunError
    from tokentui.core.run import SamplingParams

    lm = loaded("gpt2")
    s = HFBackend(lm)
    with pytest.raises(EngineError, match="empty"):
        s.encode_prompt("   ")
    with pytest.raises(RunError, match="more than the vocabulary"):
        s.new_run("x", GenerationSettings(k=lm.vocab_size + 1), None)
    run, _ = generate_run(s, "def f():", SamplingParams(max_new_tokens=3), k=3)
    with pytest.raises(EngineError, match="out of range"):
        list(s.fork(run, 0, run.length(0) + 5, [1], SamplingParams()))
    with pytest.raises(EngineError, match="outside the vocabulary"):
        list(s.fork(run, 0, 2, [lm.vocab_size], SamplingParams()))
    chat = s.encode_prompt("hi", chat=True)
    assert chat[1] is not None and "<|assistant|>" in lm.tokenizer.decode(chat[0])
