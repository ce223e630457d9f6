"""The one orchestration path: generate, continue, fork and score as jobs over a `Backend`.

A job tokenizes its prompt and forced text once, asks the backend for the work, and is iterated
for its events; `job.run` is the run it works on (the backend's own copy, written only by the
thread iterating the job). The CLI iterates jobs directly; the worker thread iterates them for the
explorer. What should happen *because of* events — saving the run, printing, posting to the UI — is
a subscriber (`drive(job, *subscribers)`), never code inside the decode loop.
Importing this module does not import torch.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import cast

import numpy as np

from tokentui.core import attribution
from tokentui.core.params import GenerationSettings, SamplingParams, TreeParams
from tokentui.core.run import Run
from tokentui.core.steering import SteeringSpec
from tokentui.engine.backend import Backend, Comparer
from tokentui.engine.errors import EngineError
from tokentui.engine.events import (
    Attributed,
    Compared,
    CompareValues,
    Comparing,
    Event,
    Finished,
    RunStarted,
    StepEvent,
    TreeProgress,
    Widened,
    apply_event,
)


class Job:
    """A request to a backend, as a stream of events."""

    name = "job"

    def __init__(self, backend: Backend, cancel: threading.Event | None = None) -> None:
        self.backend = backend
        self.cancel = cancel or threading.Event()
        self.run: Run | None = None

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def events(self) -> Iterator[Event]:
        raise NotImplementedError


def _forced_ids(backend: Backend, text: str) -> list[int]:
    """The ids of a generation's forced text (none for no text)."""
    forced = backend.encode_text(text)
    if text and not forced:
        raise EngineError("the forced text encodes to no tokens")
    return forced


class Generate(Job):
    """A new run from a prompt: score the prompt, then grow the root branch."""

    name = "generate"

    def __init__(
        self,
        backend: Backend,
        prompt: str,
        settings: GenerationSettings,
        cancel: threading.Event | None = None,
        steering: SteeringSpec | None = None,
        encoded: tuple[list[int], str | None] | None = None,
    ) -> None:
        """`encoded`: the prompt's ids and chat template as `backend.encode_prompt` gave them
        already (a batch checks them against the context first: encoding twice was ~1% of a
        batch of short prompts)."""
        super().__init__(backend, cancel)
        self.prompt, self.settings, self.steering = prompt, settings.copy(), steering
        self.encoded = encoded

    def events(self) -> Iterator[Event]:
        st = self.settings
        ids, template = self.encoded or self.backend.encode_prompt(self.prompt, st.chat)
        forced = _forced_ids(self.backend, st.forced)
        self.run = self.backend.new_run(self.prompt, st, template)
        yield from self.backend.generate(self.run, ids, st.sampling, self.cancel, forced, self.steering)


class GenerateGroup(Job):
    """New runs from several prompts of one token length, decoded together (a batch's short
    prompts: one forward per step for all of them); each run is what `Generate` makes of its
    prompt, up to float rounding. `failures`: the error of each run that failed midway, by run id."""

    name = "generate"

    def __init__(
        self,
        backend: Backend,
        prompts: list[tuple[str, list[int], str | None]],
        settings: GenerationSettings,
        cancel: threading.Event | None = None,
    ) -> None:
        """`prompts`: (prompt, its ids, its chat template) as `backend.encode_prompt` gave them."""
        super().__init__(backend, cancel)
        self.prompts, self.settings = prompts, settings.copy()
        self.runs: list[Run] = []
        self.failures: dict[str, EngineError] = {}

    def events(self) -> Iterator[Event]:
        st = self.settings
        forced = _forced_ids(self.backend, st.forced)
        self.runs = [self.backend.new_run(prompt, st, template) for prompt, _ids, template in self.prompts]
        ids = [ids for _prompt, ids, _template in self.prompts]
        yield from self.backend.generate_group(self.runs, ids, st.sampling, self.cancel, forced, self.failures)


class Continue(Job):
    """More tokens at the end of a branch."""

    name = "continue"

    def __init__(
        self,
        backend: Backend,
        run: Run,
        branch_id: int,
        sampling: SamplingParams,
        cancel: threading.Event | None = None,
        steering: SteeringSpec | None = None,
    ) -> None:
        """`steering`: the steering at hand; a branch continues as it was grown (steered or not)."""
        super().__init__(backend, cancel)
        self.run, self.branch_id, self.sampling, self.steering = run, branch_id, sampling.copy(), steering

    def events(self) -> Iterator[Event]:
        assert self.run is not None
        self.backend.check_run(self.run)
        yield from self.backend.continue_branch(self.run, self.branch_id, self.sampling, self.cancel, self.steering)


class Fork(Job):
    """A new branch: at `position` of branch `parent`, take the given tokens (or the tokens of
    `text`), then continue."""

    name = "branch"

    def __init__(
        self,
        backend: Backend,
        run: Run,
        parent: int,
        position: int,
        sampling: SamplingParams,
        token_ids: list[int] | None = None,
        text: str = "",
        cancel: threading.Event | None = None,
        steering: SteeringSpec | None = None,
    ) -> None:
        super().__init__(backend, cancel)
        self.run, self.parent, self.position, self.sampling = run, parent, position, sampling.copy()
        self.token_ids, self.text, self.steering = token_ids, text, steering

    def events(self) -> Iterator[Event]:
        assert self.run is not None
        self.backend.check_run(self.run)
        ids = list(self.token_ids) if self.token_ids else self.backend.encode_text(self.text)
        if not ids:
            raise EngineError("a branch needs at least one token to take")
        yield from self.backend.fork(
            self.run, self.parent, self.position, ids, self.sampling, self.cancel, self.steering
        )


class Resample(Fork):
    """A new branch that samples the token at `position` of `parent` afresh (a new seed; the
    session's sampler, or plain sampling at temperature 1 when the session is greedy)."""

    name = "resample"

    def __init__(
        self,
        backend: Backend,
        run: Run,
        parent: int,
        position: int,
        sampling: SamplingParams,
        cancel: threading.Event | None = None,
        steering: SteeringSpec | None = None,
    ) -> None:
        super().__init__(backend, run, parent, position, sampling, cancel=cancel, steering=steering)
        if self.sampling.greedy:
            self.sampling.temperature = 1.0
        self.sampling.seed = secrets.randbits(31)

    def events(self) -> Iterator[Event]:
        assert self.run is not None
        self.backend.check_run(self.run)
        yield from self.backend.fork(
            self.run, self.parent, self.position, [], self.sampling, self.cancel, self.steering
        )


class Score(Job):
    """Teacher-forced scoring of a text (or of given ids): every position's measures at once."""

    name = "score"

    def __init__(
        self,
        backend: Backend,
        text: str | None = None,
        k: int = 20,
        ids: list[int] | None = None,
        settings: GenerationSettings | None = None,
        steering: SteeringSpec | None = None,
        progress: Callable[[str, float], None] | None = None,
    ) -> None:
        """`settings`: what else to record (per-layer top tokens, attention entropy); `k` wins.
        `progress(text, fraction)`: told during the one long step (a long text's lens), which
        yields no events until it ends."""
        super().__init__(backend)
        self.text, self.k, self.ids, self.settings, self.steering = text, k, ids, settings, steering
        self.progress = progress

    def events(self) -> Iterator[Event]:
        t0 = time.perf_counter()
        ids = self.ids
        if ids is None:
            if not self.text or not self.text.strip():
                raise EngineError("the text is empty")
            ids, _ = self.backend.encode_prompt(self.text, what="the text")
        self.run = self.backend.score_ids(ids, self.k, self.text, self.settings, self.steering, self.progress)
        yield RunStarted(self.run.copy())
        yield Finished(self.run.id, 0, "scored", 0, time.perf_counter() - t0)


class TreeSearch(Job):
    """Seed 002's tree search: from a prompt (a new run; `settings` gives k and the chat
    template) or from `position` (default: its end) of `branch` of an existing `run`. Every node
    becomes a one-step branch; the search's facts go to `run.meta.tree` (`core/tree.py`). Cancel
    stops it between two nodes, keeping a consistent tree."""

    name = "tree"

    def __init__(
        self,
        backend: Backend,
        params: TreeParams,
        prompt: str | None = None,
        settings: GenerationSettings | None = None,
        run: Run | None = None,
        branch: int = 0,
        position: int | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        super().__init__(backend, cancel)
        if (prompt is None) == (run is None):
            raise EngineError("a tree search starts from a prompt or from a run, not both")
        self.params, self.prompt = params, prompt
        self.settings = (settings or GenerationSettings()).copy()
        self.run, self.branch, self.position = run, branch, position

    def events(self) -> Iterator[Event]:
        self.params.check()
        why = self.backend.capabilities.why_not("full_distribution", self.backend.kind)
        if why is not None:
            raise EngineError(f"a tree search needs the whole next-token distribution: {why}")
        if self.prompt is not None:
            ids, template = self.backend.encode_prompt(self.prompt, self.settings.chat)
            self.run = self.backend.new_run(self.prompt, self.settings, template, mode="tree")
            if not self.settings.forced:
                yield from self.backend.grow_tree(self.run, self.params, self.cancel, prompt_ids=ids)
                return
            # seed 002's guided generation: the answer starts with the forced text (the root
            # branch, its tokens marked forced), the tree grows from its end
            forced = _forced_ids(self.backend, self.settings.forced)
            context = self.backend.info.context_length
            if context is not None and len(ids) + len(forced) >= context:  # (said before minutes of forcing it)
                raise EngineError(
                    f"the prompt and the forced text have {len(ids) + len(forced)} tokens: the model's context "
                    f"({context} positions) leaves no room for a tree after them"
                )
            only_forced = replace(self.settings.sampling, max_new_tokens=0)
            yield from self.backend.generate(self.run, ids, only_forced, self.cancel, forced)
            if self.run.branches[0].n_forced < len(forced):  # cancelled, or the context ended, before the root
                return
            yield from self.backend.grow_tree(self.run, self.params, self.cancel, None, 0, None)
        else:
            assert self.run is not None
            self.backend.check_run(self.run)
            self.run.branch(self.branch)  # a missing branch is a one-line RunError before any work
            yield from self.backend.grow_tree(self.run, self.params, self.cancel, None, self.branch, self.position)


class Attribute(Job):
    """Gradient (or attention) attribution of tokens of a branch to the positions before them
    (seed 004, inseq's methods): the record goes into the run's `attributions`. Cancel keeps the
    positions finished before it."""

    name = "attribute"

    def __init__(
        self,
        backend: Backend,
        run: Run,
        branch: int,
        positions: list[int],
        method: str = attribution.DEFAULT_METHOD,
        alternative: int | None = None,
        steps: int = attribution.DEFAULT_STEPS,
        cancel: threading.Event | None = None,
    ) -> None:
        super().__init__(backend, cancel)
        self.run, self.branch, self.positions = run, branch, list(positions)
        self.method, self.alternative, self.steps = method, alternative, steps

    def events(self) -> Iterator[Event]:
        assert self.run is not None
        m = attribution.method(self.method)
        why = self.backend.capabilities.why_not(m.needs, self.backend.kind)
        if why is not None:
            raise EngineError(f"{m.label} attribution is not available: {why}")
        self.backend.check_run(self.run)
        self.run.branch(self.branch)  # a missing branch is a one-line RunError before any work
        yield from self.backend.attribute(
            self.run, self.branch, self.positions, m.name, self.alternative, self.steps, self.cancel
        )


class SteerCompare(Job):
    """The same prompt (or text) run standard and steered, as one run with two branches
    (`core/steer_compare.py`). From a prompt: branch 0 is the standard generation, branch 1 forks it
    at the prompt's end and generates again, steered, with the same sampler, seed and forced
    tokens. From a text (`text`): both teacher-forced, branch 1 steered, from position 1 on.
    Cancel keeps what was made (a cancelled standard branch is not followed by a steered one)."""

    name = "compare"

    def __init__(
        self,
        backend: Backend,
        steering: SteeringSpec,
        prompt: str | None = None,
        settings: GenerationSettings | None = None,
        text: str | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        super().__init__(backend, cancel)
        if (prompt is None) == (text is None):
            raise EngineError("a comparison starts from a prompt or from a text, not both")
        self.steering, self.prompt, self.text = steering, prompt, text
        self.settings = (settings or GenerationSettings()).copy()

    def events(self) -> Iterator[Event]:
        from tokentui.core.steer_compare import paired_scores

        why = self.backend.capabilities.why_not("hooks", self.backend.kind)
        if why is not None:
            raise EngineError(f"steering needs forward hooks: {why}")
        st = self.settings
        if self.text is not None:
            t0 = time.perf_counter()
            if not self.text.strip():
                raise EngineError("the text is empty")
            ids, _ = self.backend.encode_prompt(self.text, what="the text")
            standard = self.backend.score_ids(ids, st.k, self.text, st)
            steered = self.backend.score_ids(ids, st.k, self.text, st, steering=self.steering)
            self.run = paired_scores(standard, steered)
            yield RunStarted(self.run.copy())
            for b in self.run.branches:
                yield Finished(self.run.id, b.id, "scored", 0, time.perf_counter() - t0)
            return
        assert self.prompt is not None
        ids, template = self.backend.encode_prompt(self.prompt, st.chat)
        forced = _forced_ids(self.backend, st.forced)
        self.run = self.backend.new_run(self.prompt, st, template)
        yield from self.backend.generate(self.run, ids, st.sampling, self.cancel, list(forced))
        if self.cancel.is_set() or self.run.branches[0].status == "error":
            return
        yield from self.backend.fork(
            self.run, 0, len(self.run.prompt), list(forced), st.sampling, self.cancel, self.steering
        )


class Compare(Job):
    """The explorer's live comparison with a second model (`explore --compare B`): each of
    `branches` is teacher-forced, its whole sequence, under model A and model B (`pair`), and
    the comparison columns of its positions still unknown are filled (the prompt's once, an
    ancestor's shared part once; steered segments never: core/compared.py). The run is widened
    first. Each filled segment is a `CompareValues` event, applied to the job's run by the same
    `apply_event` as the receiver's copy; cancel stops between two branches."""

    name = "compare-live"

    def __init__(self, pair: Comparer, run: Run, branches: list[int], cancel: threading.Event | None = None) -> None:
        super().__init__(cast(Backend, None), cancel)
        self.pair, self.run, self.branches = pair, run, sorted(set(branches))

    def events(self) -> Iterator[Event]:
        from tokentui.core import compared

        run = self.run
        assert run is not None
        t0 = time.perf_counter()
        if not compared.same_model(run.meta.model_b, self.pair.record) or any(
            n not in run.layout.names for n in compared.NAMES
        ):
            ev: Event = Widened(run.id, dict(self.pair.record))
            apply_event(run, ev)
            yield ev
        done: list[int] = []
        filled = 0
        pending = [bid for bid in self.branches if bid < len(run.branches) and compared.missing(run, bid)]
        for i, bid in enumerate(pending):
            if self.cancel.is_set():
                break
            todo = compared.missing(run, bid)  # (again: a branch compared before shares this one's prefix)
            if not todo:
                continue
            yield Comparing(run.id, bid, i, len(pending))
            ids = [int(i) for i in run.sequence(bid)]
            values = self.pair.compare_ids(ids, run.k)
            for seg, first, end in todo:
                part = {name: v[first - 1 : end - 1] for name, v in values.items()}
                top = part.get("topk_ids_b")
                new = run.tokens.missing(np.unique(top).tolist()) if top is not None else []
                ev = CompareValues(run.id, seg, first, part, self.pair.token_bytes([i for i in new if i >= 0]))
                apply_event(run, ev)
                yield ev
                filled += end - first
            done.append(bid)
        yield Compared(run.id, tuple(done), filled, time.perf_counter() - t0, self.cancel.is_set())


Subscriber = Callable[[Job, Event], None]


def drive(job: Job, *subscribers: Subscriber) -> None:
    """Run a job to its end, handing every event to every subscriber in order. An error ends the
    job after the events it already produced (a failed branch has sent its Finished)."""
    for ev in job:
        for sub in subscribers:
            sub(job, ev)


class Autosave:
    """Saves the job's run at the end of every branch (whatever its status, errors included), at
    the end of a tree search, after an attribution, and every `seconds` while tokens arrive, so a long generation
    survives a crash. (A tree search's node-branches end without a Finished each: saving after
    every node would rewrite the file hundreds of times.)"""

    def __init__(
        self, save: Callable[[Run], object], seconds: float = 10.0, warn: Callable[[str], None] | None = None
    ) -> None:
        """`warn`: told the first time a periodic save fails (once until one succeeds again), so a
        full disk is known while the job runs, not only when its final save fails."""
        self.save, self.seconds, self.warn = save, seconds, warn
        self._last = time.monotonic()
        self._failing = False

    def __call__(self, job: Job, ev: Event) -> None:
        if job.run is None or not job.run.branches:  # (a search cancelled before its first node: no run)
            return
        ended = (
            isinstance(ev, Finished)
            or (isinstance(ev, TreeProgress) and ev.stopped != "running")
            or (isinstance(ev, Attributed) and ev.record is not None)
        )
        if not (ended or (isinstance(ev, StepEvent) and time.monotonic() - self._last > self.seconds)):
            return
        self._last = time.monotonic()
        try:
            self.save(job.run)
        except OSError as e:
            # a periodic save that fails (a full disk) must not end the generation: what it made is
            # in memory and the final save may succeed (space freed); a final save that fails says
            # the run is not saved, and where
            where = f" (in {os.path.dirname(e.filename)})" if isinstance(e.filename, str) else ""
            if ended:
                raise EngineError(f"the run could not be saved: {e.strerror or e}{where}") from None
            if self.warn is not None and not self._failing:
                self.warn(f"autosave failed: {e.strerror or e}{where}; the run is kept in memory, saving is retried")
            self._failing = True
            return
        self._failing = False
