"""The model-owning worker thread: commands in through a queue, events out through a callback.

Only this thread touches the backend and the runs it grows; it runs the same jobs as the CLI
(`engine/jobs.py`), with autosave as a subscriber. Each submitted command gets its own cancel
`threading.Event`, checked every step: `cancel()` sets the running command's and those of the
commands still queued, so a cancel that arrives before the worker has picked a command up is not
lost, and it never reaches a command submitted after it. It takes effect within one step and
keeps the partial branch. The callback is called on the worker thread;
the TUI's callback must only `post_message`. Importing this module does not import torch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tokentui.core.params import GenerationSettings, RunError, SamplingParams, TreeParams
from tokentui.core.run import Run
from tokentui.core.steering import SteeringSpec
from tokentui.engine import jobs
from tokentui.engine.backend import Backend, Comparer, ModelSpec
from tokentui.engine.errors import EngineError, missing_package
from tokentui.engine.events import (
    BranchStarted,
    Event,
    Failed,
    Finished,
    Loaded,
    PairLoaded,
    PairReleased,
    Progress,
    RunStarted,
    Saved,
    SaveFailed,
    Widened,
    apply_event,
)
from tokentui.engine.jobs import Job
from tokentui.store.header import RunFileError


@dataclass
class Load:
    spec: ModelSpec


@dataclass
class Generate:
    prompt: str
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    steering: SteeringSpec | None = None  # steer the new run (core/steering.py)


@dataclass
class Continue:
    branch_id: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    steering: SteeringSpec | None = None  # the steering at hand: a steered branch continues only with its own


@dataclass
class Fork:
    """Grow a new branch of the open run at `position`, after `parent`'s tokens before it (its
    parent: the branch that holds them, `Run.add_branch`)."""

    parent: int
    position: int
    token_ids: list[int] | None = None  # take these tokens …
    text: str = ""  # … or the tokens of this text
    sampling: SamplingParams = field(default_factory=SamplingParams)
    steering: SteeringSpec | None = None  # steer the new branch


@dataclass
class Resample:
    """Grow a new branch of the open run that samples the token at `position` of `parent` anew
    (its parent as for Fork)."""

    parent: int
    position: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    steering: SteeringSpec | None = None  # steer the new branch


@dataclass
class Score:
    text: str
    k: int = 20


@dataclass
class Tree:
    """Grow a tree with seed 002's search (`jobs.TreeSearch`): from `prompt` (a new run; `settings`
    gives k and the chat template), or, without one, from `position` (None: its end) of `branch`
    of the open run. `Worker.cancel()` stops it between two nodes and keeps the tree."""

    params: TreeParams = field(default_factory=TreeParams)
    prompt: str | None = None
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    branch: int = 0
    position: int | None = None


@dataclass
class Attribute:
    """Attribute `positions` of `branch` of the open run (`jobs.Attribute`)."""

    branch: int
    positions: list[int]
    method: str = "gradient-norm"
    alternative: int | None = None
    steps: int = 50


@dataclass
class Adopt:
    """Work on an existing run (e.g. one reopened from the cache) from now on. The worker takes a
    copy; the sender follows the worker's changes through the events."""

    run: Run


@dataclass
class SteerCompare:
    """A new run from `prompt`: branch 0 standard, branch 1 steered by `steering` (`jobs.SteerCompare`)."""

    prompt: str
    steering: SteeringSpec
    settings: GenerationSettings = field(default_factory=GenerationSettings)


@dataclass
class LoadPair:
    """Load `spec` as model B beside the loaded model (`explore --compare B`): from now on every
    job that adds tokens is followed by a `jobs.Compare` of the branches it touched, and the open
    run (if any) is compared at once. A B that fails to load leaves the comparison as it was."""

    spec: ModelSpec


Command = Load | Generate | Continue | Fork | Resample | Score | Tree | Attribute | Adopt | SteerCompare | LoadPair


def leave_a_core() -> int | None:
    """Run torch's operators on one thread fewer than it would (never fewer than one), unless the
    user chose the number (OMP_NUM_THREADS, MKL_NUM_THREADS). Returns the number before, or None
    when nothing changed. On a 2-core machine the explorer drew the screen on a core torch's two
    threads were using, and generated faster with one of them (the demo model 128 → 146 tokens/s,
    SmolLM2 the same: benchmarks/explorer_generate.py). Called on the worker's thread: a thread
    that has run torch keeps its own number (the UI's is untouched), one started later takes this."""
    import os

    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        return None
    import torch

    n = torch.get_num_threads()
    if n < 2:
        return None
    torch.set_num_threads(n - 1)
    return n


class Worker:
    def __init__(
        self,
        callback: Callable[[Event], None],
        save_dir: Path | None = None,
        backend: Backend | None = None,
        autosave_seconds: float = 10.0,
        spare_core: bool = False,
    ) -> None:
        """`backend`: a model already open (else a `Load` command opens one). `spare_core`: the
        caller's thread draws a UI while the model runs: a model loaded on the CPU leaves it a core
        (`leave_a_core`) until the worker stops."""
        self.callback = callback
        self.spare_core = spare_core
        self._threads_before: int | None = None  # torch's intra-op threads before leave_a_core
        self.save_dir = save_dir
        self.backend = backend
        self.autosave_seconds = autosave_seconds
        self.run: Run | None = None
        self.pair: Comparer | None = None  # model B beside the backend's (LoadPair)
        self._lock = threading.Lock()
        self._live: list[threading.Event] = []  # cancel events of the running and queued commands
        self._queue: queue.Queue[tuple[Command, threading.Event] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="tokentui-model", daemon=True)

    def start(self) -> Worker:
        self._thread.start()
        return self

    def submit(self, cmd: Command) -> None:
        """Queue `cmd` with a cancel event of its own (see `cancel`)."""
        cancel = threading.Event()
        with self._lock:
            self._live.append(cancel)
        self._queue.put((cmd, cancel))

    def cancel(self) -> None:
        """Cancel what was submitted so far: the running command and those waiting in the queue
        (a command submitted later runs normally)."""
        with self._lock:
            for event in self._live:
                event.set()

    def stop(self) -> None:
        """Cancel everything submitted and end the thread once the running command has finished
        (its job keeps what it made, and the run is saved as after any job); returns at once."""
        self.cancel()
        self._queue.put(None)

    @property
    def stopped(self) -> bool:
        """The thread has ended (or never started): the process may exit. One that exits while the
        thread is inside torch aborts, losing what the job made since its last save."""
        return not self._thread.is_alive()

    def shutdown(self, timeout: float = 5.0) -> None:
        self.stop()
        self._thread.join(timeout)

    # --- the thread ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                if self._threads_before is not None:
                    import torch

                    torch.set_num_threads(self._threads_before)
                return
            cmd, cancel = item
            try:
                self._handle(cmd, cancel)
            except (EngineError, RunError, RunFileError, ValueError) as e:
                self.callback(Failed(type(cmd).__name__, str(e)))
            except OSError as e:  # a save that could not be written (disk full, folder gone …)
                self.callback(Failed(type(cmd).__name__, f"could not save the run: {e.strerror or e}"))
            except Exception as e:  # noqa: BLE001 - the thread must survive anything and say what happened
                missing = missing_package(e)  # (torch not installed: the run files still open)
                why = str(missing) if missing is not None else f"unexpected {type(e).__name__}: {e}"
                self.callback(Failed(type(cmd).__name__, why))
            finally:
                with self._lock:
                    self._live.remove(cancel)

    def _save(self, run: Run) -> None:
        if self.save_dir is None:
            return
        from tokentui.store.cache_writes import save_in_cache

        saved = save_in_cache(run, self.save_dir)
        self.callback(Saved(run.id, str(saved.path), saved.note))

    def _save_failed(self, message: str) -> None:
        self.callback(SaveFailed(message))

    def _need_backend(self) -> Backend:
        if self.backend is None:
            raise EngineError("no model is loaded")
        return self.backend

    def _need_run(self) -> Run:
        if self.run is None:
            raise EngineError("no run is open")
        return self.run

    def _job(self, cmd: Command, cancel: threading.Event) -> Job | None:
        if isinstance(cmd, Generate):
            return jobs.Generate(self._need_backend(), cmd.prompt, cmd.settings, cancel, cmd.steering)
        if isinstance(cmd, Continue):
            b, run = self._need_backend(), self._need_run()
            return jobs.Continue(b, run, cmd.branch_id, cmd.sampling, cancel, cmd.steering)
        if isinstance(cmd, Fork):
            b, run = self._need_backend(), self._need_run()
            return jobs.Fork(
                b, run, cmd.parent, cmd.position, cmd.sampling, cmd.token_ids, cmd.text, cancel, cmd.steering
            )
        if isinstance(cmd, Resample):
            b, run = self._need_backend(), self._need_run()
            return jobs.Resample(b, run, cmd.parent, cmd.position, cmd.sampling, cancel, cmd.steering)
        if isinstance(cmd, SteerCompare):
            return jobs.SteerCompare(self._need_backend(), cmd.steering, cmd.prompt, cmd.settings, cancel=cancel)
        if isinstance(cmd, Score):
            return jobs.Score(self._need_backend(), cmd.text, cmd.k)
        if isinstance(cmd, Tree):
            on = None if cmd.prompt is not None else self._need_run()
            return jobs.TreeSearch(
                self._need_backend(), cmd.params, cmd.prompt, cmd.settings, on, cmd.branch, cmd.position, cancel
            )
        if isinstance(cmd, Attribute):
            b, run = self._need_backend(), self._need_run()
            return jobs.Attribute(b, run, cmd.branch, cmd.positions, cmd.method, cmd.alternative, cmd.steps, cancel)
        return None

    def _handle(self, cmd: Command, cancel: threading.Event) -> None:
        job = self._job(cmd, cancel)
        if job is not None:

            def keep_run(job: Job, ev: Event) -> None:
                if isinstance(ev, RunStarted):
                    self.run = job.run

            def forward(job: Job, ev: Event) -> None:
                self.callback(ev)
                if isinstance(ev, RunStarted) and self.pair is not None and job.run is not None:
                    # comparing: a new run has the comparison columns from the start (unknown until
                    # compared), widened here while its job waits at this event
                    widened = Widened(job.run.id, dict(self.pair.record))
                    apply_event(job.run, widened)
                    self.callback(widened)

            touched: list[int] = []  # the branches the job grew (compared after it)

            def track(job: Job, ev: Event) -> None:
                if isinstance(ev, (BranchStarted, Finished)) and job.run is not None and ev.run_id == job.run.id:
                    touched.append(ev.branch_id)

            # forward first: the UI hears of a finished branch even when saving it then fails
            jobs.drive(
                job, keep_run, forward, track, jobs.Autosave(self._save, self.autosave_seconds, self._save_failed)
            )
            if self.pair is not None and touched and job.run is not None:
                self._compare(job.run, touched)
        elif isinstance(cmd, LoadPair):
            t0 = time.perf_counter()
            self.pair = self._replace_pair(cmd.spec)
            i = self.pair.info_b
            self.callback(PairLoaded(i.name, i.device, i.dtype, time.perf_counter() - t0, dict(self.pair.record)))
            if self.run is not None:
                self._compare(self.run, [b.id for b in self.run.branches])
        elif isinstance(cmd, Load):
            from tokentui.engine.backend import open_backend

            t0 = time.perf_counter()
            self.backend = open_backend(cmd.spec, progress=lambda m: self.callback(Progress(m)))
            i = self.backend.info
            if self.spare_core and i.device.partition(":")[0] == "cpu" and self._threads_before is None:
                self._threads_before = leave_a_core()
            self.callback(
                Loaded(
                    i.name,
                    i.device,
                    i.dtype,
                    i.n_layers,
                    i.vocab_size,
                    time.perf_counter() - t0,
                    self.backend.capabilities,
                    i.notes,
                    i.chat_template,
                )
            )
        elif isinstance(cmd, Adopt):
            self.run = cmd.run.copy()  # the sender keeps its own: no two threads write one run
            if self.pair is not None:
                self._compare(self.run, [b.id for b in self.run.branches])

    def _replace_pair(self, spec: ModelSpec) -> Comparer:
        """Model B from `spec`, loaded while the earlier B (if any) stays, so a B that is refused
        (another tokenizer, a wrong path) leaves the explorer comparing as before. Only a new B that
        does not fit beside A and the earlier B makes the earlier B go first (then the load is
        tried again); if that fails too, nothing is compared any more (PairReleased)."""
        from tokentui.engine.backend import open_comparer
        from tokentui.engine.errors import DoesNotFit

        backend = self._need_backend()
        old = self.pair

        def load() -> Comparer:
            return open_comparer(backend, spec, progress=lambda m: self.callback(Progress(m)))

        try:
            new = load()
        except DoesNotFit:
            if old is None:
                raise
            self.pair = None
            old.close()
            try:
                return load()
            except EngineError:
                self.callback(PairReleased(old.info_b.name))
                raise
        if old is not None:
            old.close()
        return new

    def _compare(self, run: Run, branches: list[int]) -> None:
        """Compare `branches` of `run` under model B (`jobs.Compare`), with a cancel event of its
        own (a cancelled generation is still compared; `cancel()` stops the comparison), then
        save. Its failure is reported as the comparison's, not as the command's before it."""
        assert self.pair is not None
        cancel = threading.Event()
        with self._lock:
            self._live.append(cancel)
        try:
            if self.backend is not None:  # (another model's run: its A values are not this model's to fill)
                self.backend.check_run(run)
            job = jobs.Compare(self.pair, run, branches, cancel)
            jobs.drive(job, lambda _job, ev: self.callback(ev))
            if run.branches:
                self._save(run)
        except (EngineError, RunError, ValueError) as e:
            self.callback(Failed("Compare", str(e)))
        finally:
            with self._lock:
                self._live.remove(cancel)
