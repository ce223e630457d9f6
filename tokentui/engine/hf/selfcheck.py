"""Two checks on a freshly opened model, over a few token ids, before anything is recorded.

- Decoding: tokentui carries the model's key-value cache from one step to the next. A model whose
  state it does not get back as such a cache (RWKV's recurrent state, RecurrentGemma's) or that
  returns none (GPT-1) would be decoded on the new token alone: wrong tokens, with numbers that look
  plausible. Two forwards — the ids whole, and all but the last then the last with the cache — must
  give the same last logits, or the model is refused.
- The logit lens: applied to the last block's output, the final norm and unembedding tokentui
  found (`arch.lens_parts`) must give the model's own logits. A head that holds more (ModernBERT's
  prediction head, a soft-cap under a name tokentui does not know) would make every lens layer
  wrong: the lens is then off, saying why.

A forward that fails here proves nothing either way: the check is skipped (the real work reports
its own error). The tolerance is relative to the logits' largest magnitude: half precision on a
GPU differs between the two paths by about 1e-3 of it; a wrong model by far more.
"""

from __future__ import annotations

from typing import Any

import torch

from tokentui.engine.errors import EngineError
from tokentui.engine.hf.arch import LensParts

PROBE_TOKENS = 5
TOLERANCE = 1e-2
_FAILURES = (RuntimeError, TypeError, ValueError, IndexError, AttributeError, KeyError, NotImplementedError)


def probe_ids(model: Any) -> torch.Tensor:
    """[1, PROBE_TOKENS] ids spread over the vocabulary (any ids will do: the checks compare the
    model with itself)."""
    vocab = int(model.get_output_embeddings().weight.shape[0])
    dev = next(model.parameters()).device
    return (torch.arange(1, PROBE_TOKENS + 1, device=dev) * 7919 % max(vocab, 1))[None]


def _off(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """How far `a` is from `b` beyond the tolerance (None: within it)."""
    diff = float((a - b).abs().max())
    scale = max(1.0, float(b.abs().max()))
    return diff if not diff <= TOLERANCE * scale else None  # (NaN counts as off)


def cached_decoding_problem(model: Any, cache_kw: str, ids: torch.Tensor) -> str | None:
    """Why decoding `model` with its cache would give other logits than a whole forward (None:
    it gives the same, or the check could not run)."""
    from tokentui.engine.hf.backend import cache_of

    try:
        with torch.inference_mode():
            whole = model(input_ids=ids, use_cache=False).logits[0, -1].float()
            first = model(input_ids=ids[:, :-1], use_cache=True)
            cache = cache_of(first)
            if cache is None:
                return "it returns no key-value cache to decode with"
            step = model(input_ids=ids[:, -1:], use_cache=True, **{cache_kw: cache}).logits[0, -1].float()
    except _FAILURES:
        return None
    off = _off(step, whole)
    if off is None:
        return None
    return f"decoding with its cache gives other logits than a whole forward (off by {off:.3g})"


def lens_problem(model: Any, parts: LensParts, ids: torch.Tensor) -> str | None:
    """Why the lens would not reproduce the model's own logits from its last block's output (None:
    it does, or the check could not run: no block list found, a block whose output is not a tensor)."""
    from tokentui.engine.hf.steering import decoder_blocks

    try:
        last = decoder_blocks(model)[-1]
    except EngineError:
        return None
    seen: list[Any] = []
    handle = last.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        with torch.inference_mode():
            logits = model(input_ids=ids, use_cache=False).logits[0].float()
            out = seen[-1] if seen else None
            h = out[0] if isinstance(out, (tuple, list)) else out
            if not isinstance(h, torch.Tensor) or h.dim() != 3:
                return None
            lensed = parts.project(parts.normed(h[0]))
    except _FAILURES:
        return None
    finally:
        handle.remove()
    if lensed.shape != logits.shape:
        return None
    off = _off(lensed, logits)
    if off is None:
        return None
    return (
        f"no logit lens: the final norm and unembedding tokentui found do not give {type(model).__name__}'s own "
        f"logits from its last block (off by {off:.3g}): its head holds more"
    )
