"""The sampler: greedy, or temperature / top-k / top-p with a seeded generator.

It only chooses; every metric describes the raw distribution. It also reports the chosen token's
log-prob under the warped distribution it actually sampled from."""

from __future__ import annotations

import math

import torch

from tokentui.core.params import SamplingParams


def make_generator(params: SamplingParams, device: torch.device) -> torch.Generator | None:
    if params.greedy:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(params.seed if params.seed is not None else torch.seed() % (2**63))
    return gen


def warp(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Float32 logits [V] → filtered, temperature-scaled logits (filtered = -inf)."""
    x = logits / params.temperature
    if params.top_k and params.top_k < x.shape[-1]:
        kth = x.topk(params.top_k).values[-1]
        x = x.masked_fill(x < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_x, idx = x.sort(descending=True)
        probs = sorted_x.softmax(-1)
        # drop a token when the tokens strictly before it already reach top_p (keeps ≥ 1)
        drop_sorted = (probs.cumsum(-1) - probs) >= params.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
        x = x.masked_fill(drop, float("-inf"))
    return x


def choose(
    logits: torch.Tensor, params: SamplingParams, gen: torch.Generator | None, nan: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen id, its log-prob under the sampler's distribution; NaN when greedy). `nan`: the
    NaN to give when greedy (a decode loop's one tensor, given every step: one launch fewer each);
    default a new one, made on the device (a copy from the host would wait for its queue)."""
    if params.greedy:
        return logits.argmax(), logits.new_full((), math.nan) if nan is None else nan
    w = warp(logits, params)
    logp = torch.log_softmax(w, -1)
    chosen = torch.multinomial(logp.exp(), 1, generator=gen)[0]
    return chosen, logp[chosen]
