"""Where `tokentui batch`'s time goes against a plain `generate()` loop on a GPU (a diagnostic for
issue 13's ≥ 0.9× target, run by hand on a device): both variants once under cProfile, over the
same prompts, with the functions that cost most printed for each.

    python benchmarks/gpu/profile_batch.py [--prompts 40] [--device cuda]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from batch import plain_loop, saved_model, tokentui_batch  # noqa: E402


def show(prof: cProfile.Profile, label: str, seconds: float) -> None:
    print(f"== {label}: {seconds:.2f} s")
    stats = pstats.Stats(prof).strip_dirs()
    stats.sort_stats("tottime").print_stats(22)
    stats.sort_stats("cumtime").print_stats(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gpt2-124m")
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_dir, path = saved_model(folder, args.model, args.prompts)
        prompts = path.read_text().splitlines()
        plain_loop(model_dir, prompts[:2], 2, args.device, "float32")  # warm-up
        tokentui_batch(model_dir, path, folder / "warm", 2, args.device, "float32", 0)
        for label in ("plain generate() loop", "tokentui batch, lens off"):
            prof = cProfile.Profile()
            prof.enable()
            if label.startswith("plain"):
                t = plain_loop(model_dir, prompts, args.tokens, args.device, "float32")
            else:
                t = tokentui_batch(model_dir, path, folder / "out", args.tokens, args.device, "float32", 0)
            prof.disable()
            show(prof, label, t)


if __name__ == "__main__":
    main()
