"""The TUI's side of the engine worker: engine events become Textual messages, and the app's
requests become worker commands.

The engine's worker thread calls back for every event; that only posts a message (the one
thread-safe call), and the app handles it on its own thread. The app reaches the engine only
through `EngineBridge`, which it imports once a model is in play: a replay without a model never
loads the engine's modules (nor numpy behind them) for its first frame. Importing this does not
import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.message import Message

from tokentui.core.params import GenerationSettings, SamplingParams, TreeParams
from tokentui.core.run import Run
from tokentui.engine import worker as w
from tokentui.engine.backend import ModelSpec
from tokentui.engine.events import Event

if TYPE_CHECKING:
    from textual.message_pump import MessagePump

    from tokentui.core.steering import SteeringSpec


class EngineMessage(Message):
    """One engine event, delivered on the app's thread."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class EngineBridge:
    """The app's handle on the engine's worker thread: one method per request."""

    def __init__(self, app: MessagePump, save_dir: Path | None, **session_options: Any) -> None:
        def deliver(ev: Event) -> None:  # on the worker's thread: only post (thread-safe)
            app.post_message(EngineMessage(ev))

        self.worker = w.Worker(deliver, save_dir=save_dir, spare_core=True)  # (the UI draws on this process's cores)
        self.session_options = session_options  # lens_chunk, lens_precision
        self.load_args: tuple[str, str, bool] = ("auto", "auto", False)  # device, dtype, remote code (load)
        self.worker.start()

    def load(self, model: str, device: str, dtype: str, trust_remote_code: bool) -> None:
        self.load_args = (device, dtype, trust_remote_code)
        self.worker.submit(w.Load(ModelSpec(model, device, dtype, trust_remote_code, **self.session_options)))

    def load_pair(self, model: str) -> None:
        """Load `model` as model B beside the loaded one (same device, dtype and remote-code
        setting): everything grown from then on is compared under both (`w.LoadPair`)."""
        device, dtype, trust = self.load_args
        self.worker.submit(w.LoadPair(ModelSpec(model, device, dtype, trust, lens_chunk=0)))

    def adopt(self, run: Run) -> None:
        """The worker works on a copy of `run` from now on; the app's run follows it through
        the events (the app never reads the worker's run)."""
        self.worker.submit(w.Adopt(run))

    def generate(self, prompt: str, settings: GenerationSettings, steering: SteeringSpec | None = None) -> None:
        self.worker.submit(w.Generate(prompt, settings.copy(), steering))

    def continue_branch(self, branch_id: int, params: SamplingParams, steering: SteeringSpec | None = None) -> None:
        self.worker.submit(w.Continue(branch_id, params, steering))

    def branch(
        self,
        parent: int,
        position: int,
        token_ids: list[int] | None,
        text: str,
        params: SamplingParams,
        steering: SteeringSpec | None = None,
    ) -> None:
        self.worker.submit(w.Fork(parent, position, token_ids, text, params, steering))

    def resample(
        self, parent: int, position: int, params: SamplingParams, steering: SteeringSpec | None = None
    ) -> None:
        self.worker.submit(w.Resample(parent, position, params, steering))

    def steer_compare(self, prompt: str, settings: GenerationSettings, steering: SteeringSpec) -> None:
        """A new run: the prompt generated standard (branch 0) and steered (branch 1)."""
        self.worker.submit(w.SteerCompare(prompt, steering, settings.copy()))

    def tree(
        self, params: TreeParams, settings: GenerationSettings, prompt: str | None, branch: int, position: int | None
    ) -> None:
        """Seed 002's tree search: from `prompt` (a new run) or from `position` of `branch`."""
        self.worker.submit(w.Tree(params, prompt, settings.copy(), branch, position))

    def attribute(self, branch: int, positions: list[int], method: str, alternative: int | None, steps: int) -> None:
        """Attribute `positions` of `branch` to the positions before them (`jobs.Attribute`)."""
        self.worker.submit(w.Attribute(branch, list(positions), method, alternative, steps))

    def cancel(self) -> None:
        self.worker.cancel()

    def stop(self) -> None:
        """Cancel what runs and end the worker once it has finished and saved (`w.Worker.stop`)."""
        self.worker.stop()

    @property
    def stopped(self) -> bool:
        return self.worker.stopped

    def shutdown(self, timeout: float) -> None:
        self.worker.shutdown(timeout=timeout)
