"""Generation settings and the one-line error for inconsistent runs: standard library only, so the
explorer's settings screen, the CLI's options and the engine's jobs share one definition without
loading numpy."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace


class RunError(ValueError):
    """A run (or an operation on it) is inconsistent; the message is one line for the user."""


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(value: str, what: str) -> str:
    """`value`, refused (RunError) where it holds a lone surrogate, which no tokenizer takes:
    Python's stand-in for a byte that is not UTF-8 in a command-line argument (`-p $'\\xff'`),
    or a `\\ud800` escape. Said before a model loads, not as the tokenizer's traceback after."""
    m = _SURROGATE.search(value)
    if m is None:
        return value
    ch = ord(m.group())
    held = f"the byte 0x{ch - 0xDC00:02x}" if 0xDC80 <= ch <= 0xDCFF else f"a lone surrogate \\u{ch:04x}"
    raise RunError(f"{what} holds {held} at character {m.start() + 1}: not UTF-8 text")


SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # what torch's generators take (manual_seed)


@dataclass
class SamplingParams:
    """How the sampler chooses. Metrics never depend on these (they describe the raw model)."""

    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    seed: int | None = None
    max_new_tokens: int = 64
    stop: list[str] = field(default_factory=list)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def check(self) -> None:
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise RunError(f"temperature must be a finite number ≥ 0 (got {self.temperature})")
        if self.top_k < 0:
            raise RunError(f"top-k must be ≥ 0 (got {self.top_k})")
        if not 0 < self.top_p <= 1:
            raise RunError(f"top-p must be in (0, 1] (got {self.top_p})")
        if self.max_new_tokens < 1:
            raise RunError(f"max new tokens must be ≥ 1 (got {self.max_new_tokens})")
        if self.seed is not None and not SEED_MIN <= self.seed <= SEED_MAX:
            raise RunError(f"the seed must be a 64-bit integer, from −2^63 to 2^64 − 1 (got {self.seed})")
        for text in self.stop:
            if not text:
                raise RunError("a stop text is empty (it would stop nothing)")
            check_text(text, "a stop text")

    def copy(self) -> SamplingParams:
        return replace(self, stop=list(self.stop))

    def describe(self) -> str:
        """One short line: 'greedy · max 64 tokens' or 'T=0.8 top-k=40 top-p=0.9 seed=1 · max 64 tokens'
        (a top-k of 0 and a top-p of 1, filters off, left out);
        a branch of forced text alone (a guided tree's root) says so, not 'max 0 tokens'."""
        if self.max_new_tokens <= 0:
            return "forced text only"
        mode = "greedy" if self.greedy else f"T={self.temperature:g}"
        if not self.greedy:  # (a filter that is off left out: "top-k=0 top-p=1" pushed the rest off 80 columns)
            mode += (f" top-k={self.top_k}" if self.top_k else "") + (
                f" top-p={self.top_p:g}" if self.top_p < 1 else ""
            )
            mode += "" if self.seed is None else f" seed={self.seed}"
        return f"{mode} · max {self.max_new_tokens} token{'s' if self.max_new_tokens != 1 else ''}"

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> SamplingParams:
        """From a run file's `sampling` metadata (untrusted): unknown keys ignored, bad values → defaults."""
        out = cls()
        for name, kind in (("temperature", float), ("top_p", float), ("top_k", int), ("max_new_tokens", int)):
            v = d.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v):
                setattr(out, name, kind(v))
        seed = d.get("seed")
        out.seed = (
            seed if isinstance(seed, int) and not isinstance(seed, bool) and SEED_MIN <= seed <= SEED_MAX else None
        )
        stop = d.get("stop")
        out.stop = [s for s in stop if isinstance(s, str) and s] if isinstance(stop, list) else []
        return out


def _finite(v: int | float) -> bool:
    """A finite number float can hold (a 400-digit integer in a file made math.isfinite raise
    OverflowError: `tokentui runs` stopped on one damaged manifest)."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


MAX_K_LENS = 100  # top tokens per layer: layers × k_lens × 4 bytes per token in a run file
MAX_K = 1_000  # alternatives recorded per token: the most a run file takes (store/header.py)


@dataclass
class GenerationSettings:
    """Everything a user sets for one generation: the sampler, how many alternatives to record, the
    chat template, and a forced start of the answer. The CLI's options, the explorer's settings
    screen and the engine's generate job all take this one object."""

    sampling: SamplingParams = field(default_factory=SamplingParams)
    k: int = 20  # top-k alternatives recorded per token (not the sampler's top-k)
    chat: bool = False
    forced: str = ""  # the answer starts with this text
    k_lens: int = 5  # top tokens recorded per layer by the lens (0 = none)
    attention_entropy: bool = False  # record per-layer attention entropy (eager attention: slower)

    def check(self, vocab_size: int | None = None) -> None:
        """Raise RunError on the first bad value (k against the vocabulary when it is known)."""
        self.sampling.check()
        check_text(self.forced, "the forced prefix")
        if self.k < 1:
            raise RunError(f"k, the alternatives recorded (-k), must be at least 1 (got {self.k})")
        if vocab_size is not None and self.k > vocab_size:
            raise RunError(f"k = {self.k} alternatives is more than the vocabulary ({vocab_size} tokens)")
        if vocab_size is not None and self.sampling.top_k > vocab_size:  # (a 20-digit one filled the settings line)
            raise RunError(
                f"top-k {self.sampling.top_k} is more than the vocabulary ({vocab_size} tokens); 0 turns it off"
            )
        if self.k > MAX_K:  # (a run of k = 1001 was saved, then no command could read it)
            raise RunError(f"k, the alternatives recorded (-k), is at most {MAX_K:,} (got {self.k:,})")
        if isinstance(self.k_lens, bool) or not isinstance(self.k_lens, int) or not 0 <= self.k_lens <= MAX_K_LENS:
            raise RunError(f"--lens-top must be a whole number in 0…{MAX_K_LENS} (got {self.k_lens})")
        if vocab_size is not None and self.k_lens > vocab_size:
            raise RunError(f"--lens-top {self.k_lens} is more than the vocabulary ({vocab_size} tokens)")

    def copy(self) -> GenerationSettings:
        return replace(self, sampling=self.sampling.copy())


# The most nodes one tree search may make: every node is a branch, and a run file's header (at
# most 16 MB, store/header.py) holds about 1 kB per node with its candidates.
MAX_TREE_NODES = 10_000

# Attribution (core/attribution.py declares what each method means): the names, here so that the
# CLI can list and check them without numpy.
ATTRIBUTION_METHODS = (
    "gradient-norm",
    "saliency",
    "input-x-gradient",
    "integrated-gradients",
    "attention",
    "attention-mean",
)
DEFAULT_ATTRIBUTION = "gradient-norm"
IG_STEPS = 50  # integrated gradients' path steps
MAX_IG_STEPS = 1_000  # (the Gauss–Legendre nodes cost O(steps³) to compute; 1,000 takes ~1 s)


@dataclass
class TreeParams:
    """Seed 002's threshold search (see `engine/hf/tree.py` for the algorithm, README for the
    exact definitions). Defaults are the seed's own, except `max_depth` keeps the seed's 1000 and
    `max_nodes`, tokentui's own budget, stops a search that would otherwise grow for hours."""

    min_branch_threshold: float = 0.1
    max_branch_threshold: float = 0.5
    soft_queue_limit: int = 30
    candidate_threshold: float = 0.01
    max_depth: int = 1000
    max_completed_paths: int = 2
    max_nodes: int = 500

    def check(self) -> None:
        """Raise RunError (one line) on the first bad value."""
        for name in ("min_branch_threshold", "max_branch_threshold", "candidate_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise RunError(f"{name.replace('_', '-')} must be in [0, 1] (got {v})")
        if self.min_branch_threshold > self.max_branch_threshold:
            raise RunError(
                f"min-branch-threshold ({self.min_branch_threshold}) is above "
                f"max-branch-threshold ({self.max_branch_threshold})"
            )
        for name in ("soft_queue_limit", "max_depth", "max_completed_paths", "max_nodes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise RunError(f"{name.replace('_', '-')} must be a whole number ≥ 1 (got {v})")
        if self.max_nodes > MAX_TREE_NODES:
            raise RunError(f"max-nodes must be at most {MAX_TREE_NODES} (got {self.max_nodes})")

    def threshold(self, queue_length: int) -> float:
        """The branching threshold while `queue_length` paths are open (seed 002's formula:
        Tmin + min(1, |Q| / Qlimit) · (Tmax − Tmin))."""
        saturation = min(1.0, queue_length / self.soft_queue_limit)
        return self.min_branch_threshold + saturation * (self.max_branch_threshold - self.min_branch_threshold)

    def to_dict(self) -> dict[str, float | int]:
        """The seed's `parameters` object (same names) plus `max_nodes`."""
        return {
            "min_branch_threshold": self.min_branch_threshold,
            "max_branch_threshold": self.max_branch_threshold,
            "soft_queue_limit": self.soft_queue_limit,
            "candidate_threshold": self.candidate_threshold,
            "max_depth": self.max_depth,
            "max_completed_paths": self.max_completed_paths,
            "max_nodes": self.max_nodes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> TreeParams:
        """From a run file's search record (untrusted): RunError when a value is missing or bad."""
        defaults = cls()
        out = cls()
        for name, default in defaults.to_dict().items():
            v = d.get(name, default)
            if isinstance(default, int) and isinstance(v, int) and not isinstance(v, bool):
                setattr(out, name, v)
            elif isinstance(default, float) and isinstance(v, (int, float)) and not isinstance(v, bool):
                setattr(out, name, float(v))
            else:
                raise RunError(f"tree parameter {name} is not a number")
        out.check()
        return out
