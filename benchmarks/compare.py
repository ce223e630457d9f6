"""`tokentui compare`'s cost: two models over one text, token by token, against two plain forward
passes of the same models over the same ids, in one process (issue 13: target ≤ 1.15×).

    python benchmarks/compare.py [--shape gpt2-124m] [--tokens 2048] [--repeats 5] [--device auto]
                                 [--dtype float32]

Two random-init models of one shape (the second's weights moved by seeded noise, so they differ),
one tokenizer. tokentui's side is `ModelPair.compare` on the ids (one forward per model, then
every statistic on the device in float32 blocks, the results to the host, the run built); the
baseline is `model(ids, use_cache=False).logits` for each model, nothing else. Printed: the
medians of interleaved repeats (after a warm-up of each), their ratio, and on a GPU each side's
peak memory allocated.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _models import SHAPES, random_model, sync, where  # noqa: E402

from tokentui.engine.backend import ModelSpec  # noqa: E402
from tokentui.engine.hf.backend import HFBackend  # noqa: E402
from tokentui.engine.hf.compare import ModelPair  # noqa: E402
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

    def tokentui() -> None:
        pair.compare([item], k=args.k)
        sync()

    times: dict[str, list[float]] = {"plain": [], "tokentui": []}
    peaks: dict[str, int] = {}
    for name, fn in (("plain", plain), ("tokentui", tokentui)):  # warm-up, and peak memory on a GPU
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        fn()
        if device.startswith("cuda"):
            peaks[name] = torch.cuda.max_memory_allocated()
    for _ in range(args.repeats):
        for name, fn in (("plain", plain), ("tokentui", tokentui)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {n: statistics.median(t) for n, t in times.items()}
    print(f"{args.shape} in {args.dtype}, {args.tokens} tokens, {device} ({where(device)})")
    print(
        f"two plain forwards: {med['plain'] * 1e3:.1f} ms (median of {args.repeats}: {[round(t * 1e3, 1) for t in times['plain']]})"
    )
    print(f"tokentui compare:   {med['tokentui'] * 1e3:.1f} ms ({[round(t * 1e3, 1) for t in times['tokentui']]})")
    print(f"ratio: {med['tokentui'] / med['plain']:.3f}x (target <= 1.15x)")
    for name, peak in peaks.items():
        print(f"peak GPU memory allocated, {name}: {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
