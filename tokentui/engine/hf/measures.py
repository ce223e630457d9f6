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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from tokentui.core.columns import Layout
from tokentui.core.measures import MEASURES, Measure, declare


@dataclass
class TokenInputs:
    """What a per-token measure may look at, for n positions."""

    logp: torch.Tensor  # [n, V] float32 log-softmax of the raw logits (temperature 1, no filter)
    chosen: torch.Tensor  # [n] int64 the token taken at each position
    sampler_logprob: torch.Tensor  # [n] float32 log p under the sampler's warped distribution (NaN: none)
    k: int  # how many alternatives the run records

    def chosen_logprob(self) -> torch.Tensor:
        return self.logp.gather(-1, self.chosen[:, None])[:, 0]


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
    return {"entropy": entropy(x.logp)}


@token_measure("rank")
def _rank(x: TokenInputs) -> dict[str, torch.Tensor]:
    return {"rank": (x.logp > x.chosen_logprob()[:, None]).sum(-1) + 1}


@token_measure("topk_ids", "topk_logprobs")
def _topk(x: TokenInputs) -> dict[str, torch.Tensor]:
    lp, ids = x.logp.topk(x.k, dim=-1)
    return {"topk_ids": ids, "topk_logprobs": lp.clamp_min(LOGPROB_FLOOR)}


@token_measure("sampler_logprob")
def _sampler_logprob(x: TokenInputs) -> dict[str, torch.Tensor]:
    return {"sampler_logprob": x.sampler_logprob.clamp_min(LOGPROB_FLOOR)}


def entropy(logp: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of distributions given as log-probabilities along the last dim; a token with
    p = 0 (log-prob −∞) adds 0, not NaN."""
    return torch.special.entr(logp.exp()).sum(-1)


def token_values(x: TokenInputs) -> dict[str, torch.Tensor]:
    """Every registered per-token measure for the n positions of `x`, plus `token_id`."""
    out = {"token_id": x.chosen}
    for _names, fn in TOKEN_FNS:
        out.update(fn(x))
    return out


# --- per-layer measures: reducers over the lens's vocabulary slices ---------------------------


class LayerReducer:
    """Accumulates one per-layer measure over vocabulary slices of the lens logits, so the
    [rows, V] logits are never built whole. `final_from` names the per-token measure that is the
    last layer's value (the model's own distribution, computed in float32)."""

    name: str
    final_from: str

    def start(self, rows: int, device: torch.device) -> None:
        raise NotImplementedError

    def update(self, logits: torch.Tensor, first_id: int) -> None:
        raise NotImplementedError

    def result(self) -> torch.Tensor:
        raise NotImplementedError


LAYER_REDUCERS: list[Callable[[], LayerReducer]] = []


def layer_measure(measure: str | Measure) -> Callable[[type[LayerReducer]], type[LayerReducer]]:
    name = _declared(measure)
    if MEASURES[name].shape != ("layer",):
        raise ValueError(f"a layer measure has shape ('layer',), not {MEASURES[name].shape}")

    def register(cls: type[LayerReducer]) -> type[LayerReducer]:
        cls.name = name
        LAYER_REDUCERS.append(cls)
        return cls

    return register


@layer_measure("layer_entropy")
class _LensEntropy(LayerReducer):
    """Entropy as log Z − E_p[x], accumulated online: running max m, Σe^(x−m), Σe^(x−m)·x."""

    final_from = "entropy"

    def start(self, rows: int, device: torch.device) -> None:
        self.m: torch.Tensor | None = None
        self.z = self.s = torch.zeros(rows, device=device)

    def update(self, logits: torch.Tensor, first_id: int) -> None:
        m = logits.amax(-1)
        e = (logits - m[:, None]).exp_()
        z, s = e.sum(-1), torch.linalg.vecdot(e, logits)
        if self.m is None:
            self.m, self.z, self.s = m, z, s
            return
        top = torch.maximum(self.m, m)
        a, b = (self.m - top).exp(), (m - top).exp()
        self.m, self.z, self.s = top, self.z * a + z * b, self.s * a + s * b

    def result(self) -> torch.Tensor:
        assert self.m is not None
        return self.m + self.z.log() - self.s / self.z


def lens_values(
    lens, hidden: torch.Tensor, block_elements: int = 1 << 21, max_rows: int = 1024
) -> dict[str, torch.Tensor]:
    """Logit-lens measures of hidden states [N, d] → {name: [N]}.

    Each block of rows is projected onto slices of the vocabulary small enough to stay in cache
    (~8 MB of float32) and every reducer sees each slice once: the unembedding is read once per
    block of rows, and the [N, V] logits (hundreds of MB for a 152k vocabulary) never exist.
    """
    n = hidden.shape[0]
    reducers = [make() for make in LAYER_REDUCERS]
    if n == 0:
        return {r.name: hidden.new_zeros(0, dtype=torch.float32) for r in reducers}
    vocab = lens.weight.shape[0]
    parts: dict[str, list[torch.Tensor]] = {r.name: [] for r in reducers}
    for r0 in range(0, n, max_rows):
        normed = lens.normed(hidden[r0 : r0 + max_rows])
        for r in reducers:
            r.start(normed.shape[0], hidden.device)
        cols = max(512, block_elements // normed.shape[0])
        for c in range(0, vocab, cols):
            logits = lens.project(normed, c, c + cols)
            for r in reducers:
                r.update(logits, c)
        for r in reducers:
            parts[r.name].append(r.result())
    return {name: torch.cat(p) for name, p in parts.items()}


def layer_names() -> tuple[str, ...]:
    return tuple(make.name for make in LAYER_REDUCERS)  # type: ignore[attr-defined]


def run_layout(k: int, n_layers: int) -> Layout:
    """The columns a run of this backend records: every registered measure, in declaration order."""
    computed = {"token_id", *layer_names()}
    for names, _fn in TOKEN_FNS:
        computed.update(names)
    return Layout.of(k, n_layers, [n for n in MEASURES if n in computed])


def layer_arrays(
    lensed: dict[str, torch.Tensor] | None, tokens: dict[str, np.ndarray], n: int, n_layers: int
) -> dict[str, np.ndarray]:
    """[n, L] per layer measure: layers 0..L-2 from the lens ([(L-1)·n] in layer-major order, or
    NaN when the lens is off), the last layer from the model's own per-token value."""
    out = {}
    for make in LAYER_REDUCERS:
        name, final = make.name, make.final_from  # type: ignore[attr-defined]
        arr = np.full((n, n_layers), np.nan, dtype=np.float32)
        if lensed is not None and n_layers > 1:
            arr[:, :-1] = lensed[name].view(n_layers - 1, n).T.cpu().numpy()
        arr[:, -1] = tokens[final]
        out[name] = arr
    return out


# --- one transfer per step --------------------------------------------------------------------


class Packer:
    """Lays a step's values side by side in one float32 row on the device, and takes the row
    apart on the host; the offsets come from the layout's declarations."""

    def __init__(self, layout: Layout, lens_rows: int = 0) -> None:
        dims = layout.dims
        self.slots: list[tuple[str, int, int, Measure]] = []
        at = 0
        computed = {"token_id"} | {n for names, _fn in TOKEN_FNS for n in names}
        for m in layout.measures:
            if m.shape == ("layer",) or m.name not in computed:
                continue  # from the lens (below), or no token function's (a comparison's model B: unknown here)
            width = int(np.prod([dims[d] for d in m.shape])) if m.shape else 1
            self.slots.append((m.name, at, width, m))
            at += width
        self.token_width = at
        # the id columns a step carries besides its token (their bytes go into the token table)
        self.id_measures = [name for name, _at, _w, m in self.slots if m.is_token_id and name != "token_id"]
        self.lens_rows = lens_rows  # per-step lens values appended (lens every step): L-1 each
        self.layer = [make.name for make in LAYER_REDUCERS]  # type: ignore[attr-defined]

    def pack(self, values: dict[str, torch.Tensor], lensed: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        parts = [values[name].reshape(-1).float() for name, _at, _w, _m in self.slots]
        if lensed is not None:
            parts += [lensed[name].float() for name in self.layer]
        return torch.cat(parts)

    def pack_rows(self, values: dict[str, torch.Tensor], n: int) -> torch.Tensor:
        """The per-token values of n positions as [n, width] (no lens part): several steps that
        leave the device in one transfer (a tree node's children), each row read by `unpack`."""
        return torch.cat([values[name].reshape(n, -1).float() for name, _at, _w, _m in self.slots], dim=1)

    def unpack(self, row: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
        """Host row → ({name: value}, {layer name: [L-1] lens values} or None)."""
        out = {}
        for name, at, width, m in self.slots:
            v = row[at : at + width]  # full precision here: storage may narrow it (Columns)
            if m.dtype == "int32":
                v = v.astype(np.int32)
            out[name] = v if m.shape else v[0]
        if self.lens_rows == 0:
            return out, None
        at = self.token_width
        lens = {}
        for name in self.layer:
            lens[name] = row[at : at + self.lens_rows]
            at += self.lens_rows
        return out, lens
