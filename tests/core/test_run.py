"""The branch tree and columns: positions resolve through ancestors; bad operations are refused."""

import math

import numpy as np
import pytest

from tests.factories import make_run
from tokentui.core.columns import nan_step
from tokentui.core.metrics import METRICS, rank_bucket, summary
from tokentui.core.run import RunError, SamplingParams


def test_sequences_follow_the_tree():
    run = make_run()
    root, child = run.branches
    seq0, seq1 = run.sequence(0), run.sequence(1)
    assert len(seq0) == 4 + 5 and len(seq1) == 6 + 3
    assert (seq1[:6] == seq0[:6]).all()
    assert seq1[6] == child.steps.col("token_id")[0]
    assert run.kinds(1) == ["prompt"] * 4 + ["generated"] * 2 + ["forced"] + ["generated"] * 2
    assert run.children(0) == [child] and run.ancestry(1) == [child, root]
    col = run.column(1, "entropy")
    assert np.isnan(col[0]) and col[7] == child.steps.col("entropy")[1]


def test_bad_positions_and_branches_are_refused():
    run = make_run()
    with pytest.raises(RunError, match="out of range"):
        run.add_branch(0, 99)
    with pytest.raises(RunError, match="no branch"):
        run.step(7, 0)
    with pytest.raises(RunError, match="past the end"):
        run.step(0, 9)
    with pytest.raises(RunError):
        SamplingParams(top_p=0).check()
    with pytest.raises(RunError):
        SamplingParams(temperature=-1).check()


def test_metrics():
    assert rank_bucket(np.array([1, 2, 10, 11, 100, 1000, 1001, 0])).tolist() == [0, 1, 1, 2, 2, 3, 4, -1]
    lp = np.log(np.array([0.5, 0.25], dtype=np.float32))
    cols = {"logprob": lp, "entropy": np.array([1.0, 2.0], dtype=np.float32), "rank": np.array([1, 20])}
    assert METRICS["probability"].compute(cols.__getitem__) == pytest.approx([0.5, 0.25])
    assert METRICS["surprisal"].compute(cols.__getitem__) == pytest.approx([1.0, 2.0])
    assert METRICS["rank"].compute(cols.__getitem__).tolist() == [0.0, 2.0]
    assert METRICS["probability"].normalized(np.array([1.0, 0.0])).tolist() == [0.0, 1.0]
    s = summary(np.array([np.nan, -1.0, -3.0]), np.array([np.nan, 1.0, 2.0]))
    assert s["tokens"] == 2 and s["mean_logprob"] == -2.0 and s["perplexity"] == pytest.approx(np.exp(2.0))


def test_finite_mean_skips_what_is_not_a_number():
    run = make_run(n_branch_steps=(6, 2))
    steps = run.branches[0].steps
    assert steps.finite_mean("logprob") == pytest.approx(steps.col("logprob").astype(np.float64).mean())
    # the prompt's first step has NaN statistics, and prompt steps are never sampled
    assert math.isnan(run.prompt.finite_mean("sampler_logprob"))
    assert run.prompt.finite_mean("entropy") == pytest.approx(np.nanmean(run.prompt.col("entropy")))


def test_removing_a_subtree_renumbers_what_is_kept_and_keeps_its_sequences():
    run = make_run(n_branch_steps=(8, 3))
    a = run.add_branch(0, 6)  # 2
    for t in (5, 6):
        run.append_step(a.id, nan_step(a.end, t))
    b = run.add_branch(1, 8)  # 3: a child of 1
    run.append_step(b.id, nan_step(b.end, 7))
    c = run.add_branch(a.id, 7)  # 4: a child of 2
    run.append_step(c.id, nan_step(c.end, 9))
    before = {i: run.sequence(i).tolist() for i in range(len(run.branches))}
    assert run.subtree(1) == [1, 3] and run.subtree(0) == [0, 1, 2, 3, 4]
    mapping = run.remove_subtree(1)
    assert mapping == {0: 0, 2: 1, 4: 2}
    assert [b.id for b in run.branches] == [0, 1, 2] and [b.parent for b in run.branches] == [None, 0, 1]
    for old, new in mapping.items():
        assert run.sequence(new).tolist() == before[old]
    with pytest.raises(RunError, match="root branch cannot be deleted"):
        run.remove_subtree(0)


def test_text_from_any_start_is_the_full_sequence_s_bytes_from_there():
    """`Run.text(b, start)` reads a branch's own steps alone when `start` is among them (the JSON
    export's per-branch text was quadratic on a long path): the same bytes as the whole sequence's
    from `start`, for every branch of a random tree and every start."""
    from tests.factories import add_random_branches

    run = make_run(n_branch_steps=(12, 3))
    add_random_branches(run, np.random.default_rng(3), 25)
    for b in run.branches:
        seq = run.sequence(b.id).tolist()
        for start in range(len(seq) + 1):
            assert run.text(b.id, start) == run.tokens.text(seq[start:]), (b.id, start)


def test_only_the_model_that_made_a_run_grows_it():
    meta = make_run().meta  # model "m"
    assert meta.not_grown_by("m", meta.vocab_size, meta.n_layers) is None
    other = meta.not_grown_by("demo", meta.vocab_size, meta.n_layers)
    assert (
        other
        == "the run was made by m and demo is loaded: a run grows under its own model only (open it with --model m)"
    )
    same_name = meta.not_grown_by("m", meta.vocab_size + 1, meta.n_layers)
    assert same_name is not None
    assert (
        f"made by m ({meta.vocab_size:,} ids, {meta.n_layers} layers) and m ({meta.vocab_size + 1:,} ids" in same_name
    )
    assert same_name.endswith("(give --model the folder of the model that made it)")
    assert meta.not_grown_by("m", meta.vocab_size, meta.n_layers + 1) is not None
    meta.model = "evil\x1b]52;c;x\x07"  # a run file's name: shown escaped
    assert "\x1b" not in (meta.not_grown_by("demo", meta.vocab_size, meta.n_layers) or "\x1b")


def test_a_branch_of_forced_text_alone_is_described_so():
    """A guided tree's root branch takes the forced text and nothing more: its settings line read
    'greedy · max 0 tokens'."""
    assert SamplingParams(max_new_tokens=0).describe() == "forced text only"
    assert SamplingParams(max_new_tokens=5).describe() == "greedy · max 5 tokens"


def test_a_fork_where_the_parent_begins_hangs_from_the_branch_holding_its_prefix():
    """A trial resampled (r) at the position where #1 left #0: the new branch became #1's child,
    sharing none of #1's tokens, and the tree, K and d described a link that was not there. It
    hangs from #0, whose tokens its prefix is; its sequence is the same either way."""
    run = make_run(n_branch_steps=(8, 3))
    one = run.branches[1]
    prefix = run.sequence(1)[: one.fork_position].tolist()
    b = run.add_branch(1, one.fork_position)  # at #1's first own token
    assert b.parent == 0 and run.sequence(b.id).tolist() == prefix
    run.append_step(b.id, nan_step(b.end, 7))
    c = run.add_branch(b.id, b.fork_position - 1)  # before it: further up
    assert c.parent == 0
    d = run.add_branch(1, one.fork_position + 1)  # after #1's first own token: #1's child
    assert d.parent == 1 and run.sequence(d.id).tolist() == run.sequence(1)[: one.fork_position + 1].tolist()
