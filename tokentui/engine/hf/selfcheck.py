"""Two checks on a freshly opened model, over a few token ids, before anything is recorded.

- Decoding: tokentui carries the model's key-value cache from one step to the next. A model whose
  state it does not get back as such a cache (RWKV's recurrent state, RecurrentGemma's) or that
  returns none (GPT-1) would be decoded on the new token alone: wrong tokens, with numbers that look
  plausible. The ids whole, and the same ids decoded with the cache (a step at a time for a
  float32 model on a CPU, else the last one), must give the same logits, or the model is refused.
- The logit lens: applied to the last block's output, the final norm and unembedding tokentui
  found (`arch.lens_parts`) must give the model's own logits. A head that holds more (ModernBERT's
  prediction head, a soft-cap under a name tokentui does not know) would make every lens layer
  wrong: the lens is then off, saying why. And the lens reads layers 1…L−1 from the forward's
  `hidden_states`, which must hold those blocks' outputs where it looks: after the embeddings'
  output (the usual), or first (Mamba's in transformers 5 has no embeddings entry: read as the
  usual, every layer showed the next one's values). Anything else (Gemma 3n's 4-D states crashed
  the lens) turns the lens off, saying why.

A forward without the cache that fails here, or gives NaN or infinite values (a float16 overflow),
proves nothing either way: the check is skipped (the real work reports its own error); one from the model's own cache, after those ran, refuses it. The tolerance is relative to the logits' largest magnitude: half precision on a
GPU differs between the two paths by about 1e-3 of it; a wrong model by far more; float32 by
~1e-6 (then 1e-4 is the tolerance for decoding).
"""

from __future__ import annotations

from typing import Any

import torch

from tokentui.engine.errors import EngineError
from tokentui.engine.hf.arch import LensParts

PROBE_TOKENS = 5
TOLERANCE = 1e-2
FLOAT32_TOLERANCE = 1e-4  # (cached decoding of a float32 model: the largest seen on a sound family, 1.1e-5)
_FAILURES = (RuntimeError, TypeError, ValueError, IndexError, AttributeError, KeyError, NotImplementedError)


def probe_ids(model: Any) -> torch.Tensor:
    """[1, PROBE_TOKENS] ids spread over the vocabulary (any ids will do: the checks compare the
    model with itself)."""
    vocab = int(model.get_output_embeddings().weight.shape[0])
    dev = next(model.parameters()).device
    return (torch.arange(1, PROBE_TOKENS + 1, device=dev) * 7919 % max(vocab, 1))[None]


def _off(a: torch.Tensor, b: torch.Tensor, tolerance: float = TOLERANCE) -> float | None:
    """How far `a` is from `b` beyond the tolerance (None: within it)."""
    diff = float((a - b).abs().max())
    scale = max(1.0, float(b.abs().max()))
    return diff if not diff <= tolerance * scale else None  # (NaN counts as off)


def cached_decoding_problem(model: Any, cache_kw: str, ids: torch.Tensor) -> str | None:
    """Why decoding `model` with its cache would give other logits than a whole forward (None:
    it gives the same, or the check could not run).

    A float32 model on a CPU is decoded a step at a time after the first two ids, every step held
    to the whole forward at FLOAT32_TOLERANCE: there the two paths agree to ~1e-6 of the logits'
    scale on every sound family tried, while a cache that drifts (Zamba2's, NemotronH's in
    transformers 5) passed a check of one step and its generated numbers were up to 0.95 nats from
    `score`'s. Elsewhere — half precision, whose rounding grows over steps (a sound Jamba in bf16
    was off by 1e-2 after four), or an accelerator (TF32 convolutions, fused state-space kernels)
    — the last id alone is decoded after the others, at TOLERANCE."""
    from tokentui.engine.hf.backend import cache_of

    param = next(model.parameters())
    exact = param.dtype == torch.float32 and param.device.type == "cpu"
    first = 2 if exact else ids.shape[1] - 1
    steps: list[torch.Tensor] = []
    decoding = False  # (set once the whole forward and the first ids' have run)
    try:
        with torch.inference_mode():
            whole = model(input_ids=ids, use_cache=False).logits[0].float()
            if not bool(torch.isfinite(whole).all()):
                return None  # (NaN logits prove nothing of the cache; generating says what they are)
            out = model(input_ids=ids[:, :first], use_cache=True)
            if exact:
                steps.append(out.logits[0, -1].float())
            decoding = True
            for i in range(first, ids.shape[1]):
                cache = cache_of(out)
                if cache is None:
                    return "it returns no key-value cache to decode with"
                out = model(input_ids=ids[:, i : i + 1], use_cache=True, **{cache_kw: cache})
                steps.append(out.logits[0, -1].float())
    except _FAILURES as e:
        if not decoding:  # (a forward without the cache failed: proves nothing; the real work says why)
            return None
        # the model runs whole but not from its own cache (xLSTM's in transformers 5: every
        # generation ended in a ValueError from inside the model)
        detail = str(e).splitlines()[0][:120] if str(e).strip() else ""
        return f"a forward from its own cache fails ({type(e).__name__}{': ' + detail if detail else ''})"
    off = _off(torch.stack(steps), whole[ids.shape[1] - len(steps) :], FLOAT32_TOLERANCE if exact else TOLERANCE)
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
    if lensed.shape != logits.shape or not bool(torch.isfinite(logits).all()):
        return None  # (NaN logits — a float16 overflow — are no sign of a head that holds more)
    off = _off(lensed, logits)
    if off is None:
        return None
    return (
        f"no logit lens: the final norm and unembedding tokentui found do not give {type(model).__name__}'s own "
        f"logits from its last block (off by {off:.3g}): its head holds more"
    )


def hidden_states_start(model: Any, ids: torch.Tensor) -> tuple[int, str | None]:
    """Where the forward's `hidden_states` hold block 1's output — 1 (the embeddings' output comes
    first) or 0 — with blocks 2…L−1 after it; or why they do not (then the lens is off). (1, None)
    when the check cannot run (no block list found, a forward that fails): the usual place."""
    from tokentui.engine.hf.steering import decoder_blocks

    try:
        blocks = decoder_blocks(model)
    except EngineError:
        return 1, None
    if len(blocks) < 2:
        return 1, None  # (one layer: the lens has no layer before the last to read)
    seen: dict[int, Any] = {}
    handles = [
        b.register_forward_hook(lambda _m, _i, out, i=i: seen.__setitem__(i, out)) for i, b in enumerate(blocks[:-1])
    ]
    try:
        with torch.inference_mode():
            hs = model(input_ids=ids, use_cache=False, output_hidden_states=True).hidden_states
    except _FAILURES:
        return 1, None
    finally:
        for h in handles:
            h.remove()
    got = [o[0] if isinstance(o, (tuple, list)) else o for o in (seen.get(i) for i in range(len(blocks) - 1))]
    outs = [o for o in got if isinstance(o, torch.Tensor)]
    if not hs or len(outs) != len(got) or not all(bool(torch.isfinite(o).all()) for o in outs):
        return 1, None  # (NaN ≠ NaN: states that overflowed would not be found where they are)

    def holds_from(start: int) -> bool:
        if len(hs) < start + len(outs):
            return False
        return all(
            isinstance(h, torch.Tensor) and h.shape == o.shape and bool(torch.equal(h, o))
            for h, o in zip(hs[start : start + len(outs)], outs)
        )

    name = type(model).__name__
    odd = next((o for o in outs if o.dim() != 3), None)  # (the lens reads [batch, positions, width])
    if odd is not None:
        shape = " × ".join(str(x) for x in odd.shape)
        return 1, f"no logit lens: {name}'s blocks output {odd.dim()}-D states ({shape}), not one vector per position"
    for start in (1, 0):
        if holds_from(start):
            return start, None
    return 1, f"no logit lens: {name}'s hidden states ({len(hs)}) are not its blocks' outputs one after the other"
