"""`Step`: everything tokentui knows about one position of one sequence.

A step at position i describes token i and the model's next-token distribution that produced it
(the distribution after tokens 0..i-1, at temperature 1, before any sampling filter). Units:
log-probabilities and entropies in nats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("prompt", "forced", "generated")


@dataclass(frozen=True, eq=False)
class Step:
    position: int
    token_id: int
    logprob: float  # log p(token) under the raw distribution; NaN at position 0 (no context)
    entropy: float  # entropy of the raw distribution, nats
    rank: int  # 1 = argmax; 0 = unknown (position 0)
    topk_ids: np.ndarray  # [k] ids, most probable first
    topk_logprobs: np.ndarray  # [k]
    layer_entropy: np.ndarray  # [L] logit-lens entropy per layer (last = the model's own); NaN = pending
    sampler_logprob: float = math.nan  # log p(token) under the sampler's warped distribution
    kind: str = "generated"  # one of KINDS

    @property
    def prob(self) -> float:
        return math.exp(self.logprob) if not math.isnan(self.logprob) else math.nan

    @property
    def sampler_prob(self) -> float:
        return math.exp(self.sampler_logprob) if not math.isnan(self.sampler_logprob) else math.nan

    @property
    def surprisal_bits(self) -> float:
        return -self.logprob / math.log(2)
