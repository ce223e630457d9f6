"""`Capabilities`: which optional operations a model source supports, and the one line a front
end shows when a feature it needs is missing (a remote server has no hidden states, no gradients,
no KV-cache fork). Standard library only."""

from __future__ import annotations

from dataclasses import dataclass, replace

FEATURES = {
    "generate": "generation (growing a text token by token: generate, branches, trees)",
    "lens": "hidden states for the logit lens",
    "kv_fork": "forking the KV cache (branches reuse their prefix)",
    "gradients": "gradients (attribution)",
    "hooks": "forward hooks (steering)",
    "attention": "attention weights",
    "full_distribution": "the full next-token distribution (not only its top k)",
    "group_decode": "decoding several prompts together",
}


@dataclass(frozen=True)
class Capabilities:
    """Which optional operations a backend supports."""

    generate: bool = False  # (without it, a model still scores, compares and attributes a given text)
    lens: bool = False
    kv_fork: bool = False
    gradients: bool = False
    hooks: bool = False
    attention: bool = False
    full_distribution: bool = False
    group_decode: bool = False  # (a batch's prompts of one token length share each forward)
    # (feature, why) for a feature this particular model lacks although its kind of source has it
    # (a transformers model whose final norm tokentui cannot find has no lens): said instead
    reasons: tuple[tuple[str, str], ...] = ()

    def without(self, feature: str, why: str) -> Capabilities:
        """These capabilities less `feature`, which this model lacks for the reason `why`."""
        if feature not in FEATURES:
            raise KeyError(feature)
        return replace(self, **{feature: False}, reasons=(*self.reasons, (feature, why)))

    def why_not(self, feature: str, backend: str = "this model source") -> str | None:
        """None when `feature` is supported, else one line saying what is missing."""
        if feature not in FEATURES:
            raise KeyError(feature)
        if getattr(self, feature):
            return None
        return dict(self.reasons).get(feature) or f"{backend} does not provide {FEATURES[feature]}"
