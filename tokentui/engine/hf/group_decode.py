"""Several prompts of one token length decoded together, each into a run of its own: what
`tokentui batch` does with short prompts (`HFBackend.generate_group`).

A decode step of a small model is launches and Python, not arithmetic: GPT-2 small's step on a GPU
is a few hundred kernel launches however many rows it has, and on a CPU `gpt2-narrow` (which stands
in for it) took 3.0 ms a step for one row and 3.6 ms for sixteen. A batch of short prompts decoded
one at a time spent nearly all its time there. So the rows of prompts of one token length share
each forward. Equal lengths need no padding: no attention mask and no position ids to get right for
each model family, and every row's values are the ones its prompt alone gives, up to float
rounding (a matrix product over sixteen rows may add in another order than over one, so at a
greedy near-tie a row can take the other token: `batch --group 1` decodes each prompt alone, as
`generate` does).

Each run records what `HFBackend.generate` records for its prompt: the prompt's steps, one root
branch, every step's measures and, every `lens_chunk` steps, the lens values of its new steps (all
rows' lensed in one pass). A row that ends (end of text, a stop string, a value that is not
finite) records no more while the others go on; its forward row runs on until the group ends
(taking rows out of the KV cache would cost more than it saves at these sizes).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from tokentui.core.display import counted
from tokentui.core.params import SamplingParams
from tokentui.core.run import Branch, Run
from tokentui.engine.errors import EngineError
from tokentui.engine.events import BranchStarted, Event, Finished, LensEvent, Progress, RunStarted
from tokentui.engine.hf.backend import cache_of
from tokentui.engine.hf.ending import Ending, context_notice
from tokentui.engine.hf.measures import Packer, TokenInputs
from tokentui.engine.hf.sampling import choose, make_generator
from tokentui.engine.hf.step_block import StepBlock

if TYPE_CHECKING:
    from tokentui.engine.hf.backend import HFBackend

# the most values the lens's buffer holds for a group (256 MB of float32; about twice that while it
# is lensed): a step adds each row's log-probs and hidden states (vocabulary + layers × width), 16
# rows' 16× what one prompt's does; past it the lens runs sooner than every `lens_chunk` steps (its
# values are the same)
LENS_BUFFER_ELEMENTS = 1 << 26


@dataclass
class _Row:
    """One prompt of the group: its run, root branch and what its decoding has come to."""

    run: Run
    branch: Branch
    block: StepBlock
    gen: torch.Generator | None
    ending: Ending
    lens_start: int  # the first of its steps the lens has not reached
    status: str | None = None  # None: still decoding
    failure: EngineError | None = None
    new: int = 0  # generated tokens
    timed: int = 0  # of them, those whose forward ran in the loop (not the prompts')


class _EndToEnd:
    """The group's prompt forward ([rows, n, …]) as one forward over the prompts laid end to end
    ([1, rows × n, …], views: no copy), as `HFBackend._scored` reads a forward: every prompt's
    positions scored and lensed in one pass (row by row, each prompt cost a transfer or two and a
    pass of the lens of its own). The position that ends a prompt predicts the next one's first
    token: its values are dropped (`row`)."""

    def __init__(self, out) -> None:
        logits = out.logits
        self.n = logits.shape[1]
        self.logits = logits.reshape(1, -1, logits.shape[-1])
        hs = out.hidden_states
        self.hidden_states = None if hs is None else tuple(h.reshape(1, -1, h.shape[-1]) for h in hs)

    def row(self, values: dict[str, np.ndarray], r: int) -> dict[str, np.ndarray]:
        """Prompt r's scored positions (1…n−1) among the end-to-end values."""
        return {name: v[r * self.n : (r + 1) * self.n - 1] for name, v in values.items()}


class GroupDecode:
    def __init__(
        self,
        backend: HFBackend,
        runs: list[Run],
        prompt_ids: list[list[int]],
        params: SamplingParams,
        cancel: threading.Event | None,
        forced: list[int],
        failures: dict[str, EngineError],
    ) -> None:
        """`runs`: new, empty runs of one layout (one settings), one per prompt of `prompt_ids`
        (all of one length). `failures`: as `Backend.generate_group` says (a run that failed alone,
        by id; a forward of the group that fails raises once every run has ended)."""
        if not runs or len(runs) != len(prompt_ids):
            raise EngineError("a group decodes one run per prompt, at least one")
        if len({len(ids) for ids in prompt_ids}) != 1:
            raise EngineError("a group's prompts must have one token length")
        if any(run.branches for run in runs):
            raise EngineError("a group decodes into new runs only")
        self.b, self.runs, self.prompt_ids, self.params = backend, runs, prompt_ids, params
        self.cancel = cancel or threading.Event()
        self.forced, self.failures = list(forced), failures
        self.packer = Packer(runs[0].layout)

    def events(self) -> Iterator[Event]:
        with torch.inference_mode():
            yield from self._events()

    def _events(self) -> Iterator[Event]:
        b, params = self.b, self.params
        replace(params, max_new_tokens=max(params.max_new_tokens, 1 if self.forced else 0)).check()
        if any(b._attention(run) for run in self.runs):
            raise EngineError(
                "attention entropy is recorded one prompt at a time (its forwards run in eager attention)"
            )
        b._check_context(len(self.prompt_ids[0]), "the prompt")
        out = b._forward(torch.tensor(self.prompt_ids, device=b.device))
        flat = _EndToEnd(out)
        scored = None
        if flat.n > 1:
            ids = [t for row in self.prompt_ids for t in row]
            scored = yield from b._scored(self.runs[0], ids, flat, self.cancel)
        rows: list[_Row] = []
        for r, (run, ids) in enumerate(zip(self.runs, self.prompt_ids, strict=True)):
            b._record_prompt(run, ids, None if scored is None else flat.row(scored, r))
            yield RunStarted(run.copy())
            branch = run.add_branch(None, len(run.prompt), sampling=asdict(params))
            yield BranchStarted(run.id, branch.id, None, branch.fork_position, branch.sampling, branch.steering)
            block = StepBlock(run, branch, self.packer, b._note_tokens, b.step_latency)
            ending = Ending(b.lm.eos_ids, params.stop, b._token_bytes)
            rows.append(_Row(run, branch, block, make_generator(params, b.device), ending, branch.end))
        yield from self._decode(rows, out)

    def _decode(self, rows: list[_Row], out) -> Iterator[Event]:
        b, params, packer, forced = self.b, self.params, self.packer, self.forced
        run0, n = rows[0].run, len(rows)
        nan = torch.full((n,), math.nan, device=b.device)
        lensing = run0.n_layers > 1 and b.lens_chunk > 0
        lens_every = b.lens_chunk  # (fewer when a step's buffered values are many: below)
        lens_buf: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]] = []
        end = rows[0].branch.end  # the next step's position (one for every row)
        notice = context_notice(b.context, end, len(forced) + params.max_new_tokens, "these runs")
        if notice is not None:
            yield notice
        t0 = last = time.perf_counter()
        new = 0
        status = "length"
        failure: EngineError | None = None
        cache = None
        pending: torch.Tensor | None = None
        try:
            while True:
                if self.cancel.is_set():
                    status = "cancelled"
                    if lens_buf:
                        yield Progress(f"cancelled: the logit lens of the last {counted(len(lens_buf), 'token')} first")
                    break
                if not forced and new >= params.max_new_tokens:
                    status = "length"
                    break
                if b.context is not None and end >= b.context:
                    status = "context"
                    break
                fresh = out is None
                if fresh:
                    assert pending is not None
                    out = b._forward(pending, cache)
                cache = cache_of(out)
                logits = out.logits[:, -1].float()
                logp = torch.log_softmax(logits, -1)
                is_forced = bool(forced)
                if is_forced:
                    chosen = torch.full((n,), forced.pop(0), dtype=torch.long, device=b.device)
                    slp = nan
                elif params.greedy:
                    chosen, slp = logits.argmax(-1), nan
                else:  # (each row its own generator: the tokens its prompt alone would sample)
                    picks = [choose(logits[r], params, row.gen) for r, row in enumerate(rows)]
                    chosen, slp = torch.stack([c for c, _ in picks]), torch.stack([p for _, p in picks])
                x = TokenInputs(logp, chosen, slp, run0.k)
                hid = None
                if lensing:  # [rows, L-1, d]
                    hid = torch.stack([h[:, -1] for h in b.block_outputs(out.hidden_states)], dim=1)
                packed = packer.pack_rows(b._step_values(run0, x), n)
                out = None
                host = packed.cpu().numpy()  # the step's one transfer, for every row
                for r, row in enumerate(rows):
                    if row.status is None:
                        self._take(row, host[r], is_forced, fresh, end)
                if hid is not None:
                    if not lens_buf:
                        lens_every = min(b.lens_chunk, max(1, LENS_BUFFER_ELEMENTS // (hid.numel() + logp.numel())))
                    lens_buf.append((hid, logp, chosen, host))
                new += not is_forced
                end += 1
                pending = chosen.view(n, 1)
                now = time.perf_counter()
                if lens_buf and len(lens_buf) >= lens_every:
                    for row in rows:
                        yield from row.block.flush()
                    yield from self._flush_lens(rows, lens_buf)
                else:
                    for row in rows:
                        if row.block.due(now - last):
                            yield from row.block.flush()
                last = now
                if all(row.status is not None for row in rows):
                    break
        except EngineError as e:  # (a forward of the whole group: raised after the runs end, below)
            status, failure = "error", e
        except BaseException:  # stopped at once (a second Ctrl-C): no lens catch-up for the buffered tokens
            lens_buf.clear()
            raise
        finally:
            for row in rows:
                row.branch.status = row.status or status
            steps = [ev for row in rows for ev in row.block.flush()]
            lensed = self._flush_lens(rows, lens_buf) if lens_buf else []
        yield from steps
        yield from lensed
        seconds = time.perf_counter() - t0  # (the group's: every row's Finished has it)
        for row in rows:
            if row.failure is not None:
                self.failures[row.run.id] = row.failure
            yield Finished(row.run.id, row.branch.id, row.branch.status, row.new, seconds, row.timed)
        if failure is not None:
            raise failure  # (as alone, after Finished: the runs keep their steps, status "error")

    def _take(self, row: _Row, values: np.ndarray, is_forced: bool, fresh: bool, end: int) -> None:
        """Record a row's step (its host `values`) and whether its run ends there."""
        try:
            self.packer.check_finite(values, f" at position {end - 1}")
        except EngineError as e:
            row.status, row.failure = "error", e
            return
        row.block.add(values, is_forced)
        if not is_forced:
            row.new += 1
            row.timed += fresh
        row.status = row.ending.after(int(values[self.packer.token_at]))

    def _flush_lens(
        self, rows: list[_Row], buf: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]]
    ) -> list[LensEvent]:
        """Lens the buffered steps ([rows, …] each: hidden states, log-probs, tokens, host values)
        that each row recorded, in one pass, and store each run's (their steps are in the runs)."""
        steps = len(buf)
        owed = [(r, row, row.branch.end - row.lens_start) for r, row in enumerate(rows)]
        owed = [(r, row, m) for r, row, m in owed if m > 0]
        hidden = torch.stack([x[0] for x in buf], dim=1).flatten(0, 1)  # [rows × steps, L-1, d]
        final = torch.stack([x[1] for x in buf], dim=1).flatten(0, 1)  # [rows × steps, V]
        chosen = torch.stack([x[2] for x in buf], dim=1).flatten()
        host = np.stack([x[3] for x in buf], axis=1)  # [rows, steps, width]
        buf.clear()
        if not owed:
            return []
        if len(owed) < len(rows) or any(m < steps for _r, _row, m in owed):  # (rows that ended: not lensed)
            at = torch.tensor([r * steps + s for r, _row, m in owed for s in range(m)], device=hidden.device)
            hidden, final, chosen = hidden[at], final[at], chosen[at]
        lensed = self.b._lensed(rows[0].run, hidden, chosen, final)
        events, at0 = [], 0
        for r, row, m in owed:
            part = {name: v[at0 : at0 + m] for name, v in lensed.items()}
            events.append(self.b._store_lens(row.run, row.branch, self.packer, part, host[r, :m], row.lens_start))
            row.lens_start += m
            at0 += m
        return events
