"""The measures' device code: each per-token measure is a small function over the model's raw
next-token distribution, each per-layer measure a reducer over the lens's streaming pass through
the vocabulary. Registered by name against the declarations in `core/measures.py`.

Adding a per-token measure is one function here:

    @token_measure(Measure("margin", "nats", "float32", (), "top-1 minus top-2 log-prob"))
    def _margin(x: TokenInputs) -> dict[str, torch.Tensor]:
        top2 = x.logp.topk(2, dim=-1).values
        return {"margin": top2[:, 0] - top2[:, 1]}

Every function works on a batch of positions ([n, V] log-probs), so live decoding (n = 1) and
teacher-forced scoring (n = all positions) share it. The results of one step leave the device in
ONE transfer: `pack` lays them side by side in a float32 row whose offsets follow from the
declarations (ids are exact in float32 below 2**24, far above any vocabulary).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from tokentui.core.columns import Layout
from tokentui.core.measures import MEASURES, Measure, declare
from tokentui.engine.errors import EngineError


@dataclass
class TokenInputs:
    """What a per-token measure may look at, for n positions."""

    logp: torch.Tensor  # [n, V] float32 log-softmax of the raw logits (temperature 1, no filter)
    chosen: torch.Tensor  # [n] int64 the token taken at each position
    sampler_logprob: torch.Tensor  # [n] float32 log p under the sampler's warped distribution (NaN: none)
    k: int  # how many alternatives the run records
    finite: bool = False  # logp is clamped at LOGPROB_FLOOR (no −∞ anywhere): see `_entropy`
    _probs: torch.Tensor | None = field(default=None, init=False, repr=False)
    _chosen_logp: torch.Tensor | None = field(default=None, init=False, repr=False)

    def chosen_logprob(self) -> torch.Tensor:
        """log p of the taken tokens, gathered once for every measure that needs it (the log-prob,
        the rank): a decode step's time is its Python and kernel launches, not its arithmetic."""
        if self._chosen_logp is None:
            self._chosen_logp = self.logp.gather(-1, self.chosen[:, None])[:, 0]
        return self._chosen_logp

    def probs(self) -> torch.Tensor:
        """exp(logp), computed once for every measure that needs it (entropy, a comparison's
        divergences): each pass over an [n, V] block is memory traffic, on a GPU most of the cost."""
        if self._probs is None:
            self._probs = self.logp.exp()
        return self._probs


TokenFn = Callable[[TokenInputs], dict[str, torch.Tensor]]
TOKEN_FNS: list[tuple[tuple[str, ...], TokenFn]] = []


def _declared(m: str | Measure) -> str:
    if isinstance(m, Measure):
        return declare(m).name
    if m not in MEASURES:
        raise KeyError(f"measure {m!r} is not declared in core/measures.py")
    return m


def token_measure(*measures: str | Measure) -> Callable[[TokenFn], TokenFn]:
    """Register a function computing these per-token measures (by name, or new declarations)."""
    names = tuple(_declared(m) for m in measures)

    def register(fn: TokenFn) -> TokenFn:
        TOKEN_FNS.append((names, fn))
        return fn

    return register


# A token the model rules out entirely (a masked logit: p = 0) gets this log-prob instead of −∞:
# run files refuse infinities, and −10,000 nats is as good as impossible (and fits float16).
LOGPROB_FLOOR = -1e4


@token_measure("logprob")
def _logprob(x: TokenInputs) -> dict[str, torch.Tensor]:
    return {"logprob": x.chosen_logprob().clamp_min(LOGPROB_FLOOR)}


@token_measure("entropy")
def _entropy(x: TokenInputs) -> dict[str, torch.Tensor]:
    """−Σ p·log p. With finite log-probs that is one row-wise dot product (on a GPU one fused
    kernel); a −∞ log-prob (a masked token) would make 0·−∞ = NaN there, so otherwise entr(p)."""
    if x.finite:
        return {"entropy": rowdot(x.probs(), x.logp).neg_().clamp_min_(0) + 0.0}
    return {"entropy": torch.special.entr(x.probs()).sum(-1)}


@token_measure("rank")
def _rank(x: TokenInputs) -> dict[str, torch.Tensor]:
    c = x.chosen_logprob()[:, None]
    above = count_above(x.logp, c)[:, 0] if x.finite else (x.logp > c).sum(-1)
    return {"rank": above + 1}


def count_above(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """How many entries of each row of `x` [..., V] exceed the row's `c` [..., 1], exactly, as
    int64 [..., 1]. Both must be finite (−∞ − −∞ is NaN). On a CPU summing a bool comparison is
    slow (a bool → int64 reduction: most of the per-layer rank's cost); there the sign of
    max(x − c, 0) summed in float32 is 3–4× faster and exact: x − c > 0 exactly when x > c (gradual
    underflow), and a float32 sum of fewer than 2**24 ones is exact. On a GPU the comparison is
    the fewer passes over memory."""
    if x.device.type != "cpu" or x.shape[-1] >= 1 << 24:
        return (x > c).sum(-1, keepdim=True)
    return torch.sub(x, c).clamp_min_(0).sign_().sum(-1, keepdim=True).long()


@token_measure("topk_ids", "topk_logprobs")
def _topk(x: TokenInputs) -> dict[str, torch.Tensor]:
    lp, ids = x.logp.topk(x.k, dim=-1)
    return {"topk_ids": ids, "topk_logprobs": lp.clamp_min(LOGPROB_FLOOR)}


@token_measure("sampler_logprob")
def _sampler_logprob(x: TokenInputs) -> dict[str, torch.Tensor]:
    return {"sampler_logprob": x.sampler_logprob.clamp_min(LOGPROB_FLOOR)}


def rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products along the last dim (of [n, V] blocks, or broadcast). On a CPU a
    product and a sum are several times faster than `linalg.vecdot` (which takes a slow generic
    path there); on a GPU vecdot is one fused kernel without the [n, V] temporary."""
    return (a * b).sum(-1) if a.device.type == "cpu" else torch.linalg.vecdot(a, b)


NOT_FINITE = (
    "the model's next-token distribution is not finite{where} (NaN or infinite logits: its numbers "
    "overflowed — a float16 model whose activations exceed float16's range (try --dtype bfloat16), a steering "
    "vector too large for the model's dtype, or damaged weights); nothing of it is kept"
)


def require_finite(
    host: dict[str, np.ndarray], where: str = "", names: tuple[str, ...] = ("logprob", "entropy")
) -> None:
    """Refuse host values of positions whose distribution was NaN: a run holding them could be
    saved but never opened again (a run file's log-probs and entropies must be numbers). The
    check is on the host copy the step makes anyway, so it costs the device nothing."""
    for name in names:
        v = host.get(name)
        if v is None:
            continue
        if not (math.isfinite(v) if np.ndim(v) == 0 else np.isfinite(v).all()):  # (a decode step's: one number)
            raise EngineError(NOT_FINITE.format(where=where))


def token_values(x: TokenInputs) -> dict[str, torch.Tensor]:
    """Every registered per-token measure for the n positions of `x`, plus `token_id`."""
    out = {"token_id": x.chosen}
    for _names, fn in TOKEN_FNS:
        out.update(fn(x))
    return out


# --- per-layer measures: reducers over the lens's vocabulary slices ---------------------------
#
# A lens row is one position at one layer: its hidden state → final norm → unembedding gives that
# layer's logits. `lens_values` takes the rows of P positions × R layers in blocks, projects each
# block onto vocabulary slices small enough to stay in cache, and every reducer sees each slice
# once (one projection feeds them all); the [rows, V] logits never exist. The pass itself keeps
# what most reducers need (`LensTotals`): the online log-normaliser (running max m, Σe^(x−m)), Σ
# e^(x−m)·x, and the K largest logits merged across slices. Layer L is never lensed: its values
# come from the model's own float32 distribution (each reducer's `final`).

LOGIT_FLOOR = -1e9  # a masked (−∞) logit of the model's own distribution, for KL sums


@dataclass
class LensInputs:
    """What the lens may know about the P positions besides their hidden states."""

    chosen: torch.Tensor | None = None  # [P] or [P, C] int64: the token(s) taken after each position (-1: none)
    final: torch.Tensor | None = None  # [P, V] the model's own next-token logits (or log-probs) there
    k_lens: int = 0  # top tokens recorded per layer


@dataclass
class LensBlock:
    """One block of positions as the reducers see it (P positions × R layers of rows)."""

    normed: torch.Tensor  # [P, R, d] the rows through the final norm, at the lens's precision
    chosen: torch.Tensor | None  # [P, C] int64
    chosen_logits: torch.Tensor | None  # [P, R, C] float32: the chosen tokens' logits at each row
    final: torch.Tensor | None  # [P, V]
    k_lens: int


@dataclass
class LensSlice:
    """One vocabulary slice of a block's logits and the pass's shared online-softmax terms."""

    logits: torch.Tensor  # [P, R, cols] float32 logits of vocabulary ids first … first+cols−1
    first: int
    e: torch.Tensor  # exp(logits − m) with m the slice's row max
    old: torch.Tensor  # [P, R] e^(M_before − M_now): rescales sums of earlier slices
    new: torch.Tensor  # [P, R] e^(m − M_now): rescales this slice's sums of e
    final: torch.Tensor | None  # [P, cols] float32 model logits of the same ids (when a reducer needs them)


@dataclass
class LensTotals:
    """What the pass accumulated over the whole vocabulary, per row."""

    m: torch.Tensor  # [P, R] running max of the logits
    z: torch.Tensor  # Σ e^(x − m)
    s: torch.Tensor  # Σ e^(x − m)·x
    top_values: torch.Tensor | None  # [P, R, K] the K largest logits, largest first (K: what reducers asked)
    top_ids: torch.Tensor | None

    @property
    def lse(self) -> torch.Tensor:
        """log Σ e^x: a row's log-probabilities are x − lse."""
        return self.m + self.z.log()


class LayerReducer:
    """Computes per-layer measures over the lens's vocabulary slices: `update` sees every slice of
    a block (optional: most reducers read only the pass's totals), `result` gives layers 1…L−1 as
    [P, R] (or [P, R, j], or [P, R, C] when `per_chosen`), and `final` gives layer L from the
    model's own float32 distribution of the same positions. `needs`: which of the lens inputs
    (`chosen`, `final`, `k_lens`) it reads; without them it is skipped (its columns stay unknown)."""

    measures: tuple[str, ...] = ()
    needs: frozenset[str] = frozenset()
    per_chosen = False  # one value per chosen token: results [P, R, C]

    def top(self, k_lens: int) -> int:
        """How many of each row's largest logits the pass must keep for it."""
        return 0

    def start(self, block: LensBlock) -> None:
        pass

    def update(self, s: LensSlice, block: LensBlock) -> None:
        pass

    def result(self, t: LensTotals, block: LensBlock) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def final(self, x: TokenInputs, values: dict[str, torch.Tensor], k_lens: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError


LAYER_REDUCERS: list[type[LayerReducer]] = []


def layer_measure(*measures: str | Measure) -> Callable[[type[LayerReducer]], type[LayerReducer]]:
    """Register a reducer computing these per-layer measures (shape ('layer',) or ('layer', 'j'))."""
    names = tuple(_declared(m) for m in measures)
    for name in names:
        if MEASURES[name].shape not in (("layer",), ("layer", "j")):
            raise ValueError(f"a layer measure has shape ('layer',) or ('layer', 'j'), not {MEASURES[name].shape}")

    def register(cls: type[LayerReducer]) -> type[LayerReducer]:
        cls.measures = names
        LAYER_REDUCERS.append(cls)
        return cls

    return register


@layer_measure("layer_entropy")
class _LensEntropy(LayerReducer):
    """Entropy H = log Z − E_p[x] (nats), from the pass's online log Z and Σ e^(x−m)·x."""

    def result(self, t: LensTotals, block: LensBlock) -> dict[str, torch.Tensor]:
        return {"layer_entropy": (t.lse - t.s / t.z).clamp_min(0)}

    def final(self, x: TokenInputs, values: dict[str, torch.Tensor], k_lens: int) -> dict[str, torch.Tensor]:
        return {"layer_entropy": values["entropy"]}


@layer_measure("layer_margin")
class _LensMargin(LayerReducer):
    """Top-1 minus top-2 probability, from the two largest logits and log Z."""

    def top(self, k_lens: int) -> int:
        return 2

    def result(self, t: LensTotals, block: LensBlock) -> dict[str, torch.Tensor]:
        assert t.top_values is not None
        p = (t.top_values[..., :2] - t.lse[..., None]).exp()
        return {"layer_margin": p[..., 0] - p[..., 1]}

    def final(self, x: TokenInputs, values: dict[str, torch.Tensor], k_lens: int) -> dict[str, torch.Tensor]:
        p = _top(x, values, 2)[0].exp()
        return {"layer_margin": p[:, 0] - p[:, 1]}


@layer_measure("layer_kl_final")
class _LensKLFinal(LayerReducer):
    """KL(p_l ‖ p_L) = E_p[x] − log Z_x − E_p[y] + log Z_y (nats), y the model's own logits at the
    row's position: accumulates Σ e^(x−m)·y per row (one row-wise dot product per slice,
    the position's y shared by its R layers) and y's own online log Z."""

    needs = frozenset({"final"})

    def start(self, block: LensBlock) -> None:
        self.t: torch.Tensor | None = None
        self.ym: torch.Tensor | None = None
        self.yz: torch.Tensor | None = None

    def update(self, s: LensSlice, block: LensBlock) -> None:
        assert s.final is not None
        t = rowdot(s.e, s.final[:, None, :]) * s.new
        ym = s.final.amax(-1)
        yz = (s.final - ym[:, None]).exp().sum(-1)
        if self.t is None or self.ym is None or self.yz is None:
            self.t, self.ym, self.yz = t, ym, yz
            return
        self.t = self.t * s.old + t
        top = torch.maximum(self.ym, ym)
        self.yz = self.yz * (self.ym - top).exp() + yz * (ym - top).exp()
        self.ym = top

    def result(self, t: LensTotals, block: LensBlock) -> dict[str, torch.Tensor]:
        assert self.t is not None and self.ym is not None and self.yz is not None
        lse_y = self.ym + self.yz.log()
        kl = (t.s - self.t) / t.z - t.lse + lse_y[:, None]
        return {"layer_kl_final": kl.clamp(0, -LOGPROB_FLOOR)}

    def final(self, x: TokenInputs, values: dict[str, torch.Tensor], k_lens: int) -> dict[str, torch.Tensor]:
        return {"layer_kl_final": torch.zeros(x.logp.shape[0], device=x.logp.device)}


# rank counting compares a slice with this many chosen tokens at once (memory: rows × cols × this)
RANK_GROUP = 8


RANK_TIE_ULPS = 16  # float32 logits this many steps (of the value) apart count as equal for a lens rank


def rank_threshold(c: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The logit a token must exceed to rank above the chosen token's `c` (float32): `c` plus the
    rounding two matmul kernels can disagree by. The chosen logit is projected apart from the
    vocabulary slices, so a token whose unembedding row equals the chosen's (a twin) can come out
    a step higher there and would be counted as larger (an analyst's trial); logits within
    RANK_TIE_ULPS float32 steps, or one step of a lower lens precision (bfloat16), are ties."""
    step = max(
        RANK_TIE_ULPS * torch.finfo(torch.float32).eps, torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    )
    return c + c.abs().clamp_min(1.0) * step


@layer_measure("layer_rank")
class _LensRank(LayerReducer):
    """1 + how many tokens have a larger logit than the chosen token at each layer: counted slice
    by slice against the chosen token's logit (projected once per block), logits equal up to
    rounding being ties (`rank_threshold`); the chosen token's own entry is taken out again."""

    needs = frozenset({"chosen"})
    per_chosen = True

    def start(self, block: LensBlock) -> None:
        assert block.chosen_logits is not None
        self.count = torch.zeros(block.chosen_logits.shape, dtype=torch.int64, device=block.normed.device)
        self.threshold = rank_threshold(block.chosen_logits, block.normed.dtype)

    def update(self, s: LensSlice, block: LensBlock) -> None:
        c, chosen = self.threshold, block.chosen
        assert chosen is not None
        x = s.logits
        if c.shape[-1] == 1:
            self.count += count_above(x, c)  # (lens logits are finite)
        else:
            for g in range(0, c.shape[-1], RANK_GROUP):
                cg = c[..., g : g + RANK_GROUP]
                self.count[..., g : g + RANK_GROUP] += (x[..., None, :] > cg[..., None]).sum(-1)
        cols = x.shape[-1]
        idx = chosen - s.first  # [P, C]
        inside = (idx >= 0) & (idx < cols)
        own = x.gather(-1, idx.clamp(0, cols - 1)[:, None, :].expand(-1, x.shape[1], -1))
        self.count -= ((own > c) & inside[:, None, :]).long()

    def result(self, t: LensTotals, block: LensBlock) -> dict[str, torch.Tensor]:
        assert block.chosen is not None
        known = (block.chosen >= 0)[:, None, :]
        return {"layer_rank": torch.where(known, self.count + 1, 0)}

    def final(self, x: TokenInputs, values: dict[str, torch.Tensor], k_lens: int) -> dict[str, torch.Tensor]:
        return {"layer_rank": values["rank"]}


@layer_measure("layer_surprisal")
class _LensSurprisal(LayerReducer):
    """−log2 p_l(chosen) = (log Z − x_chosen) / ln 2: the chosen token's logit is projected once."""

    needs = frozenset({"chosen"})
    per_chosen = True

    def result(self, t: LensTotals, block: LensBlock) -> dict[str, torch.Tensor]:
        assert block.chosen_logits is not None
        bits = (t.lse[..., None] - block.chosen_logits) / math.log(2)
        return {"layer_surprisal": bits.clamp(0, -LOGPROB_FLOOR / math.log(2))}

    def final(self, x: TokenInputs, values: dict[str, torch.Tensor], k_lens: int) -> dict[str, torch.Tensor]:
        return {"layer_surprisal": values["logprob"] * (-1 / math.log(2))}


@layer_measure("layer_topk_ids", "layer_topk_logprobs")
class _LensTopK(LayerReducer):
    """The k_lens most likely tokens of each layer and their log-probabilities (the pass merges
    each slice's top k into a running top k)."""

    needs = frozenset({"k_lens"})

    def top(self, k_lens: int) -> int:
        return k_lens

    def result(self, t: LensTotals, block: LensBlock) -> dict[str, torch.Tensor]:
        assert t.top_values is not None and t.top_ids is not None
        k = block.k_lens
        logp = (t.top_values[..., :k] - t.lse[..., None]).clamp_min(LOGPROB_FLOOR)
        return {"layer_topk_ids": t.top_ids[..., :k], "layer_topk_logprobs": logp}

    def final(self, x: TokenInputs, values: dict[str, torch.Tensor], k_lens: int) -> dict[str, torch.Tensor]:
        lp, ids = _top(x, values, k_lens)
        return {"layer_topk_ids": ids, "layer_topk_logprobs": lp}


def _top(x: TokenInputs, values: dict[str, torch.Tensor], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest log-probs (clamped at LOGPROB_FLOOR) and their ids: the first k of the per-token
    top-k already computed when it is as wide (a top-k over the vocabulary is several kernels on
    a GPU, and a decode step with the lens on asked for three), else their own."""
    lp, ids = values.get("topk_logprobs"), values.get("topk_ids")
    if lp is not None and ids is not None and lp.shape[-1] >= k:
        return lp[:, :k], ids[:, :k]
    lp, ids = x.logp.topk(k, dim=-1)
    return lp.clamp_min(LOGPROB_FLOOR), ids


def lens_names() -> tuple[str, ...]:
    """Every column a registered layer reducer fills."""
    return tuple(name for cls in LAYER_REDUCERS for name in cls.measures)


def _active(names: set[str] | None, inputs: LensInputs | None) -> list[LayerReducer]:
    have = set()
    if inputs is not None:
        if inputs.chosen is not None:
            have.add("chosen")
        if inputs.final is not None:
            have.add("final")
        if inputs.k_lens > 0:
            have.add("k_lens")
    return [cls() for cls in LAYER_REDUCERS if (names is None or set(cls.measures) <= names) and cls.needs <= have]


LENS_MAX_ROWS = 1024  # rows (positions × layers) `lens_values` projects at once
LENS_BLOCK_ELEMENTS = 1 << 21  # logits per vocabulary slice on a CPU (~8 MB of float32: they stay in cache)
# on a GPU: a batch's lens over a short prompt or 16 tokens (~200 rows) is launch-bound, a few
# dozen kernels per slice; slices of 64 MB make GPT-2's vocabulary one slice (a few hundred MB of
# temporaries at most, beside the model)
GPU_LENS_BLOCK_ELEMENTS = 1 << 24


def lens_positions(wanted: int, r_layers: int) -> int:
    """At most about `wanted` positions that `lens_values` takes in whole blocks of `r_layers`
    layers each: `wanted` when it is within one block, else a whole number of blocks (a caller
    that lenses in chunks of positions makes no short blocks in between)."""
    per_block = max(1, LENS_MAX_ROWS // max(1, r_layers))
    return max(1, wanted) if wanted <= per_block else wanted // per_block * per_block


def lens_values(
    lens,
    hidden: torch.Tensor,
    inputs: LensInputs | None = None,
    names: set[str] | None = None,
    block_elements: int | None = None,
    max_rows: int = LENS_MAX_ROWS,
) -> dict[str, torch.Tensor]:
    """Logit-lens measures of hidden states [P, R, d] (R layers of each of P positions) →
    {name: [P, R] / [P, R, j] / per chosen token [P, R, C] when `inputs.chosen` is [P, C]}.
    `names`: the columns wanted (None: every registered one the inputs allow). A 2-D `hidden`
    [N, d] is N rows of one layer each, and gives [N] (or [N, j]) values.

    Blocks of whole positions (at most `max_rows` rows) are projected onto vocabulary slices of
    about `block_elements` logits (default: LENS_BLOCK_ELEMENTS on a CPU, GPU_LENS_BLOCK_ELEMENTS
    elsewhere), and every reducer sees each slice once: the unembedding is read once per block,
    the [rows, V] logits never exist, and nothing leaves the device.
    """
    flat = hidden.dim() == 2
    if flat:
        hidden = hidden[:, None, :]
    n, r_layers = hidden.shape[:2]
    reducers = _active(names, inputs)
    k_lens = inputs.k_lens if inputs is not None else 0
    chosen = None if inputs is None else inputs.chosen
    one_chosen = chosen is not None and chosen.dim() == 1
    if chosen is not None and one_chosen:
        chosen = chosen[:, None]
    final = None if inputs is None else inputs.final
    want_final = any("final" in r.needs for r in reducers)
    if not any("chosen" in r.needs for r in reducers):
        chosen = None  # (no chosen-token logits to project)
    k_top = max((r.top(k_lens) for r in reducers), default=0)
    vocab = lens.weight.shape[0]
    if block_elements is None:
        block_elements = LENS_BLOCK_ELEMENTS if hidden.device.type == "cpu" else GPU_LENS_BLOCK_ELEMENTS
    parts: dict[str, list[torch.Tensor]] = {name: [] for r in reducers for name in r.measures}
    per_block = max(1, max_rows // max(1, r_layers))
    for p0 in range(0, n, per_block):
        p1 = min(n, p0 + per_block)
        normed = lens.normed(hidden[p0:p1])
        ch = None if chosen is None else chosen[p0:p1]
        block = LensBlock(
            normed,
            ch,
            None if ch is None else lens.project_ids(normed, ch),
            None if final is None else final[p0:p1],
            k_lens,
        )
        for r in reducers:
            r.start(block)
        cols = max(512, block_elements // max(1, (p1 - p0) * r_layers))
        m = z = s = top_v = top_i = None
        for c in range(0, vocab, cols):
            x = lens.project(normed, c, c + cols)
            mx = x.amax(-1)
            e = (x - mx[..., None]).exp_()
            ze, se = e.sum(-1), rowdot(e, x)
            if m is None or z is None or s is None:
                old, new = torch.zeros_like(mx), torch.ones_like(mx)
                m, z, s = mx, ze, se
            else:
                top = torch.maximum(m, mx)
                old, new = (m - top).exp(), (mx - top).exp()
                m, z, s = top, z * old + ze * new, s * old + se * new
            if k_top:
                top_v, top_i = _merge_top(top_v, top_i, x, mx, c, k_top)
            y = None
            if want_final and block.final is not None:
                y = block.final[:, c : c + cols].float().clamp_min(LOGIT_FLOOR)
            sl = LensSlice(x, c, e, old, new, y)
            for r in reducers:
                r.update(sl, block)
        assert m is not None and z is not None and s is not None
        totals = LensTotals(m, z, s, top_v, top_i)
        for r in reducers:
            for name, v in r.result(totals, block).items():
                parts[name].append(v)
    out = {}
    per_chosen = {name for r in reducers if r.per_chosen for name in r.measures}
    for name, p in parts.items():
        v = torch.cat(p) if p else hidden.new_zeros((0, r_layers), dtype=torch.float32)
        if name in per_chosen and one_chosen:
            v = v[..., 0]
        out[name] = v[:, 0] if flat else v
    return out


def _merge_top(
    top_v: torch.Tensor | None, top_i: torch.Tensor | None, x: torch.Tensor, mx: torch.Tensor, first: int, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The running top k of each row (values, vocabulary ids) merged with slice `x` (ids first…,
    row maxima `mx`). On a CPU only the rows whose slice maximum beats their running k-th largest
    value are searched (exact: no other row's slice can enter its top k), a shrinking share as the
    pass goes on, where a top k of every row of every slice was most of the lens top-k's cost; on
    a GPU every row is (selecting rows would wait for the device at every slice)."""
    if top_v is None or top_i is None:
        v, i = x.topk(min(k, x.shape[-1]), dim=-1)
        return v, i + first
    if x.device.type != "cpu" or top_v.shape[-1] < k:
        v, i = x.topk(min(k, x.shape[-1]), dim=-1)
        v, i = torch.cat([top_v, v], -1), torch.cat([top_i, i + first], -1)
        top_v, at = v.topk(min(k, v.shape[-1]), dim=-1)
        return top_v, i.gather(-1, at)
    need = mx > top_v[..., -1]
    if not bool(need.any()):
        return top_v, top_i
    v, i = x[need].topk(min(k, x.shape[-1]), dim=-1)
    v, i = torch.cat([top_v[need], v], -1), torch.cat([top_i[need], i + first], -1)
    v, at = v.topk(k, dim=-1)
    top_v[need], top_i[need] = v, i.gather(-1, at)
    return top_v, top_i


def per_chosen_measures() -> set[str]:
    """The layer measures that give one value per chosen token (a tree node's children differ)."""
    return {name for cls in LAYER_REDUCERS if cls.per_chosen for name in cls.measures}


def layer_finals(x: TokenInputs, values: dict[str, torch.Tensor], layout: Layout) -> dict[str, torch.Tensor]:
    """Layer L of the layout's lens measures for the n positions of `x`: the model's own float32
    distribution (`values`: the per-token measures already computed from it)."""
    wanted = set(layout.names)
    out: dict[str, torch.Tensor] = {}
    for cls in LAYER_REDUCERS:
        if set(cls.measures) <= wanted:
            out.update(cls().final(x, values, layout.j))
    return out


def run_layout(k: int, n_layers: int, k_lens: int = 0, lens: bool = True, attention: bool = False) -> Layout:
    """The columns a run of this backend records, in declaration order: every per-token measure;
    with the lens on every registered layer measure (`layer_topk_*` only when k_lens > 0), with it
    off only `layer_entropy` (its last layer, the model's own); `attention_entropy` when asked."""
    computed = {"token_id"}
    for names, _fn in TOKEN_FNS:
        computed.update(names)
    if lens:
        computed.update(lens_names())
        if k_lens <= 0:
            computed -= {"layer_topk_ids", "layer_topk_logprobs"}
    else:
        computed.add("layer_entropy")
    if attention:
        computed.add("attention_entropy")
    # (j, the lens top-k's width: 1 with the lens off, where no layer_topk column is recorded)
    return Layout.of(k, n_layers, [n for n in MEASURES if n in computed], j=max(1, k_lens) if lens else 1)


# the per-token measure that is a lens measure's layer L, for callers holding only per-token values
FINAL_FROM = {"layer_entropy": "entropy", "layer_rank": "rank"}


def layer_arrays(
    lensed: dict[str, torch.Tensor] | dict[str, np.ndarray] | None,
    finals: dict[str, np.ndarray],
    n: int,
    layout: Layout,
) -> dict[str, np.ndarray]:
    """[n, L] (or [n, L, j]) arrays of the layout's lens measures: layers 1…L−1 from the lens
    (`lensed[name]`: [m ≤ n, L−1(, j)], the first m positions, the rest 'unknown'; None: the lens
    is off or has not run yet: all 'unknown'), layer L
    from `finals[name]` ([n] or [n, j], or one position's value when n is 1: the model's own value;
    for layer_entropy / layer_rank the per-token `entropy` / `rank` will do)."""
    out = {}
    names = set(lens_names())
    for m in layout.measures:
        if m.name not in names:
            continue
        arr = np.full(m.shape_for(n, layout.dims), m.fill, dtype=np.int32 if m.dtype == "int32" else np.float32)
        if lensed is not None and layout.n_layers > 1 and m.name in lensed:
            v = lensed[m.name]
            arr[: len(v), :-1] = v.cpu().numpy() if isinstance(v, torch.Tensor) else v
        arr[:, -1] = finals[m.name] if m.name in finals else finals[FINAL_FROM[m.name]]
        out[m.name] = arr
    return out


def host_arrays(values: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Device tensors → numpy arrays of the same shapes in one transfer: the lens's seven measures
    copied one by one were seven waits for a GPU per prompt and per chunk of tokens. Float32 on
    the way (ids and ranks are exact below 2**24); integers come back as int64."""
    if not values:
        return {}
    flat = torch.cat([v.reshape(-1).float() for v in values.values()]).cpu().numpy()
    out: dict[str, np.ndarray] = {}
    at = 0
    for name, v in values.items():
        a = flat[at : at + v.numel()].reshape(tuple(v.shape))
        at += v.numel()
        out[name] = a if v.is_floating_point() else a.astype(np.int64)
    return out


# what a step may carry that no token function computes: the forward's attention entropy per layer
NON_TOKEN_MEASURES = ("attention_entropy",)


def attention_values(rows: list[torch.Tensor], n_layers: int) -> torch.Tensor | None:
    """One forward's attention entropies (`arch.attention_entropies`: per layer [1, q]) → [q, L]."""
    if len(rows) != n_layers:
        return None
    return torch.stack([r[0] for r in rows], dim=1)


# --- one transfer per step --------------------------------------------------------------------


def _flat_float(v: torch.Tensor) -> torch.Tensor:
    """`v` as a 1-D float32 tensor, without the calls that would change nothing: a decode step's
    time is its Python and dispatches (half of a step's ~50 were such no-op reshapes and casts)."""
    if v.dim() != 1:
        v = v.reshape(-1)
    return v if v.dtype == torch.float32 else v.float()


class Packer:
    """Lays a step's values side by side in one float32 row on the device, and takes the row
    apart on the host; the offsets come from the layout's declarations. A lens measure's slot
    holds its last layer (the model's own value, from `layer_finals`); with `lens_rows` (the lens
    runs every step) its L−1 lens values follow at the end of the row."""

    def __init__(self, layout: Layout, lens_rows: int = 0) -> None:
        dims = layout.dims
        lensed = set(lens_names())
        self.slots: list[tuple[str, int, tuple[int, ...], Measure]] = []
        self._reads: list[tuple[str, int, int, tuple[int, ...], bool]] = []  # name, start, end, shape, int32
        self.layer: list[tuple[str, tuple[int, ...]]] = []  # lens measures: per-layer value shape
        at = 0
        computed = {"token_id", *lensed, *NON_TOKEN_MEASURES} | {n for names, _fn in TOKEN_FNS for n in names}
        for m in layout.measures:
            if m.name not in computed:
                continue  # no function of this backend's computes it (a comparison's model B: unknown here)
            shape = tuple(dims[d] for d in m.shape)
            if m.name in lensed:
                shape = shape[1:]  # the slot holds layer L only
                self.layer.append((m.name, shape))
            width = int(np.prod(shape)) if shape else 1
            self.slots.append((m.name, at, shape, m))
            self._reads.append((m.name, at, at + width, shape, m.dtype == "int32"))
            at += width
        self.token_width = at
        self._finite_at = [(name, a) for name, a, _b, shape, _i in self._reads if name in ("logprob", "entropy")]
        self.token_at = next(a for name, a, _b, _s, _i in self._reads if name == "token_id")  # (in a step's row)
        # the id columns a step carries besides its token (their bytes go into the token table)
        self.id_measures = [name for name, _at, _s, m in self.slots if m.is_token_id and name != "token_id"]
        self.lens_rows = lens_rows  # per-step lens values appended (lens every step): L-1 layers each

    def pack(self, values: dict[str, torch.Tensor], lensed: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        parts = [_flat_float(values[name]) for name, _at, _s, _m in self.slots]
        if lensed is not None:
            parts += [_flat_float(lensed[name]) for name, _s in self.layer]
        return torch.cat(parts)

    def pack_rows(self, values: dict[str, torch.Tensor], n: int) -> torch.Tensor:
        """The per-token values of n positions as [n, width] (no lens part): several steps that
        leave the device in one transfer (a tree node's children), each row read by `unpack`."""
        return torch.cat([values[name].reshape(n, -1).float() for name, _at, _s, _m in self.slots], dim=1)

    def unpack_rows(self, block: np.ndarray) -> dict[str, np.ndarray]:
        """Host [n, width] rows of `pack_rows` → {name: [n(, …)]}, integers as declared."""
        n = len(block)
        out = {}
        for name, a, b, shape, integer in self._reads:
            v = block[:, a:b].astype(np.int32) if integer else block[:, a:b]
            out[name] = v.reshape(n, *shape) if shape else v[:, 0]
        return out

    def unpack_block(self, block: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
        """Host [n, width] rows of `pack` (n steps) → ({name: [n(, …)]}, {lens measure: [n, L-1(, j)]}
        or None), as `unpack` takes one row apart."""
        out = self.unpack_rows(block)
        if self.lens_rows == 0:
            return out, None
        n, at = len(block), self.token_width
        lens = {}
        for name, shape in self.layer:
            width = self.lens_rows * (int(np.prod(shape)) if shape else 1)
            v = block[:, at : at + width].reshape(n, self.lens_rows, *shape)
            lens[name] = v.astype(np.int32) if MEASURES[name].dtype == "int32" else v
            at += width
        return out, lens

    def check_finite(self, row: np.ndarray, where: str) -> None:
        """`require_finite` on a step's row before it is taken apart (its log-prob and entropy)."""
        require_finite({name: row[at] for name, at in self._finite_at}, where)

    def unpack(self, row: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
        """Host row → ({name: value; a lens measure's: its layer L}, {lens measure: [L-1(, j)]} or None)."""
        host, lens = self.unpack_block(row[None])  # (full precision here: storage may narrow it, Columns)
        return {k: v[0] for k, v in host.items()}, None if lens is None else {k: v[0] for k, v in lens.items()}
