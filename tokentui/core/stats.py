"""Run statistics, seed 000's analysis done on saved runs: summary numbers of entropy and p(chosen),
perplexity, an entropy decile table, entropy and probability by relative position, the extreme
tokens with their context and a GLTR rank histogram, for one branch, a whole run or many runs.

Pure numpy (no torch, no terminal), so `tokentui stats` and the explorer's Stats screen compute the
same numbers from the same code, also where torch is not installed. README.md ("Run statistics")
defines every number; in short:

- which tokens count: positions ≥ 1 (position 0 has no prediction) of the chosen kinds, by default
  ("auto") the tokens the model produced (`generated`); a scope holding none counts its forced
  tokens, and failing those its prompt's scored positions (teacher-forced runs);
- entropy: the run's recorded `entropy`, nats, of the model's raw next-token distribution that
  chose the token; p(chosen) = exp(recorded `logprob`); loss = −logprob; perplexity = exp(mean loss);
- relative position of a counted token: i / n, i its index (from 0) among the n counted tokens of
  its sequence (the branch's full sequence, prompt included); bin k of N holds floor(i·N / n) = k;
- several scopes together are the statistics of their tokens put end to end (token-weighted).

A `Selection` is the counted tokens of one or more scopes as flat arrays; `report` turns selections
into the per-run rows and the statistics of all their tokens. Token text stays bytes here: whoever
shows it sanitises it (`core/display.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tokentui.core.display import decode_bytes, lone_token, prob_text, sanitize
from tokentui.core.metrics import RANK_BUCKETS, perplexity, rank_bucket
from tokentui.core.params import RunError
from tokentui.core.run import Run

KINDS = ("prompt", "forced", "generated")  # index = the kind's code below
AUTO_ORDER = ("generated", "forced", "prompt")  # what "auto" counts: the first of these a scope has
DEFAULT_BINS = 10
MAX_BINS = 1000
DEFAULT_TOP = 5
MAX_TOP = 100
DECILES = 10
EXAMPLES = 5  # example tokens per decile
CONTEXT_BEFORE, CONTEXT_AFTER = 8, 4  # tokens of context around an extreme token
RANK_LABELS = ("1", "2–10", "11–100", "101–1000", ">1000")
RANK_KEYS = ("1", "2-10", "11-100", "101-1000", ">1000")  # ASCII names (JSON, CSV)
EXTREMES = {  # name → (value, largest first?)
    "highest_entropy": ("entropy", True),
    "lowest_entropy": ("entropy", False),
    "most_confident": ("logprob", True),
    "least_confident": ("logprob", False),
}
PLOT_NAMES = ("entropy_by_position", "probability_by_position", "rank_histogram")  # plots(): one file each
EXTREME_TITLES = {
    "highest_entropy": "highest entropy",
    "lowest_entropy": "lowest entropy",
    "most_confident": "most confident choices (highest p)",
    "least_confident": "least confident choices (lowest p)",
}

assert len(RANK_LABELS) == len(RANK_BUCKETS) + 1


class StatsError(ValueError):
    """Statistics cannot be computed as asked; the message is one line for the user."""


def parse_kinds(text: str) -> tuple[str, ...] | None:
    """`--tokens`: "auto" → None; "all" → every kind; else a comma-separated list of kinds."""
    text = text.strip().lower()
    if text == "auto":
        return None
    if text == "all":
        return KINDS
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    bad = [n for n in names if n not in KINDS]
    if bad or not names:
        raise StatsError(f"--tokens takes auto, all or a list of {', '.join(KINDS)} (not {text!r})")
    return names


@dataclass(frozen=True)
class Source:
    """Where the tokens of a selection came from: one run's scope."""

    run_id: str
    model: str
    scope: str  # "run" (every recorded token once) or "branch N" (the branch's full sequence)
    kinds: tuple[str, ...]  # the kinds counted (auto resolved)
    label: str = ""  # how the text and CSV name it: the item, with its model when a collection has several; "arg N"
    item: int | None = None  # the collection item's index (its input line), or the argument's number (from 1)
    forced_out: int = 0  # forced tokens (alternatives the user took, forced text) the kinds leave out


def forced_left_out(sources: list[Source]) -> str:
    """' · N forced not counted' when the counted kinds leave out forced tokens of the scopes, else
    '': a user who took an alternative and read "100% rank 1" saw no sign it was not counted."""
    n = sum(s.forced_out for s in sources)
    return f" · {n} forced not counted" if n else ""


@dataclass(frozen=True)
class Token:
    """One counted token with its context: the candidates for the extremes."""

    order: int  # its index among the selection's tokens
    source: int  # index into Selection.sources
    branch: int  # the branch whose sequence holds it (its context's)
    position: int  # absolute position in that sequence
    token: bytes
    before: bytes  # up to CONTEXT_BEFORE tokens before it
    after: bytes  # up to CONTEXT_AFTER tokens after it
    entropy: float
    logprob: float
    rank: int

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)


@dataclass
class Selection:
    """The counted tokens of one or more scopes, as flat arrays in order (scope after scope; in a
    scope, branch after branch, each by position)."""

    sources: list[Source]
    source: np.ndarray  # int32: which source each token comes from
    entropy: np.ndarray  # float64, nats
    logprob: np.ndarray  # float64, nats
    rank: np.ndarray  # int64, 1 = the model's first choice
    index: np.ndarray  # int64: i, the token's index among the counted tokens of its sequence
    length: np.ndarray  # int64: n, how many tokens of its sequence count
    text: np.ndarray  # int32: index into `texts`
    texts: list[bytes]
    top: int = DEFAULT_TOP  # how many tokens each list of extremes holds
    candidates: list[Token] = field(default_factory=list)  # each scope's top of every extreme

    def __len__(self) -> int:
        return len(self.entropy)

    @property
    def relative_position(self) -> np.ndarray:
        out: np.ndarray = self.index / np.maximum(self.length, 1)
        return out


@dataclass
class _Rows:
    """A scope's stored rows end to end, in pieces: for a branch, the pieces of its full sequence
    (prompt, ancestors' parts, its own steps); for the whole run, every stored segment once (the
    prompt, then each branch's own steps). One array per field, so that a tree of thousands of
    one-token branches is counted without a Python loop per row."""

    owner: list[int]  # per piece: the branch whose sequence it belongs to (the prompt's: the scope's / 0)
    offsets: np.ndarray  # per piece: its first row (and the total at the end)
    piece: np.ndarray  # per row: its piece
    position: np.ndarray  # per row: absolute position in its sequence
    kinds: np.ndarray  # per row: index into KINDS
    entropy: np.ndarray
    logprob: np.ndarray
    rank: np.ndarray
    ids: np.ndarray


def _rows(run: Run, branch: int | None) -> _Rows:
    if branch is not None:
        segments = [(src, start + lo, lo, hi) for start, _c, lo, hi, src in run.segments(branch)]
        owner = [branch] * len(segments)
    else:
        segments = [("prompt", 0, 0, len(run.prompt))] + [
            (f"b{b.id}", b.fork_position, 0, len(b.steps)) for b in run.branches
        ]
        owner = [0] + [b.id for b in run.branches]
    cols = [run.prompt if src == "prompt" else run.branches[int(src[1:])].steps for src, _s, _lo, _hi in segments]
    lengths = np.array([hi - lo for _src, _s, lo, hi in segments], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    piece = np.repeat(np.arange(len(segments)), lengths)
    starts = np.array([start for _src, start, _lo, _hi in segments], dtype=np.int64)
    kinds = np.full(int(offsets[-1]), KINDS.index("generated"), dtype=np.int8)
    for j, (src, _start, lo, hi) in enumerate(segments):
        if src == "prompt":
            kinds[offsets[j] : offsets[j + 1]] = KINDS.index("prompt")
        else:
            forced = min(hi, run.branches[int(src[1:])].n_forced) - lo
            if forced > 0:
                kinds[offsets[j] : offsets[j] + forced] = KINDS.index("forced")

    def column(name: str, dtype: type) -> np.ndarray:
        parts = [c.col(name)[lo:hi] for c, (_src, _s, lo, hi) in zip(cols, segments)]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return _Rows(
        owner=owner,
        offsets=offsets,
        piece=piece,
        position=np.arange(int(offsets[-1])) - offsets[piece] + starts[piece],
        kinds=kinds,
        entropy=column("entropy", np.float64),
        logprob=column("logprob", np.float64),
        rank=column("rank", np.int64),
        ids=column("token_id", np.int64),
    )


def _resolve_kinds(kinds_of: np.ndarray, kinds: tuple[str, ...] | None, include_prompt: bool) -> tuple[str, ...]:
    """`kinds_of`: the kinds of the scope's scored rows."""
    if kinds is None:
        kinds = (AUTO_ORDER[0],)
        for name in AUTO_ORDER:
            if bool((kinds_of == KINDS.index(name)).any()):
                kinds = (name,)
                break
    if include_prompt and "prompt" not in kinds:
        kinds = (*kinds, "prompt")
    return tuple(k for k in KINDS if k in kinds)  # one order whatever was asked


def _whole_run_indices(run: Run, rows: _Rows, cum: np.ndarray, counted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i, n) of each counted row of the whole run: i counts the counted tokens before it in its
    branch's full sequence (ancestors' prefixes, then its own steps), n those of that sequence.
    `cum[r]`: counted rows before row r (pieces: 0 the prompt, b + 1 branch b)."""
    off = rows.offsets
    first = np.zeros(len(rows.owner), dtype=np.int64)  # per piece: counted tokens of its sequence before it

    def before(b: int | None, pos: int) -> int:
        """How many counted positions < pos branch b's full sequence has (None: the prompt). Up
        from b to the first branch whose own steps hold positions < pos: those, plus what its
        sequence counts before its own steps (`first`, known: a parent precedes its children).
        Walking every ancestor made a tree search's long path quadratic (3,000 deep: seconds)."""
        while b is not None:
            br = run.branches[b]
            if pos > br.fork_position:
                k = min(pos - br.fork_position, len(br.steps))
                return int(cum[off[b + 1] + k] - cum[off[b + 1]] + first[b + 1])
            b = br.parent
        return int(cum[min(pos, int(off[1]))])

    for b in run.branches:
        first[b.id + 1] = before(b.parent, b.fork_position) if b.parent is not None else int(cum[off[1]])
    own = cum[off[1:]] - cum[off[:-1]]
    n = first + own
    n[0] = n[1]  # the prompt is in branch 0's sequence
    piece = rows.piece[counted]
    return first[piece] + cum[counted] - cum[off[piece]], n[piece]


def select(
    run: Run,
    branch: int | None = None,
    kinds: tuple[str, ...] | None = None,
    include_prompt: bool = False,
    top: int = DEFAULT_TOP,
    label: str = "",
    item: int | None = None,
    model: str | None = None,
) -> Selection:
    """The counted tokens of `run`: of `branch`'s full sequence (prompt and ancestors included), or
    with `branch` None of the whole run (every recorded position once: the prompt and branch 0's
    tokens in branch 0's sequence, every other branch's own tokens in its sequence). `kinds` None
    is "auto" (see the module's docstring). `model`: the model they are counted under (None: as
    the run records it). RunError for a branch the run lacks."""
    check_options(DEFAULT_BINS, top)
    if branch is not None:
        run.branch(branch)
    rows = _rows(run, branch)
    scored = (rows.position >= 1) & np.isfinite(rows.entropy) & np.isfinite(rows.logprob)
    counted_kinds = _resolve_kinds(rows.kinds[scored], kinds, include_prompt)
    allowed = np.array([k in counted_kinds for k in KINDS])
    mask = scored & allowed[rows.kinds]
    counted = np.flatnonzero(mask)
    forced_out = int(np.count_nonzero(scored & ~mask & (rows.kinds == KINDS.index("forced"))))
    if branch is not None:  # one sequence, in order
        index, length = np.arange(len(counted), dtype=np.int64), np.full(len(counted), len(counted), dtype=np.int64)
    else:
        cum = np.concatenate([[0], np.cumsum(mask)]).astype(np.int64)
        index, length = _whole_run_indices(run, rows, cum, counted)
    ids = rows.ids[counted]
    uniq, inverse = np.unique(ids, return_inverse=True)
    texts: list[bytes] = []
    code_of: dict[bytes, int] = {}
    remap = np.zeros(len(uniq), dtype=np.int32)
    for j, tid in enumerate(uniq.tolist()):
        data = run.tokens.bytes_of(tid)
        if data not in code_of:
            code_of[data] = len(texts)
            texts.append(data)
        remap[j] = code_of[data]
    scope = "run" if branch is None else f"branch {branch}"
    sel = Selection(
        sources=[Source(run.id, model or run.meta.model, scope, counted_kinds, label, item, forced_out)],
        source=np.zeros(len(ids), dtype=np.int32),
        entropy=rows.entropy[counted],
        logprob=rows.logprob[counted],
        rank=rows.rank[counted],
        index=index.astype(np.int64),
        length=length.astype(np.int64),
        text=remap[inverse.reshape(-1)] if len(ids) else np.zeros(0, dtype=np.int32),
        texts=texts,
        top=top,
    )
    chosen = _chosen(sel, top)
    where = [(rows.owner[int(rows.piece[counted[i]])], int(rows.position[counted[i]])) for i in chosen]
    sel.candidates = _candidates(run, sel, chosen, where)
    return sel


def _order(values: np.ndarray, largest: bool) -> np.ndarray:
    """Indices by value (largest or smallest first), ties in their order of appearance."""
    return np.argsort(-values if largest else values, kind="stable")


def _chosen(sel: Selection, top: int) -> list[int]:
    """The selection's tokens among the `top` of some extreme, in order."""
    chosen: set[int] = set()
    for value, largest in EXTREMES.values():
        chosen.update(_order(getattr(sel, value), largest)[:top].tolist())
    return sorted(chosen)


def _candidates(run: Run, sel: Selection, chosen: list[int], where: list[tuple[int, int]]) -> list[Token]:
    """Tokens `chosen` of the selection (at `where`: branch, position) with their context."""
    sequences: dict[int, np.ndarray] = {}
    out = []
    for i, (branch, p) in zip(chosen, where):
        if branch not in sequences:
            sequences[branch] = run.sequence(branch)
        ids = sequences[branch]
        out.append(
            Token(
                order=i,
                source=0,
                branch=branch,
                position=p,
                token=run.tokens.bytes_of(int(ids[p])),
                before=run.tokens.text(ids[max(0, p - CONTEXT_BEFORE) : p].tolist()),
                after=run.tokens.text(ids[p + 1 : p + 1 + CONTEXT_AFTER].tolist()),
                entropy=float(sel.entropy[i]),
                logprob=float(sel.logprob[i]),
                rank=int(sel.rank[i]),
            )
        )
    return out


def concat(selections: list[Selection]) -> Selection:
    """The tokens of several selections end to end (their sources kept apart)."""
    texts: list[bytes] = []
    code_of: dict[bytes, int] = {}
    text_parts: list[np.ndarray] = []
    source_parts: list[np.ndarray] = []
    candidates: list[Token] = []
    sources: list[Source] = []
    offset = 0
    for sel in selections:
        remap = np.zeros(len(sel.texts), dtype=np.int32)
        for j, data in enumerate(sel.texts):
            if data not in code_of:
                code_of[data] = len(texts)
                texts.append(data)
            remap[j] = code_of[data]
        text_parts.append(remap[sel.text] if len(sel) else np.zeros(0, dtype=np.int32))
        source_parts.append(sel.source + len(sources))
        candidates += [replace(t, order=t.order + offset, source=t.source + len(sources)) for t in sel.candidates]
        sources += sel.sources
        offset += len(sel)

    def cat(name: str, dtype: type) -> np.ndarray:
        parts = [getattr(s, name) for s in selections]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return Selection(
        sources=sources,
        source=np.concatenate(source_parts).astype(np.int32) if source_parts else np.zeros(0, dtype=np.int32),
        entropy=cat("entropy", np.float64),
        logprob=cat("logprob", np.float64),
        rank=cat("rank", np.int64),
        index=cat("index", np.int64),
        length=cat("length", np.int64),
        text=np.concatenate(text_parts).astype(np.int32) if text_parts else np.zeros(0, dtype=np.int32),
        texts=texts,
        top=min((s.top for s in selections), default=DEFAULT_TOP),  # all of a run's top can be all's
        candidates=candidates,
    )


# --- the numbers ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spread:
    """mean, median, std (sample: n − 1; NaN below 2 values), min and max of some values."""

    mean: float
    median: float
    std: float
    min: float
    max: float

    @classmethod
    def of(cls, values: np.ndarray) -> Spread:
        if not len(values):
            return cls(math.nan, math.nan, math.nan, math.nan, math.nan)
        std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
        return cls(float(np.mean(values)), float(np.median(values)), std, float(np.min(values)), float(np.max(values)))

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "median": self.median, "std": self.std, "min": self.min, "max": self.max}


@dataclass(frozen=True)
class Summary:
    tokens: int
    entropy: Spread  # nats
    probability: Spread  # p(chosen) = exp(logprob)
    mean_loss: float  # mean −logprob, nats
    perplexity: float  # exp(mean_loss)
    ranks: tuple[int, ...]  # GLTR: tokens of rank 1, 2–10, 11–100, 101–1000, > 1000

    @property
    def rank_fractions(self) -> tuple[float, ...]:
        return tuple(c / self.tokens if self.tokens else math.nan for c in self.ranks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "entropy": self.entropy.to_dict(),
            "probability": self.probability.to_dict(),
            "mean_loss": self.mean_loss,
            "perplexity": self.perplexity,
            "ranks": [
                {"rank": key, "count": c, "fraction": f}
                for key, c, f in zip(RANK_KEYS, self.ranks, self.rank_fractions)
            ],
        }


def summarize(entropy: np.ndarray, logprob: np.ndarray, rank: np.ndarray) -> Summary:
    loss = float(np.mean(-logprob)) if len(logprob) else math.nan
    buckets = rank_bucket(rank)
    counts = tuple(int((buckets == b).sum()) for b in range(len(RANK_LABELS)))
    return Summary(
        tokens=len(entropy),
        entropy=Spread.of(entropy),
        probability=Spread.of(np.exp(logprob)),
        mean_loss=loss,
        perplexity=perplexity(loss),
        ranks=counts,
    )


@dataclass(frozen=True)
class Decile:
    """Decile d (1…10) of the entropies: the tokens with low ≤ entropy < high (the last: ≤ high),
    low and high the (d−1)/10 and d/10 quantiles (linear interpolation, numpy's default)."""

    decile: int
    low: float
    high: float
    count: int
    mean_entropy: float
    mean_probability: float
    examples: tuple[tuple[bytes, int], ...]  # the most frequent tokens (text, count), ties by first seen

    def to_dict(self) -> dict[str, Any]:
        return {
            "decile": self.decile,
            "entropy_low": self.low,
            "entropy_high": self.high,
            "count": self.count,
            "mean_entropy": self.mean_entropy,
            "mean_probability": self.mean_probability,
            "examples": [{"token": decode_bytes(t), "count": c} for t, c in self.examples],
        }


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _examples(codes: np.ndarray, texts: list[bytes]) -> tuple[tuple[bytes, int], ...]:
    if not len(codes):
        return ()
    uniq, first, counts = np.unique(codes, return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))[:EXAMPLES]
    return tuple((texts[int(uniq[j])], int(counts[j])) for j in order)


def deciles(sel: Selection) -> list[Decile]:
    if not len(sel):
        return []
    edges = np.quantile(sel.entropy, np.arange(DECILES + 1) / DECILES)  # (linspace: 0.30000000000000004)
    which = np.searchsorted(edges[1:-1], sel.entropy, side="right")
    prob = np.exp(sel.logprob)
    out = []
    for d in range(DECILES):
        m = which == d
        out.append(
            Decile(
                d + 1,
                float(edges[d]),
                float(edges[d + 1]),
                int(m.sum()),
                _mean(sel.entropy[m]),
                _mean(prob[m]),
                _examples(sel.text[m], sel.texts),
            )
        )
    return out


@dataclass(frozen=True)
class PositionBin:
    """Bin k (0…N−1) of relative position: the tokens with floor(i·N / n) = k, i.e. i/n in
    [k/N, (k+1)/N)."""

    bin: int
    low: float
    high: float
    count: int
    mean_entropy: float
    mean_probability: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "bin": self.bin,
            "relative_position_low": self.low,
            "relative_position_high": self.high,
            "count": self.count,
            "mean_entropy": self.mean_entropy,
            "mean_probability": self.mean_probability,
        }


def position_bins(
    index: np.ndarray, length: np.ndarray, entropy: np.ndarray, logprob: np.ndarray, bins: int
) -> list[PositionBin]:
    which = (index * bins) // np.maximum(length, 1)  # integers: no rounding at the edges
    prob = np.exp(logprob)
    out = []
    for k in range(bins):
        m = which == k
        out.append(PositionBin(k, k / bins, (k + 1) / bins, int(m.sum()), _mean(entropy[m]), _mean(prob[m])))
    return out


@dataclass
class Stats:
    """Everything about one set of tokens."""

    summary: Summary
    deciles: list[Decile]
    positions: list[PositionBin]
    extremes: dict[str, list[Token]]  # EXTREMES' names → up to `top` tokens each

    def to_dict(self, sources: list[Source]) -> dict[str, Any]:
        return {
            "summary": self.summary.to_dict(),
            "deciles": [d.to_dict() for d in self.deciles],
            "positions": [p.to_dict() for p in self.positions],
            "extremes": {name: [_token_dict(t, sources) for t in ts] for name, ts in self.extremes.items()},
        }


def _token_dict(t: Token, sources: list[Source]) -> dict[str, Any]:
    src = sources[t.source]
    return {
        "run_id": src.run_id,
        "item": src.item,
        "branch": t.branch,
        "position": t.position,
        "token": decode_bytes(t.token),
        "entropy": t.entropy,
        "probability": t.prob,
        "logprob": t.logprob,
        "rank": t.rank,
        "context_before": decode_bytes(t.before),
        "context_after": decode_bytes(t.after),
    }


def extremes(sel: Selection, top: int) -> dict[str, list[Token]]:
    """The `top` tokens of each extreme (ties: the earlier token first), from the candidates."""
    out = {}
    for name, (value, largest) in EXTREMES.items():
        values = np.array([getattr(t, value) for t in sel.candidates], dtype=np.float64)
        orders = np.array([t.order for t in sel.candidates], dtype=np.int64)
        ranked = np.lexsort((orders, -values if largest else values))[:top]
        out[name] = [sel.candidates[int(j)] for j in ranked]
    return out


def compute(sel: Selection, bins: int = DEFAULT_BINS) -> Stats:
    """The statistics of a selection's tokens (`sel.top` tokens in each list of extremes)."""
    return Stats(
        summarize(sel.entropy, sel.logprob, sel.rank),
        deciles(sel),
        position_bins(sel.index, sel.length, sel.entropy, sel.logprob, bins),
        extremes(sel, sel.top),
    )


def check_options(bins: int, top: int) -> None:
    if not 1 <= bins <= MAX_BINS:
        raise StatsError(f"--bins must be 1…{MAX_BINS} (not {bins})")
    if not 0 <= top <= MAX_TOP:
        raise StatsError(f"--top must be 0…{MAX_TOP} (not {top})")


@dataclass
class RunRow:
    """One scope's own numbers (a per-run row)."""

    source: Source
    summary: Summary
    positions: list[PositionBin]

    def to_dict(self) -> dict[str, Any]:
        s = self.source
        return {
            "item": s.item,
            "run_id": s.run_id,
            "model": s.model,
            "scope": s.scope,
            "kinds": list(s.kinds),
            "summary": self.summary.to_dict(),
            "positions": [p.to_dict() for p in self.positions],
        }


@dataclass
class Report:
    """The per-run rows, the statistics of all their tokens together and, when the runs are of
    several models (a collection batched under a base and its fine-tune), each model's tokens
    together (`models`: one row each; pooling two models' tokens alone would mean little)."""

    rows: list[RunRow]
    all: Stats
    selection: Selection
    bins: int
    top: int
    models: list[RunRow] = field(default_factory=list)

    def to_dict(self, tokens: str = "auto", include_prompt: bool = False) -> dict[str, Any]:
        return {
            "tokens": tokens,
            "include_prompt": include_prompt,
            "bins": self.bins,
            "top": self.top,
            "units": {"entropy": "nats", "loss": "nats", "probability": "p(chosen token)"},
            "runs": [r.to_dict() for r in self.rows],
            "all": self.all.to_dict(self.selection.sources),
            "models": [r.to_dict() for r in self.models],
        }


def report(selections: list[Selection], bins: int = DEFAULT_BINS) -> Report:
    """Per-run rows and the statistics of all the selections' tokens together (extremes: the
    smallest `top` the selections were made with)."""
    check_options(bins, min((s.top for s in selections), default=DEFAULT_TOP))
    sel = concat(selections)
    rows = []
    for i, source in enumerate(sel.sources):
        m = sel.source == i
        rows.append(
            RunRow(
                source,
                summarize(sel.entropy[m], sel.logprob[m], sel.rank[m]),
                position_bins(sel.index[m], sel.length[m], sel.entropy[m], sel.logprob[m], bins),
            )
        )
    return Report(rows, compute(sel, bins), sel, bins, sel.top, _model_rows(sel, bins))


def _model_rows(sel: Selection, bins: int) -> list[RunRow]:
    """One row per model of the selection's runs, all its tokens together (none for one model)."""
    models = list(dict.fromkeys(s.model for s in sel.sources))
    if len(models) < 2:
        return []
    out = []
    for model in models:
        own = [i for i, s in enumerate(sel.sources) if s.model == model]
        m = np.isin(sel.source, own)
        kinds = tuple(dict.fromkeys(k for i in own for k in sel.sources[i].kinds))
        out.append(
            RunRow(
                Source("", model, "", kinds, "all"),
                summarize(sel.entropy[m], sel.logprob[m], sel.rank[m]),
                position_bins(sel.index[m], sel.length[m], sel.entropy[m], sel.logprob[m], bins),
            )
        )
    return out


def stats_of(
    run: Run, branch: int | None = None, include_prompt: bool = False, bins: int = DEFAULT_BINS, top: int = DEFAULT_TOP
) -> Report:
    """One run's report (the Stats screen's): `branch` None is the whole run."""
    try:
        return report([select(run, branch, None, include_prompt, top)], bins)
    except RunError as e:
        raise StatsError(str(e)) from None


# --- showing ------------------------------------------------------------------------------------------
def fmt(x: float, digits: int = 3) -> str:
    """A number for a table; – for no value, ∞ for one past float's range (a perplexity)."""
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.{digits}f}" if math.isfinite(x) else "–"


def fmt_p(p: float) -> str:
    """A token's probability as `fmt` writes it, but never 0.000 for one that was possible (a high
    entropy token's p = 0.0003: `3e-4`, `core.display.prob_text`)."""
    return prob_text(p, 3) if math.isfinite(p) else fmt(p)


def fmt_pct(x: float) -> str:
    return f"{x:.1%}" if math.isfinite(x) else "–"


def shown_context(t: Token, before: int = 30, after: int = 20) -> tuple[str, str, str]:
    """(text before, the token, text after), each safe for a terminal and on one line (line breaks
    and tabs visible, the token's spaces as ␠), the sides cut to `before` / `after` terminal cells
    (a wide character takes two: a CJK context overran a line cut by characters)."""
    from rich.cells import cell_len

    b = sanitize(decode_bytes(t.before), visible_whitespace=True)
    a = sanitize(decode_bytes(t.after), visible_whitespace=True)
    b = "…" + _cells(b[::-1], before)[::-1] if cell_len(b) > before else b
    a = _cells(a, after) + "…" if cell_len(a) > after else a
    return b, lone_token(t.token), a


def fit_context(t: Token, width: int) -> tuple[str, str, str]:
    """`shown_context` in at most `width` cells (the token whole, each side's "…" counted): the
    text around it 3/5 before and 2/5 after. The CLI's lines and the Stats screen's column both
    fit so: folded, a context left its end alone on the next line (trials, at 80 columns)."""
    from rich.cells import cell_len

    token = lone_token(t.token)
    room = width - cell_len(token) - 2
    if room < 0:  # (no room for a side's "…": the token alone, whole while it fits)
        return "", token, ""
    return shown_context(t, room * 3 // 5, room - room * 3 // 5)


def _cells(text: str, cells: int) -> str:
    """The start of `text` that fits `cells` terminal cells."""
    from rich.cells import cell_len

    used = 0
    for i, ch in enumerate(text):
        used += cell_len(ch)
        if used > cells:
            return text[:i]
    return text


# --- the flat table (--csv) -------------------------------------------------------------------------
def csv_header(bins: int) -> list[str]:
    head = ["item", "run_id", "model", "scope", "kinds", "tokens"]
    for what in ("entropy", "probability"):
        head += [f"{what}_{s}" for s in ("mean", "median", "std", "min", "max")]
    head += ["mean_loss", "perplexity"]
    head += [f"rank_{k}" for k in RANK_KEYS]
    head += [f"entropy_bin_{k + 1}" for k in range(bins)] + [f"probability_bin_{k + 1}" for k in range(bins)]
    return head


def _csv_row(
    label: str, run_id: str, model: str, scope: str, kinds: str, s: Summary, positions: list[PositionBin]
) -> list[Any]:
    row: list[Any] = [label, run_id, model, scope, kinds, s.tokens]
    for sp in (s.entropy, s.probability):
        row += [sp.mean, sp.median, sp.std, sp.min, sp.max]
    row += [s.mean_loss, s.perplexity, *s.ranks]
    row += [p.mean_entropy for p in positions] + [p.mean_probability for p in positions]
    return row


def csv_rows(rep: Report) -> list[list[Any]]:
    """One row per scope, then (with several) one row `all` of all their tokens, then (several
    models) one row `all` per model. NaN: no value."""
    rows = [
        _csv_row(
            r.source.label,
            r.source.run_id,
            r.source.model,
            r.source.scope,
            "+".join(r.source.kinds),
            r.summary,
            r.positions,
        )
        for r in rep.rows
    ]
    if len(rep.rows) > 1:
        kinds = "+".join(dict.fromkeys(k for r in rep.rows for k in r.source.kinds))
        rows.append(_csv_row("all", "", "", "", kinds, rep.all.summary, rep.all.positions))
    for r in rep.models:  # (several models: each one's tokens together)
        rows.append(_csv_row("all", "", r.source.model, "", "+".join(r.source.kinds), r.summary, r.positions))
    return rows


# --- plots (drawn by tui/plots.py with plotext) -----------------------------------------------------
@dataclass(frozen=True)
class PlotSpec:
    """What to draw. A line's point with a NaN y is an empty bin: the line breaks there (a line
    drawn across it showed values no token had)."""

    name: str  # file stem for --plot-dir
    title: str
    x_label: str
    y_label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    kind: str = "line"  # "line" | "bar"
    labels: tuple[str, ...] = ()  # bar labels
    y_range: tuple[float, float] | None = None


MIN_PROBABILITY_SPAN = 0.1  # the least of p's axis a plot shows: bins a few thousandths apart stay near flat


def probability_range(values: tuple[float, ...]) -> tuple[float, float]:
    """The p(chosen) plot's y-axis: the bins' range with a margin, inside [0, 1] and at least
    MIN_PROBABILITY_SPAN tall. A fixed 0–1 axis drew bins of 0.52 and 0.58 as one flat line;
    plotext's own range has no margin and can pass 1 (seed 000's matplotlib plot scales too)."""
    ys = [y for y in values if math.isfinite(y)]
    if not ys:
        return 0.0, 1.0
    low, high = min(ys), max(ys)
    pad = max((high - low) * 0.1, (MIN_PROBABILITY_SPAN - (high - low)) / 2, 0.0)
    low, high = low - pad, high + pad
    if low < 0.0:  # (slid, not cut, so the span stays)
        low, high = 0.0, min(1.0, high - low)
    if high > 1.0:
        low, high = max(0.0, low - (high - 1.0)), 1.0
    return low, high


def plots(stats: Stats) -> list[PlotSpec]:
    def line(name: str, title: str, y_label: str, attr: str, y_range: tuple[float, float] | None) -> PlotSpec:
        pts = [((p.low + p.high) / 2, getattr(p, attr) if p.count else math.nan) for p in stats.positions]
        return PlotSpec(
            name,
            title,
            "relative position",
            y_label,
            tuple(x for x, _ in pts),
            tuple(y for _, y in pts),
            "line",
            y_range=y_range,
        )

    probability = line(PLOT_NAMES[1], "mean p(chosen) by relative position", "p", "mean_probability", None)
    return [
        line(PLOT_NAMES[0], "mean entropy by relative position (nats)", "nats", "mean_entropy", None),
        replace(probability, y_range=probability_range(probability.y)),
        PlotSpec(
            PLOT_NAMES[2],
            "GLTR rank histogram (tokens)",
            "rank of the chosen token",
            "tokens",
            tuple(float(i) for i in range(len(RANK_LABELS))),
            tuple(float(c) for c in stats.summary.ranks),
            "bar",
            RANK_LABELS,
        ),
    ]
