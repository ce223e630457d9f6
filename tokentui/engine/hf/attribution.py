"""Gradient and attention attribution on a Hugging Face model (what the numbers mean:
`core/attribution.py`).

Seed 004 runs one forward and one backward of the whole prefix per output token, with the full
logits at every position and the weights' gradients too. Here, per chunk of nearby target
positions: one forward of the inputs only as long as the chunk's last target needs (positions
0…t−1), the model's logits only at the chunk's target rows (`logits_to_keep`), and the targets'
gradients with respect to the input embeddings only (the weights' `requires_grad` off) — for the
plain gradient methods as one batched vector–Jacobian product (`autograd.grad(...,
is_grads_batched=True)`, a vmap over the backward). Integrated gradients puts its path points in
the forward's batch instead. The model's weights, modes and attention implementation are
restored afterwards, also on error and cancel, and nothing here runs under inference mode.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tokentui.core.attribution import DEFAULT_STEPS, METHODS, Attribution, method
from tokentui.core.params import MAX_IG_STEPS
from tokentui.core.run import Run, now_iso
from tokentui.engine.errors import EngineError
from tokentui.engine.events import Attributed, AttributionProgress, Event
from tokentui.engine.hf.arch import eager_attention

ROW_CHUNK = 16  # targets per forward (and per batched backward)
ROW_TOKENS = 8192  # … at most this many positions × targets per batched backward
PATH_CHUNK = 10  # integrated gradients: path points per forward
PATH_TOKENS = 4096  # … at most this many positions × path points per forward


class Cancelled(Exception):
    """The user cancelled in the middle of a chunk (integrated gradients' path)."""


@dataclass
class Result:
    scores: np.ndarray  # float32 [rows, width]; row r: positions 0…positions[r]−1, zeros after
    target_values: np.ndarray  # float32 [rows]: the target at the real input
    completeness: np.ndarray | None  # integrated gradients: Σ scores − (f(x) − f(0)) per row


@dataclass
class Request:
    model: Any
    ids: list[int]  # the sequence (at least max(positions) long)
    positions: list[int]  # attributed positions, each ≥ 1
    alternative: int | None = None
    steps: int = 50
    cancel: threading.Event | None = None


# --- the target and its gradients ------------------------------------------------------------
@contextmanager
def gradients_on(model: Any) -> Iterator[None]:
    """Gradients with respect to inputs only: the weights' `requires_grad` switched off (and
    restored), grad mode on, outside inference mode, the model in eval mode."""
    params = list(model.parameters())
    saved = [p.requires_grad for p in params]
    training = model.training
    try:
        for p in params:
            p.requires_grad_(False)
        model.eval()
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for p, s in zip(params, saved):
            p.requires_grad_(s)
        model.train(training)


def embeddings(model: Any, ids: list[int]) -> torch.Tensor:
    """e_i: the input-embedding module's output for `ids`, [1, n, d], detached."""
    dev = next(model.parameters()).device
    with torch.no_grad():
        return model.get_input_embeddings()(torch.tensor([ids], device=dev)).detach()


def _targets(model: Any, inputs: torch.Tensor, rows: list[int], tokens: list[int], alt: int | None) -> torch.Tensor:
    """The targets [batch, len(rows)]: log p(token at t | 0…t−1) (minus log p(alt)) for the
    targets at positions `rows` (each ≤ inputs' length), from one forward of `inputs`."""
    dev = inputs.device
    keep = torch.tensor([t - 1 for t in rows], device=dev)
    # (a model without logits_to_keep computes all the logits; the rows are taken after)
    extra = {"logits_to_keep": keep} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    # (a copy: CTRL scales its input embeddings in place, which autograd refuses on the leaf the
    # gradients are taken with respect to; through the copy they still reach it)
    logits = model(inputs_embeds=inputs.clone(), use_cache=False, **extra).logits
    if logits.shape[1] != len(rows):
        logits = logits[:, keep]
    logp = torch.log_softmax(logits.float(), dim=-1)
    idx = torch.arange(len(rows), device=dev)
    y = logp[:, idx, torch.tensor(tokens, device=dev)]
    if alt is not None:
        y = y - logp[:, idx, alt]
    return y


def _vjps(y: torch.Tensor, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """∂y[:, r]/∂x for every target r, as [rows, *x.shape]. `weights` [batch] multiply each batch
    item's target (integrated gradients' quadrature weights). With a batch of one (the plain
    gradient methods) the rows' vector–Jacobian products are batched into one backward (a vmap);
    when integrated gradients' path points already fill the batch, one backward per row is
    faster (measured on a CPU: 47 s against 69 s for 16 rows × 10 points on GPT-2-small)."""
    b, n = y.shape
    w = torch.ones(b, device=y.device, dtype=y.dtype) if weights is None else weights.to(y.dtype)
    go = torch.zeros(n, b, n, device=y.device, dtype=y.dtype)
    idx = torch.arange(n, device=y.device)
    go[idx, :, idx] = w
    if b == 1 and n > 1:
        try:
            (g,) = torch.autograd.grad(y, x, grad_outputs=go, retain_graph=True, is_grads_batched=True)
            return g
        except RuntimeError:  # an operation without a batching rule: one backward per target
            pass
    return torch.stack([torch.autograd.grad(y, x, grad_outputs=go[r], retain_graph=True)[0] for r in range(n)])


# --- the methods: one registered function each ------------------------------------------------
# Each fills, for the request's chunk of target positions, the scores [rows, width], the target
# values [rows] and (integrated gradients) the completeness errors [rows].
# They are generators: each yields the fraction of its chunk done so far (progress for slow ones).
MethodFn = Callable[[Request, np.ndarray, np.ndarray, "np.ndarray | None"], Iterator[float]]
FUNCTIONS: dict[str, MethodFn] = {}


def register(name: str) -> Callable[[MethodFn], MethodFn]:
    if name not in METHODS:
        raise KeyError(name)

    def deco(fn: MethodFn) -> MethodFn:
        FUNCTIONS[name] = fn
        return fn

    return deco


def _gradient_rows(req: Request, scores: np.ndarray, values: np.ndarray, reduce: Callable) -> Iterator[float]:
    """The plain-gradient methods: g at the real input, reduced per position by `reduce(g, e)`."""
    rows = req.positions
    x = embeddings(req.model, req.ids[: max(rows)]).requires_grad_(True)
    y = _targets(req.model, x, rows, [req.ids[t] for t in rows], req.alternative)
    g = _vjps(y, x)[:, 0]  # [n, width, d]
    out = reduce(g, x.detach()[0]).detach().float().cpu().numpy()
    for r, t in enumerate(rows):
        scores[r, :t] = out[r, :t]
    values[:] = y.detach()[0].float().cpu().numpy()
    yield 1.0


@register("gradient-norm")
def gradient_norm(
    req: Request, scores: np.ndarray, values: np.ndarray, completeness: np.ndarray | None
) -> Iterator[float]:
    return _gradient_rows(req, scores, values, lambda g, e: g.norm(dim=-1))


@register("saliency")
def saliency(req: Request, scores: np.ndarray, values: np.ndarray, completeness: np.ndarray | None) -> Iterator[float]:
    def norm(g: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        n = g.norm(dim=-1)
        return n / n.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(n.dtype).tiny)

    return _gradient_rows(req, scores, values, norm)


@register("input-x-gradient")
def input_x_gradient(
    req: Request, scores: np.ndarray, values: np.ndarray, completeness: np.ndarray | None
) -> Iterator[float]:
    return _gradient_rows(req, scores, values, lambda g, e: (g * e).sum(dim=-1))


@functools.lru_cache(maxsize=8)
def gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes α in (0, 1) and weights (summing to 1) of the `steps`-point Gauss–Legendre rule:
    captum's default for integrated gradients, so inseq's users get the same path points. (Cached:
    numpy computes them in O(steps³), once per job rather than once per chunk.)"""
    x, w = np.polynomial.legendre.leggauss(steps)
    return (x + 1) / 2, w / 2


@register("integrated-gradients")
def integrated_gradients(
    req: Request, scores: np.ndarray, values: np.ndarray, completeness: np.ndarray | None
) -> Iterator[float]:
    assert completeness is not None
    alphas, weights = gauss_legendre(req.steps)
    rows = req.positions
    width = max(rows)
    e = embeddings(req.model, req.ids[:width])[0]
    dev, dt = e.device, e.dtype
    tokens = [req.ids[t] for t in rows]
    mean_g = torch.zeros(len(rows), width, e.shape[-1], device=dev, dtype=torch.float32)
    per = max(1, min(PATH_CHUNK, PATH_TOKENS // width))
    groups = range(0, len(alphas), per)
    for gi, a0 in enumerate(groups):
        if req.cancel is not None and req.cancel.is_set():
            raise Cancelled
        a = torch.tensor(alphas[a0 : a0 + per], device=dev, dtype=dt)
        w = torch.tensor(weights[a0 : a0 + per], device=dev, dtype=torch.float32)
        x = (a[:, None, None] * e).requires_grad_(True)  # [A, width, d]: points on the path
        y = _targets(req.model, x, rows, tokens, req.alternative)
        go = torch.zeros_like(y)
        # one backward per target (the path points fill the batch: see _vjps), progress and a
        # cancel check after each: one group of a large model can take a minute on a CPU
        for r in range(len(rows)):
            if req.cancel is not None and req.cancel.is_set():
                raise Cancelled
            go.zero_()
            go[:, r] = w.to(y.dtype)
            (g,) = torch.autograd.grad(y, x, grad_outputs=go, retain_graph=r < len(rows) - 1)
            mean_g[r] += g.float().sum(dim=0)  # Σ_a w_a g(α_a·e)
            yield min(1.0, (gi + (r + 1) / len(rows)) / len(groups))
        del x, y
    attr = (mean_g * e.float()).sum(dim=-1).cpu().numpy()
    with torch.no_grad():
        ends = _targets(req.model, torch.stack([e, torch.zeros_like(e)]), rows, tokens, req.alternative)
    f_x, f_0 = ends[0].float().cpu().numpy(), ends[1].float().cpu().numpy()
    for r, t in enumerate(rows):
        scores[r, :t] = attr[r, :t]
        completeness[r] = scores[r].sum(dtype=np.float64) - (f_x[r] - f_0[r])
    values[:] = f_x


def _attention_rows(req: Request, scores: np.ndarray, values: np.ndarray, last_only: bool) -> Iterator[float]:
    width = max(req.positions)
    dev = next(req.model.parameters()).device
    with torch.no_grad(), eager_attention(req.model):
        out = req.model(input_ids=torch.tensor([req.ids[:width]], device=dev), use_cache=False, output_attentions=True)
    att = getattr(out, "attentions", None)  # (xLSTM's output has no such field)
    if not att or any(a is None for a in att):
        raise EngineError("this model returned no attention weights")
    stack = att[-1:] if last_only else att
    mean = torch.stack([a[0].float().mean(dim=0) for a in stack]).mean(dim=0)  # [width, width]
    logp = torch.log_softmax(out.logits[0].float(), dim=-1)
    for r, t in enumerate(req.positions):
        scores[r, :t] = mean[t - 1, :t].cpu().numpy()
        v = logp[t - 1, req.ids[t]]
        if req.alternative is not None:
            v = v - logp[t - 1, req.alternative]
        values[r] = float(v)
    yield 1.0


@register("attention")
def attention_last(
    req: Request, scores: np.ndarray, values: np.ndarray, completeness: np.ndarray | None
) -> Iterator[float]:
    return _attention_rows(req, scores, values, last_only=True)


@register("attention-mean")
def attention_mean(
    req: Request, scores: np.ndarray, values: np.ndarray, completeness: np.ndarray | None
) -> Iterator[float]:
    return _attention_rows(req, scores, values, last_only=False)


def chunks(name: str, positions: list[int]) -> list[list[int]]:
    """Sorted positions in chunks: all in one for attention (one forward); else at most ROW_CHUNK
    rows (and about ROW_TOKENS positions × rows), a chunk ending where the next position would
    make its forward much longer than its first row needs (their backward runs over the whole
    chunk's width). Of more rows than one chunk holds, the first chunk is one row: a matrix's
    first row arrives in a fraction of a full chunk's time, and a cancel keeps it (a trial's
    integrated-gradients matrix sat at 0 rows for minutes and, cancelled, kept nothing). That
    costs one more forward (integrated gradients: one more path of them) per matrix: ~4% of a
    16-row integrated-gradients chunk's time, so a matrix of one chunk is left whole (the
    benchmark's 16 rows, benchmarks/attribution.py, where the margin over seed 004's loop is small)."""
    if METHODS[name].needs == "attention":
        return [positions]
    out: list[list[int]] = []
    first_alone = len(positions) > ROW_CHUNK
    for t in positions:
        cur = out[-1] if out else None
        most = 1 if first_alone and len(out) == 1 else max(1, min(ROW_CHUNK, ROW_TOKENS // t))
        if cur is None or len(cur) >= most or t - cur[0] > max(16, cur[0] // 8):
            out.append([t])
        else:
            cur.append(t)
    return out


def compute(name: str, req: Request) -> Generator[float, None, Result]:
    """Method `name` on `req` (one chunk of positions), yielding the fraction done; returns the
    Result (`result = yield from compute(…)`)."""
    n, width = len(req.positions), max(req.positions)
    scores = np.zeros((n, width), dtype=np.float32)
    values = np.zeros(n, dtype=np.float32)
    completeness = np.zeros(n, dtype=np.float32) if name == "integrated-gradients" else None
    fn = FUNCTIONS[name]
    try:
        if METHODS[name].needs == "gradients":
            with gradients_on(req.model):
                yield from fn(req, scores, values, completeness)
        else:
            yield from fn(req, scores, values, completeness)
    except torch.cuda.OutOfMemoryError:
        raise EngineError("out of GPU memory (attribute fewer positions at once)") from None
    return Result(scores, values, completeness)


def attribute(
    model: Any,
    run: Run,
    branch: int,
    positions: list[int],
    name: str,
    alternative: int | None = None,
    steps: int = DEFAULT_STEPS,
    cancel: threading.Event | None = None,
) -> Iterator[Event]:
    """Attribute `positions` of `branch`'s sequence with method `name`, chunk by chunk (an
    AttributionProgress after each); the record goes into `run.attributions` and out as
    Attributed. A cancel keeps the chunks finished before it."""
    method(name)  # an unknown name is a one-line error
    seq = [int(i) for i in run.sequence(branch).tolist()]
    positions = sorted(set(positions))
    if not positions:
        raise EngineError("no positions to attribute")
    for t in positions:
        if not 1 <= t < len(seq):
            raise EngineError(f"position {t} cannot be attributed (branch {branch} has positions 1…{len(seq) - 1})")
    if alternative is not None and not 0 <= alternative < run.meta.vocab_size:
        raise EngineError(f"the alternative token id {alternative} is outside the vocabulary")
    if name == "integrated-gradients" and not 1 <= steps <= MAX_IG_STEPS:
        raise EngineError(f"integrated gradients needs 1…{MAX_IG_STEPS} steps (got {steps})")
    t0 = time.perf_counter()
    parts: list[Result] = []
    done, total, cancelled = 0, len(positions), False
    for rows in chunks(name, positions):
        if cancel is not None and cancel.is_set():
            cancelled = True
            break
        work = compute(name, Request(model, seq, rows, alternative, steps, cancel))
        try:
            while True:
                fraction = next(work)
                if fraction < 1.0:
                    yield AttributionProgress(run.id, done, total, name, (done + fraction * len(rows)) / total)
        except StopIteration as stop:
            parts.append(stop.value)
        except Cancelled:
            cancelled = True
            break
        done += len(rows)
        yield AttributionProgress(run.id, done, total, name, done / total)
    if not parts:
        yield Attributed(run.id, None, cancelled=True, seconds=time.perf_counter() - t0)
        return
    width = max(positions[:done])
    scores = np.zeros((done, width), dtype=np.float32)
    r = 0
    for part in parts:
        scores[r : r + len(part.scores), : part.scores.shape[1]] = part.scores
        r += len(part.scores)
    ig = name == "integrated-gradients"
    rec = Attribution(
        method=name,
        branch=branch,
        positions=positions[:done],
        token_ids=[seq[t] for t in positions[:done]],
        scores=scores,
        alternative=alternative,
        steps=steps if ig else None,
        completeness=np.concatenate([p.completeness for p in parts if p.completeness is not None]) if ig else None,
        target_values=np.concatenate([p.target_values for p in parts]),
        created=now_iso(),
    )
    run.attributions.append(rec)
    yield Attributed(run.id, rec, cancelled=cancelled, seconds=time.perf_counter() - t0)
