"""`tokentui batch` over many short prompts vs a plain `model.generate()` loop over the same
prompts (issue 13: target ≥ 0.9× the loop's prompts/s), end to end in one process: each variant
loads the model from disk and generates greedily from every prompt; tokentui's also records every
token's measures, saves a run file per prompt, keeps the collection's manifest and writes seed
000's and seed 003's tables at the end. Medians of interleaved repeats, and the median of each
repeat's ratio to the plain loop run beside it (on a machine whose speed drifts, the steadier one).

    python benchmarks/batch.py [--model gpt2-124m] [--prompts 200] [--tokens 16] [--repeats 3] [--device cuda]

The prompts are the lines of Python's textwrap.py (the first --prompts non-blank ones, cut to 80
characters); the model is a random-init model of a real shape saved to a temporary folder.
Without a GPU, `--model gpt2-narrow` stands in for GPT-2 small on one: its ops are so small that
a token costs Python and dispatch, as GPT-2's does where each op is a kernel launch.

`batch` decodes prompts of one token length together (`--group`, 16 by default); the variant
`--group 1` decodes each alone, as the plain loop does, and shows what the grouping gains.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _models import random_model, sync, where  # noqa: E402


def prompts_file(folder: Path, n: int) -> Path:
    import textwrap

    lines = [ln.strip()[:80] for ln in Path(textwrap.__file__).read_text().splitlines() if ln.strip()]
    path = folder / "prompts.txt"
    path.write_text("\n".join(lines[:n]) + "\n")
    return path


def saved_model(folder: Path, name: str, prompts: int) -> tuple[Path, Path]:
    """The random-init model `name` saved under `folder` (a folder `tokentui batch` loads), and
    the prompts file: (model folder, prompts file)."""
    lm = random_model(name)
    model_dir = folder / "model"
    lm.model.save_pretrained(model_dir)
    lm.tokenizer.save_pretrained(model_dir)
    return model_dir, prompts_file(folder, prompts)


def plain_loop(model_dir: Path, prompts: list[str], n: int, device: str, dtype: str) -> float:
    """The baseline: load, then one `generate()` per prompt (greedy, n new tokens). Seconds."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([tok(p)["input_ids"]], device=device)
            out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
            out[0, ids.shape[1] :].tolist()  # the tokens, on the host (what a user's loop keeps)
    sync()
    return time.perf_counter() - t0


def tokentui_batch(
    model_dir: Path, prompts: Path, out: Path, n: int, device: str, dtype: str, lens: int, group: int = 16
) -> float:
    """`tokentui batch` in this process, into a fresh collection folder. Seconds."""
    from tokentui.cli.app import app

    args = ["batch", "--model", str(model_dir), "--prompts", str(prompts), "--out", str(out), "-n", str(n)]
    args += ["--device", device, "--dtype", dtype, "--lens-chunk", str(lens), "--group", str(group)]
    t0 = time.perf_counter()
    try:
        app(args, standalone_mode=False)
    except SystemExit as e:
        assert not e.code, f"tokentui batch exited with {e.code}"
    sync()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gpt2-124m")
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {where(args.device)}, {args.dtype}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_dir, path = saved_model(folder, args.model, args.prompts)
        prompts = path.read_text().splitlines()
        print(f"{args.model}: {len(prompts)} prompts × {args.tokens} new tokens (greedy), median of {args.repeats}")
        plain_loop(model_dir, prompts[:2], 2, args.device, args.dtype)  # warm-up
        lengths = Counter(len(t) for t in AutoTokenizer.from_pretrained(model_dir)(prompts)["input_ids"])
        print(f"  {len(lengths)} prompt lengths; prompts of one length: median {statistics.median(lengths.values())}")
        variants = [("batch, lens off", 0, 16), ("batch, lens every 32", 32, 16), ("batch --group 1, lens 32", 32, 1)]
        times: dict[str, list[float]] = {"plain generate() loop": [], **{v[0]: [] for v in variants}}
        for r in range(args.repeats):  # interleaved, so drift hits every variant alike
            times["plain generate() loop"].append(plain_loop(model_dir, prompts, args.tokens, args.device, args.dtype))
            for label, lens, group in variants:
                out = folder / f"out-{r}-{lens}-{group}"
                times[label].append(
                    tokentui_batch(model_dir, path, out, args.tokens, args.device, args.dtype, lens, group)
                )
                assert len(list((out / "runs").glob("*.tokentui"))) == len(prompts), "not every prompt became a run"
            # (each repeat as it ends: a run cut off by a time limit still leaves its readings)
            print(f"  repeat {r + 1}: " + ", ".join(f"{label} {ts[-1]:.1f} s" for label, ts in times.items()))
        base = statistics.median(times["plain generate() loop"])
        for label, ts in times.items():
            t = statistics.median(ts)
            # (paired: each repeat's ratio to the plain loop run just before it, where a machine
            # whose speed drifts between repeats moves both alike; then their median)
            pairs = [b / x for b, x in zip(times["plain generate() loop"], ts)]
            print(
                f"  {label:<24} {t:7.1f} s  {len(prompts) / t:6.2f} prompts/s  ({base / t:4.2f}x;"
                f" paired {statistics.median(pairs):4.2f}x of {[round(p, 2) for p in pairs]})"
            )
        print("  target: batch ≥ 0.9x the plain loop's prompts/s")


if __name__ == "__main__":
    main()
