"""What a model source offers: the `Backend` protocol and its `Capabilities`.

The jobs, the worker, the CLI and the explorer talk to a model only through this interface, so a
source with less to offer (a remote server that returns top-k log-probs but no hidden states, no
gradients, no KV-cache fork) fits in beside the Hugging Face backend (`engine/hf/`). Front ends ask
`capabilities` before offering a feature and show `why_not(feature)` when it is missing.
Importing this module does not import torch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tokentui.core.params import GenerationSettings, SamplingParams, TreeParams
from tokentui.core.run import Run
from tokentui.core.steering import SteeringSpec
from tokentui.engine.capabilities import Capabilities
from tokentui.engine.errors import EngineError
from tokentui.engine.events import Event

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class ModelSpec:
    """How to open a model: what the user typed plus the options that shape the backend."""

    model: str
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    lens_chunk: int = 32  # lens the layers every N tokens (1 = every token, 0 = off)
    lens_precision: str = "auto"


@dataclass(frozen=True)
class ModelInfo:
    """What the front ends show about a loaded model."""

    name: str  # as the user named it: "demo", a Hub id, a folder's name (never a local path)
    device: str
    dtype: str
    n_layers: int
    vocab_size: int
    context_length: int | None  # positions the model can attend to; None = not stated
    # what loading found that stays true while the model is used, for a front end to show once
    # (the generation config's processors tokentui does not apply)
    notes: tuple[str, ...] = ()
    chat_template: bool = True  # its tokenizer has a chat template (--chat can wrap prompts)


class Backend(Protocol):
    """A loaded model that tokentui can question. One thread drives it (the worker, or the CLI)."""

    kind: str  # "hf", …: named in messages
    info: ModelInfo
    capabilities: Capabilities
    # seconds a decoded step's values may wait to be reported with the next ones (0: each step at
    # once, as the explorer shows it; a front end that shows nothing per token sets math.inf)
    step_latency: float

    def check_run(self, run: Run) -> None:
        """Refuse (EngineError) a saved run this model did not make, before a job adds to it:
        another name, vocabulary or layer count (`RunMeta.not_grown_by`), or token ids that are
        other text here."""
        ...

    def encode_prompt(self, prompt: str, chat: bool = False, what: str = "the prompt") -> tuple[list[int], str | None]:
        """The prompt's token ids (chat: wrapped in the model's template) and the template used.
        `what`: how a refusal names it ("the text" of a scored or compared text)."""
        ...

    def encode_text(self, text: str) -> list[int]:
        """Ids of a piece of text inside a sequence (no special tokens): forced or branch text."""
        ...

    def new_run(self, prompt: str, settings: GenerationSettings, template: str | None, mode: str = "generate") -> Run:
        """An empty run with this model's metadata and the columns this backend records."""
        ...

    def generate(
        self,
        run: Run,
        prompt_ids: list[int],
        sampling: SamplingParams,
        cancel: threading.Event | None,
        forced: list[int],
        steering: SteeringSpec | None = None,
    ) -> Iterator[Event]:
        """Score the prompt, then grow the run's root branch, streaming its events. `steering`
        (here and below; needs `hooks`): the forwards run steered, and the run records it."""
        ...

    def generate_group(
        self,
        runs: list[Run],
        prompt_ids: list[list[int]],
        sampling: SamplingParams,
        cancel: threading.Event | None,
        forced: list[int],
        failures: dict[str, EngineError],
    ) -> Iterator[Event]:
        """`generate` for several new runs whose prompts have one token length, decoded together
        (needs `group_decode`). `failures` gets, by run id, the error of each run that failed
        alone midway (a value that is not finite); a forward of the whole group that fails raises
        after every run's Finished. Either way the runs keep their steps, status "error"."""
        ...

    def continue_branch(
        self,
        run: Run,
        branch_id: int,
        sampling: SamplingParams,
        cancel: threading.Event | None,
        steering: SteeringSpec | None = None,
    ) -> Iterator[Event]:
        """More tokens for a branch, steered as the branch was (a steered branch needs its own
        steering given again)."""
        ...

    def fork(
        self,
        run: Run,
        parent: int,
        position: int,
        forced: list[int],
        sampling: SamplingParams,
        cancel: threading.Event | None,
        steering: SteeringSpec | None = None,
    ) -> Iterator[Event]:
        """A new branch at `position` after `parent`'s tokens before it (hung from the branch that
        holds them: `Run.add_branch`): take `forced` there (none: sample that token afresh), then
        continue."""
        ...

    def score_ids(
        self,
        ids: list[int],
        k: int,
        text: str | None = None,
        settings: GenerationSettings | None = None,
        steering: SteeringSpec | None = None,
        progress: Callable[[str, float], None] | None = None,
    ) -> Run:
        """Teacher forcing: every position's measures for given ids, in one pass (`settings`: what
        else to record, e.g. per-layer top tokens; `k` wins over its k). `progress(text, fraction)`
        hears of a long part (a long text's logit lens: minutes on a CPU)."""
        ...

    def grow_tree(
        self,
        run: Run,
        params: TreeParams,
        cancel: threading.Event | None = None,
        prompt_ids: list[int] | None = None,
        branch: int = 0,
        position: int | None = None,
    ) -> Iterator[Event]:
        """Seed 002's tree search: from `prompt_ids` (scored into the new, empty `run`), or from
        `position` (default: the end) of the run's `branch`. Needs `full_distribution`."""
        ...

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
        """Attribute the tokens at `positions` of the branch's sequence to the positions before
        each (`core/attribution.py` says what each method means); the record is appended to
        `run.attributions`. Needs `gradients` (or `attention` for the attention methods)."""
        ...


class Comparer(Protocol):
    """Model B loaded beside a backend's model A, for the explorer's live comparison
    (`jobs.Compare`): both models teacher-force the same ids."""

    info_b: ModelInfo
    record: dict[str, Any]  # what a compared run's `meta.model_b` says

    def compare_ids(self, ids: list[int], k: int) -> dict[str, np.ndarray]:
        """The comparison columns (core/measures.py COMPARISON) for positions 1 … len(ids) − 1 of
        `ids` teacher-forced under A and B: one row per position, as `tokentui compare` computes them."""
        ...

    def token_bytes(self, ids: list[int]) -> dict[int, bytes]:
        """The text of these ids (for a run's token table)."""
        ...

    def close(self) -> None:
        """Release model B."""
        ...


def open_comparer(backend: Backend, spec_b: ModelSpec, progress: Callable[[str], None] | None = None) -> Comparer:
    """Load `spec_b` beside `backend`'s model (one tokenizer required; on a GPU both must fit)."""
    from tokentui.engine.errors import EngineError
    from tokentui.engine.hf.backend import HFBackend
    from tokentui.engine.hf.compare import LivePair

    if not isinstance(backend, HFBackend):
        raise EngineError(f"comparing two models needs the whole next-token distribution ({backend.kind} backend)")
    return LivePair.load(backend, spec_b, progress)


def check_spec(spec: ModelSpec) -> None:
    """Refuse a bad dtype, lens setting or model path at once, before anything heavy is imported."""
    from tokentui.core.params import RunError
    from tokentui.engine.errors import ModelLoadError
    from tokentui.engine.hf.loading import DTYPES, LENS_PRECISIONS, resolve_source

    if spec.lens_precision not in LENS_PRECISIONS:
        raise RunError(f"unknown lens precision {spec.lens_precision!r} (choose from {', '.join(LENS_PRECISIONS)})")
    if spec.lens_chunk < 0:
        raise RunError(f"--lens-chunk must be ≥ 0 (got {spec.lens_chunk}; 0 turns the lens off)")
    if spec.dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {spec.dtype!r} (choose from {', '.join(DTYPES)})")
    resolve_source(spec.model)  # a missing or wrong folder is an error now, not after the imports


def check_device(device: str) -> None:
    """Refuse a device torch does not know or this machine does not have (imports torch): for a
    command that loads several models, before any of them."""
    from tokentui.engine.hf.loading import pick_device

    pick_device(device)


def check_settings(
    spec: ModelSpec, settings: GenerationSettings, progress: Callable[[str], None] | None = None
) -> None:
    """Check `settings` against the model's configuration alone (k against its vocabulary, attention
    entropy against the model's class), so the refusal comes before the weights are read."""
    from tokentui.engine.hf.loading import check_config

    check_config(spec.model, settings.check, spec.trust_remote_code, progress=progress,
                 attention=settings.attention_entropy)  # fmt: skip


def check_chat(spec: ModelSpec, progress: Callable[[str], None] | None = None) -> None:
    """Refuse --chat (NoChatTemplate) for a model whose tokenizer has no chat template, reading the
    tokenizer alone: a command with several models asks before the first one runs."""
    from tokentui.engine.hf.loading import check_chat_template

    check_chat_template(spec.model, spec.trust_remote_code, progress=progress)


def open_backend(spec: ModelSpec, progress: Callable[[str], None] | None = None, chat: bool = False) -> Backend:
    """Load the model `spec` names. The one place that picks a backend (only Hugging Face models
    today; a remote server's backend would be chosen here by its URL). `chat`: the caller wraps
    prompts in the chat template; a model without one is refused before its weights load."""
    from tokentui.engine.hf.backend import HFBackend

    return HFBackend.load(spec, progress, chat)
