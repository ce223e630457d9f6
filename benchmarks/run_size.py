"""Run-file size and load time: bytes per token of a saved run at k=20 and 32 layers, and the time
to load (and fully validate) a 100k-token run, against a naive JSON of the same steps.

    python benchmarks/run_size.py [--tokens 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tokentui.core.run import Run, RunMeta, new_run_id, now_iso
from tokentui.core.tokens import TokenTable
from tokentui.store.export import run_to_json
from tokentui.store.runfile import load_run, save_run


def synthetic_run(n_tokens: int, vocab: int, k: int = 20, n_layers: int = 32, seed: int = 0) -> Run:
    """A run with realistic value ranges (Zipf-like ids) built without a model."""
    rng = np.random.default_rng(seed)
    meta = RunMeta(
        run_id=new_run_id(),
        created=now_iso(),
        tool_version="bench",
        mode="generate",
        model="synthetic",
        revision=None,
        dtype="bfloat16",
        device="cuda",
        tokenizer="synthetic",
        vocab_size=vocab,
        n_layers=n_layers,
        k=k,
        prompt="benchmark",
    )
    ids = np.minimum(rng.zipf(1.3, size=(n_tokens, k)), vocab - 1).astype(np.int32)
    used = np.unique(ids)
    run = Run(meta, TokenTable({int(i): f"tok{i}".encode() for i in used}))
    run.prompt.extend(
        {
            "token_id": ids[:1, 0],
            "logprob": np.zeros(1, np.float32),
            "entropy": np.zeros(1, np.float32),
            "rank": np.ones(1, np.int32),
            "topk_ids": ids[:1],
            "topk_logprobs": np.zeros((1, k), np.float32),
            "layer_entropy": np.zeros((1, n_layers), np.float32),
        }
    )
    root = run.add_branch(None, 1)
    n = n_tokens - 1
    root.steps.extend(
        {
            "token_id": ids[1:, 0],
            "logprob": -rng.random(n).astype(np.float32),
            "entropy": (rng.random(n) * 5).astype(np.float32),
            "rank": rng.integers(1, 50, n).astype(np.int32),
            "topk_ids": ids[1:],
            "topk_logprobs": np.sort(-rng.random((n, k)) * 10, axis=1)[:, ::-1].astype(np.float32),
            "layer_entropy": (rng.random((n, n_layers)) * 8).astype(np.float32),
        }
    )
    root.status = "length"
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        for vocab in (32_000, 151_936):
            run = synthetic_run(args.tokens, vocab)
            path = save_run(run, Path(d) / f"r{vocab}.tokentui")
            size = path.stat().st_size
            loads, saves = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                back = load_run(path)
                loads.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                save_run(back, path)
                saves.append(time.perf_counter() - t0)
            sample = synthetic_run(2_000, vocab)
            naive = len(json.dumps(run_to_json(sample)).encode()) / 2_000
            print(
                f"vocab {vocab:>7}, k=20, 32 layers, {args.tokens} tokens: "
                f"{size / args.tokens:6.1f} bytes/token (naive JSON {naive:6.0f}), "
                f"load+validate median {statistics.median(loads) * 1000:6.1f} ms, "
                f"save median {statistics.median(saves) * 1000:6.1f} ms"
            )


if __name__ == "__main__":
    main()
