"""Regenerate `sample_runs/` with the bundled demo model (run it again when the run format changes).

    python tools/make_sample_runs.py [--out sample_runs]

Makes: a plain greedy generation, a run with a tree of branches (alternatives picked by rule at
the most uncertain positions, one branch of a branch, one typed-in text), a sampled run with
temperature and top-p (so raw and sampler probabilities differ), and a teacher-forced scoring of a
real standard-library snippet.
"""

from __future__ import annotations

import argparse
import inspect
import textwrap
from pathlib import Path

import numpy as np

from tokentui.core.params import GenerationSettings, SamplingParams
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "sample_runs")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lm = load_model("demo", device="cpu")
    s = HFBackend(lm, lens_chunk=32, lens_precision="float32")  # the same lens values on every machine

    def save(run, name: str) -> None:
        run.meta.run_id = f"sample-{name}"
        run.meta.created = "2026-11-23T00:00:00+00:00"
        path = save_run(run, args.out / f"{name}.tokentui")
        print(f"{path}: {run.total_steps()} tokens, {len(run.branches)} branches")

    # 1. plain greedy generation
    greedy = SamplingParams(max_new_tokens=160)
    run = generate(s, "def read_config(path):", greedy)
    save(run, "generate")

    # 2. a tree of branches
    p = SamplingParams(max_new_tokens=60)
    run = generate(s, "class Stack:\n    def ", p)
    for rank, pos in zip((2, 3, 2), most_uncertain(run, 0, 3)):
        drain(s.fork(run, 0, pos, [int(run.step(0, pos).topk_ids[rank - 1])], p))
    pos = most_uncertain(run, 1, 1)[0]
    drain(s.fork(run, 1, pos, [int(run.step(1, pos).topk_ids[1])], SamplingParams(max_new_tokens=40)))
    typed = lm.tokenizer("        raise IndexError(", add_special_tokens=False)["input_ids"]
    drain(s.fork(run, 0, run.branches[0].fork_position + 8, typed, SamplingParams(max_new_tokens=30)))
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
