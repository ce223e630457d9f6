"""Seed 002's tree search: tokentui's (engine/hf/tree.py) vs the seed's algorithm as the seed
writes it (every child gets a clone of its parent's whole KV cache and one batch-1 forward), on
random-init models of real shapes, in one process, as medians of interleaved repeats.

    python benchmarks/tree_search.py [--models gpt2-124m qwen2-0.5b] [--repeats 3] [--nodes 320]
                                     [--device cuda] [--dtype bfloat16]

Random weights spread p thinly over the vocabulary (no token passes a threshold, every node has
one child); the final norm's weight is scaled (logits × `--scale`) so the model branches like a
trained one. Both searches get the same 128-token prompt and parameters, must build the identical
tree (asserted), and stop at the same node budget. Printed per model: nodes/s and peak extra memory
of each, and the ratios (targets: ≥ 3× the nodes/s, ≤ 1/3 of the peak extra memory). Memory is
measured three ways: (a) bytes of the KV caches and next-token distributions each search holds at
once (counted from the live tensors at every step: what the algorithms keep); (b) the rise of the
process's peak RSS during the search proper, after the prompt's forward (Linux VmHWM, reset at its
start); (c) the same over the whole call, the prompt's forward included (the model's logits for
every prompt position, the same for both, and tokentui's records of the prompt's steps). The
script re-runs itself with MALLOC_MMAP_THRESHOLD_ set, so that freed tensors go back to the system
and every measurement starts from the same baseline. tokentui runs with its full records (top-20, entropy, rank)
with the logit lens off, and again with the lens on (every node's layers: extra work the seed does
not do). With `--device cuda`, (b) and (c) are the CUDA allocator's peak instead of RSS; in
float32 the trees must be identical there too, in a half precision they may part (noted).
"""

from __future__ import annotations

import argparse
import copy
import inspect
import os
import statistics
import sys
import textwrap
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import PeakRSS, peak_memory  # noqa: E402
from _models import random_model, where  # noqa: E402

from tokentui.core.params import GenerationSettings, TreeParams  # noqa: E402
from tokentui.engine.hf.backend import HFBackend, cache_of  # noqa: E402
from tokentui.engine.hf.tree import TreeSearch  # noqa: E402

MMAP_ENV = "MALLOC_MMAP_THRESHOLD_"
PEAK: type = PeakRSS  # the peak-memory measure of --device


def seed_search(model, prompt_ids: list[int], p: TreeParams, eos: set[int]):
    """Seed 002's build_token_tree as the seed writes it — softmax probabilities, a clone of the
    parent's whole cache per child, a batch-1 forward per child, every child's probabilities kept
    in the queue — with tokentui's node budget and tie order (lower id first) so that the two
    searches make the same decisions. Returns ([(parent index, token)], peak held bytes)."""
    nodes: list[tuple[int, int]] = []
    peak = 0
    kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.no_grad():
        out = model(torch.tensor([prompt_ids], device=model.device), use_cache=True)
        root = (-1, None, 0, cache_of(out), torch.softmax(out.logits[0, -1].float(), -1))
        del out
        phase = PEAK().__enter__()  # the search proper, after the prompt's forward
        queue = deque([root])
        completed = 0
        while queue and completed < p.max_completed_paths:
            threshold = p.threshold(len(queue))
            held = sum(_cache_bytes(c) + pr.nbytes for _i, _t, _d, c, pr in queue)
            peak = max(peak, held)
            index, token, depth, cache, probs = queue.popleft()
            if depth >= p.max_depth or token in eos:
                completed += 1
                continue
            values, ids = probs.topk(max(10, int((probs > threshold).sum()), 1))
            order = sorted(zip(values.tolist(), ids.tolist()), key=lambda c: (-c[0], c[1]))
            branches = [t for v, t in order if v > np.float32(threshold)] or [order[0][1]]
            for t in branches:
                nodes.append((index, t))
                child_cache = copy.deepcopy(cache)
                out = model(torch.tensor([[t]], device=model.device), use_cache=True, **{kw: child_cache})
                probs_t = torch.softmax(out.logits[0, -1].float(), -1)
                queue.append((len(nodes) - 1, t, depth + 1, cache_of(out), probs_t))
                if len(nodes) >= p.max_nodes:
                    break
            del cache, probs
            if len(nodes) >= p.max_nodes:
                break
        phase.__exit__()
    return nodes, peak, phase.rise


def _cache_bytes(cache) -> int:
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)


def ours(lm, prompt_ids: list[int], p: TreeParams, lens: bool):
    """tokentui's search through the engine (records, events, run): ([(parent index, token)], peak held bytes)."""
    backend = HFBackend(lm, lens_chunk=32 if lens else 0, lens_precision="float32")
    run = backend.new_run("benchmark", GenerationSettings(k=20), None, mode="tree")
    search = _PhasedSearch(backend, run, p, measure=True)
    for _ev in search.events(prompt_ids):
        pass
    node_of = {}  # branch id → node index (they are equal: branches are made in node order)
    nodes = []
    for b in run.branches:
        parent = -1 if b.fork_position == len(prompt_ids) else node_of[b.parent]
        node_of[b.id] = len(nodes)
        nodes.append((parent, int(b.steps.col("token_id")[0])))
    return nodes, search.peak_bytes, search.phase_rise


class _PhasedSearch(TreeSearch):
    """tokentui's search, with the peak RSS rise of the search proper (after the prompt's forward
    and its records) measured like the seed's."""

    def _search(self, root):
        with PEAK() as phase:
            yield from super()._search(root)
        self.phase_rise = phase.rise


def timed(fn, *args):
    with PEAK() as mem:
        t0 = time.perf_counter()
        nodes, held, phase = fn(*args)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    return nodes, len(nodes) / dt, held, mem.rise, phase


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["gpt2-124m", "qwen2-0.5b"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nodes", type=int, default=320, help="the node budget (the searches stop there)")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--scale", type=float, default=8.0, help="logits × this (see the docstring)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (memory (b), (c): the CUDA allocator's peak there)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args()
    global PEAK
    PEAK = peak_memory(args.device)
    if MMAP_ENV not in os.environ:  # freed tensors back to the system: RSS baselines stay comparable
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, MMAP_ENV: "65536"})
    print(f"torch {torch.__version__}, {where(args.device)}, {args.dtype}")
    params = TreeParams(max_depth=1000, max_completed_paths=2, max_nodes=args.nodes)
    print(f"parameters: {params.to_dict()}, prompt {args.prompt_tokens} tokens, logits × {args.scale:g}")
    for name in args.models:
        lm = random_model(name, args.device, args.dtype)
        with torch.no_grad():  # sharpen the distributions: the final norm's output (only the logits read it)
            lm.lens.norm.weight.mul_(args.scale)
            if getattr(lm.lens.norm, "bias", None) is not None:
                lm.lens.norm.bias.mul_(args.scale)
        text = Path(textwrap.__file__).read_text()
        prompt_ids = lm.tokenizer(text)["input_ids"][: args.prompt_tokens]
        assert len(prompt_ids) == args.prompt_tokens
        print(
            f"\n== {name} ({sum(x.numel() for x in lm.model.parameters()) / 1e6:.0f}M parameters), median of {args.repeats} =="
        )
        ours(lm, prompt_ids, TreeParams(max_nodes=8), False)  # warm-up
        seed_search(lm.model, prompt_ids, TreeParams(max_nodes=8), set())
        rows: dict[str, list[tuple[float, int, int, int]]] = {"seed": [], "tokentui": [], "tokentui + lens": []}
        reference = None
        for _ in range(args.repeats):  # interleaved, so drift hits every variant alike
            for label, fn, extra in (
                ("seed", seed_search, (set(),)),
                ("tokentui", ours, (False,)),
                ("tokentui + lens", ours, (True,)),
            ):
                target = lm.model if fn is seed_search else lm
                nodes, rate, held, rss, phase = timed(fn, target, prompt_ids, params, *extra)
                reference = reference or nodes
                if nodes != reference:  # a tie decided otherwise by other kernels' rounding (GPU, bf16)
                    same = next((i for i, (a, b) in enumerate(zip(nodes, reference)) if a != b), len(nodes))
                    print(f"  note: {label} built another tree (same first {same} of {len(nodes)} nodes)")
                    assert args.device != "cpu" or args.dtype != "float32", f"{label} built another tree"
                rows[label].append((rate, held, rss, phase))
        depth = _depth(reference)
        print(f"  tree: {len(reference)} nodes, depth {depth}")
        base = [max(1.0, statistics.median(x[i] for x in rows["seed"])) for i in range(4)]
        print("  (memory: (a) held caches + distributions · (b) peak RSS rise of the search proper · (c) the same")
        print("   over the whole call, the prompt's forward included — its logits alone are 128 × vocab × 4 bytes)")
        for label, vals in rows.items():
            rate, held, rss, phase = (statistics.median(x[i] for x in vals) for i in range(4))
            print(
                f"  {label:<16} {rate:6.1f} nodes/s ({rate / base[0]:4.2f}x)  "
                f"(a) {held / 2**20:6.1f} MiB ({held / base[1]:4.2f}x)  "
                f"(b) {phase / 2**20:6.1f} MiB ({phase / base[3]:4.2f}x)  "
                f"(c) {rss / 2**20:6.1f} MiB ({rss / base[2]:4.2f}x)"
            )


def _depth(nodes: list[tuple[int, int]]) -> int:
    depth = []
    for parent, _t in nodes:
        depth.append(1 if parent < 0 else depth[parent] + 1)
    return max(depth)


if __name__ == "__main__":
    main()
