"""What steering costs: tokentui's decode loop with and without a steering spec, in one process run
on random-init models of real shapes (or the real SmolLM2), as medians of interleaved repeats.

    python benchmarks/steering.py [--models gpt2-124m qwen2-0.5b] [--repeats 5] [--tokens 128] [--device cuda]

Variants (the same prompt, greedy, k = 20, lens every 32 tokens as by default):
  plain            no steering
  one layer        a vector added at the middle layer
  every layer      a vector at every layer 1…L, with position weights (the most hooks a spec can ask)
Each steered forward registers its hooks and removes them again (`engine/hf/steering.py`), so
this measures the hooks, the additions and their registration. Target (issue 14): steering adds
at most 3 % to decoding (ratio ≥ 0.97).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _models import bench_model, sync, where  # noqa: E402

from tokentui.core.params import GenerationSettings, SamplingParams  # noqa: E402
from tokentui.core.steering import SteeringSpec  # noqa: E402
from tokentui.engine import jobs  # noqa: E402
from tokentui.engine.events import StepEvent  # noqa: E402
from tokentui.engine.hf.backend import HFBackend  # noqa: E402
from tokentui.engine.hf.steering import hidden_size  # noqa: E402

PROMPT = "def wrap(text, width=70, **kwargs):\n    "


def decode(lm, n: int, steering: SteeringSpec | None, lens_chunk: int) -> float:
    """tokens/s of one generation of n tokens through the generate job."""
    backend = HFBackend(lm, lens_chunk=lens_chunk)
    job = jobs.Generate(backend, PROMPT, GenerationSettings(SamplingParams(max_new_tokens=n), k=20), steering=steering)
    t0 = time.perf_counter()
    steps = sum(isinstance(e, StepEvent) for e in job)
    sync()
    dt = time.perf_counter() - t0
    assert steps == n
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["gpt2-124m", "qwen2-0.5b"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--lens-chunk", type=int, default=32)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {where(args.device)}, {args.dtype}")
    for name in args.models:
        lm = bench_model(name, args.device, args.dtype)
        d = hidden_size(lm.model.config)
        assert d is not None
        v = np.random.default_rng(0).normal(size=d).astype(np.float32) * 0.01  # small: the text stays alike
        L = lm.n_layers
        variants = {
            "plain": None,
            "one layer": SteeringSpec.of(v, [max(1, L // 2)]),
            "every layer + position weights": SteeringSpec.of(
                v, list(range(1, L + 1)), position_weights=[0.5, 1.0, 2.0]
            ),
        }
        print(
            f"\n== {name} ({lm.n_layers} layers, hidden {d}), {args.tokens} new tokens, lens every "
            f"{args.lens_chunk}, median of {args.repeats} =="
        )
        for spec in variants.values():  # warm-up
            decode(lm, 4, spec, args.lens_chunk)
        rows: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(args.repeats):  # interleaved, so drift hits every variant alike
            for label, spec in variants.items():
                rows[label].append(decode(lm, args.tokens, spec, args.lens_chunk))
        base = statistics.median(rows["plain"])
        for label, vals in rows.items():
            med = statistics.median(vals)
            print(f"  {label:<32} {med:8.1f} tokens/s   {med / base:5.3f}x   (target ≥ 0.97x)")


if __name__ == "__main__":
    main()
