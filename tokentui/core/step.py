"""`Step`: everything tokentui knows about one position of one sequence.

A step at position i describes token i and the model's next-token distribution that produced it
(the distribution after tokens 0..i-1, at temperature 1, before any sampling filter). Its values
are keyed by measure name (`core/measures.py` declares each one's unit and shape); the common ones
have attributes. Units: log-probabilities and entropies in nats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Step:
    position: int
    token_id: int
    values: Mapping[str, Any] = field(default_factory=dict)  # measure name → float, int or array
    kind: str = "generated"  # "prompt" (teacher-forced), "forced" (chosen by the user) or "generated"

    def get(self, name: str, default: Any = math.nan) -> Any:
        return self.values.get(name, default)

    @property
    def logprob(self) -> float:
        """log p(token) under the raw distribution; NaN at position 0 (no context)."""
        return float(self.get("logprob"))

    @property
    def entropy(self) -> float:
        return float(self.get("entropy"))

    @property
    def rank(self) -> int:
        """1 = argmax; 0 = unknown (position 0)."""
        return int(self.get("rank", 0))

    @property
    def topk_ids(self) -> np.ndarray:
        return np.asarray(self.get("topk_ids", np.zeros(0, dtype=np.int32)))

    @property
    def topk_logprobs(self) -> np.ndarray:
        return np.asarray(self.get("topk_logprobs", np.zeros(0, dtype=np.float32)), dtype=np.float32)

    @property
    def layer_entropy(self) -> np.ndarray:
        """[L] logit-lens entropy per layer (last = the model's own); NaN = pending or lens off."""
        return np.asarray(self.get("layer_entropy", np.zeros(0, dtype=np.float32)), dtype=np.float32)

    @property
    def sampler_logprob(self) -> float:
        """log p(token) under the sampler's warped distribution; NaN when greedy or forced."""
        return float(self.get("sampler_logprob"))

    @property
    def prob(self) -> float:
        lp = self.logprob
        return math.exp(lp) if not math.isnan(lp) else math.nan

    @property
    def sampler_prob(self) -> float:
        lp = self.sampler_logprob
        return math.exp(lp) if not math.isnan(lp) else math.nan
