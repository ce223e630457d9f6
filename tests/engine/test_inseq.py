"""tokentui's attributions against inseq itself, where inseq is installed (the suite does not
depend on it: these tests skip without it). Checked with inseq 0.7.1 and captum 0.9.0:

- saliency: inseq's default (gradient of p, L2 over the embedding, normalised) as it is;
- input × gradient: inseq's raw attributions of log p (`attributed_fn="probability", logprob=True`)
  summed over the embedding dimension;
- integrated gradients: the same, with inseq's baseline (the UNK token's embedding) made the zero
  baseline by zeroing that embedding row in a private copy of the model.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from tokentui.engine import jobs
from tokentui.engine.hf.backend import HFBackend
from tokentui.engine.hf.loading import load_model

inseq = pytest.importorskip("inseq", reason="inseq is not installed (optional reference)")

METHODS = {
    "saliency": "saliency",
    "input_x_gradient": "input-x-gradient",
    "integrated_gradients": "integrated-gradients",
}


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("theirs", list(METHODS))
def test_matches_inseq(model_dirs, family, theirs):
    lm = load_model(str(model_dirs[family]))  # a private copy: its UNK embedding is changed below
    tok = lm.tokenizer
    if tok.unk_token_id is None:
        pytest.skip("the tokenizer has no UNK token (inseq's baseline)")
    with torch.no_grad():
        lm.model.get_input_embeddings().weight[tok.unk_token_id] = 0
    backend = HFBackend(lm, lens_chunk=0)
    prompt = "def wrap(text, width):"
    ids = tok(prompt + " return")["input_ids"]
    n_prompt = len(tok(prompt)["input_ids"])
    job = jobs.Score(backend, ids=ids, k=5)
    list(job)
    run = job.run
    positions = list(range(n_prompt, len(ids)))
    list(jobs.Attribute(backend, run, 0, positions, METHODS[theirs], steps=50))
    ours = run.attributions[-1]

    extra: dict = {"n_steps": 50} if theirs == "integrated_gradients" else {}
    if theirs != "saliency":
        extra.update(attributed_fn="probability", logprob=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = inseq.load_model(lm.model, theirs, tokenizer=tok)
        out = model.attribute(tok.decode(ids[:n_prompt]), tok.decode(ids), show_progress=False, **extra)
    seq = out.sequence_attributions[0]
    if theirs == "saliency":
        ref = seq.aggregate().target_attributions.float().numpy()
    else:
        ref = seq.target_attributions.float().sum(-1).numpy()
    assert ref.shape[1] == len(positions)
    for j, t in enumerate(positions):
        want = np.nan_to_num(ref[:t, j])
        got = ours.scores[j, :t]
        assert np.abs(got - want).max() <= 1e-4 * max(np.abs(want).max(), 1e-12), (theirs, t, got, want)
