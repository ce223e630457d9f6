"""Two models, token by token: the same token ids teacher-forced under model A and model B.

Seed 003 scored a fine-tuned model's responses under it and under its base and called the mean of
log p_A − log p_B over the chosen tokens a "KL". Here both models' **full** next-token
distributions meet at every position, so the divergences are exact: KL(A‖B), KL(B‖A) and
Jensen–Shannon over the whole vocabulary, beside each model's log-prob, rank, entropy and top-k
of the token (`core/comparison.py` adds up the per-text numbers, seed 003's estimate included).

- One forward per model per text (texts batched with right padding where their lengths allow:
  `BATCH_TOKENS` padded positions per forward), lens off. The statistics are computed on the
  model's device in float32, a block of positions at a time (`BLOCK_ELEMENTS` log-probs per model
  per block on a CPU, as the score path does; `GPU_BLOCK_ELEMENTS` on a GPU), so no [positions, V]
  float32 array larger than a block exists; only the small per-position results leave the device.
  On a CUDA device one fused Triton kernel computes them (`pair_kernel.py`, `fused_stats`),
  reading the logits as they are and making no [positions, V] array at all.
- The two models must share one tokenizer (`check_same_tokenizer`: the byte string of every id,
  the token → id map, and each text's ids under both); a different one is a one-line EngineError.
- Both models are loaded at once (always on a CPU). When the second does not fit beside the first
  on the GPU, they run one after the other: A's logits for the texts wait in host memory (the
  model's dtype) while A is released and B is loaded (`load_pair`).

The comparison columns are declared in `core/measures.py` (COMPARISON) and computed by the
functions registered here with `pair_measure`, each over both models' [n, V] log-probs of a block.
"""

from __future__ import annotations

import gc
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from tokentui.core.columns import Layout, nan_step
from tokentui.core.dataset import response_run
from tokentui.core.display import lone_token, sanitize
from tokentui.core.measures import MEASURES, Measure
from tokentui.core.params import GenerationSettings
from tokentui.core.run import Run
from tokentui.engine.backend import ModelSpec
from tokentui.engine.errors import DoesNotFit, EngineError, ModelLoadError
from tokentui.engine.hf.backend import TEACHER_FORCED_ELEMENTS, HFBackend
from tokentui.engine.hf.loading import LoadedModel, check_config
from tokentui.engine.hf.measures import (
    LOGPROB_FLOOR,
    TokenInputs,
    _declared,
    layer_arrays,
    require_finite,
    rowdot,
    run_layout,
    token_values,
)
from tokentui.engine.hf.token_bytes import another_tokenizer

BATCH_TOKENS = 2048  # padded positions per batched forward (a longer text goes alone)
BLOCK_ELEMENTS = TEACHER_FORCED_ELEMENTS  # float32 log-probs per model per block of positions (CPU: 4 MB)
GPU_BLOCK_ELEMENTS = 1 << 25  # on a GPU (128 MB each): fewer, larger blocks; each block is ~40 kernel launches
FUSED_BLOCK_ELEMENTS = 1 << 29  # the fused kernel's logits per launch (2,048 positions of a 262k vocabulary)
LOG2 = math.log(2.0)


# --- the comparison measures: functions of both models' distributions -------------------------


@dataclass
class PairInputs:
    """What a comparison measure may look at, for n positions: each model's inputs (the same
    chosen tokens, each model's [n, V] float32 log-probs)."""

    a: TokenInputs
    b: TokenInputs


PairFn = Callable[[PairInputs], dict[str, torch.Tensor]]
PAIR_FNS: list[tuple[tuple[str, ...], PairFn]] = []


def pair_measure(*measures: str | Measure) -> Callable[[PairFn], PairFn]:
    """Register a function computing these comparison measures (declared in core/measures.py)."""
    names = tuple(_declared(m) for m in measures)

    def register(fn: PairFn) -> PairFn:
        PAIR_FNS.append((names, fn))
        return fn

    return register


MODEL_B = ("logprob", "entropy", "rank", "topk_ids", "topk_logprobs")  # B's columns: these + "_b"


@pair_measure(*(f"{n}_b" for n in MODEL_B))
def _model_b(x: PairInputs) -> dict[str, torch.Tensor]:
    """Model B's own per-token measures (the same registered functions as A's), renamed."""
    values = token_values(x.b)
    return {f"{n}_b": values[n] for n in MODEL_B}


@pair_measure("kl_ab", "kl_ba", "js")
def _divergences(x: PairInputs) -> dict[str, torch.Tensor]:
    """KL both ways and Jensen–Shannon over the full vocabulary, in nats, by their definitions:
    KL(A‖B) = Σ_v p_A(v)(log p_A(v) − log p_B(v)); JS = ½KL(A‖M) + ½KL(B‖M), M = (p_A + p_B)/2
    (log M from log p_A and log p_B without leaving log space).
    The log-probs are finite: `_measures` clamps them at LOGPROB_FLOOR, so a token one model rules
    out (a masked logit, p = 0) adds 0 and no term is infinite or NaN. Float rounding can leave
    −1e-9: clamped at 0. Few passes over the [n, V] block (the arithmetic is cheap, the memory
    traffic is not), each divergence summed term by term."""
    la, lb = x.a.logp, x.b.logp
    pa, pb = x.a.probs(), x.b.probs()  # (shared with each model's entropy)
    diff = la - lb
    kl_ab = rowdot(pa, diff)
    kl_ba = -rowdot(pb, diff)
    # log M = log p_B + S − log 2 with S = softplus(log p_A − log p_B), so log p_B − log M = log 2 − S
    # and log p_A − log M = −(S − diff − log 2): one softplus, each term exactly 0 where the two agree
    # (a model compared with itself has JS 0, not rounding noise), and no two large numbers
    # subtracted where one model rules a token out
    s = torch.nn.functional.softplus(diff)
    to_b = rowdot(pb, s.neg().add_(LOG2))
    from_a = rowdot(pa, s.sub_(diff).sub_(LOG2))  # (in place: temporaries are the memory)
    js = 0.5 * (to_b - from_a)
    # (+ 0.0 turns the −0.0 of identical distributions into 0.0)
    return {"kl_ab": kl_ab.clamp_min(0) + 0.0, "kl_ba": kl_ba.clamp_min(0) + 0.0, "js": js.clamp_min(0) + 0.0}


def pair_values(x: PairInputs) -> dict[str, torch.Tensor]:
    """Model A's registered per-token measures (under their usual names) and every comparison measure."""
    out = token_values(x.a)
    for _names, fn in PAIR_FNS:
        out.update(fn(x))
    return out


def compare_layout(k: int, n_layers: int) -> Layout:
    """A comparison run's columns: what a score run of model A records, then the comparison's."""
    names = list(run_layout(k, n_layers, lens=False).names)  # (the lens is off: layer L only)
    computed = {n for names_, _fn in PAIR_FNS for n in names_}
    names += [n for n in MEASURES if n in computed and n not in names]
    return Layout.of(k, n_layers, names)


# --- one tokenizer ------------------------------------------------------------------------------


def _name(lm: LoadedModel) -> str:
    return lm.model_name or lm.spec


def check_same_tokenizer(a: LoadedModel, b: LoadedModel) -> None:
    """Refuse (EngineError, one line) two models whose ids do not mean the same text: the output
    vocabulary's size, the byte string of every id, and the tokenizer's token → id map must agree."""
    na, nb = sanitize(_name(a)), sanitize(_name(b))
    if a.vocab_size != b.vocab_size:
        raise _vocabularies_differ(na, a.vocab_size, nb, b.vocab_size)
    if a.vocab_bytes != b.vocab_bytes:
        i = next(i for i, (x, y) in enumerate(zip(a.vocab_bytes, b.vocab_bytes)) if x != y)
        raise EngineError(
            f"the models' tokenizers differ: id {i} is {lone_token(a.vocab_bytes[i])[:40]} under {na} and "
            f"{lone_token(b.vocab_bytes[i])[:40]} under {nb}; compare needs two models with one tokenizer"
        )
    va, vb = _vocab(a), _vocab(b)
    if va != vb:
        token = next(iter(sorted(set(va.items()) ^ set(vb.items()))))[0]
        raise EngineError(
            f"the models' tokenizers differ: {sanitize(token[:40], visible_whitespace=True)} has id "
            f"{va.get(token)} under {na} and {vb.get(token)} under {nb}; compare needs two models with one tokenizer"
        )


def _vocabularies_differ(na: str, va: int, nb: str, vb: int) -> EngineError:
    return EngineError(
        f"the models' vocabularies differ ({na}: {va} ids, {nb}: {vb}); compare needs two models with one tokenizer"
    )


def check_same_vocabulary_size(spec_b: ModelSpec, size_a: int | None, name_a: str, say: Callable[[str], None]) -> None:
    """Refuse B when its configuration declares another vocabulary size than A's (`size_a`), from
    B's configuration alone: before B's weights are read (a trial saw both models load first)."""

    def check(size_b: int | None) -> None:
        if size_a is not None and size_b is not None and size_a != size_b:
            raise _vocabularies_differ(sanitize(name_a), size_a, sanitize(spec_b.model), size_b)

    check_config(spec_b.model, check, spec_b.trust_remote_code, progress=say)


def _vocab(lm: LoadedModel) -> dict[str, int]:
    get = getattr(lm.tokenizer, "get_vocab", None)
    return dict(get()) if get is not None else {}


def check_same_ids(ids_a: list[int], ids_b: list[int], name_a: str, name_b: str) -> None:
    """The text's tokenization under both tokenizers must be the same ids."""
    if ids_a == ids_b:
        return
    at = next((i for i, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y), min(len(ids_a), len(ids_b)))
    raise EngineError(
        f"the text tokenizes differently under {sanitize(name_a)} ({len(ids_a)} tokens) and {sanitize(name_b)} "
        f"({len(ids_b)} tokens), first at position {at}; compare needs two models with one tokenizer"
    )


# --- the texts ----------------------------------------------------------------------------------


@dataclass
class Item:
    """One text to compare: its token ids (under model A's tokenizer), the text the run records,
    whether those ids came from tokenizing `text` (then B's tokenization is checked too; ids from a
    saved run are the ids) and the chat template applied."""

    ids: list[int]
    text: str
    tokenized: bool = True
    chat: bool = False
    template: str | None = None
    response: str | None = None  # a dataset item's response: `text` is its prompt, `ids` end with it
    response_start: int | None = None  # position of the response's first token (its predictions count)


def _encode(
    backend: HFBackend, text: str, chat: bool, response: str | None
) -> tuple[list[int], str | None, int | None]:
    """A text's ids under one model: the prompt as `score`/`generate` encode it (chat template
    optional), then a dataset item's response encoded on its own and appended, as `tokentui batch`
    scores it. Returns (ids, template, response start or None)."""
    ids, template = backend.encode_prompt(text, chat, "the text" if response is None else "the prompt")
    if response is None:
        return ids, template, None
    answer = backend.encode_text(response)
    if not answer:
        raise EngineError("the response encodes to no tokens")
    return ids + answer, template, len(ids)


def batches(lengths: list[int], budget: int | None = None) -> list[list[int]]:
    """Indices of texts grouped for batched forwards: longest first, each group's padded size
    (members × longest) within `budget` (a text longer than the budget goes alone)."""
    budget = BATCH_TOKENS if budget is None else budget
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= budget:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


# --- the pair of models -------------------------------------------------------------------------


def _describe(lm: LoadedModel) -> dict[str, Any]:
    """The second model in run metadata (`RunMeta.model_b`): named as the user named it, no path."""
    return {
        "model": _name(lm),
        "revision": lm.revision,
        "dtype": lm.dtype,
        "device": lm.device,
        "tokenizer": lm.tokenizer_id or type(lm.tokenizer).__name__,
        "weights_file": lm.weights_file,
    }


class ModelPair:
    """Model A and model B, or model A with B still to load (`b` None: they run one after the other)."""

    def __init__(
        self, a: HFBackend, b: HFBackend | None, spec_b: ModelSpec, progress: Callable[[str], None] | None = None
    ) -> None:
        self.a, self.b, self.spec_b = a, b, spec_b
        self.say = progress or (lambda _m: None)
        if b is not None:
            check_same_tokenizer(a.lm, b.lm)

    @property
    def together(self) -> bool:
        return self.b is not None

    def item(self, text: str, chat: bool = False, response: str | None = None) -> Item:
        """A text (or a dataset item's prompt and response) as an Item: A's ids, checked against
        B's when B is loaded (else once it is)."""
        ids, template, start = _encode(self.a, text, chat, response)
        if self.b is not None:
            check_same_ids(ids, _encode(self.b, text, chat, response)[0], _name(self.a.lm), _name(self.b.lm))
        return Item(ids, text, True, chat, template, response, start)

    def item_from_ids(
        self, ids: list[int], text: str | None = None, token_bytes: Callable[[int], bytes] | None = None
    ) -> Item:
        """Ids of a saved run, compared as they are; `token_bytes`: the run's text of an id, which
        must be the models' (a run made with another tokenizer is refused)."""
        lm = self.a.lm
        bad = [t for t in ids if not 0 <= t < lm.vocab_size]
        if bad:
            raise EngineError(f"token id {bad[0]} is outside the vocabulary (0..{lm.vocab_size - 1})")
        why = None if token_bytes is None else another_tokenizer(ids, token_bytes, lm.vocab_bytes, _name(lm))
        if why is not None:
            raise EngineError(why)
        return Item(list(ids), self.a.tokenizer.decode(ids) if text is None else text, tokenized=False)

    def check_item(self, it: Item) -> None:
        """Refuse an item that cannot be compared (one token, longer than a loaded model's context)."""
        if len(it.ids) < 2:
            raise EngineError("the text is one token: there is no position to compare")
        for side in (self.a, self.b):
            if side is not None:
                side._check_context(len(it.ids), "the text")

    def _check_items(self, items: list[Item]) -> None:
        for it in items:
            self.check_item(it)

    def compare(
        self,
        items: list[Item],
        k: int = 20,
        cancel: threading.Event | None = None,
        on_done: Callable[[int, Run], None] | None = None,
    ) -> list[Run]:
        """One comparison run per item (in order). `on_done(index, run)` as each is finished;
        `cancel` stops between two batches (the runs finished are returned)."""
        GenerationSettings(k=k).check(self.a.lm.vocab_size)
        self._check_items(items)
        return list(self._runs(items, k, cancel, on_done))

    @torch.inference_mode()
    def _runs(
        self, items: list[Item], k: int, cancel: threading.Event | None, on_done: Callable[[int, Run], None] | None
    ) -> Iterator[Run]:
        groups = batches([len(it.ids) for it in items])
        held: dict[int, torch.Tensor] = {}  # one after the other: A's logits per item, on the host
        one_by_one = self.b is None
        if one_by_one:
            for g in groups:
                if cancel is not None and cancel.is_set():
                    return
                for i, lg in zip(g, _logits(self.a, Inputs([items[i].ids for i in g], self.a.device))):
                    held[i] = lg.to("cpu")
            if cancel is not None and cancel.is_set():  # (not after B's load: nothing would be saved)
                return
            self._load_b(items)
        assert self.b is not None
        results: dict[int, Run] = {}
        for g in groups:
            if cancel is not None and cancel.is_set():
                break
            texts = [items[i].ids for i in g]
            inputs = Inputs(texts, self.b.device)  # (one upload for both models)
            logits_b = _logits(self.b, inputs)
            logits_a = [held.pop(i) for i in g] if one_by_one else _logits(self.a, inputs)
            # (what needs no result is built while the device runs the forwards: after the wait —
            # the fused kernel's top-k waits to learn which rows to redo — it was about a
            # millisecond of a GPT-2-sized comparison's few dozen)
            shells = [self._shell(items[i], k) for i in g]
            launched = [
                _measures(la, lb, items[i].ids, k, self.b.device, inputs.targets(r))
                for r, (i, la, lb) in enumerate(zip(g, logits_a, logits_b))
            ]
            for i, measured, shell in zip(g, launched, shells):
                run = self._run(items[i], measured.host(), k, shell)
                results[i] = run
                if on_done is not None:
                    on_done(i, run)
            del logits_a, logits_b, launched
        yield from (results[i] for i in sorted(results))

    def _load_b(self, items: list[Item]) -> None:
        """Release A's weights (its tokenizer and metadata stay), load B, check the tokenizer. A B
        without a chat template, when a text goes through it, is refused before its weights load."""
        a = self.a
        a.model = None
        a.lm.model = None
        a.lens = None  # type: ignore[assignment]  # released: A's weights are not used again
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.b = HFBackend.load(self.spec_b, self.say, chat=any(it.chat for it in items))
        check_same_tokenizer(a.lm, self.b.lm)
        for it in items:
            self.b._check_context(len(it.ids), "the text")
            if it.tokenized:
                check_same_ids(it.ids, _encode(self.b, it.text, it.chat, it.response)[0], _name(a.lm), _name(self.b.lm))

    def _shell(self, item: Item, k: int) -> Run:
        """An item's comparison run before its values: metadata, columns, its first token, the
        text's ids in the token table."""
        assert self.b is not None
        meta = self.a.new_run(item.text, GenerationSettings(k=k, chat=item.chat), item.template, mode="compare").meta
        meta.lens = "off"
        meta.model_b = _describe(self.b.lm)
        run = Run(meta, layout=compare_layout(k, meta.n_layers))
        run.prompt.append(nan_step(0, item.ids[0]))
        self.a._hold_tokens(run, item.ids)
        return run

    def _run(self, item: Item, host: dict[str, np.ndarray], k: int, shell: Run | None = None) -> Run:
        """The comparison run of one item (`shell`: its `_shell`, made already): a run of model A
        whose columns include B's."""
        run = self._shell(item, k) if shell is None else shell
        n = len(item.ids) - 1
        host.update(layer_arrays(None, host, n, run.layout))
        run.prompt.extend(host)
        self.a._hold_tokens(run, *(host[m.name] for m in run.layout.measures if m.is_token_id and m.name != "token_id"))
        if item.response_start is not None:  # the response is the root branch, as `tokentui batch` keeps it
            return response_run(run, item.response_start)
        run.add_branch(None, len(run.prompt)).status = "scored"
        return run


class Inputs:
    """A batch of texts' token ids on a device (right-padded, with an attention mask, when several),
    uploaded once for both models and their targets: a copy from ordinary host memory waits for
    the device's queue, so a second one (model A's ids, or the targets after the forwards) held
    the host until model B's forward had finished, leaving the GPU idle while A's first kernels
    were launched. (One model after the other, A's logits come back from the host anyway.)"""

    def __init__(self, texts: list[list[int]], device: str | torch.device) -> None:
        self.lengths = [len(t) for t in texts]
        if len(texts) == 1:
            self.ids, self.mask = torch.tensor(texts, device=device), None
            return
        ids = torch.zeros(len(texts), max(self.lengths), dtype=torch.long)
        mask = torch.zeros(len(texts), max(self.lengths), dtype=torch.long)
        for r, t in enumerate(texts):
            ids[r, : len(t)] = torch.tensor(t)
            mask[r, : len(t)] = 1
        self.ids, self.mask = ids.to(device), mask.to(device)

    def targets(self, r: int) -> torch.Tensor:
        """Text r's predicted ids (positions 1…), on the device."""
        return self.ids[r, 1 : self.lengths[r]]


def _logits(backend: HFBackend, inputs: Inputs) -> list[torch.Tensor]:
    """One forward over the texts: each text's logits [len − 1, V] in the model's dtype, on its
    device (row t predicts token t + 1)."""
    extra: dict[str, Any] = {} if inputs.mask is None else {"attention_mask": inputs.mask.to(backend.device)}
    out = backend._forward(inputs.ids.to(backend.device), use_cache=False, **extra)
    logits = out.logits
    del out
    return [logits[r, : n - 1] for r, n in enumerate(inputs.lengths)]


FusedFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], dict[str, torch.Tensor]]
_fused_failed: list[str] = []  # why the fused kernel was switched off in this process (once)


def fused_stats(device: torch.device) -> FusedFn | None:
    """`pair_kernel.pair_block` where it applies, else None (the registered functions in PyTorch):
    Triton importable, the registry holding exactly the measures the kernel computes, and
    TOKENTUI_FUSED_STATS unset (then on a CUDA device only) or 1 (also on a CPU through Triton's
    interpreter, when TRITON_INTERPRET=1 was set before Triton was imported: the tests); 0 switches
    it off. A kernel that fails to compile switches itself off for the process (`_fused_guard`)."""
    switch = os.environ.get("TOKENTUI_FUSED_STATS", "")
    if switch == "0" or _fused_failed or (device.type != "cuda" and switch != "1"):
        return None
    try:
        from tokentui.engine.hf import pair_kernel
    except (ImportError, RuntimeError, OSError):  # no Triton, or one that cannot start here
        return None
    if device.type != "cuda" and not pair_kernel.interpreting():
        return None
    if not pair_kernel.covers() or {n for names, _fn in PAIR_FNS for n in names} != pair_kernel.PAIR_NAMES:
        return None
    return _fused_guard(pair_kernel.pair_block)


def _fused_guard(fn: FusedFn) -> FusedFn:
    """`fn`, falling back to `torch_stats` (the same numbers, in blocks of GPU_BLOCK_ELEMENTS)
    when the kernel cannot run here — a Triton that cannot compile for this GPU, a missing C
    compiler or driver library, whatever it raises — with one warning, and off for the rest of the
    process. Out of GPU memory is not the kernel's fault: raised as it is."""

    def guarded(la: torch.Tensor, lb: torch.Tensor, targets: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        if not _fused_failed:
            try:
                return fn(la, lb, targets, k)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure of the kernel's toolchain: the fallback computes the same
                _fused_failed.append(" ".join(str(e).split())[:200] or type(e).__name__)
                warnings.warn(f"the fused comparison kernel failed ({_fused_failed[0]}); using PyTorch", stacklevel=2)
        rows = max(1, GPU_BLOCK_ELEMENTS // la.shape[-1])
        parts = [
            torch_stats(la[r : r + rows], lb[r : r + rows], targets[r : r + rows], k)
            for r in range(0, len(targets), rows)
        ]
        return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}

    return guarded


def torch_stats(la: torch.Tensor, lb: torch.Tensor, targets: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Every comparison column for a block of n positions from both models' [n, V] logits, by the
    registered functions: each model's log-probs in float32, clamped at LOGPROB_FLOOR (in place:
    −∞ only where a logit is masked), then `pair_values`."""
    nan = torch.full(targets.shape, math.nan, device=targets.device)
    a = TokenInputs(torch.log_softmax(la.float(), -1).clamp_min_(LOGPROB_FLOOR), targets, nan, k, finite=True)
    b = TokenInputs(torch.log_softmax(lb.float(), -1).clamp_min_(LOGPROB_FLOOR), targets, nan, k, finite=True)
    return pair_values(PairInputs(a, b))


@dataclass
class _Launched:
    """A text's comparison columns side by side on the device, one float32 row per position (ids
    and ranks are exact below 2**24), computed or still being computed: `host` waits for them."""

    packed: torch.Tensor
    slots: list[tuple[str, int, bool, bool]]  # name, width, one value per position, integer

    def host(self) -> dict[str, np.ndarray]:
        """The columns on the host, in one transfer; a distribution that was not finite refused."""
        host = self.packed.cpu().numpy()
        out: dict[str, np.ndarray] = {}
        at = 0
        for name, width, scalar, integer in self.slots:
            col = host[:, at : at + width]
            at += width
            col = col.astype(np.int64) if integer else col
            out[name] = col[:, 0] if scalar else col
        require_finite(out, " under one of the models", ("logprob", "entropy", "logprob_b", "entropy_b"))
        return out


def _measures(
    logits_a: torch.Tensor,
    logits_b: torch.Tensor,
    ids: list[int],
    k: int,
    device: torch.device,
    targets: torch.Tensor | None = None,
) -> _Launched:
    """Every column for positions 1… of one text from both models' logits, on `device` in float32,
    a block of positions at a time (a block of A's logits may come from the host): by the fused
    kernel where it applies (`fused_stats`), else by the registered functions (`torch_stats`).
    Nothing but the fused kernel's top-k (`pair_kernel._top_k`) waits for the device here:
    `host()` of the result does.
    `targets`: the text's ids 1… already on the device (`Inputs.targets`; else uploaded from `ids`)."""
    n, vocab = logits_b.shape
    targets = torch.tensor(ids[1:], device=device) if targets is None else targets.to(device)
    fused = fused_stats(device)
    if fused is not None and logits_a.device == logits_b.device:
        budget = FUSED_BLOCK_ELEMENTS  # (the kernel makes no [n, V] temporaries to bound)
    else:
        budget = BLOCK_ELEMENTS if device.type == "cpu" else GPU_BLOCK_ELEMENTS
    rows = max(1, budget // vocab)
    packed: list[torch.Tensor] = []
    slots: list[tuple[str, int, bool, bool]] = []
    for r in range(0, n, rows):
        end = min(r + rows, n)
        values = (fused or torch_stats)(logits_a[r:end].to(device), logits_b[r:end], targets[r:end], k)
        if not slots:
            slots = [(name, v[0].numel(), v.dim() == 1, not v.is_floating_point()) for name, v in values.items()]
        packed.append(torch.cat([values[name].reshape(end - r, -1).float() for name, *_ in slots], 1))
    return _Launched(packed[0] if len(packed) == 1 else torch.cat(packed), slots)


def load_pair(
    spec_a: ModelSpec,
    spec_b: ModelSpec,
    progress: Callable[[str], None] | None = None,
    together: bool | None = None,
    check_a: Callable[[ModelPair], None] | None = None,
    chat: bool = False,
) -> ModelPair:
    """Load A, then B beside it; the lens is off (a comparison uses only the models' outputs).
    `together` None: one after the other only when B does not fit beside A (out of GPU memory);
    False: always one after the other (B loads when `compare` needs it); True: never.
    `check_a(pair)`, with A alone loaded (`pair.b` None): what A alone can refuse (a text of one
    token, longer than A's context) is refused before B's weights are read. `chat`: texts go
    through the chat template, so a model without one is refused before its weights are read."""
    say = progress or (lambda _m: None)
    spec_a, spec_b = replace(spec_a, lens_chunk=0), replace(spec_b, lens_chunk=0)
    sizes: list[int | None] = []
    check_config(spec_a.model, sizes.append, spec_a.trust_remote_code, progress=say)
    check_same_vocabulary_size(spec_b, sizes[0], spec_a.model, say)  # (before either model's weights)
    a = HFBackend.load(spec_a, say, chat)
    if check_a is not None:
        check_a(ModelPair(a, None, spec_b, say))
    if together is False:
        return ModelPair(a, None, spec_b, say)
    try:
        b: HFBackend | None = HFBackend.load(spec_b, say, chat)
    except ModelLoadError as e:
        if together or "out of memory" not in str(e).lower():
            raise
        b = None
    if b is None:  # (outside the handler: the failed load's tensors are free only once it is left)
        gc.collect()
        torch.cuda.empty_cache()
        say(f"{spec_b.model} does not fit beside {spec_a.model} on {a.device}: running them one after the other")
    return ModelPair(a, b, spec_b, say)


# --- the explorer's live comparison (`explore --compare B`) -------------------------------------


class LivePair:
    """Model B beside the explorer's generating backend A (`engine.backend.Comparer`): each
    comparison is one forward of each model over a branch's whole sequence and `_measures` on
    the pair of logits, exactly what `tokentui compare` computes for those ids. Both models stay
    loaded (no one-after-the-other mode: the explorer compares after every job)."""

    def __init__(self, a: HFBackend, b: HFBackend) -> None:
        check_same_tokenizer(a.lm, b.lm)
        self.a, self.b = a, b
        self.info_b = b.info
        self.record = _describe(b.lm)

    @classmethod
    def load(cls, a: HFBackend, spec_b: ModelSpec, progress: Callable[[str], None] | None = None) -> LivePair:
        """Load B (lens off) beside A; a B that does not fit on A's GPU (DoesNotFit), or has another
        tokenizer, is a one-line EngineError and nothing stays loaded."""
        check_same_vocabulary_size(spec_b, a.lm.vocab_size, _name(a.lm), progress or (lambda _m: None))
        try:
            b = HFBackend.load(replace(spec_b, lens_chunk=0), progress)
        except ModelLoadError as e:
            if "out of memory" not in str(e).lower():
                raise
            b = None
        if b is None:  # (outside the handler: the failed load's tensors are free only once it is left)
            _release()
            raise DoesNotFit(
                f"{sanitize(spec_b.model)} does not fit beside {sanitize(_name(a.lm))} on {a.device}: the explorer "
                "compares with both models loaded (`tokentui compare` runs them one after the other)"
            )
        try:
            return cls(a, b)
        except EngineError:
            del b
            _release()
            raise

    @torch.inference_mode()
    def compare_ids(self, ids: list[int], k: int) -> dict[str, np.ndarray]:
        if len(ids) < 2:
            raise EngineError("one token: there is no position to compare")
        for side in (self.a, self.b):
            side._check_context(len(ids), "the branch")
        inputs = Inputs([ids], self.b.device)
        la = _logits(self.a, inputs)[0]
        lb = _logits(self.b, inputs)[0]
        host = _measures(la, lb, ids, k, self.b.device, inputs.targets(0)).host()
        return {m.name: host[m.name] for m in MEASURES.values() if m.name in host and m.name in _COMPARED}

    def token_bytes(self, ids: list[int]) -> dict[int, bytes]:
        vb = self.a.lm.vocab_bytes
        return {i: vb[i] if 0 <= i < len(vb) else f"<id {i}>".encode() for i in ids}

    def close(self) -> None:
        self.b = None  # type: ignore[assignment]  # released: the pair is not used again
        _release()


_COMPARED = frozenset(n for names, _fn in PAIR_FNS for n in names)


def _release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
