"""Steering on the device: forward hooks that add a vector to the residual stream, and the
contrast vector that `tokentui steer-vector` computes.

Layer l (1…L, the lens's numbering) is the output of decoder block l. A `Steerer` adds
scale × weight_l × position_weight(t) × v to that output at every position t of a forward, so
block l+1 (or the final norm, for l = L) reads the steered state, and so do the hidden states
transformers returns (the lens): the hooks are put in front of transformers' own
output-capturing hooks (`prepend=True`). Hooks live only for one forward call
(`Steerer.applied`, a context manager that removes them in `finally`): an exception inside the
forward, a cancel between two steps, or a generator left half-iterated can never leave a model
steered. Registering 1–2 hooks per forward costs microseconds against a forward's milliseconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from tokentui.core.steering import CONTRAST_POSITIONS, SteeringSpec
from tokentui.engine.errors import EngineError
from tokentui.engine.hf.arch import decoder_of

# Attribute names of the list of decoder blocks on the decoder (`model.get_decoder()`), by family:
# Llama/Mistral/Qwen2/Gemma/Phi/GPT-NeoX: layers · GPT-2/GPT-J/Bloom/Falcon: h · OPT: layers
# (on .decoder) · some: blocks, layer.
BLOCK_LIST_NAMES = ("layers", "h", "blocks", "layer")


def decoder_blocks(model: Any) -> list[torch.nn.Module]:
    """The model's decoder blocks in order (block l−1 outputs layer l)."""
    dec = decoder_of(model)
    for name in BLOCK_LIST_NAMES:
        blocks = getattr(dec, name, None)
        if isinstance(blocks, torch.nn.ModuleList) and len(blocks):
            return list(blocks)
    raise EngineError(
        f"steering: no list of decoder blocks found on {type(dec).__name__} (looked for {', '.join(BLOCK_LIST_NAMES)})"
    )


def hidden_size(config: Any) -> int | None:
    """The width of the residual stream, from a model's configuration (None when it does not say)."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("hidden_size", "n_embd", "d_model"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def config_layers(config: Any) -> int | None:
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("num_hidden_layers", "n_layer", "num_layers"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _config(model: str, trust_remote_code: bool, progress) -> Any:
    from tokentui.engine.hf.loading import _Source  # the loader's own config reader (GGUF, offline …)

    # kept for the load that follows (as check_config keeps it): read once, said once
    return _Source(model, trust_remote_code, None, progress or (lambda _m: None)).config(keep=True)


def check_before_load(spec: SteeringSpec, model: str, trust_remote_code: bool = False, progress=None) -> None:
    """Refuse a spec naming a layer the model lacks, or a vector of another size, from the
    model's configuration alone: before any weights are read (the check is repeated on the
    loaded model)."""
    config = _config(model, trust_remote_code, progress)
    n_layers = config_layers(config)
    if n_layers is not None:
        spec.check_model(n_layers, hidden_size(config))


def check_layer_before_load(layer: int, model: str, trust_remote_code: bool = False, progress=None) -> None:
    """Refuse a layer number the model lacks, from its configuration alone."""
    n_layers = config_layers(_config(model, trust_remote_code, progress))
    if n_layers is not None and not 1 <= layer <= n_layers:
        raise EngineError(f"layer {layer} does not exist: the model has layers 1…{n_layers}")


class Steerer:
    """A spec prepared for one model: per steered block the vector × scale × weight in the
    model's dtype on its device, and the position weights as a tensor."""

    def __init__(self, model: Any, spec: SteeringSpec, n_layers: int) -> None:
        blocks = decoder_blocks(model)
        if len(blocks) != n_layers:
            raise EngineError(f"steering: the model has {len(blocks)} decoder blocks but {n_layers} layers")
        spec.check_model(n_layers, hidden_size(model.config))
        param = next(model.parameters())
        v = torch.from_numpy(spec.vector).to(param.device, torch.float32)
        self.spec = spec
        self.key = spec.key
        self.adds = [(blocks[x - 1], (v * (spec.scale * w)).to(param.dtype)) for x, w in zip(spec.layers, spec.weights)]
        self.position_weights = (
            None
            if spec.position_weights is None
            else torch.tensor(spec.position_weights, dtype=param.dtype, device=param.device)
        )

    def _hook(self, add: torch.Tensor, start: int) -> Callable[..., Any]:
        pw = self.position_weights

        def hook(_module: torch.nn.Module, _args: Any, output: Any) -> Any:
            h = output[0] if isinstance(output, tuple) else output
            if pw is None:
                new = h + add
            else:
                t = h.shape[-2]
                idx = torch.arange(start, start + t, device=h.device).clamp_(max=pw.shape[0] - 1)
                new = h + pw[idx, None] * add
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return hook

    @contextmanager
    def applied(self, start: int = 0) -> Iterator[None]:
        """Hooks on the steered blocks for the forwards inside the block; `start` is the absolute
        position of the forward's first input token (the KV cache's length). Always removed."""
        handles = []
        try:
            for block, add in self.adds:
                handles.append(block.register_forward_hook(self._hook(add, start), prepend=True))
            yield
        finally:
            for h in handles:
                h.remove()


# --- contrast vectors (`tokentui steer-vector`) -------------------------------------------------


def block_output(model: Any, blocks: Sequence[torch.nn.Module], layer: int, ids: list[int]) -> torch.Tensor:
    """[T, d] float32: the output of block `layer` (1-based) for the token ids, from the decoder
    alone (no unembedding)."""
    got: list[torch.Tensor] = []

    def grab(_m: torch.nn.Module, _a: Any, output: Any) -> None:
        got.append((output[0] if isinstance(output, tuple) else output)[0].float())

    param = next(model.parameters())
    handle = blocks[layer - 1].register_forward_hook(grab)
    try:
        decoder_of(model)(input_ids=torch.tensor([ids], device=param.device), use_cache=False)
    finally:
        handle.remove()
    if not got:
        raise EngineError(f"steering: block {layer} did not run")
    return got[0]


def reduce_positions(h: torch.Tensor, position: str) -> torch.Tensor:
    """One prompt's [T, d] states → [d]: `last` the last position; `mean` the mean over positions
    1…T−1 (position 0 carries no content of its own and often an outsized norm; a one-token prompt:
    its only position)."""
    if position == "last" or h.shape[0] == 1:
        return h[-1]
    return h[1:].mean(0)


@torch.inference_mode()
def contrast_vector(
    backend: Any,
    positive: Sequence[str],
    negative: Sequence[str],
    layer: int,
    position: str = "mean",
    chat: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> np.ndarray:
    """mean over the positive prompts − mean over the negative prompts of each prompt's hidden
    state at `layer` (the output of block `layer`, reduced over positions by `position`), float32
    [d]. Prompts are encoded as `encode_prompt` does (special tokens; `chat`: the template)."""
    if position not in CONTRAST_POSITIONS:
        raise EngineError(f"unknown position {position!r} (choose from {', '.join(CONTRAST_POSITIONS)})")
    n_layers = backend.info.n_layers
    if not 1 <= layer <= n_layers:
        raise EngineError(f"layer {layer} does not exist: the model has layers 1…{n_layers}")
    if not positive or not negative:
        raise EngineError("both prompt sets need at least one prompt")
    model = backend.model
    blocks = decoder_blocks(model)
    total, done = len(positive) + len(negative), 0
    means = []
    for prompts in (positive, negative):
        acc: torch.Tensor | None = None
        for p in prompts:
            if cancel is not None and cancel.is_set():
                raise KeyboardInterrupt
            ids, _ = backend.encode_prompt(p, chat)
            backend._check_context(len(ids), "a prompt")
            v = reduce_positions(block_output(model, blocks, layer, ids), position).double()
            acc = v if acc is None else acc + v
            done += 1
            if progress is not None:
                progress(done, total)
        assert acc is not None
        means.append(acc / len(prompts))
    return (means[0] - means[1]).float().cpu().numpy()
