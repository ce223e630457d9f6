"""`tokentui compare`'s cost: two models over one text, token by token, against two plain forward
passes of the same models over the same ids, in one process (issue 13: target ≤ 1.15×).

    python benchmarks/compare.py [--shape gpt2-124m] [--tokens 2048] [--repeats 5] [--device auto]
                                 [--dtype float32]

Two random-init models of one shape (the second's weights moved by seeded noise, so they differ),
one tokenizer. tokentui's side is `ModelPair.compare` on the ids (one forward per model, then
every statistic on the device in float32, the results to the host, the run built); the baseline
is `model(ids, use_cache=False).logits` for each model, nothing else. On a CUDA device with
Triton, tokentui runs twice: with the fused statistics kernel (`engine/hf/pair_kernel.py`, what
`tokentui compare` uses there) and with the registered functions in PyTorch
(TOKENTUI_FUSED_STATS=0). Printed: the medians of interleaved repeats (after a warm-up of each),
the ratios, and on a GPU each variant's peak memory allocated.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _models import SHAPES, random_model, sync, where  # noqa: E402

from tokentui.core.run import Run  # noqa: E402
from tokentui.engine.backend import ModelSpec  # noqa: E402
from tokentui.engine.hf.backend import HFBackend  # noqa: E402
from tokentui.engine.hf.compare import ModelPair, fused_stats  # noqa: E402
from tokentui.engine.hf.loading import pick_device  # noqa: E402


def second_model(shape: str, device: str, dtype: str):
    """The shape's model with its weights moved by seeded noise (so the two differ), on `device`."""
    lm = random_model(shape)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in lm.model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1 * (p.std() if p.numel() > 1 else 1.0))
    lm.model.to(device=device, dtype=getattr(torch, dtype))
    lm.device, lm.dtype = device, dtype
    return lm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="gpt2-124m", choices=sorted(SHAPES))
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    ap.add_argument("-k", type=int, default=20)
    args = ap.parse_args()
    device = pick_device(args.device)
    a = random_model(args.shape, device, args.dtype)
    b = second_model(args.shape, device, args.dtype)
    pair = ModelPair(HFBackend(a, lens_chunk=0), HFBackend(b, lens_chunk=0), ModelSpec(args.shape))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, len(a.tokenizer), (args.tokens,), generator=g).tolist()
    item = pair.item_from_ids(ids, text="")
    x = torch.tensor([ids], device=device)

    @torch.inference_mode()
    def plain() -> None:
        logits = [lm.model(input_ids=x, use_cache=False).logits for lm in (a, b)]
        sync()
        del logits

    runs: dict[str, Run] = {}

    def tokentui(switch: str) -> Callable[[], None]:
        def run() -> None:
            os.environ["TOKENTUI_FUSED_STATS"] = switch
            [runs[switch]] = pair.compare([item], k=args.k)
            sync()

        return run

    variants: dict[str, Callable[[], None]] = {"two plain forwards": plain}
    if fused_stats(torch.device(device)) is not None:
        variants["tokentui, fused kernel"] = tokentui("")
    variants["tokentui, PyTorch"] = tokentui("0")
    times: dict[str, list[float]] = {name: [] for name in variants}
    peaks: dict[str, int] = {}
    for name, fn in variants.items():  # warm-up (the kernel compiles), and peak memory on a GPU
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        fn()
        if device.startswith("cuda"):
            peaks[name] = torch.cuda.max_memory_allocated()
    for _ in range(args.repeats):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {n: statistics.median(t) for n, t in times.items()}
    print(f"{args.shape} in {args.dtype}, {args.tokens} tokens, {device} ({where(device)})")
    for name, t in times.items():
        ratio = "" if name == "two plain forwards" else f"  ratio {med[name] / med['two plain forwards']:.3f}x"
        print(
            f"{name:24s} {med[name] * 1e3:8.1f} ms (median of {args.repeats}: {[round(x * 1e3, 1) for x in t]}){ratio}"
        )
    print(
        "target: ratio <= 1.15x"
        + ("" if len(variants) > 2 else " (no fused kernel here: not a CUDA device with Triton)")
    )
    for name, peak in peaks.items():
        print(f"peak GPU memory allocated, {name}: {peak / 2**20:.0f} MiB")
    if "" in runs:  # the compiled kernel against the registered functions, on this device
        fused, plain_run = runs[""].prompt, runs["0"].prompt
        for name in ("logprob", "logprob_b", "entropy", "entropy_b", "kl_ab", "kl_ba", "js", "topk_logprobs"):
            diff = float(np.nanmax(np.abs(fused.col(name) - plain_run.col(name))))
            print(
                f"fused vs PyTorch, {name}: max |difference| {diff:.2e}" + ("" if diff <= 1e-4 else "  ** TOO LARGE **")
            )
        for name in ("rank", "rank_b", "topk_ids", "topk_ids_b"):
            same = float(np.mean(fused.col(name) == plain_run.col(name)))
            print(f"fused vs PyTorch, {name}: {same:.2%} equal")


if __name__ == "__main__":
    main()
