"""What recording costs: tokens/s of plain `model.generate` vs tokentui's decode loop, measured in
one process run on random-init models of real shapes and on the real SmolLM2-135M-Instruct (30
layers × a 49k vocabulary: a heavier lens per parameter than GPT-2's), as medians of repeated runs.

    python benchmarks/decode_overhead.py [--models gpt2-124m qwen2-0.5b smollm2] [--repeats 5] [--tokens 128]

Prints (a) tokentui with p/entropy/rank/top-20 (lens off), (b) plus the all-layer logit lens
entropy (chunked every 32 tokens, and per step), (d) the lens with every per-layer measure of
issue 14 (entropy, margin, KL to the final layer, rank and surprisal of the token, top 5 per
layer; every 32 tokens and per step) and its ratio to (b), (c) what a user would otherwise write for (b):
`generate(output_logits=True, output_hidden_states=True, return_dict_in_generate=True)` and the
same statistics and all-layer lens computed after the fact in batches of 32 positions, and
branch first-token time at several prefix lengths with KV-cache reuse vs recompute.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _models import bench_model, sync, where  # noqa: E402

from tokentui.core.params import GenerationSettings, SamplingParams  # noqa: E402
from tokentui.core.run import Run  # noqa: E402
from tokentui.engine import jobs  # noqa: E402
from tokentui.engine.events import StepEvent  # noqa: E402
from tokentui.engine.hf.backend import HFBackend  # noqa: E402
from tokentui.engine.hf.measures import run_layout  # noqa: E402

PROMPT = "def wrap(text, width=70, **kwargs):\n    "


def plain_generate(lm, ids, n):
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = lm.model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
        sync()
        dt = time.perf_counter() - t0
    assert out.shape[1] - ids.shape[1] == n
    return n / dt


def generate_then_analyse(lm, ids, n, k=20, batch=32):
    """(c): the baseline a user would write without tokentui, timed end to end (tokens/s)."""
    lens = lm.lens
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = lm.model.generate(
            ids,
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
            output_logits=True,
            output_hidden_states=True,
            return_dict_in_generate=True,
        )
        chosen = out.sequences[0, ids.shape[1] :]
        logp = torch.log_softmax(torch.cat(out.logits).float(), -1)  # [n, V]
        lp = logp.gather(-1, chosen[:, None])[:, 0]
        stats = {
            "logprob": lp,
            "entropy": -(logp.exp() * logp).sum(-1),
            "rank": (logp > lp[:, None]).sum(-1) + 1,
            "topk": logp.topk(k, dim=-1),
        }
        # per step, per intermediate layer: the last position's hidden state → final norm → unembedding
        hidden = torch.stack([torch.stack([h[0, -1] for h in step[1:-1]]) for step in out.hidden_states])  # [n, L-1, d]
        ent = []
        for b in range(0, n, batch):
            rows = hidden[b : b + batch].reshape(-1, hidden.shape[-1])
            lg = torch.log_softmax(lens.project(lens.normed(rows)), -1)
            ent.append(-(lg.exp() * lg).sum(-1))
        stats["layer_entropy"] = torch.cat(ent).view(n, -1)
        sync()
        dt = time.perf_counter() - t0
    assert len(chosen) == n and stats["layer_entropy"].shape[0] == n
    return n / dt


def ours(lm, n, lens_chunk, every_measure=True):
    """tokentui's decode loop (tokens/s). `every_measure`: the lens records every per-layer measure
    (entropy, margin, KL to the final layer, rank and surprisal of the token, the top 5 per layer);
    False: only the lens entropy (what tokentui recorded before issue 14)."""
    s = HFBackend(lm, lens_chunk=lens_chunk)
    settings = GenerationSettings(SamplingParams(max_new_tokens=n), k=20)
    ids, _ = s.encode_prompt(PROMPT)
    run = s.new_run(PROMPT, settings, None)
    if not every_measure:
        run = Run(run.meta, layout=run_layout(20, lm.n_layers, lens=False))  # its lens: entropy only
    t0 = time.perf_counter()
    steps = sum(isinstance(e, StepEvent) for e in s.generate(run, ids, settings.sampling))
    dt = time.perf_counter() - t0
    assert steps == n
    assert ("layer_rank" in run.layout.names) == (every_measure and lens_chunk > 0)
    return n / dt


def branch_first_token(lm, prefixes, repeats):
    """Seconds to the first step of a new branch forked at each prefix length."""
    s = HFBackend(lm, lens_chunk=32)
    longest = max(prefixes)
    # a long prompt: repeat the text until it is long enough, then generate 2 tokens so a cache exists
    text = PROMPT
    while len(s.encode_prompt(text)[0]) < longest + 8:
        text += PROMPT
    job = jobs.Generate(s, text, GenerationSettings(SamplingParams(max_new_tokens=2), k=20))
    list(job)
    run = job.run
    results = {}
    for p in prefixes:
        for mode in ("reuse", "recompute"):
            times = []
            for _ in range(repeats):
                if mode == "recompute":
                    s.caches.clear()
                else:
                    s.caches.clear()
                    list(s.continue_branch(run, 0, SamplingParams(max_new_tokens=1)))  # refill the root's cache
                tok = int(run.step(0, p).topk_ids[1])
                t0 = time.perf_counter()
                for ev in s.fork(run, 0, p, [tok], SamplingParams(max_new_tokens=1)):
                    if isinstance(ev, StepEvent):
                        times.append(time.perf_counter() - t0)
                        break
            results[(p, mode)] = statistics.median(times)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["gpt2-124m", "qwen2-0.5b"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--prefixes", type=int, nargs="+", default=[16, 128, 512, 1024])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {where(args.device)}, {args.dtype}")
    for name in args.models:
        lm = bench_model(name, args.device, args.dtype)
        ids = torch.tensor([lm.tokenizer(PROMPT)["input_ids"]], device=args.device)
        params = sum(p.numel() for p in lm.model.parameters()) / 1e6
        print(
            f"\n== {name} ({params:.0f}M parameters, {lm.n_layers} layers, vocab {lm.vocab_size}), "
            f"{args.tokens} new tokens, median of {args.repeats} =="
        )
        plain_generate(lm, ids, 8)  # warm-up
        ours(lm, 8, 32)
        ours(lm, 8, 32, every_measure=False)
        entropy_only, every = (
            "(b) tokentui + lens every 32, entropy only",
            "(d) tokentui + lens every 32, every measure",
        )
        rows = {
            "plain generate()": [],
            "(a) tokentui, lens off": [],
            entropy_only: [],
            every: [],
            "(b') tokentui + lens every step, entropy only": [],
            "(d') tokentui + lens every step, every measure": [],
            "(c) generate(hidden states) + lens after": [],
        }
        for _ in range(args.repeats):  # interleaved, so drift hits every variant alike
            rows["plain generate()"].append(plain_generate(lm, ids, args.tokens))
            rows["(a) tokentui, lens off"].append(ours(lm, args.tokens, 0))
            rows[entropy_only].append(ours(lm, args.tokens, 32, every_measure=False))
            rows[every].append(ours(lm, args.tokens, 32))
            rows["(b') tokentui + lens every step, entropy only"].append(ours(lm, args.tokens, 1, every_measure=False))
            rows["(d') tokentui + lens every step, every measure"].append(ours(lm, args.tokens, 1))
            rows["(c) generate(hidden states) + lens after"].append(generate_then_analyse(lm, ids, args.tokens))
        base = statistics.median(rows["plain generate()"])
        for label, vals in rows.items():
            med = statistics.median(vals)
            print(f"  {label:<48} {med:8.1f} tokens/s   {med / base:5.2f}x")
        b, c, d = (
            statistics.median(rows[x]) for x in (entropy_only, "(c) generate(hidden states) + lens after", every)
        )
        print(f"  (b) live recording vs (c) generate-then-analyse: {b / c:5.2f}x (≥ 1.0: live is not slower)")
        print(
            f"  (d) every per-layer measure vs (b) entropy only: {d / b:5.2f}x "
            f"(issue 14's target: ≥ {1 / 1.1:.2f}, i.e. at most 10 % slower)"
        )
        res = branch_first_token(lm, args.prefixes, args.repeats)
        print("  branch first-token time (median):")
        for p in args.prefixes:
            r, c = res[(p, "reuse")], res[(p, "recompute")]
            print(f"    prefix {p:>5}: reuse {r * 1000:7.1f} ms   recompute {c * 1000:7.1f} ms")
        first = res[(args.prefixes[0], "reuse")]
        last = res[(args.prefixes[-1], "reuse")]
        print(f"  reuse at {args.prefixes[-1]} / reuse at {args.prefixes[0]}: {last / first:.2f}x")


if __name__ == "__main__":
    main()
