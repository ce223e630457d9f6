"""The model-owning worker thread: commands in through a queue, events out through a callback.

Only this thread touches the model. Cancel is a `threading.Event` checked every step, so it takes
effect within one step and keeps the partial branch. The callback is called on the worker thread;
the TUI's callback must only `post_message`. Importing this module does not import torch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tokentui.core.params import GenerationSettings
from tokentui.core.run import Run, RunError, SamplingParams
from tokentui.engine.errors import EngineError
from tokentui.engine.events import Event, Failed, Loaded, Progress, RunStarted, Saved


@dataclass
class Load:
    model: str
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False


@dataclass
class Generate:
    prompt: str
    settings: GenerationSettings = field(default_factory=GenerationSettings)


@dataclass
class Continue:
    branch_id: int
    params: SamplingParams = field(default_factory=SamplingParams)


@dataclass
class Fork:
    """Grow a new branch of the open run from `parent` at `position`."""

    parent: int
    position: int
    token_ids: list[int] | None = None  # take these tokens …
    text: str = ""  # … or the tokens of this text
    params: SamplingParams = field(default_factory=SamplingParams)


@dataclass
class Score:
    text: str
    k: int = 20


@dataclass
class Adopt:
    """Work on an existing run (e.g. one reopened from the cache) from now on. The worker takes a
    copy; the sender follows the worker's changes through the events."""

    run: Run


@dataclass
class Save:
    pass


Command = Load | Generate | Continue | Fork | Score | Adopt | Save


class Worker:
    def __init__(self, callback: Callable[[Event], None], save_dir: Path | None = None, **session_options) -> None:
        """`session_options` (lens_chunk, lens_precision) go to the HFBackend made when a model loads."""
        self.callback = callback
        self.save_dir = save_dir
        self.session_options = session_options
        self.session = None
        self.run: Run | None = None
        self.cancel_event = threading.Event()
        self._queue: queue.Queue[Command | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="tokentui-model", daemon=True)
        self.busy = False

    def start(self) -> Worker:
        self._thread.start()
        return self

    def submit(self, cmd: Command) -> None:
        self._queue.put(cmd)

    def cancel(self) -> None:
        self.cancel_event.set()

    def shutdown(self, timeout: float = 5.0) -> None:
        self.cancel_event.set()
        self._queue.put(None)
        self._thread.join(timeout)

    # --- the thread ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            cmd = self._queue.get()
            if cmd is None:
                return
            self.cancel_event.clear()
            self.busy = True
            try:
                self._handle(cmd)
            except (EngineError, RunError, ValueError) as e:
                self.callback(Failed(type(cmd).__name__, str(e)))
            except Exception as e:  # noqa: BLE001 - the thread must survive anything and say what happened
                self.callback(Failed(type(cmd).__name__, f"unexpected {type(e).__name__}: {e}"))
            finally:
                self.busy = False

    def _save(self, run: Run) -> None:
        if self.save_dir is None:
            return
        from tokentui.store.cache import run_path
        from tokentui.store.runfile import save_run

        path = save_run(run, run_path(run.id, self.save_dir))
        self.callback(Saved(run.id, str(path)))

    def _need_session(self):
        if self.session is None:
            raise EngineError("no model is loaded")
        return self.session

    def _need_run(self) -> Run:
        if self.run is None:
            raise EngineError("no run is open")
        return self.run

    def _handle(self, cmd: Command) -> None:
        if isinstance(cmd, Load):
            from tokentui.engine.hf.backend import HFBackend
            from tokentui.engine.hf.loading import load_model

            t0 = time.perf_counter()
            lm = load_model(
                cmd.model, cmd.device, cmd.dtype, cmd.trust_remote_code, progress=lambda m: self.callback(Progress(m))
            )
            self.session = HFBackend(lm, autosave=self._save, **self.session_options)
            self.callback(Loaded(lm.spec, lm.device, lm.dtype, lm.n_layers, lm.vocab_size, time.perf_counter() - t0))
        elif isinstance(cmd, Generate):
            s = self._need_session()
            ids, template = s.encode_prompt(cmd.prompt, cmd.settings.chat)
            st = cmd.settings
            run = s.new_run(cmd.prompt, st.k, st.chat, st.sampling, template=template)
            forced = s.lm.tokenizer(st.forced, add_special_tokens=False)["input_ids"] if st.forced else []
            self.run = run
            for ev in s.generate(run, st.sampling, self.cancel_event, forced):
                self.callback(ev)
        elif isinstance(cmd, Continue):
            s, run = self._need_session(), self._need_run()
            for ev in s.continue_branch(run, cmd.branch_id, cmd.params, self.cancel_event):
                self.callback(ev)
        elif isinstance(cmd, Fork):
            s, run = self._need_session(), self._need_run()
            ids = cmd.token_ids or s.lm.tokenizer(cmd.text, add_special_tokens=False)["input_ids"]
            for ev in s.branch(run, cmd.parent, cmd.position, list(ids), cmd.params, self.cancel_event):
                self.callback(ev)
        elif isinstance(cmd, Score):
            s = self._need_session()
            self.run = s.score(cmd.text, cmd.k)
            self.callback(RunStarted(self.run.copy()))
            self._save(self.run)
        elif isinstance(cmd, Adopt):
            self.run = cmd.run.copy()  # the sender keeps its own: no two threads write one run
        elif isinstance(cmd, Save):
            self._save(self._need_run())
