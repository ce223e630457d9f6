"""Architecture lookups for the logit lens, in one place: the final norm, the unembedding and the
logit soft-cap of each model family.

Hugging Face returns L+1 hidden states: the embeddings, then each layer's output, where the last
one already has the final norm applied. The lens therefore pushes layers 1..L-1 through
final norm → unembedding, and layer L is the model's own output distribution.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch

from tokentui.engine.errors import EngineError, no_attention_weights
from tokentui.engine.hf.loading import check_lens_precision

# Attribute names of the final norm on the decoder (`model.get_decoder()`), by family:
# GPT-2/GPT-J/Bloom: ln_f · Llama/Mistral/Qwen2/Gemma/Phi-3: norm · GPT-NeoX/OPT: final_layer_norm
# · Phi/Jamba: final_layernorm · Mamba/DBRX: norm_f · RecurrentGemma: final_norm · XGLM/BioGPT/
# MBart/Pegasus/Whisper: layer_norm · CTRL: layernorm · RWKV: ln_out · xLSTM: out_norm · LFM2:
# embedding_norm (applied after the last block, despite its name). Each is the module the decoder's
# forward applies last; a decoder with none of them (post-norm BART, Marian, GPT-1, BERT-likes)
# loads with the lens off (`lens_parts` returns the line saying why).
FINAL_NORM_NAMES = (
    "norm", "ln_f", "final_layer_norm", "final_layernorm", "norm_f", "final_norm", "layer_norm", "layernorm",
    "ln_out", "out_norm", "embedding_norm",
)  # fmt: skip


@dataclass
class LensParts:
    norm: torch.nn.Module
    weight: torch.Tensor  # [V, d]
    bias: torch.Tensor | None
    softcap: float | None
    n_layers: int
    scale: float = 1.0  # the logits' multiplier before the soft-cap (Cohere's logit_scale, 1/Granite's logits_scaling)

    @property
    def precision(self) -> str:
        return str(self.weight.dtype).removeprefix("torch.")

    def normed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Intermediate hidden states [N, d] through the final norm, at the lens's precision."""
        return self.norm(hidden).to(self.weight.dtype)

    def project(self, normed: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Normed states [N, d] → float32 logits [N, stop-start] of vocabulary ids start..stop-1."""
        bias = None if self.bias is None else self.bias[start:stop]
        out = torch.nn.functional.linear(normed, self.weight[start:stop], bias).float()
        if self.scale != 1.0:
            out = out * self.scale
        if self.softcap:
            out = torch.tanh(out / self.softcap) * self.softcap
        return out

    def project_ids(self, normed: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Normed states [P, R, d] → float32 logits [P, R, C] of the C vocabulary ids `ids` [P, C]
        of each position (computed like `project`: the same weights, bias, precision and soft-cap)."""
        safe = ids.clamp_min(0)
        out = torch.matmul(normed, self.weight[safe].transpose(1, 2))
        if self.bias is not None:
            out = out + self.bias[safe][:, None, :]
        out = out.float()
        if self.scale != 1.0:
            out = out * self.scale
        if self.softcap:
            out = torch.tanh(out / self.softcap) * self.softcap
        return out

    def at_precision(self, precision: str) -> LensParts:
        """This lens with its unembedding matmul in `precision` ("auto", "float32", "bfloat16").

        The lens matmul ([chunk·L, d] × [d, V]) is the dominant cost of recording layers. "auto"
        keeps the model's own dtype, except for a float32 model on a CPU with native bf16
        (AVX512-BF16 / AMX), where a bfloat16 copy of the unembedding makes it ~4x faster for lens
        entropies within ~0.01 nats of float32 (a half-precision checkpoint on a GPU is lensed in
        its own half precision anyway). The model's own (last-layer) distribution is never affected.
        """
        w = self.weight
        if precision == "auto":
            dtype = (
                torch.bfloat16
                if w.device.type == "cpu" and w.dtype == torch.float32 and cpu_has_fast_bf16()
                else w.dtype
            )
        else:
            check_lens_precision(precision)
            dtype = getattr(torch, precision)
        if dtype == w.dtype:
            return self
        return replace(self, weight=w.to(dtype), bias=None if self.bias is None else self.bias.to(dtype))


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU does bfloat16 matmuls natively (oneDNN says so), rather than emulating them."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def decoder_of(model: Any) -> torch.nn.Module:
    """The decoder stack of `model`, a transformers PreTrainedModel (typed Any: nn.Module's getattr
    says Tensor). `get_decoder()` is not always it: Llama 4's text model answers itself, ModernBERT's
    decoder answers its output head (an attribute named `decoder`); the usual attribute names follow."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    candidates = []
    try:
        candidates.append(model.get_decoder())
    except (AttributeError, NotImplementedError):
        pass
    candidates += [getattr(model, name, None) for name in ("model", "transformer", "gpt_neox", "language_model")]
    for dec in candidates:
        if isinstance(dec, torch.nn.Module) and dec is not model and dec is not head:
            return dec
    raise EngineError(f"cannot find the decoder of {type(model).__name__}")


def lens_parts(model: Any) -> LensParts | str:
    """The final norm (then, where the decoder has one, its projection out to the embedding size:
    OPT-350m's `project_out`), the unembedding and the soft-cap: what the model itself applies to
    its last layer's output, applied by the lens to every layer's. A model whose final norm or
    output embedding cannot be found gets, instead, the one line saying why it has no lens: it
    still loads, with the lens off."""
    dec = decoder_of(model)
    norm = next((getattr(dec, n) for n in FINAL_NORM_NAMES if isinstance(getattr(dec, n, None), torch.nn.Module)), None)
    if norm is None and any(hasattr(dec, n) and getattr(dec, n) is None for n in FINAL_NORM_NAMES):
        norm = torch.nn.Identity()  # a family whose final norm is optional, here off (OPT post-norm)
    if norm is None:
        return f"no logit lens: tokentui cannot tell which module of {type(dec).__name__} is its final norm"
    project_out = getattr(dec, "project_out", None)
    if isinstance(project_out, torch.nn.Module):
        norm = torch.nn.Sequential(norm, project_out)
    head = model.get_output_embeddings()
    if head is None or not isinstance(getattr(head, "weight", None), torch.Tensor):
        return f"no logit lens: {type(model).__name__} has no output embedding tokentui can use"
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    softcap = next((getattr(cfg, n) for n in SOFTCAP_NAMES if getattr(cfg, n, None)), None)
    return LensParts(norm, head.weight, getattr(head, "bias", None), softcap, layer_count(model), logit_scale(cfg))


# families whose head scales the logits after the unembedding: (config field, multiplies?)
LOGIT_SCALES = {
    "cohere": ("logit_scale", True),
    "cohere2": ("logit_scale", True),
    "granite": ("logits_scaling", False),
    "granitemoe": ("logits_scaling", False),
    "granitemoeshared": ("logits_scaling", False),
    "granitemoehybrid": ("logits_scaling", False),
}


def logit_scale(cfg: Any) -> float:
    """What the model multiplies its logits by after the unembedding: Cohere's `logit_scale`, the
    inverse of Granite's `logits_scaling` (without it the opening check found the lens off by
    hundreds, and turned it off for these families). By family: other configs carry fields of
    these names that their models do not apply (MPT's `logit_scale`)."""
    known = LOGIT_SCALES.get(str(getattr(cfg, "model_type", "")))
    if known is None:
        return 1.0
    field, multiplies = known
    value = getattr(cfg, field, None)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        return 1.0
    return float(value) if multiplies else 1.0 / float(value)


def config_layers(config: Any) -> int | None:
    """How many decoder blocks a configuration gives a model (its text model's), or None when it
    does not say."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    n_layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    return int(n_layers) if isinstance(n_layers, (int, float)) and n_layers else None


def layer_count(model: Any) -> int:
    """How many decoder blocks `model` has (L: the lens's layers are 1..L), from its configuration."""
    n_layers = config_layers(model.config)
    if n_layers is None:
        raise EngineError("cannot tell how many layers the model has")
    return n_layers


# the final logits' soft-cap, by family: Gemma 2/3 · RecurrentGemma · xLSTM
SOFTCAP_NAMES = ("final_logit_softcapping", "logits_soft_cap", "output_logit_soft_cap")

CONTEXT_NAMES = (
    "max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_sequence_length", "max_target_positions",
)  # fmt: skip


def context_length(config) -> int | None:
    """How many positions the model can attend to, from its config (None when it does not say:
    then generation is not clamped). Models with learned position tables (GPT-2's 1024) fail
    with an index error past it; rotary models degrade. Either way tokentui stops there."""
    for name in CONTEXT_NAMES:
        v = getattr(config, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


# --- attention weights ------------------------------------------------------------------------


def attention_modules(model: Any) -> list[tuple[torch.nn.Module, int]]:
    """Each layer's self-attention module and where its output tuple holds the attention weights,
    in layer order: what the model class declares for transformers' own `output_attentions`
    (`_can_record_outputs["attentions"]`: a module class, or an OutputRecorder with a layer name
    and an index), matched the way transformers matches it."""
    spec = (getattr(type(model), "_can_record_outputs", None) or {}).get("attentions")
    if spec is None:
        raise no_attention_weights(type(model).__name__)
    cls, index, layer_name = spec, 1, None
    if not isinstance(spec, type):
        cls, index, layer_name = spec.target_class, spec.index, spec.layer_name
    want = None if layer_name is None else "." + layer_name.strip(".") + "."
    found = [
        (m, index)
        for name, m in model.named_modules()
        if cls is not None and isinstance(m, cls) and (want is None or want in "." + name + ".")
    ]
    n_layers = layer_count(model)
    if not found:
        raise no_attention_weights(type(model).__name__)
    if len(found) < n_layers:  # a hybrid (Jamba, LFM2, Qwen3-Next): the measure is one value per layer
        raise EngineError(
            f"attention entropy cannot be recorded: {type(model).__name__} has attention in {len(found)} of its "
            f"{n_layers} layers, and the measure is one value per layer (leave --attention-entropy off)"
        )
    if len(found) > n_layers:
        raise EngineError(f"found {len(found)} attention modules on {type(model).__name__}, expected {n_layers}")
    return found


@contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Attention weights need the eager implementation: switched for the call, then restored."""
    impl = getattr(model.config, "_attn_implementation", None)
    if impl == "eager" or impl is None:
        yield
        return
    try:
        model.set_attn_implementation("eager")
    except (AttributeError, ValueError) as e:
        raise EngineError(f"this model cannot return attention weights: {e}") from None
    try:
        if getattr(model.config, "_attn_implementation", None) != "eager":
            # (Falcon: transformers only logs that it cannot switch; its weights from the implementation
            # it stays on are not causal — attention to later tokens — so they are refused, not shown)
            raise EngineError(
                f"{type(model).__name__} cannot switch to eager attention once loaded ({impl} stays), and its "
                "attention weights need it"
            )
        yield
    finally:
        model.set_attn_implementation(impl)


@contextmanager
def attention_entropies(model: Any) -> Iterator[list[torch.Tensor]]:
    """Within the block, each forward appends per layer the entropy (nats) of every query row's
    attention distribution averaged over heads, [batch, queries] float32, in layer order. The
    weights need the eager implementation (switched for the block, then restored); each layer's
    weights are reduced as they are made, so the [layers, heads, q, kv] weights are never held
    together. The hooks are removed whatever happens."""
    rows: list[torch.Tensor] = []
    handles = []

    def hook_at(index: int):
        def hook(_module, _args, output) -> None:
            w = output[index] if isinstance(output, tuple) and len(output) > index else None
            if w is None:
                raise EngineError("the attention modules returned no weights (attention entropy needs eager attention)")
            rows.append(torch.special.entr(w.float()).sum(-1).mean(1))

        return hook

    with eager_attention(model):
        try:
            for module, index in attention_modules(model):
                handles.append(module.register_forward_hook(hook_at(index)))
            yield rows
        finally:
            for h in handles:
                h.remove()
