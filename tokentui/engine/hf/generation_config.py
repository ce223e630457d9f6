"""What a model's generation config would change in `model.generate()`, and tokentui does not apply.

tokentui decodes from the model's own next-token distribution: every recorded probability, rank
and entropy is of that distribution, and greedy decoding is its argmax. A checkpoint's
`generation_config.json` can ask `generate()` for logit processors that reshape it even when
`do_sample=False` (Qwen2.5-Instruct's `repetition_penalty` 1.05, BART's `forced_eos_token_id`,
`no_repeat_ngram_size`, `suppress_tokens` …). Applying them would make the numbers no longer the
model's; ignoring them silently would make "greedy equals generate()" quietly false for those
models. So loading names the ones set, once, and the README says which ones they are.

Sampling settings (`temperature`, `top_k`, `top_p`, `do_sample`) are not listed: tokentui's own
options replace them, as they do `generate()`'s defaults.
"""

from __future__ import annotations

from typing import Any

from tokentui.core.display import sanitize

# generation-config fields that make `generate(do_sample=False)` choose other tokens than the
# argmax of the model's logits, each with the value that means "off"
UNAPPLIED_FIELDS: dict[str, Any] = {
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "min_length": 0,
    "min_new_tokens": 0,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
    "guidance_scale": 1.0,
    # another decoding than greedy altogether (beam search, contrastive search, DoLa, constraints)
    "num_beams": 1,
    "penalty_alpha": 0.0,
    "dola_layers": None,
    "constraints": None,
    "force_words_ids": None,
}


def unapplied_processors(generation_config: object | None) -> list[str]:
    """`name=value` for each field of `generation_config` that `generate()` would apply and
    tokentui does not; empty when there is none (or no config)."""
    if generation_config is None:
        return []
    found = []
    for name, off in UNAPPLIED_FIELDS.items():
        value = getattr(generation_config, name, None)
        if value is None or value == off or value in ([], {}):
            continue
        found.append(f"{name}={_short(value)}")
    return found


def unapplied_message(model: str, generation_config: object | None) -> str | None:
    """The line loading says when the model's generation config sets such processors."""
    found = unapplied_processors(generation_config)
    if not found:
        return None
    return (
        f"{sanitize(model)}: its generation config sets {', '.join(found)}, which model.generate() applies; "
        "tokentui shows the model's own distribution, without it"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"
