"""Where `tokentui compare`'s time over two plain forwards goes on a GPU (a diagnostic for issue 13's
≤ 1.15× target, run by check.sh's profiling mode): each part of `ModelPair.compare` timed alone
(CUDA-synchronised medians) and the CUDA kernels of one call by torch.profiler; then top-k
variants, since `torch.topk` over a [positions, vocabulary] block is one candidate for the gap.

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


def two_stage_topk(x: torch.Tensor, k: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top k of each row by a top k of each `chunk` columns, then of those candidates."""
    n, v = x.shape
    m = v // chunk
    vals, idx = x[:, : m * chunk].view(n, m, chunk).topk(k, dim=-1)
    idx = idx + torch.arange(0, m * chunk, chunk, device=x.device)[None, :, None]
    vals, idx = vals.reshape(n, -1), idx.reshape(n, -1)
    if m * chunk < v:
        tv, ti = x[:, m * chunk :].topk(min(k, v - m * chunk), dim=-1)
        vals, idx = torch.cat([vals, tv], -1), torch.cat([idx, ti + m * chunk], -1)
    top, at = vals.topk(k, dim=-1)
    return top, idx.gather(-1, at)


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
        la = C._logits(ba, [ids])[0]
        lb = C._logits(bb, [ids])[0]
        targets = torch.tensor(ids[1:], device=dev)
        fused = C.fused_stats(torch.device(dev))
        assert fused is not None, "no fused kernel here"
        from tokentui.engine.hf import pair_kernel as K

        out = torch.empty(len(targets), len(K.FIELDS), dtype=torch.float32, device=dev)

        def kernel() -> None:
            K._KERNEL[(len(targets),)](
                la, lb, targets, out, la.shape[1], la.stride(0), lb.stride(0), K.LOGPROB_FLOOR, 0.693, **K.LAUNCH
            )

        parts: dict[str, Callable[[], object]] = {
            "compare() whole": lambda: pair.compare([item], k=k),
            "two plain forwards": lambda: [m.model(input_ids=x, use_cache=False).logits for m in (a, b)],
            "_logits A and B": lambda: (C._logits(ba, [ids]), C._logits(bb, [ids])),
            "_measures (stats + transfer)": lambda: C._measures(la, lb, ids, k, torch.device(dev)),
            "pair_block": lambda: fused(la, lb, targets, k),
            "kernel alone": kernel,
            "topk A and B": lambda: (la.topk(k, dim=-1), lb.topk(k, dim=-1)),
            "topk A, sorted=False": lambda: la.topk(k, dim=-1, sorted=False),
            "topk A in float32": lambda: la.float().topk(k, dim=-1),
        }
        for chunk in (1024, 4096, 16384):
            parts[f"two-stage topk A, chunk {chunk}"] = lambda c=chunk: two_stage_topk(la, k, c)
        for name, fn in parts.items():
            print(f"{name:34s} {timed(fn):8.2f} ms")
        host = C._measures(la, lb, ids, k, torch.device(dev))
        t0 = time.perf_counter()
        for _ in range(5):
            pair._run(item, {n: v.copy() for n, v in host.items()}, k)
        print(f"{'_run (host: the run built)':34s} {(time.perf_counter() - t0) / 5 * 1e3:8.2f} ms")
        ref_v, ref_i = la.topk(k, dim=-1)
        for chunk in (1024, 4096, 16384):
            v, i = two_stage_topk(la, k, chunk)
            print(f"two-stage {chunk}: values equal {bool(torch.equal(v, ref_v))}, ids equal {torch.equal(i, ref_i)}")
        for warps, block in ((4, 1024), (8, 1024), (8, 2048), (4, 2048), (16, 4096)):
            launch = dict(K.LAUNCH, num_warps=warps, BLOCK=block)

            def variant(launch=launch) -> None:
                K._KERNEL[(len(targets),)](
                    la, lb, targets, out, la.shape[1], la.stride(0), lb.stride(0), K.LOGPROB_FLOOR, 0.693, **launch
                )

            print(f"kernel, {warps} warps, BLOCK {block}: {timed(variant):8.2f} ms")
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
