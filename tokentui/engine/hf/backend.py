"""The Hugging Face backend: instrumented decoding in our own KV-cache loop, a `Step` per token.

One forward of the new token per step; the registered measures (`engine/hf/measures.py`) computed
on the device; one small transfer per step (plus one per lens chunk). The logit lens buffers the
new positions' hidden states and pushes them through final norm → unembedding every `lens_chunk`
steps in one pass over the unembedding, so the layer view stays nearly live at a fraction of the
per-step cost (`lens_chunk=1` lenses every step, `lens_chunk=0` turns the lens off: only the last
layer, the model's own value, is recorded). Generation stops at the model's context (status
`context`); a failure midway ends the branch with status `error` after its steps are reported.
A steered call (`steering=`) puts its hooks on the blocks around each forward only
(`engine/hf/steering.py`) and reuses only KV caches made under the same steering.
"""

from __future__ import annotations

import inspect
import math
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import nullcontext
from dataclasses import asdict, replace
from typing import Any, cast

import numpy as np
import torch

from tokentui import __version__
from tokentui.core.columns import nan_step
from tokentui.core.display import counted, sanitize
from tokentui.core.params import GenerationSettings, RunError, SamplingParams, TreeParams, check_text
from tokentui.core.run import Branch, Run, RunMeta, new_run_id, now_iso
from tokentui.core.steering import SteeringSpec, same_steering
from tokentui.engine.backend import ModelInfo, ModelSpec
from tokentui.engine.capabilities import Capabilities
from tokentui.engine.errors import EngineError
from tokentui.engine.events import BranchStarted, Event, Finished, LensEvent, Progress, RunStarted
from tokentui.engine.hf.arch import LensParts, attention_entropies, attention_modules, context_length
from tokentui.engine.hf.chat_template import render_chat
from tokentui.engine.hf.ending import Ending, context_notice
from tokentui.engine.hf.kv_cache import CachePool, cache_length
from tokentui.engine.hf.loading import LoadedModel, check_lens_precision, load_model, no_chat_template
from tokentui.engine.hf.measures import (
    LensInputs,
    Packer,
    TokenInputs,
    attention_values,
    host_arrays,
    layer_arrays,
    layer_finals,
    lens_names,
    lens_positions,
    lens_values,
    require_finite,
    run_layout,
    token_values,
)
from tokentui.engine.hf.sampling import choose, make_generator
from tokentui.engine.hf.selfcheck import cached_decoding_problem, hidden_states_start, lens_problem, probe_ids
from tokentui.engine.hf.steering import Steerer
from tokentui.engine.hf.step_block import StepBlock
from tokentui.engine.hf.token_bytes import another_tokenizer

TEACHER_FORCED_ELEMENTS = 1 << 20  # log-probs scored at once when teacher forcing (4 MB of float32)
# prompt positions lensed between two progress reports and cancel checks (SmolLM2 on 2 CPU cores:
# ~3 s; a GPU: milliseconds)
PROMPT_LENS_POSITIONS = 64


def cache_of(out):
    """The KV cache a forward returned, under its new name (`cache`) or its old one."""
    cache = out.get("cache")
    return cache if cache is not None else out.get("past_key_values")


class HFBackend:
    """Owns one loaded transformers model; creates runs and grows their branches (implements
    `engine.backend.Backend` with every capability). Not thread-safe: one thread drives it."""

    kind = "hf"
    capabilities = Capabilities(
        generate=True,
        lens=True,
        kv_fork=True,
        gradients=True,
        hooks=True,
        attention=True,
        full_distribution=True,
        group_decode=True,
    )

    @classmethod
    def load(cls, spec: ModelSpec, progress: Callable[[str], None] | None = None, chat: bool = False) -> HFBackend:
        """`chat`: prompts will be wrapped in the chat template (refused before the weights load
        when the tokenizer has none)."""
        if spec.lens_chunk < 0:
            raise EngineError(f"the lens chunk must be ≥ 0 (got {spec.lens_chunk})")
        t0 = time.perf_counter()
        say = progress or (lambda _m: None)
        lm = load_model(spec.model, spec.device, spec.dtype, spec.trust_remote_code, progress=progress, chat=chat)
        # the opening checks take seconds on a CPU (SmolLM2: 4): a trial's status bar said
        # "loaded … in 4.1s" for 13 s more, then "loaded in 17.1s"
        lensed = spec.lens_chunk and not isinstance(lm.lens, str)  # (a lens loading found no norm for: off)
        say(f"checking {spec.model}: decoding from its cache{' and the lens' if lensed else ''}")
        backend = cls(lm, spec.lens_chunk, spec.lens_precision)
        if backend.no_lens is not None and not isinstance(lm.lens, str):
            say(backend.no_lens)  # (found by the check at opening; a norm not found, loading said)
        say(f"loaded {spec.model} in {time.perf_counter() - t0:.1f}s")
        return backend

    def _check_decodes(self) -> None:
        """Before any work of a job that decodes (generate, continue, branch, tree): refused, in
        one line, for a model whose cached decoding the check at opening found wrong."""
        why = self.capabilities.why_not("generate", self.kind)
        if why is not None:
            raise EngineError(why)

    def __init__(
        self, lm: LoadedModel, lens_chunk: int = 32, lens_precision: str = "auto", cache_slots: int = 4
    ) -> None:
        self.lm = lm
        self.model: Any = cast(Any, lm.model)
        self.tokenizer: Any = cast(Any, lm.tokenizer)
        self.device = next(self.model.parameters()).device
        check_lens_precision(lens_precision)  # (said also when the lens is off)
        # transformers renamed `past_key_values` to `cache` within 5.x (the old name warns, then goes)
        self._cache_kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        ids = probe_ids(self.model)
        # a model tokentui cannot decode still scores, compares, steers and attributes a text (one
        # whole forward each): only generating and growing trees are refused, with this line
        problem = cached_decoding_problem(self.model, self._cache_kw, ids)
        if problem is not None:
            self.capabilities = self.capabilities.without(
                "generate",
                f"{sanitize(lm.model_name or lm.spec)}: tokentui cannot generate with this model: {problem} "
                "(score, compare, steer-vector and attribute --run work: they need no decoding)",
            )
        # (the lens check only where the lens will run: --lens-chunk 0 and a comparison's pair skip it)
        checked = lens_problem(self.model, cast(LensParts, lm.lens), ids) if lens_chunk > 0 else None
        no_lens = lm.lens if isinstance(lm.lens, str) else checked
        # where the forward's hidden states hold layer 1 (`block_outputs`)
        self.hidden_start = 1
        if no_lens is None and lens_chunk > 0:
            self.hidden_start, no_lens = hidden_states_start(self.model, ids)
        if no_lens is not None:  # a model without a lens (its final norm or its head unknown): off
            self.no_lens: str | None = no_lens
            self.capabilities = self.capabilities.without("lens", no_lens)
            lens_chunk = 0
        else:
            self.no_lens = None
        self.lens_chunk = max(0, lens_chunk)
        # how long a decoded step may wait before it is reported (`StepBlock`): 0, each at once
        self.step_latency = 0.0
        # a precision other than the model's costs a copy of the unembedding (for a bf16 model with
        # a 150k vocabulary lensed in float32: half a gigabyte): made only when the lens is on
        lens = cast(LensParts, lm.lens)
        self.lens: LensParts = lens.at_precision(lens_precision) if self.lens_chunk else lens
        self.caches = CachePool(cache_slots)
        self.context = context_length(self.model.config)
        # the most text the context can take: its positions × the longest token's bytes, 4× over
        # (a tokenizer's normalisation may shrink text): a longer one is refused before tokenizing
        # (a 50 MB file took a minute and 6 GB to be told it was too long)
        longest = max((len(b) for b in lm.vocab_bytes), default=0) or 64
        self.max_text_bytes = None if self.context is None else 4 * self.context * longest
        self.info = ModelInfo(
            lm.model_name or lm.spec,
            lm.device,
            lm.dtype,
            lm.n_layers,
            lm.vocab_size,
            self.context,
            lm.notes,
            lm.chat_template is not None,
        )

    def block_outputs(self, hidden_states) -> tuple:
        """The outputs of blocks 1…L−1 (the lens's layers) among a forward's `hidden_states`."""
        return tuple(hidden_states[self.hidden_start : self.hidden_start + self.lm.n_layers - 1])

    # --- prompts and runs -------------------------------------------------------------------
    def check_run(self, run: Run) -> None:
        info = self.info
        why = run.meta.not_grown_by(info.name, info.vocab_size, info.n_layers)
        if why is None:  # (two folders of one name: the ids the run has seen must be this tokenizer's)
            other = another_tokenizer(run.tokens.ids().tolist(), run.tokens.bytes_of, self.lm.vocab_bytes, info.name)
            why = None if other is None else f"{other} (a run grows under its own model only)"
        if why is not None:
            raise EngineError(why)

    def _check_size(self, text: str, what: str) -> None:
        size = len(text.encode("utf-8", "surrogatepass"))
        if self.max_text_bytes is not None and size > self.max_text_bytes:
            raise EngineError(
                f"{what} is {size:,} bytes: far more than the model's context of {self.context:,} positions takes"
            )

    def encode_prompt(self, prompt: str, chat: bool = False, what: str = "the prompt") -> tuple[list[int], str | None]:
        if not prompt or not prompt.strip():
            raise EngineError(f"{what} is empty")
        check_text(prompt, what)
        self._check_size(prompt, what)
        tok = self.tokenizer
        if chat:
            template = self.lm.chat_template
            if template is None:
                raise no_chat_template(self.lm.spec)
            text = render_chat(tok, prompt)
            self._check_size(text, "the chat template's text")
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            template = None
            ids = tok(prompt)["input_ids"]
        if not ids:
            raise EngineError(f"{what} encodes to no tokens")
        return self._in_vocabulary([int(i) for i in ids], what), template

    def encode_text(self, text: str) -> list[int]:
        check_text(text, "the text")
        self._check_size(text, "the text")
        ids = [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]] if text else []
        return self._in_vocabulary(ids, "the text")

    def _in_vocabulary(self, ids: list[int], what: str) -> list[int]:
        """`ids`, when the model has an embedding for each: a tokenizer larger than the model (not
        its own) failed in the forward as "index out of range in self"."""
        vocab = self.lm.vocab_size
        bad = next((i for i in ids if not 0 <= i < vocab), None)
        if bad is not None:
            raise EngineError(
                f"{what} encodes to token id {bad}, but the model has {vocab:,} embeddings (ids 0…{vocab - 1}): "
                "its tokenizer is not this model's"
            )
        return ids

    def new_run(self, prompt: str, settings: GenerationSettings, template: str | None, mode: str = "generate") -> Run:
        settings.check(self.lm.vocab_size)
        k, chat, params = settings.k, settings.chat, settings.sampling
        meta = RunMeta(
            run_id=new_run_id(),
            created=now_iso(),
            tool_version=__version__,
            mode=mode,
            model=self.lm.model_name or self.lm.spec,
            revision=self.lm.revision,
            dtype=self.lm.dtype,
            device=self.lm.device,
            tokenizer=self.lm.tokenizer_id or type(self.tokenizer).__name__,
            vocab_size=self.lm.vocab_size,
            n_layers=self.lm.n_layers,
            k=k,
            prompt=prompt,
            chat=chat,
            chat_template=template,
            sampling=asdict(params),
            eos_ids=list(self.lm.eos_ids),
            lens=f"{RunMeta.lens}; unembedding matmul in {self.lens.precision}"
            if self.lens_chunk
            else f"off ({self.no_lens})"
            if self.no_lens
            else "off",
            weights_file=self.lm.weights_file,
        )
        if settings.attention_entropy:
            attention_modules(self.model)  # a model whose attention weights cannot be found: said now
        layout = run_layout(k, self.lm.n_layers, settings.k_lens, self.lens_chunk > 0, settings.attention_entropy)
        return Run(meta, layout=layout)

    # --- what a run records besides the per-token measures ----------------------------------
    @staticmethod
    def _attention(run: Run) -> bool:
        """Whether the run records attention entropy (its forwards then run in eager attention)."""
        return "attention_entropy" in run.layout.names

    @staticmethod
    def lens_inputs(run: Run, chosen: torch.Tensor, final: torch.Tensor) -> LensInputs:
        """The lens's inputs for positions whose taken tokens are `chosen` and whose own
        distribution is `final` ([P, V] logits or log-probs)."""
        k_lens = run.layout.j if "layer_topk_ids" in run.layout.names else 0
        return LensInputs(chosen, final, k_lens)

    def _step_values(self, run: Run, x: TokenInputs, out=None, rows: slice | None = None) -> dict[str, torch.Tensor]:
        """Every per-token value of x's positions on the device: the per-token measures, the last
        layer (the model's own) of each lens measure and, when recorded, the attention entropy of
        the forward `out`'s query rows `rows`."""
        values = token_values(x)
        values.update(layer_finals(x, values, run.layout))
        if self._attention(run):
            att = None if out is None else getattr(out, "attention_entropy", None)
            if att is None:
                raise EngineError("attention entropy was asked for but the forward returned no attention weights")
            values["attention_entropy"] = att[rows if rows is not None else slice(None)]
        return values

    def _note_tokens(self, run: Run, *arrays: np.ndarray | list[int]) -> dict[int, bytes]:
        """Add the bytes of the ids in `arrays` the run's token table lacks; return what was added.
        A long teacher-forced or compared text mentions ~100k top-k ids at once: their distinct
        values come from a bitmap over the vocabulary (one numpy pass, no sort and no Python set
        of them all), and only those are looked up; a decode step's k ids go through a set (the
        bitmap's scan of the vocabulary would cost more). Negative ids (padding) are not tokens."""
        if not arrays:
            return {}
        vb = self.lm.vocab_bytes
        n = len(vb)
        count = sum(len(a) if isinstance(a, list) else np.size(a) for a in arrays)
        if count <= 256 or count * 64 < n:  # (a decode step: a few ids, in plain Python)
            listed = (a if isinstance(a, list) else np.ravel(a).tolist() for a in arrays)
            distinct = sorted({i for ids in listed for i in ids if i >= 0})
        else:
            ids = np.concatenate([np.asarray(a, dtype=np.int64).ravel() for a in arrays])
            seen = np.zeros(n, dtype=bool)
            seen[ids[(ids >= 0) & (ids < n)]] = True
            distinct = np.flatnonzero(seen).tolist() + sorted(set(ids[ids >= n].tolist()))
        new = run.tokens.absent(distinct) if len(run.tokens) else distinct
        added = {i: self._token_bytes(i) for i in new}
        run.tokens.update(added)
        return added

    def _token_bytes(self, token_id: int) -> bytes:
        """A token's bytes as the run's token table records them (an id past the tokenizer's
        vocabulary, in a padded unembedding: a visible placeholder)."""
        vb = self.lm.vocab_bytes
        return vb[token_id] if 0 <= token_id < len(vb) else f"<id {token_id}>".encode()

    def _hold_tokens(self, run: Run, *arrays: np.ndarray | list[int]) -> None:
        """`_note_tokens` for a whole text's ids where nothing needs the new ones listed (a scored
        prompt, a comparison): held as references into the tokenizer's table (`TokenTable.hold`),
        not a dictionary entry each — on a 2,048-token comparison, most of building its run."""
        if not arrays:
            return
        vb = self.lm.vocab_bytes
        ids = np.concatenate([np.asarray(a, dtype=np.int64).ravel() for a in arrays])
        run.tokens.hold(vb, ids[(ids >= 0) & (ids < len(vb))])
        beyond = ids[ids >= len(vb)]
        if beyond.size:
            run.tokens.update({i: f"<id {i}>".encode() for i in set(beyond.tolist()) if i not in run.tokens})

    # --- teacher forcing --------------------------------------------------------------------
    def _forward(
        self,
        ids: torch.Tensor,
        cache=None,
        use_cache: bool = True,
        steer: Steerer | None = None,
        attention: bool = False,
        start: int | None = None,
        **extra,
    ):
        """One forward; `extra`: more model arguments (a tree search's mask and position ids).
        `steer`: its hooks are on the blocks for this forward only, the input's first position
        `start` (default: the cache's length; a cache that holds a state, not positions, needs it
        given). `attention`: in eager attention, with `out.attention_entropy` [queries, L] (nats)."""
        args = dict(input_ids=ids, use_cache=use_cache, output_hidden_states=self.lens_chunk > 0)
        if steer is not None and start is None:
            start = cache_length(cache)
            if start is None:
                raise EngineError(f"steering: {type(self.model).__name__}'s cache does not say how long it is")
        try:
            with nullcontext() if steer is None else steer.applied(start or 0):
                if not attention:
                    return self.model(**args, **{self._cache_kw: cache}, **extra)
                with attention_entropies(self.model) as rows:
                    out = self.model(**args, **{self._cache_kw: cache}, **extra)
                out.attention_entropy = attention_values(rows, self.lm.n_layers)
                return out
        except torch.cuda.OutOfMemoryError:
            raise EngineError("out of GPU memory (try a shorter text or a smaller model)") from None
        except (RuntimeError, IndexError, ValueError) as e:  # (ValueError: xLSTM's, from inside its forward)
            msg = " ".join(str(e).split())[:200]
            raise EngineError(f"the model failed on this input ({ids.shape[1]} tokens): {msg}") from None

    def _record_teacher_forced(self, run: Run, ids: list[int], out) -> None:
        """Fill the run's prompt steps from one forward over `ids` (positions 1.. are scored)."""
        for _ in self._teacher_forced(run, ids, out):
            pass

    def _teacher_forced(
        self, run: Run, ids: list[int], out, cancel: threading.Event | None = None
    ) -> Iterator[Progress]:
        """`_record_teacher_forced` as a job's steps: the logit lens of a long prompt (on a CPU,
        minutes for a few thousand positions) goes in chunks of positions with a Progress after
        each; a cancel stops it, and the positions not reached keep their layer values unknown."""
        host = (yield from self._scored(run, ids, out, cancel)) if len(ids) > 1 else None
        self._record_prompt(run, ids, host)

    def _record_prompt(self, run: Run, ids: list[int], host: dict[str, np.ndarray] | None) -> None:
        """The run's prompt steps: its first token (nothing predicts it), then the scored
        positions' values `host` (`_scored`; None: a prompt of one token)."""
        run.prompt.append(nan_step(0, ids[0]))
        self._note_tokens(run, np.asarray(ids[:1]))
        if host is not None:
            run.prompt.extend(host)
            self._hold_tokens(run, *(host[m.name] for m in run.layout.measures if m.is_token_id))

    def _scored(
        self, run: Run, ids: list[int], out, cancel: threading.Event | None = None
    ) -> Generator[Progress, None, dict[str, np.ndarray]]:
        """The values of positions 1… of `ids` from the forward `out` over them, as the columns of
        `run`'s layout (its lens in chunks, with a Progress after each: `_teacher_forced`)."""
        n, n_layers = len(ids) - 1, run.n_layers
        targets = torch.tensor(ids[1:], device=self.device)
        nan = torch.full((n,), math.nan, device=self.device)
        # in blocks of positions: a [positions, V] float32 copy of the logits per measure would be
        # gigabytes for a long prompt and a large vocabulary (and is a tree search's memory peak)
        rows = max(1, TEACHER_FORCED_ELEMENTS // out.logits.shape[-1])
        packer = Packer(run.layout)
        parts: list[torch.Tensor] = []  # (each block's values side by side: one transfer at the end)
        for a in range(0, n, rows):
            b = min(a + rows, n)
            logp = torch.log_softmax(out.logits[0, a:b].float(), -1)
            x = TokenInputs(logp, targets[a:b], nan[a:b], run.k)
            parts.append(packer.pack_rows(self._step_values(run, x, out, slice(a, b)), b - a))
            del logp, x
        host = packer.unpack_rows(torch.cat(parts).cpu().numpy())
        require_finite(host, " on the text")
        lensed: dict[str, np.ndarray] | None = None
        hs = out.hidden_states
        if n_layers > 1 and hs is not None:
            hidden = torch.stack([h[0, :-1] for h in self.block_outputs(hs)], dim=1)  # [n, L-1, d]
            names = set(run.layout.names)
            chunks: list[dict[str, np.ndarray]] = []
            step = lens_positions(PROMPT_LENS_POSITIONS, n_layers - 1)
            for a in range(0, n, step):
                if cancel is not None and cancel.is_set():
                    yield Progress(f"cancelled: the prompt's logit lens stopped after {a:,} of {n:,} positions")
                    break
                b = min(a + step, n)
                inputs = self.lens_inputs(run, targets[a:b], out.logits[0, a:b])
                chunks.append(host_arrays(lens_values(self.lens, hidden[a:b], inputs, names)))
                if n > step:
                    yield Progress(f"the prompt's logit lens: {b:,} of {n:,} positions", b / n)
            if chunks:
                lensed = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        host.update(layer_arrays(lensed, host, n, run.layout))
        return host

    @torch.inference_mode()
    def score_ids(
        self,
        ids: list[int],
        k: int = 20,
        text: str | None = None,
        settings: GenerationSettings | None = None,
        steering: SteeringSpec | None = None,
        progress: Callable[[str, float], None] | None = None,
    ) -> Run:
        """Teacher-forced scoring of given token ids (what `score` does after tokenizing);
        `settings`: what to record (its k_lens and attention entropy; `k` wins over its k);
        `steering`: the forward is steered (recorded in the run's metadata and its branch);
        `progress`: told after each chunk of a long text's logit lens."""
        if len(ids) < 2:  # a token is scored by the positions before it: the first never is
            raise EngineError(f"the text is {len(ids)} token{'s' * (len(ids) != 1)}: nothing to score (every scored token "
                              "is predicted from the ones before it)")  # fmt: skip
        steer = self._steerer(steering)
        if text is None:
            text = self.tokenizer.decode(ids)
        self._check_context(len(ids), "the text")
        what = replace(settings or GenerationSettings(), k=k)
        run = self.new_run(text, what, None, mode="score")
        run.meta.steering = None if steering is None else steering.record()
        out = self._forward(
            torch.tensor([ids], device=self.device), use_cache=False, steer=steer, attention=self._attention(run)
        )
        for step in self._teacher_forced(run, ids, out):
            if progress is not None:
                progress(step.message, step.fraction if step.fraction is not None else 0.0)
        run.add_branch(None, len(run.prompt), steering=run.meta.steering).status = "scored"
        return run

    def _steerer(self, spec: SteeringSpec | None) -> Steerer | None:
        """The spec prepared for this model (None: no steering); a spec that does not fit the model
        is a one-line error here, before any forward."""
        if spec is None:
            return None
        why = self.capabilities.why_not("hooks", self.kind)
        if why is not None:
            raise EngineError(f"steering needs forward hooks: {why}")
        return Steerer(self.model, spec, self.lm.n_layers)

    # --- generation -------------------------------------------------------------------------
    def _check_context(self, n: int, what: str) -> None:
        if self.context is not None and n > self.context:
            raise EngineError(f"{what} has {n} tokens, more than the model's context ({self.context} positions)")

    @torch.inference_mode()
    def generate(
        self,
        run: Run,
        prompt_ids: list[int],
        params: SamplingParams,
        cancel: threading.Event | None = None,
        forced: list[int] | None = None,
        steering: SteeringSpec | None = None,
    ) -> Iterator[Event]:
        """Score the run's prompt and grow its root branch (optionally starting with forced
        tokens); `steering`: prompt and branch steered (recorded in the metadata and the branch).
        With forced tokens `max_new_tokens` may be 0: the branch is the forced text alone (a tree
        search's guided root)."""
        self._check_decodes()
        replace(params, max_new_tokens=max(params.max_new_tokens, 1 if forced else 0)).check()
        if run.branches:
            raise RunError("this run already has a root branch; continue or branch it instead")
        steer = self._steerer(steering)
        ids = list(prompt_ids)
        self._check_context(len(ids), "the prompt")
        run.meta.steering = None if steering is None else steering.record()
        out = self._forward(torch.tensor([ids], device=self.device), steer=steer, attention=self._attention(run))
        yield from self._teacher_forced(run, ids, out, cancel)
        yield RunStarted(run.copy())
        branch = run.add_branch(None, len(run.prompt), sampling=asdict(params), steering=run.meta.steering)
        yield BranchStarted(run.id, branch.id, None, branch.fork_position, branch.sampling, branch.steering)
        yield from self._decode(
            run, branch, cache_of(out), None, params, cancel, list(forced or []), first_out=out, steer=steer
        )

    def generate_group(
        self,
        runs: list[Run],
        prompt_ids: list[list[int]],
        sampling: SamplingParams,
        cancel: threading.Event | None = None,
        forced: list[int] | None = None,
        failures: dict[str, EngineError] | None = None,
    ) -> Iterator[Event]:
        """`generate` for several new runs whose prompts have one token length, decoded together
        (`engine/hf/group_decode.py`); `failures` as `Backend.generate_group` says."""
        from tokentui.engine.hf.group_decode import GroupDecode

        self._check_decodes()
        return GroupDecode(
            self, runs, prompt_ids, sampling, cancel, list(forced or []), {} if failures is None else failures
        ).events()

    @torch.inference_mode()
    def continue_branch(
        self,
        run: Run,
        branch_id: int,
        params: SamplingParams,
        cancel: threading.Event | None = None,
        steering: SteeringSpec | None = None,
    ) -> Iterator[Event]:
        """More tokens at the end of a branch, steered as the branch was grown: a steered branch
        needs `steering` to be that same steering; `steering` is ignored for a plain branch."""
        self._check_decodes()
        params.check()
        branch = run.branch(branch_id)
        if run.length(branch_id) == 0:
            raise RunError("nothing to continue")
        if branch.steering is None:
            steering = None
        elif not same_steering(branch.steering, steering):
            raise EngineError(
                f"branch {branch_id} was grown steered ({branch.steering.get('vector')}); continue it with the same "
                "steering, or branch it"
            )
        steer = self._steerer(steering)
        seq = run.sequence(branch_id)
        cache, used = self.caches.best(seq, len(seq) - 1, "" if steer is None else steer.key)
        branch.status = "running"
        pending = torch.tensor([seq[used:].tolist()], device=self.device)
        yield from self._decode(run, branch, cache, pending, params, cancel, [], steer=steer)

    @torch.inference_mode()
    def fork(
        self,
        run: Run,
        parent: int,
        position: int,
        forced: list[int],
        params: SamplingParams,
        cancel: threading.Event | None = None,
        steering: SteeringSpec | None = None,
    ) -> Iterator[Event]:
        """Fork `parent` at absolute `position`: take `forced` tokens there (none: sample the
        token there afresh), then continue; `steering`: the new branch is steered (its whole
        sequence, prefix included, runs through the steered model: a prefix cached under other
        steering is recomputed)."""
        self._check_decodes()
        params.check()
        steer = self._steerer(steering)
        bad = [t for t in forced if not 0 <= t < self.lm.vocab_size]
        if bad:
            raise EngineError(f"token id {bad[0]} is outside the vocabulary (0..{self.lm.vocab_size - 1})")
        parent_len = run.length(parent)
        if not 1 <= position <= parent_len:
            raise EngineError(f"branch position {position} is out of range 1..{parent_len} of branch {parent}")
        prefix = run.sequence(parent)[:position]
        cache, used = self.caches.best(prefix, position - 1, "" if steer is None else steer.key)
        record = None if steering is None else steering.record()
        branch = run.add_branch(parent, position, sampling=asdict(params), steering=record)
        yield BranchStarted(run.id, branch.id, branch.parent, position, branch.sampling, branch.steering)
        pending = torch.tensor([prefix[used:].tolist()], device=self.device)
        yield from self._decode(run, branch, cache, pending, params, cancel, list(forced), steer=steer)

    def _decode(
        self,
        run: Run,
        branch: Branch,
        cache,
        pending: torch.Tensor | None,
        params: SamplingParams,
        cancel: threading.Event | None,
        forced: list[int],
        first_out=None,
        steer: Steerer | None = None,
    ) -> Iterator[Event]:
        k, n_layers = run.k, run.n_layers
        ending = Ending(self.lm.eos_ids, params.stop, self._token_bytes)
        gen = make_generator(params, self.device)
        nan = torch.full((), math.nan, device=self.device)  # (a step without a sampler's log-prob: one fill for all)
        lens_buf: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]] = []
        names = set(run.layout.names)
        attention = self._attention(run)
        lens_start = branch.end
        chunk = self.lens_chunk
        packer = Packer(run.layout, lens_rows=n_layers - 1 if chunk == 1 and n_layers > 1 else 0)
        block = StepBlock(run, branch, packer, self._note_tokens, self.step_latency)
        t0 = last = time.perf_counter()
        new = timed = 0  # generated tokens; those of them whose forward ran here (not the prompt's)
        status = "length"
        out = first_out
        notice = context_notice(self.context, branch.fork_position, len(forced) + params.max_new_tokens)
        if notice is not None:
            yield notice
        failure: EngineError | None = None
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    status = "cancelled"
                    if lens_buf:  # (what cancelling waits for: seconds on a CPU with a large vocabulary)
                        yield Progress(f"cancelled: the logit lens of the last {counted(len(lens_buf), 'token')} first")
                    break
                if not forced and new >= params.max_new_tokens:
                    status = "length"
                    break
                if self.context is not None and block.end >= self.context:
                    status = "context"
                    break
                fresh = out is None
                if fresh:
                    assert pending is not None
                    out = self._forward(pending, cache, steer=steer, attention=attention,
                                        start=block.end - pending.shape[-1])  # fmt: skip
                cache = cache_of(out)
                logits = out.logits[0, -1].float()
                logp = torch.log_softmax(logits, -1)
                is_forced = bool(forced)
                if is_forced:
                    # (a fill, not a copy from the host: a copy waits for the device's queue)
                    chosen = torch.full((), forced.pop(0), dtype=torch.long, device=self.device)
                    slp = nan
                else:
                    chosen, slp = choose(logits, params, gen, nan)
                x = TokenInputs(logp[None], chosen.view(1), slp.view(1), k)
                lensed = hid = None
                if n_layers > 1 and chunk > 0:
                    hs = self.block_outputs(out.hidden_states)  # [1, q, d] each → [L-1, d]
                    # (a step's q is 1: one cat, where an index of each layer was 22 calls; the
                    # prompt's forward: its last position only, not a copy of every position)
                    hid = torch.cat(hs)[:, -1] if hs[0].shape[1] == 1 else torch.stack([h[0, -1] for h in hs])
                    if chunk == 1:
                        inputs = self.lens_inputs(run, chosen.view(1), logp[None])
                        lensed = lens_values(self.lens, hid[None], inputs, names)
                packed = packer.pack(self._step_values(run, x, out, slice(-1, None)), lensed)
                out = None
                row = packed.cpu().numpy()  # the step's one transfer
                packer.check_finite(row, f" at position {block.end - 1}")
                token = int(row[packer.token_at])
                block.add(row, is_forced)
                if hid is not None and chunk > 1:
                    lens_buf.append((hid, logp, chosen.view(1), row))
                if not is_forced:
                    new += 1
                    timed += fresh
                pending = chosen.view(1, 1)
                now = time.perf_counter()
                if lens_buf and len(lens_buf) >= chunk:  # (its values go to steps the run holds)
                    yield from block.flush()
                    yield self._flush_lens(run, branch, packer, lens_buf, lens_start)
                    lens_start = branch.end
                elif block.due(now - last):
                    yield from block.flush()
                last = now
                ended = ending.after(token)
                if ended is not None:
                    status = ended
                    break
        except EngineError as e:
            status, failure = "error", e
        except BaseException:  # stopped at once (a second Ctrl-C): no lens catch-up for the buffered tokens
            lens_buf.clear()
            raise
        finally:
            branch.status = status
            steps = block.flush()  # (kept in the run even when a second Ctrl-C stops it here)
            ev = self._flush_lens(run, branch, packer, lens_buf, lens_start) if lens_buf else None
            seq = run.sequence(branch.id)
            covered = cache_length(cache) if status != "error" else None
            if cache is not None and covered is not None:  # (a state-space model's state: not reusable)
                self.caches.put((run.id, branch.id), cache, seq[:covered], "" if steer is None else steer.key)
        yield from steps
        if ev is not None:
            yield ev
        yield Finished(run.id, branch.id, status, new, time.perf_counter() - t0, timed)
        if failure is not None:
            raise failure  # after Finished: the branch keeps its steps and is saved with status "error"

    def grow_tree(
        self,
        run: Run,
        params: TreeParams,
        cancel: threading.Event | None = None,
        prompt_ids: list[int] | None = None,
        branch: int = 0,
        position: int | None = None,
    ) -> Iterator[Event]:
        """Seed 002's tree search (`engine/hf/tree.py`): from `prompt_ids` into the new, empty
        `run`, or from `position` (default: the end) of the run's `branch`."""
        from tokentui.engine.hf.tree import TreeSearch

        self._check_decodes()
        return TreeSearch(self, run, params, cancel).events(prompt_ids, branch, position)

    def attribute(
        self,
        run: Run,
        branch: int,
        positions: list[int],
        method: str,
        alternative: int | None = None,
        steps: int = 50,
        cancel: threading.Event | None = None,
    ) -> Iterator[Event]:
        from tokentui.engine.hf.attribution import attribute

        if alternative is not None and 0 <= alternative < run.meta.vocab_size:
            # the record names it: its text must be in the run (an id the run never showed had
            # none, and exports and the table's header said log p(''))
            self._note_tokens(run, [alternative])
        return attribute(self.model, run, branch, positions, method, alternative, steps, cancel)

    def _flush_lens(
        self,
        run: Run,
        branch: Branch,
        packer: Packer,
        buf: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]],
        start: int,
    ) -> LensEvent:
        """Lens the buffered positions (hidden states [L-1, d], the model's log-probs [V], the
        token taken, the step's row of host values) in one pass, store the values, and report them."""
        hidden = torch.stack([b[0] for b in buf])  # [n, L-1, d]
        chosen, final = torch.cat([b[2] for b in buf]), torch.stack([b[1] for b in buf])
        rows = np.stack([b[3] for b in buf])
        buf.clear()
        return self._store_lens(run, branch, packer, self._lensed(run, hidden, chosen, final), rows, start)

    def _lensed(
        self, run: Run, hidden: torch.Tensor, chosen: torch.Tensor, final: torch.Tensor
    ) -> dict[str, np.ndarray]:
        """The run's lens measures at layers 1…L−1 of n positions (hidden states [n, L-1, d], the
        tokens taken [n], the model's own log-probs [n, V]), on the host."""
        inputs = self.lens_inputs(run, chosen, final)
        return host_arrays(lens_values(self.lens, hidden, inputs, set(run.layout.names)))

    def _store_lens(
        self, run: Run, branch: Branch, packer: Packer, lensed: dict[str, np.ndarray], rows: np.ndarray, start: int
    ) -> LensEvent:
        """Store `lensed` (n positions from `start`) with layer L from the steps' host `rows`
        ([n, width] of `packer`) into the branch, and report them."""
        host = packer.unpack_rows(rows)
        finals = {name: host[name] for name in lens_names() if name in host}
        values = layer_arrays(lensed, finals, len(rows), run.layout)
        run.set_layer_values(branch.id, start, values)
        added = self._note_tokens(
            run, *(values[m.name] for m in run.layout.measures if m.is_token_id and m.name in values)
        )
        return LensEvent(run.id, branch.id, start, values, added)
