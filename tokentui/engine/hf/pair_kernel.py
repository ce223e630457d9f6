"""The comparison's per-position statistics fused into one GPU kernel (Triton), for CUDA devices.

`compare.py`'s registered measures compute a comparison block by block in PyTorch: log-softmax
of both models' logits, clamping, exp, then each measure's own pass over the [n, V] block — some
thirty passes over memory per block, which on a GPU cost a third as much again as the two
models' forwards (issue 13's `benchmarks/compare.py`). Here one program per position reads each
model's logits row twice — once for the log-normaliser (online max and Σe^(x−max)), once for
everything else — and never writes an [n, V] array:

- log p = max((x − max x) − log Σe^(x − max x), LOGPROB_FLOOR) for each model (the floor as
  `torch_stats` clamps; a NaN, a +∞ or a row all −∞ gives NaN, as log_softmax does);
- the chosen token's log-prob, and its rank: 1 + how many tokens have a larger log-prob;
- entropy −Σ p·log p; KL(A‖B) = Σ p_A(log p_A − log p_B); KL(B‖A);
- Jensen–Shannon by the same log-space formula as `compare._divergences` (one softplus of
  d = log p_A − log p_B; a term is exactly 0 where the two agree, so a model compared with
  itself has JS 0).

The top k (k ≤ TOPK_MAX) comes from candidates the kernel gathers, not from `torch.topk` over the
whole [n, V] block (on an H200 that cost four times the kernel: a radix select reads every row four
times). Pass 1 leaves each lane the largest logit of its strided share of the row; a T with at
least k lane maxima ≥ T (found by bisection, just under the k-th largest of them) is at most the
k-th largest logit (k lanes each hold one at least T), so every logit ≥ T — the true top k among
them, usually little more — is written, in vocabulary order, to the row's CANDIDATES slots during
pass 2, and `torch.topk` picks the k from those. A row with
more than CANDIDATES of them (ties), or fewer than k finite logits (−∞ ones would tie with the
empty slots), has its top k taken from the whole row instead.
Every value is the one the registered functions compute, up to float32 rounding (the tests hold
both to the same full-vocabulary reference); `covers()` says whether the registry holds exactly
the measures this kernel knows — a new registered measure switches the fused path off rather
than being silently left out.

Triton's interpreter (TRITON_INTERPRET=1) runs the same kernel on CPU tensors: that is how the
tests check its numbers on a machine without a GPU; they also compile it for CUDA targets (Triton
needs no GPU for that).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import triton
import triton.language as tl

from tokentui.engine.hf.measures import LOGPROB_FLOOR, TOKEN_FNS

BLOCK = 1024  # vocabulary entries per tile (each of a program's 4 warps holds 8 per lane)
WARPS = 4
# the kernel's output row, per position
# (log p = (x − max) − log Σe^(x−max): the max and the log-sum apart, as log_softmax subtracts them,
# so a large logit (float16's 6e4) keeps float32's precision in its difference to the max)
FIELDS: tuple[str, ...] = ("logprob", "logprob_b", "entropy", "entropy_b", "rank", "rank_b", "kl_ab", "kl_ba", "js")
FIELDS += ("max", "max_b", "logsum", "logsum_b", "found", "found_b")  # found: the row's top-k candidates
TOPK_MAX = 64  # the largest k whose candidates the kernel gathers (a larger k: `torch.topk` on the rows)
CANDIDATES = 256  # candidate slots per row and model
BISECTIONS: tl.constexpr = tl.constexpr(20)  # halvings of the lane maxima's range for the threshold
# (fused multiply-adds on, Triton's default, said explicitly: Triton 3.9 warns when it is unset)
LAUNCH: dict[str, Any] = {
    "BLOCK": BLOCK,
    "WIDTH": len(FIELDS),
    "SLOTS": CANDIDATES,
    "num_warps": WARPS,
    "enable_fp_fusion": True,
}
TOKEN_NAMES = frozenset({"logprob", "entropy", "rank", "topk_ids", "topk_logprobs", "sampler_logprob"})
PAIR_NAMES = frozenset({"logprob_b", "entropy_b", "rank_b", "topk_ids_b", "topk_logprobs_b", "kl_ab", "kl_ba", "js"})


@triton.jit
def _tile(row, idx, V):  # noqa: N803
    """Entries `idx` of a logits row in float32; past the vocabulary −∞ (p = 0: no term counts)."""
    return tl.load(row + idx, mask=idx < V, other=float("-inf")).to(tl.float32)


@triton.jit
def _online(m, s, x):
    """One tile into each lane's running max `m` and Σe^(x − m) `s` (NaN-propagating; a lane all
    −∞ so far keeps a sum of 0, never NaN)."""
    new = tl.maximum(m, x, propagate_nan=tl.PropagateNan.ALL)
    shift = tl.where(new == float("-inf"), 0.0, new)
    return new, s * tl.exp(m - shift) + tl.exp(x - shift)


@triton.jit
def _logp(x, top, logsum, floor):
    """log p = (x − max) − log Σe^(x − max), at least `floor`; NaN stays NaN."""
    return tl.maximum((x - top) - logsum, floor, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _threshold(lane_max, k):
    """A logit T with at least k lanes' maxima ≥ T, within a millionth of their range of the k-th
    largest of them (bisection, not a sort of the lanes: Triton's interpreter, which the tests
    run, took a second per sort); −∞ when fewer than k lanes hold a finite logit."""
    finite = lane_max > float("-inf")
    lo = tl.min(tl.where(finite, lane_max, float("inf")), 0)
    hi = tl.max(lane_max, 0)
    for _ in range(BISECTIONS):
        mid = lo + (hi - lo) * 0.5
        enough = tl.sum((lane_max >= mid).to(tl.int32), 0) >= k
        lo = tl.where(enough, mid, lo)
        hi = tl.where(enough, hi, mid)
    return tl.where(tl.sum(finite.to(tl.int32), 0) >= k, lo, float("-inf"))


@triton.jit
def _gather(x, idx, V, threshold, found, slots_v, slots_i, SLOTS: tl.constexpr):  # noqa: N803
    """A tile's logits at least `threshold` appended (value, vocabulary id) to the row's slots
    after the `found` there already (those past SLOTS are counted, not written); the new count.
    Most tiles hold none (about k candidates over a vocabulary of dozens of tiles): their prefix
    sum and stores are skipped (on an H200 the gathering was 0.9 ms of a GPT-2 comparison's
    kernel, a prefix sum over every tile; not yet measured there with the skip)."""
    take = (x >= threshold) & (idx < V)
    count = tl.sum(take.to(tl.int32), 0)
    if count > 0:
        at = found + tl.cumsum(take.to(tl.int32), 0) - 1
        keep = take & (at < SLOTS)
        tl.store(slots_v + at, x, mask=keep)
        tl.store(slots_i + at, idx, mask=keep)
    return found + count


def _pair_rows(
    a_ptr,
    b_ptr,
    t_ptr,
    out_ptr,
    va_ptr,
    ia_ptr,
    vb_ptr,
    ib_ptr,
    V,  # noqa: N803
    stride_a,
    stride_b,
    floor,
    ln2,
    k,
    BLOCK: tl.constexpr,  # noqa: N803
    WIDTH: tl.constexpr,  # noqa: N803
    SLOTS: tl.constexpr,  # noqa: N803
    TOPK: tl.constexpr,  # noqa: N803
):
    """One position: both models' logits rows → the FIELDS of `out_ptr`'s row, and with TOPK each
    model's top-k candidates into its SLOTS (values `va_ptr`/`vb_ptr`, ids `ia_ptr`/`ib_ptr`)."""
    row = tl.program_id(0).to(tl.int64)
    a_row = a_ptr + row * stride_a
    b_row = b_ptr + row * stride_b
    cols = tl.arange(0, BLOCK)
    # pass 1: each lane's running max and Σe^(x − max), for both models. A NaN or +∞ logit, or a
    # row all −∞, makes the row's numbers NaN, as log_softmax does: every maximum here propagates
    # NaN (Triton's default would drop it and record plausible numbers)
    m_a = tl.full([BLOCK], float("-inf"), tl.float32)
    m_b = tl.full([BLOCK], float("-inf"), tl.float32)
    s_a = tl.zeros([BLOCK], tl.float32)
    s_b = tl.zeros([BLOCK], tl.float32)
    for start in range(0, V, BLOCK):
        m_a, s_a = _online(m_a, s_a, _tile(a_row, start + cols, V))
        m_b, s_b = _online(m_b, s_b, _tile(b_row, start + cols, V))
    top_a = tl.max(m_a, 0)
    top_b = tl.max(m_b, 0)
    ls_a = tl.log(tl.sum(s_a * tl.exp(m_a - top_a), 0))
    ls_b = tl.log(tl.sum(s_b * tl.exp(m_b - top_b), 0))
    t = tl.load(t_ptr + row)
    chosen_a = _logp(tl.load(a_row + t).to(tl.float32), top_a, ls_a, floor)
    chosen_b = _logp(tl.load(b_row + t).to(tl.float32), top_b, ls_b, floor)
    found_a = tl.full([], 0, tl.int32)
    found_b = tl.full([], 0, tl.int32)
    if TOPK:
        cut_a = _threshold(m_a, k)
        cut_b = _threshold(m_b, k)
    # pass 2: the sums (past V both log-probs are the floor: p = 0, d = 0, every term 0)
    ent_a = tl.zeros([BLOCK], tl.float32)
    ent_b = tl.zeros([BLOCK], tl.float32)
    kl_ab = tl.zeros([BLOCK], tl.float32)
    kl_ba = tl.zeros([BLOCK], tl.float32)
    to_b = tl.zeros([BLOCK], tl.float32)
    from_a = tl.zeros([BLOCK], tl.float32)
    above_a = tl.zeros([BLOCK], tl.int32)
    above_b = tl.zeros([BLOCK], tl.int32)
    for start in range(0, V, BLOCK):
        xa = _tile(a_row, start + cols, V)
        xb = _tile(b_row, start + cols, V)
        if TOPK:
            found_a = _gather(xa, start + cols, V, cut_a, found_a, va_ptr + row * SLOTS, ia_ptr + row * SLOTS, SLOTS)
            found_b = _gather(xb, start + cols, V, cut_b, found_b, vb_ptr + row * SLOTS, ib_ptr + row * SLOTS, SLOTS)
        la = _logp(xa, top_a, ls_a, floor)
        lb = _logp(xb, top_b, ls_b, floor)
        pa = tl.exp(la)
        pb = tl.exp(lb)
        ent_a += pa * la
        ent_b += pb * lb
        d = la - lb
        kl_ab += pa * d
        kl_ba -= pb * d
        # softplus(d) = max(d, 0) + log(1 + e^−|d|); log p_B − log M = ln 2 − softplus(d),
        # log p_A − log M = d + ln 2 − softplus(d)
        s = tl.maximum(d, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(d)))
        same = d == 0.0
        to_b += tl.where(same, 0.0, pb * (ln2 - s))
        from_a += tl.where(same, 0.0, pa * (d + ln2 - s))
        above_a += (la > chosen_a).to(tl.int32)
        above_b += (lb > chosen_b).to(tl.int32)
    out = out_ptr + row * WIDTH
    tl.store(out + 0, chosen_a)
    tl.store(out + 1, chosen_b)
    tl.store(out + 2, -tl.sum(ent_a, 0))
    tl.store(out + 3, -tl.sum(ent_b, 0))
    tl.store(out + 4, (tl.sum(above_a, 0) + 1).to(tl.float32))
    tl.store(out + 5, (tl.sum(above_b, 0) + 1).to(tl.float32))
    tl.store(out + 6, tl.sum(kl_ab, 0))
    tl.store(out + 7, tl.sum(kl_ba, 0))
    tl.store(out + 8, 0.5 * (tl.sum(to_b, 0) + tl.sum(from_a, 0)))
    tl.store(out + 9, top_a)
    tl.store(out + 10, top_b)
    tl.store(out + 11, ls_a)
    tl.store(out + 12, ls_b)
    tl.store(out + 13, found_a.to(tl.float32))
    tl.store(out + 14, found_b.to(tl.float32))


# (Triton decides at import and at decoration whether kernels run compiled or interpreted)
_KERNEL: Any = triton.jit(_pair_rows)


def interpreting() -> bool:
    """Whether Triton runs kernels through its interpreter (on CPU tensors) in this process (read
    when Triton was imported: set TRITON_INTERPRET=1 before)."""
    return type(_KERNEL).__name__ == "InterpretedFunction"


def covers() -> bool:
    """Whether the registry holds exactly the measures this kernel computes (compare.py's PAIR_FNS
    are checked by its caller, which owns them)."""
    return {n for names, _fn in TOKEN_FNS for n in names} == TOKEN_NAMES


def pair_block(
    logits_a: torch.Tensor, logits_b: torch.Tensor, targets: torch.Tensor, k: int
) -> dict[str, torch.Tensor]:
    """Every comparison column for n positions from both models' [n, V] logits (any float dtype,
    on one device), under the names `compare.pair_values` gives them."""
    n, vocab = logits_b.shape
    a, b = logits_a.contiguous(), logits_b.contiguous()
    out = torch.empty(n, len(FIELDS), dtype=torch.float32, device=b.device)
    gather = 0 < k <= min(TOPK_MAX, BLOCK)
    slots_v = torch.full((2, n if gather else 1, CANDIDATES), -math.inf, device=b.device)
    slots_i = torch.zeros((2, n if gather else 1, CANDIDATES), dtype=torch.int32, device=b.device)
    # (Triton launches on the current GPU, not the tensors': on cuda:1 it must be made current)
    with torch.cuda.device(b.device) if b.device.type == "cuda" else contextlib.nullcontext():
        _KERNEL[(n,)](
            a, b, targets, out, slots_v[0], slots_i[0], slots_v[1], slots_i[1],
            vocab, a.stride(0), b.stride(0), LOGPROB_FLOOR, math.log(2.0), k, TOPK=gather, **LAUNCH,
        )  # fmt: skip
    f = {name: out[:, i] for i, name in enumerate(FIELDS)}
    tops = _top_k(a, b, slots_v, slots_i, f, k) if gather else [logits.topk(k, dim=-1) for logits in (a, b)]
    values: dict[str, torch.Tensor] = {"token_id": targets}
    for side, (top, ids) in zip(("", "_b"), tops):
        values[f"logprob{side}"] = f[f"logprob{side}"]
        values[f"entropy{side}"] = f[f"entropy{side}"].clamp_min(0) + 0.0
        values[f"rank{side}"] = f[f"rank{side}"].long()
        values[f"topk_ids{side}"] = ids
        shifted = top.float() - f[f"max{side}"][:, None]
        values[f"topk_logprobs{side}"] = (shifted - f[f"logsum{side}"][:, None]).clamp_min(LOGPROB_FLOOR)
        if not side:
            values["sampler_logprob"] = torch.full((n,), float("nan"), device=b.device)
    for name in ("kl_ab", "kl_ba", "js"):
        values[name] = f[name].clamp_min(0) + 0.0
    return values


def _top_k(
    a: torch.Tensor, b: torch.Tensor, slots_v: torch.Tensor, slots_i: torch.Tensor, f: dict[str, torch.Tensor], k: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each model's top k (logits in float32, ids) from the kernel's candidates; the rows whose
    candidates were too few or too many, from their whole row (the one wait for the device here:
    which rows those are)."""
    tops = []
    for j in range(2):
        top, at = slots_v[j].topk(k, dim=-1)
        tops.append((top, slots_i[j].gather(-1, at).long()))
    found = torch.stack([f["found"], f["found_b"]])
    # (a k-th candidate of −∞: fewer than k finite logits, whose −∞ ones tie with the empty slots)
    short = torch.stack([tops[0][0][:, -1], tops[1][0][:, -1]]) == -math.inf
    redo = ((found < k) | (found > CANDIDATES) | short).nonzero().tolist()
    for j, logits in enumerate((a, b)):
        rows = [r for side, r in redo if side == j]
        if rows:
            top, ids = logits[rows].topk(k, dim=-1)
            tops[j][0][rows], tops[j][1][rows] = top.float(), ids
    return tops
