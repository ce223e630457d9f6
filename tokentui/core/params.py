"""Sampling settings and the one-line error for inconsistent runs: standard library only, so the
explorer's settings and the CLI can use them without loading numpy."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


class RunError(ValueError):
    """A run (or an operation on it) is inconsistent; the message is one line for the user."""


@dataclass
class SamplingParams:
    """How the sampler chooses. Metrics never depend on these (they describe the raw model)."""

    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    seed: int | None = None
    max_new_tokens: int = 64
    stop: list[str] = field(default_factory=list)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def check(self) -> None:
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise RunError(f"temperature must be ≥ 0 (got {self.temperature})")
        if self.top_k < 0:
            raise RunError(f"top-k must be ≥ 0 (got {self.top_k})")
        if not 0 < self.top_p <= 1:
            raise RunError(f"top-p must be in (0, 1] (got {self.top_p})")
        if self.max_new_tokens < 0:
            raise RunError(f"max new tokens must be ≥ 0 (got {self.max_new_tokens})")
