"""Run-file size and load time: bytes per token of a saved run at k=20 and 32 layers, and the time
to load (and fully validate) a 100k-token run, against a naive JSON of the same steps; for a run
with the lens off (the target of ≤ 200 bytes/token was set for those columns) and for runs with
every per-layer measure (`--lens-top 0` and the default 5). Also the peak memory a load allocates
(tracemalloc, in a load of its own), as a multiple of the file's size.

    python benchmarks/run_size.py [--tokens 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from tokentui.core.columns import Layout
from tokentui.core.measures import BASE, LENS_COLUMNS
from tokentui.core.run import Run, RunMeta, new_run_id, now_iso
from tokentui.core.tokens import TokenTable
from tokentui.store.export import write_json
from tokentui.store.runfile import load_run, save_run


def synthetic_run(
    n_tokens: int, vocab: int, k: int = 20, n_layers: int = 32, seed: int = 0, names=BASE, k_lens: int = 1
) -> Run:
    """A run with realistic value ranges (Zipf-like ids) built without a model: every column of
    `names`, filled from its declaration (dtype, shape)."""
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
    layout = Layout.of(k, n_layers, names, j=k_lens)
    cols: dict[str, np.ndarray] = {}
    for m in layout.measures:
        shape = m.shape_for(n_tokens, layout.dims)
        if m.is_token_id:
            cols[m.name] = np.minimum(rng.zipf(1.3, size=shape), vocab - 1)
        elif m.dtype == "int32":
            cols[m.name] = rng.integers(1, 50, shape)
        elif "logprob" in m.name:
            lp = -rng.random(shape) * 10
            cols[m.name] = np.sort(lp, axis=-1)[..., ::-1] if lp.ndim > 1 else lp
        else:
            cols[m.name] = rng.random(shape) * 5
        cols[m.name] = cols[m.name].astype(m.dtype)
    used = np.unique(np.concatenate([c.ravel() for n, c in cols.items() if layout.measure(n).is_token_id]))
    run = Run(meta, TokenTable({int(i): f"tok{i}".encode() for i in used}), layout=layout)
    run.prompt.extend({n: c[:1] for n, c in cols.items()})
    root = run.add_branch(None, 1)
    root.steps.extend({n: c[1:] for n, c in cols.items()})
    root.status = "length"
    return run


# what a run records: the lens off; the lens on (this version's default, `--lens-top 0` and 5)
VARIANTS = {
    "lens off": (BASE, 1),
    "lens, --lens-top 0": (BASE + tuple(n for n in LENS_COLUMNS if n not in BASE and "topk" not in n), 1),
    "lens, --lens-top 5": (BASE + tuple(n for n in LENS_COLUMNS if n not in BASE), 5),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        for vocab in (32_000, 151_936):
            for variant, (names, k_lens) in VARIANTS.items():
                run = synthetic_run(args.tokens, vocab, names=names, k_lens=k_lens)
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
                tracemalloc.start()
                load_run(path)
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                sample = synthetic_run(2_000, vocab, names=names, k_lens=k_lens)
                text = io.StringIO()
                write_json(sample, text)
                naive = len(text.getvalue().encode()) / 2_000
                print(
                    f"vocab {vocab:>7}, k=20, 32 layers, {variant:<18}, {args.tokens} tokens: "
                    f"{size / args.tokens:7.1f} bytes/token (naive JSON {naive:6.0f}), "
                    f"load+validate median {statistics.median(loads) * 1000:6.1f} ms, "
                    f"save median {statistics.median(saves) * 1000:6.1f} ms, load peak {peak / size:4.1f}× the file"
                )


if __name__ == "__main__":
    main()
