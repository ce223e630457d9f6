"""Where `tokentui compare`'s time over two plain forwards goes on a GPU (a diagnostic for issue 13's
≤ 1.15× target, run by hand on a device): each part of `ModelPair.compare` timed alone
(CUDA-synchronised medians), the fused kernel's top k against `torch.topk`'s, and the CUDA
kernels of one call by torch.profiler.

    python benchmarks/gpu/profile_compare.py --shape gpt2-124m --dtype float32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _models import random_model, sync  # noqa: E402
from compare import second_model  # noqa: E402

from tokentui.engine.backend import ModelSpec  # noqa: E402
from tokentui.engine.hf import compare as C  # noqa: E402
from tokentui.engine.hf.backend import HFBackend  # noqa: E402


def timed(fn: Callable[[], object], repeats: int = 7) -> float:
    """Median milliseconds of `fn` (after one warm-up), the device synchronised around each."""
    fn()
    sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="gpt2-124m")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("-k", type=int, default=20)
    ap.add_argument("--device", default="cuda")  # (cpu: a dry run, with TRITON_INTERPRET=1 TOKENTUI_FUSED_STATS=1)
    args = ap.parse_args()
    dev = args.device
    a = random_model(args.shape, dev, args.dtype)
    b = second_model(args.shape, dev, args.dtype)
    ba, bb = HFBackend(a, lens_chunk=0), HFBackend(b, lens_chunk=0)
    pair = C.ModelPair(ba, bb, ModelSpec(args.shape))
    ids = torch.randint(0, len(a.tokenizer), (args.tokens,), generator=torch.Generator().manual_seed(0)).tolist()
    item = pair.item_from_ids(ids, text="")
    x = torch.tensor([ids], device=dev)
    k = args.k
    print(f"== {args.shape} {args.dtype}, {args.tokens} tokens, k={k}")
    with torch.inference_mode():
        inputs = C.Inputs([ids], dev)
        la = C._logits(ba, inputs)[0]
        lb = C._logits(bb, inputs)[0]
        targets = inputs.targets(0)
        fused = C.fused_stats(torch.device(dev))
        assert fused is not None, "no fused kernel here"

        parts: dict[str, Callable[[], object]] = {
            "compare() whole": lambda: pair.compare([item], k=k),
            "two plain forwards": lambda: [m.model(input_ids=x, use_cache=False).logits for m in (a, b)],
            "_logits A and B": lambda: (C._logits(ba, C.Inputs([ids], dev)), C._logits(bb, C.Inputs([ids], dev))),
            "_measures (stats + transfer)": lambda: C._measures(la, lb, ids, k, torch.device(dev), targets).host(),
            "pair_block": lambda: fused(la, lb, targets, k),
            "pair_block, k=65 (torch.topk)": lambda: fused(la, lb, targets, 65),
            "torch.topk of A and B": lambda: (la.topk(k, dim=-1), lb.topk(k, dim=-1)),
        }
        for name, fn in parts.items():
            print(f"{name:34s} {timed(fn):8.2f} ms")
        host = C._measures(la, lb, ids, k, torch.device(dev), targets).host()
        t0 = time.perf_counter()
        for _ in range(5):
            pair._run(item, {n: v.copy() for n, v in host.items()}, k)
        print(f"{'_run (host: the run built)':34s} {(time.perf_counter() - t0) / 5 * 1e3:8.2f} ms")
        got = fused(la, lb, targets, k)
        for side, logits in (("", la), ("_b", lb)):
            ids_ref = logits.topk(k, dim=-1).indices
            print(
                f"top-k ids{side} as torch.topk's: {(got['topk_ids' + side] == ids_ref).all(1).float().mean():.2%} of rows"
            )
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev == "cuda" else [])
        with profile(activities=activities) as prof:
            for _ in range(3):
                pair.compare([item], k=k)
            sync()
        print(
            prof.key_averages().table(
                sort_by="cuda_time_total" if dev == "cuda" else "cpu_time_total", row_limit=18, max_name_column_width=60
            )
        )


if __name__ == "__main__":
    main()
