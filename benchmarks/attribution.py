"""Attribution: tokentui's association matrix (engine/hf/attribution.py) vs a seed-004-style loop,
on a random-init GPT-2-small shape, in one process, as medians of interleaved repeats.

    python benchmarks/attribution.py [--prompt-tokens 64] [--new-tokens 64] [--repeats 3]
                                     [--ig-steps 50] [--ig-outputs 16] [--methods gradient-norm integrated-gradients]

The run: a 64-token prompt and 64 greedily generated tokens; the matrix attributes every generated
token (64 outputs) to the positions before it (up to 127 inputs). The seed-style baselines, as
seed 004 and inseq run them: for each output token one fresh forward of its whole prefix (no
cache, the model's full logits) and one backward — gradient norm with `loss.backward()` (the
weights' gradients computed too, as a training-style loop does), integrated gradients as captum
does it under inseq (the path points batched, 10 per forward, gradients of the inputs only).
Both sides must give the same matrix (asserted, 1e-4 relative). Integrated gradients is slow on a
CPU (50 forwards + backwards per output), so `--ig-outputs` attributes only the last that many
outputs (the longest prefixes; 16 is one of tokentui's chunks) on both sides; 0: all (a GPU). Printed: seconds,
the ratio (targets: ≥ 3× for the gradient-norm matrix, ≥ 2× for integrated gradients) and each
side's peak RSS rise over the call (Linux VmHWM), with the process's allocator returning freed
memory at once (MALLOC_MMAP_THRESHOLD_ set by re-running itself).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import PeakRSS, peak_memory  # noqa: E402
from _models import random_model, sync, where  # noqa: E402

from tokentui.core.params import GenerationSettings, SamplingParams  # noqa: E402
from tokentui.engine import jobs  # noqa: E402
from tokentui.engine.hf.attribution import PATH_CHUNK, gauss_legendre  # noqa: E402
from tokentui.engine.hf.backend import HFBackend  # noqa: E402

MMAP_ENV = "MALLOC_MMAP_THRESHOLD_"
PEAK: type = PeakRSS  # the peak-memory measure of --device


def seed_gradient_norm(model, ids: list[int], positions: list[int]) -> np.ndarray:
    """Seed 004's own measure, its way: per output token, forward the prefix, backward −log p."""
    emb = model.get_input_embeddings()
    out = np.zeros((len(positions), max(positions)), dtype=np.float32)
    for r, t in enumerate(positions):
        with torch.no_grad():
            e = emb(torch.tensor([ids[:t]], device=model.device))
        e.requires_grad_(True)
        logits = model(inputs_embeds=e).logits
        loss = -torch.log_softmax(logits[0, -1].float(), -1)[ids[t]]
        model.zero_grad()
        loss.backward()
        out[r, :t] = e.grad[0].norm(dim=-1).float().cpu().numpy()
    model.zero_grad(set_to_none=True)
    return out


def seed_integrated_gradients(model, ids: list[int], positions: list[int], steps: int) -> np.ndarray:
    """Captum's integrated gradients as inseq calls it: per output token, the path points (zero
    baseline, Gauss–Legendre) batched through the whole prefix, gradients of the inputs only."""
    emb = model.get_input_embeddings()
    alphas, weights = gauss_legendre(steps)
    out = np.zeros((len(positions), max(positions)), dtype=np.float32)
    for r, t in enumerate(positions):
        with torch.no_grad():
            e = emb(torch.tensor([ids[:t]], device=model.device))[0]
        total = torch.zeros_like(e)
        for a0 in range(0, steps, PATH_CHUNK):
            a = torch.tensor(alphas[a0 : a0 + PATH_CHUNK], dtype=e.dtype, device=e.device)
            w = torch.tensor(weights[a0 : a0 + PATH_CHUNK], dtype=torch.float32, device=e.device)
            x = (a[:, None, None] * e).requires_grad_(True)
            logp = torch.log_softmax(model(inputs_embeds=x).logits[:, -1].float(), -1)[:, ids[t]]
            (g,) = torch.autograd.grad((logp * w).sum(), x)
            total += g.sum(0)
        out[r, :t] = (total * e).sum(-1).float().cpu().numpy()
    return out


def tokentui_matrix(backend, run, positions: list[int], method: str, steps: int) -> np.ndarray:
    job = jobs.Attribute(backend, run, 0, positions, method, steps=steps)
    list(job)
    return run.attributions.pop().scores


def measure(fn) -> tuple[float, int, np.ndarray]:
    with PEAK() as mem:
        t0 = time.perf_counter()
        out = fn()
        sync()
        dt = time.perf_counter() - t0
    return dt, mem.rise, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ig-steps", type=int, default=50)
    ap.add_argument("--ig-outputs", type=int, default=16, help="outputs attributed by IG (0: all)")
    ap.add_argument("--methods", nargs="+", default=["gradient-norm", "integrated-gradients"])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (peak memory: the CUDA allocator's there)")
    args = ap.parse_args()
    global PEAK
    PEAK = peak_memory(args.device)
    if os.environ.get(MMAP_ENV) is None:
        os.environ[MMAP_ENV] = str(1 << 16)
        os.execv(sys.executable, [sys.executable, *sys.argv])

    torch.manual_seed(0)
    lm = random_model("gpt2-124m", args.device)
    model = lm.model
    backend = HFBackend(lm, lens_chunk=0)
    prompt_ids = torch.randint(0, lm.vocab_size, (args.prompt_tokens,)).tolist()
    settings = GenerationSettings(SamplingParams(max_new_tokens=args.new_tokens), k=5)
    run = backend.new_run("benchmark", settings, None)
    list(backend.generate(run, prompt_ids, settings.sampling, None, []))
    ids = run.sequence(0).tolist()
    outputs = list(range(args.prompt_tokens, len(ids)))
    print(f"torch {torch.__version__}, {where(args.device)}")
    print(f"GPT-2-small shape, random weights; {len(prompt_ids)}-token prompt + {len(outputs)} generated tokens")

    for method in args.methods:
        positions = outputs
        if method == "integrated-gradients" and args.ig_outputs and args.ig_outputs < len(outputs):
            positions = outputs[-args.ig_outputs :]
        if method == "gradient-norm":
            seed = functools.partial(seed_gradient_norm, model, ids, positions)
        else:
            seed = functools.partial(seed_integrated_gradients, model, ids, positions, args.ig_steps)
        ours = functools.partial(tokentui_matrix, backend, run, positions, method, args.ig_steps)
        times: dict[str, list[float]] = {"seed": [], "tokentui": []}
        mems: dict[str, list[int]] = {"seed": [], "tokentui": []}
        results = {}
        for _ in range(args.repeats):  # interleaved
            for name, fn in (("seed", seed), ("tokentui", ours)):
                dt, rise, out = measure(fn)
                times[name].append(dt)
                mems[name].append(rise)
                results[name] = out
        a, b = results["seed"], results["tokentui"]
        err = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))
        if err >= 1e-4:  # on CPU in float32 the two must agree; a GPU's kernels round otherwise
            assert args.device != "cpu", f"{method}: the matrices differ ({err:.2e} relative)"
            print(f"  note: the matrices differ by {err:.2e} of the largest score on {args.device}")
        steps = f", {args.ig_steps} steps" if method == "integrated-gradients" else ""
        print(f"\n== {method}: {len(positions)} outputs × {max(positions)} inputs{steps}, median of {args.repeats} ==")
        ts, tt = statistics.median(times["seed"]), statistics.median(times["tokentui"])
        ms, mt = statistics.median(mems["seed"]), statistics.median(mems["tokentui"])
        rise = "peak GPU memory rise" if args.device.startswith("cuda") else "peak RSS rise"
        print(f"  seed-style  {ts:8.2f} s (1.00x)   {rise} {ms / 2**20:8.1f} MiB")
        print(
            f"  tokentui    {tt:8.2f} s ({ts / tt:.2f}x faster)   {rise} {mt / 2**20:8.1f} MiB ({mt / max(ms, 1):.2f}x)"
        )
        print(f"  same matrix: max difference {err:.1e} of the largest score")


if __name__ == "__main__":
    main()
