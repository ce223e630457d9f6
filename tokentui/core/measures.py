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
from collections.abc import Callable, Collection
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


# --- per-layer measures (issue 14) ------------------------------------------------------------
# Layer l is the output of block l, 1…L; a layer's distribution is its hidden state → the final
# norm → the unembedding (→ the soft-cap), at temperature 1, at the position whose output predicts
# the step's token. Layer L is the model's own next-token distribution, exactly (float32). Not
# required: runs made before they existed, and runs with the lens off, do not have them.
declare(
    Measure(
        "layer_margin",
        "probability",
        "float16",
        ("layer",),
        "top-1 minus top-2 probability of each layer's distribution (0…1)",
        required=False,
    )
)
declare(
    Measure(
        "layer_kl_final",
        "nats",
        "float16",
        ("layer",),
        "KL(p_l ‖ p_L): each layer's distribution against the model's own at the same position (0 at L)",
        required=False,
    )
)
declare(
    Measure(
        "layer_rank",
        "rank (1 = most likely)",
        "int32",
        ("layer",),
        "rank of the token taken at this position under each layer's distribution (0 = unknown)",
        required=False,
    )
)
declare(
    Measure(
        "layer_surprisal",
        "bits",
        "float16",
        ("layer",),
        "surprisal −log2 p_l(token) of the token taken at this position under each layer's distribution",
        required=False,
    )
)
declare(
    Measure(
        "layer_topk_ids",
        "token id",
        "int32",
        ("layer", "j"),
        "the j = k_lens most likely tokens of each layer's distribution, most likely first",
        required=False,
        is_token_id=True,
    )
)
declare(
    Measure(
        "layer_topk_logprobs",
        "nats",
        "float16",
        ("layer", "j"),
        "their log-probabilities under that layer's distribution",
        required=False,
    )
)
declare(
    Measure(
        "attention_entropy",
        "nats",
        "float16",
        ("layer",),
        "mean over heads of the entropy of the attention row of the position that predicted this token",
        required=False,
    )
)

# The lens columns of a run with the lens on (`layer_entropy` is always there); `layer_topk_*`
# only when k_lens > 0. `attention_entropy` only when asked for (it needs eager attention).
LENS_COLUMNS = (
    "layer_entropy",
    "layer_margin",
    "layer_kl_final",
    "layer_rank",
    "layer_surprisal",
    "layer_topk_ids",
    "layer_topk_logprobs",
)


@dataclass(frozen=True)
class Derived:
    """A per-layer measure computed on read from a stored column (no storage, exact relation)."""

    measure: Measure  # its declaration (not in MEASURES: no run file holds it)
    source: str  # the stored column it is computed from
    compute: Callable[[np.ndarray, int], np.ndarray]  # (source values, vocabulary size) → values


def _perplexity(h: np.ndarray, vocab: int) -> np.ndarray:
    return np.exp(h.astype(np.float64))


def _kl_uniform(h: np.ndarray, vocab: int) -> np.ndarray:
    return np.maximum(math.log(vocab) - h.astype(np.float64), 0.0)


DERIVED: dict[str, Derived] = {
    "layer_perplexity": Derived(
        Measure("layer_perplexity", "perplexity", "float32", ("layer",), "exp(layer_entropy)", required=False),
        "layer_entropy",
        _perplexity,
    ),
    "layer_kl_uniform": Derived(
        Measure(
            "layer_kl_uniform",
            "nats",
            "float32",
            ("layer",),
            "KL(p_l ‖ uniform) = log V − layer_entropy (V: the model's output vocabulary)",
            required=False,
        ),
        "layer_entropy",
        _kl_uniform,
    ),
}

# Every per-layer measure with one number per layer, stored or derived, in the order panes and
# exports list them.
LAYER_MEASURES = (
    "layer_entropy",
    "layer_perplexity",
    "layer_margin",
    "layer_kl_uniform",
    "layer_kl_final",
    "layer_rank",
    "layer_surprisal",
    "attention_entropy",
)


def layer_declaration(name: str) -> Measure:
    """The declaration of a per-layer measure, stored or derived."""
    return DERIVED[name].measure if name in DERIVED else MEASURES[name]


def has_measure(names: Collection[str], name: str) -> bool:
    """Whether a run whose columns are `names` has measure `name` (stored, or derived from one it has)."""
    return name in names or (name in DERIVED and DERIVED[name].source in names)


def derive(name: str, column: Callable[[str], np.ndarray], vocab_size: int) -> np.ndarray:
    """Values of measure `name` from a run's columns (`column(name)` returns a stored one): the
    stored column itself, or a derived measure computed from its source (NaN stays NaN)."""
    d = DERIVED.get(name)
    if d is None:
        return column(name)
    with np.errstate(invalid="ignore", over="ignore"):
        return d.compute(column(d.source), vocab_size)
