"""Prompts of one token length decoded together (`engine/hf/group_decode.py`) against each prompt
decoded alone through `Generate`, the path the explorer and `tokentui generate` take: the same
tokens, the same measures and lens values to float rounding, the same statuses and token tables;
and alone against `model.generate()`'s tokens, so that the two are not merely alike but right."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from tests.factories import FAMILIES
from tokentui.core.params import GenerationSettings, SamplingParams
from tokentui.engine import jobs
from tokentui.engine.events import Finished, LensEvent, StepEvent
from tokentui.engine.hf.backend import HFBackend

PROMPTS = [
    "def wrap(text, width):",
    "The river rose at dawn",
    "import numpy as np\n",
    "Once upon a time",
    "x = [1, 2, 3]",
]


def one_length(backend: HFBackend, texts: list[str], n: int = 4) -> list[tuple[str, list[int], None]]:
    """(prompt, ids, None) for `n` prompts of one token length: the texts' ids cut to the shortest's
    length, made text again (what a batch would read from a file)."""
    ids = [backend.encode_prompt(t)[0] for t in texts]
    cut = min(len(i) for i in ids)
    out = []
    for i in ids[:n]:
        text = backend.tokenizer.decode(i[:cut])
        again = backend.encode_prompt(text)[0]
        if len(again) == cut:
            out.append((text, again, None))
    assert len(out) >= 3, "the test needs three prompts of one length"
    return out


def alone(backend: HFBackend, prompt, settings: GenerationSettings):
    job = jobs.Generate(backend, prompt[0], settings, encoded=(prompt[1], None))
    events = list(job)
    return job.run, events


def together(backend: HFBackend, prompts, settings: GenerationSettings, cancel=None):
    job = jobs.GenerateGroup(backend, prompts, settings, cancel)
    events = list(job)
    return job, events


def assert_same_runs(a, b, tol=2e-5) -> None:
    """Run `a` (decoded in a group) records what `b` (decoded alone) does."""
    assert a.meta.prompt == b.meta.prompt
    assert a.sequence(0).tolist() == b.sequence(0).tolist()
    assert a.branches[0].status == b.branches[0].status
    assert a.branches[0].n_forced == b.branches[0].n_forced
    for cols_a, cols_b in ((a.prompt, b.prompt), (a.branches[0].steps, b.branches[0].steps)):
        x, y = cols_a.arrays(), cols_b.arrays()
        assert x.keys() == y.keys()
        for name in x:
            if np.issubdtype(x[name].dtype, np.integer):
                if name in ("topk_ids", "layer_topk_ids"):  # (ids of near-equal log-probs may swap)
                    assert (x[name] == y[name]).mean() > 0.97, name
                else:
                    assert np.array_equal(x[name], y[name]), name
            else:  # (a column stored in float16 may round a difference in the last float32 bits to one of its steps)
                t = tol if x[name].dtype != np.float16 else float(np.finfo(np.float16).eps)
                np.testing.assert_allclose(x[name], y[name], rtol=t, atol=t, equal_nan=True, err_msg=name)
    assert set(a.tokens.ids().tolist()) >= set(a.sequence(0).tolist())


@pytest.mark.parametrize("family", FAMILIES)
def test_a_group_records_what_each_prompt_alone_records(loaded, family):
    backend = HFBackend(loaded(family), lens_chunk=3, lens_precision="float32")
    prompts = one_length(backend, PROMPTS)
    settings = GenerationSettings(SamplingParams(max_new_tokens=7), k=6, k_lens=2)
    job, events = together(backend, prompts, settings)
    assert not job.failures
    for prompt, run in zip(prompts, job.runs, strict=True):
        ref, _ = alone(backend, prompt, settings)
        assert_same_runs(run, ref)
        # and alone is right: model.generate()'s greedy tokens
        ids = torch.tensor([prompt[1]])
        with torch.inference_mode():
            gen = backend.model.generate(ids, max_new_tokens=7, do_sample=False, pad_token_id=0)
        assert ref.sequence(0).tolist() == gen[0].tolist()
    # every run's events: its steps in order, its lens values over each of them, one Finished
    # (a run may end early at an end-of-text token: qwen2's tiny model meets one)
    for run in job.runs:
        branch, start = run.branches[0], len(run.prompt)
        n = len(branch.steps)
        assert n == 7 or branch.status == "eos"
        steps = [e.step.position for e in events if isinstance(e, StepEvent) and e.run_id == run.id]
        assert steps == list(range(start, start + n))
        lensed = [e for e in events if isinstance(e, LensEvent) and e.run_id == run.id]
        assert [e.start_position for e in lensed] == [start + i for i in range(0, n, 3)]
        assert not np.isnan(branch.steps.col("layer_entropy")).any()
        done = [e for e in events if isinstance(e, Finished) and e.run_id == run.id]
        assert [(d.status, d.new_tokens) for d in done] == [(branch.status, n)]
    assert any(len(run.branches[0].steps) == 7 for run in job.runs)


def test_rows_that_stop_early_keep_only_their_own_steps(loaded):
    """A stop string one prompt's answer meets at a token of its ends that run there (and its lens
    covers those steps alone) while the others decode on; sampling: each row draws what its
    prompt alone draws with the same seed; forced tokens come first in every run."""
    backend = HFBackend(loaded("llama"), lens_chunk=4, lens_precision="float32")
    prompts = one_length(backend, PROMPTS)
    sampling = SamplingParams(max_new_tokens=9, temperature=0.9, top_k=50, seed=11)
    base = GenerationSettings(sampling, k=5, forced=" the")
    ref0, _ = alone(backend, prompts[1], base)
    answer = ref0.sequence(0)[len(ref0.prompt) :].tolist()
    # the second row's first whole visible token past the forced one that its text has not met yet
    at, stop = next(
        (i, text)
        for i in range(2, len(answer))
        if (text := backend.tokenizer.decode([answer[i]])).strip().isascii()
        and text.strip()
        and text not in backend.tokenizer.decode(answer[:i])
    )
    settings = GenerationSettings(SamplingParams(**{**sampling.__dict__, "stop": (stop,)}), k=5, forced=" the")
    job, _events = together(backend, prompts, settings)
    ends = []
    for prompt, run in zip(prompts, job.runs, strict=True):
        ref, _ = alone(backend, prompt, settings)
        assert_same_runs(run, ref)
        ends.append((run.branches[0].status, len(run.branches[0].steps)))
    assert ends[1] == ("stop", at + 1)
    assert any(status == "length" for status, _n in ends)  # (not every row met it)


def test_a_cancelled_group_keeps_every_runs_steps(loaded):
    backend = HFBackend(loaded("gpt2"), lens_chunk=2)
    prompts = one_length(backend, PROMPTS)
    cancel = threading.Event()
    job = jobs.GenerateGroup(backend, prompts, GenerationSettings(SamplingParams(max_new_tokens=50)), cancel)
    seen = 0
    for ev in job:
        if isinstance(ev, StepEvent):
            seen += 1
            if seen == 1:
                cancel.set()
    for run in job.runs:
        branch = run.branches[0]
        assert branch.status == "cancelled"
        assert 1 <= len(branch.steps) < 50
        assert not np.isnan(branch.steps.col("layer_entropy")).any()  # (the lens caught up)


def test_prompts_of_two_lengths_are_refused(loaded):
    backend = HFBackend(loaded("gpt2"))
    a, b = (backend.encode_prompt(t)[0] for t in ("one two three", "one"))
    job = jobs.GenerateGroup(backend, [("one two three", a, None), ("one", b, None)], GenerationSettings())
    with pytest.raises(Exception, match="one token length"):
        list(job)


def test_prompts_of_one_token_decode_together_too(loaded):
    """A prompt of one token has no scored position: its group scores none, and decodes as alone."""
    backend = HFBackend(loaded("gpt2"), lens_chunk=2, lens_precision="float32")
    singles = [(t, ids, None) for t in ("x", "y", "a", "b", "=") if len(ids := backend.encode_prompt(t)[0]) == 1]
    assert len(singles) >= 3
    settings = GenerationSettings(SamplingParams(max_new_tokens=5), k=4)
    job, _events = together(backend, singles, settings)
    for prompt, run in zip(singles, job.runs, strict=True):
        assert len(run.prompt) == 1
        assert_same_runs(run, alone(backend, prompt, settings)[0])
