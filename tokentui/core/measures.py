"""Declarations of what a run records per token: each measure's name, unit, dtype and shape.

A measure's *value* is computed elsewhere (on the model's device, `engine/hf/measures.py`); this
module only says what the value is, so that storage, run files, exports and panes can all be
derived from one declaration without torch. Adding a measure = one declaration plus its device
function; nothing else has a hand-written layout.

Shapes are tuples of dimension names: `()` one value per token, `("k",)` one per top-k
alternative, `("layer",)` one per layer (the last layer is the model's own output), `("layer",
"j")` j per layer. A run's sizes for these names are its `dims` (k, layer, j).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

SHAPES: tuple[tuple[str, ...], ...] = ((), ("k",), ("layer",), ("layer", "j"))
DTYPES = ("int32", "float32", "float16")
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,47}")


@dataclass(frozen=True)
class Measure:
    """What one recorded column means. `required`: a run file lacking it is broken (and a file
    that declares an unknown required column was made by a newer tokentui)."""

    name: str
    unit: str  # "nats", "token id", "rank (1 = most likely)", …
    dtype: str  # numpy dtype name, one of DTYPES
    shape: tuple[str, ...]
    description: str
    required: bool = True
    is_token_id: bool = False  # holds token ids (stored in 2 or 3 bytes; -1 = none)

    def __post_init__(self) -> None:
        if not NAME_RE.fullmatch(self.name):
            raise ValueError(f"bad measure name {self.name!r}")
        if self.dtype not in DTYPES or self.shape not in SHAPES:
            raise ValueError(f"measure {self.name}: unsupported dtype {self.dtype} or shape {self.shape}")

    @property
    def fill(self) -> float:
        """The value of 'not known' (first token, padding): -1 for ids, 0 for ranks, else NaN."""
        if self.is_token_id:
            return -1
        return 0 if self.dtype == "int32" else math.nan

    def shape_for(self, n: int, dims: dict[str, int]) -> tuple[int, ...]:
        return (n, *(dims[d] for d in self.shape))

    def to_dict(self) -> dict[str, object]:
        return {
            "unit": self.unit,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "required": self.required,
            "token_id": self.is_token_id,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, name: str, d: object) -> Measure:
        """From a run file's column declaration (untrusted); ValueError on anything malformed."""
        if not isinstance(d, dict):
            raise ValueError(f"column {name!r} is not declared properly")
        unit, dtype, shape = d.get("unit", ""), d.get("dtype"), d.get("shape")
        if not isinstance(unit, str) or not isinstance(dtype, str) or not isinstance(shape, list):
            raise ValueError(f"column {name!r} is not declared properly")
        desc = d.get("description", "")
        return cls(
            name=name,
            unit=unit[:100],
            dtype=dtype,
            shape=tuple(str(s) for s in shape),
            description=desc[:300] if isinstance(desc, str) else "",
            required=d.get("required") is True,
            is_token_id=d.get("token_id") is True,
        )


MEASURES: dict[str, Measure] = {}


def declare(m: Measure) -> Measure:
    """Register a measure (once; a second, different declaration of a name is a bug)."""
    old = MEASURES.get(m.name)
    if old is not None and old != m:
        raise ValueError(f"measure {m.name!r} declared twice, differently")
    MEASURES[m.name] = m
    return m


# The measures every run has. Units: nats; the distribution is the model's raw next-token
# distribution at temperature 1 (before any sampling filter) that produced the token.
declare(Measure("token_id", "token id", "int32", (), "the token at this position", is_token_id=True))
declare(Measure("logprob", "nats", "float32", (), "log p(token) under the model's raw distribution"))
declare(Measure("entropy", "nats", "float32", (), "entropy of the model's raw next-token distribution"))
declare(Measure("rank", "rank (1 = most likely)", "int32", (), "1 + how many tokens were more likely"))
declare(
    Measure(
        "sampler_logprob",
        "nats",
        "float32",
        (),
        "log p(token) under the sampler's warped distribution (absent: greedy or forced)",
        required=False,
    )
)
declare(Measure("topk_ids", "token id", "int32", ("k",), "the k most likely tokens", is_token_id=True))
declare(Measure("topk_logprobs", "nats", "float16", ("k",), "their log-probabilities"))
declare(
    Measure(
        "layer_entropy",
        "nats",
        "float16",
        ("layer",),
        "logit-lens entropy per layer: hidden state → final norm → unembedding (last = the model's own)",
    )
)

BASE = tuple(MEASURES)  # the columns every run of this version records, in storage order

# --- two models, token by token (`tokentui compare`) -----------------------------------------
# A comparison run records model A's columns above and these for model B (the run's `model_b`),
# at the same positions and for the same tokens. Every distribution is the model's raw next-token
# distribution at temperature 1 over the full vocabulary, given positions 0…t−1. Optional: no
# other run has them.
COMPARISON = (
    declare(Measure("logprob_b", "nats", "float32", (), "log p_B(token) under model B", required=False)),
    declare(Measure("entropy_b", "nats", "float32", (), "entropy of model B's distribution", required=False)),
    declare(Measure("rank_b", "rank (1 = most likely)", "int32", (), "the token's rank under model B", required=False)),
    declare(
        Measure("topk_ids_b", "token id", "int32", ("k",), "model B's k most likely", required=False, is_token_id=True)
    ),
    declare(Measure("topk_logprobs_b", "nats", "float16", ("k",), "their log-probabilities", required=False)),
    declare(Measure("kl_ab", "nats", "float32", (), "KL(A‖B) = Σ_v p_A(v) (log p_A(v) − log p_B(v))", required=False)),
    declare(Measure("kl_ba", "nats", "float32", (), "KL(B‖A) = Σ_v p_B(v) (log p_B(v) − log p_A(v))", required=False)),
    declare(
        Measure("js", "nats", "float32", (), "Jensen–Shannon: ½KL(A‖M) + ½KL(B‖M), M = (p_A + p_B)/2", required=False)
    ),
)


def empty(m: Measure, n: int, dims: dict[str, int]) -> np.ndarray:
    return np.full(m.shape_for(n, dims), m.fill, dtype=m.dtype)
