"""Run statistics (`core/stats.py`) against an independent reference (tests/stats_reference.py)
on the reloaded arrays of real runs made by a tiny model through the engine, and on synthetic runs
built to hit the edge cases (ties, bin edges, kinds)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from tests import stats_reference as ref
from tests.factories import add_random_branches, generate_run, make_run, score_text
from tokentui.core import stats
from tokentui.core.params import SamplingParams
from tokentui.store.runfile import load_run, save_run

APPROX = dict(rel=1e-12, abs=1e-12)


@pytest.fixture(scope="module")
def real_runs(loaded, tmp_path_factory):
    """Two sampled runs of the tiny GPT-2 (the first starting with a forced text and with a child
    branch), and a teacher-forced one — saved and loaded back: the numbers are of the files."""
    from tokentui.engine import jobs
    from tokentui.engine.hf.backend import HFBackend

    backend = HFBackend(loaded("gpt2"), lens_chunk=0)
    sampled = SamplingParams(temperature=1.0, seed=3, max_new_tokens=40)
    a, _ = generate_run(backend, "def f(x):", sampled, k=5, forced=" return")
    fork = a.branches[0].fork_position + 17
    list(jobs.Fork(backend, a, 0, fork, SamplingParams(max_new_tokens=12), token_ids=[int(a.sequence(0)[fork]) ^ 1]))
    b, _ = generate_run(backend, "import os\n", SamplingParams(temperature=1.0, seed=9, max_new_tokens=30), k=5)
    c = score_text(backend, "class A:\n    def g(self):\n        return 1\n", k=5)
    d = tmp_path_factory.mktemp("stats-runs")
    return [load_run(save_run(r, d / f"{name}.tokentui")) for name, r in zip("abc", (a, b, c))]


def assert_summary(got: stats.Summary, want: dict) -> None:
    assert got.tokens == want["tokens"]
    for what in ("entropy", "probability"):
        sp = getattr(got, what)
        for key, value in want[what].items():
            if value is None:
                assert math.isnan(getattr(sp, key)), (what, key)
            else:
                assert getattr(sp, key) == pytest.approx(value, **APPROX), (what, key)
    assert got.mean_loss == pytest.approx(want["mean_loss"], **APPROX)
    assert got.perplexity == pytest.approx(want["perplexity"], **APPROX)
    assert list(got.ranks) == want["ranks"] and sum(got.ranks) == got.tokens


def assert_stats(got: stats.Stats, tokens: list[dict], bins: int, top: int) -> None:
    assert_summary(got.summary, ref.summary(tokens))
    for d, want in zip(got.deciles, ref.deciles(tokens), strict=True):
        assert (d.low, d.high) == pytest.approx((want["low"], want["high"]), **APPROX)
        assert d.count == want["count"]
        for key in ("mean_entropy", "mean_probability"):
            if want[key] is None:
                assert math.isnan(getattr(d, key))
            else:
                assert getattr(d, key) == pytest.approx(want[key], **APPROX)
        assert list(d.examples) == want["examples"]
    assert sum(d.count for d in got.deciles) == len(tokens)
    for p, want in zip(got.positions, ref.positions(tokens, bins), strict=True):
        assert p.count == want["count"]
        for key in ("mean_entropy", "mean_probability"):
            if want[key] is None:
                assert math.isnan(getattr(p, key))
            else:
                assert getattr(p, key) == pytest.approx(want[key], **APPROX)
    for name, indices in ref.extremes(tokens, top).items():
        shown = got.extremes[name]
        assert [(t.branch, t.position) for t in shown] == [
            (tokens[j]["branch"], tokens[j]["position"]) for j in indices
        ], name
        for t, j in zip(shown, indices):
            want = tokens[j]
            assert (t.token, t.before, t.after, t.rank) == (want["token"], want["before"], want["after"], want["rank"])
            assert t.entropy == want["entropy"] and t.logprob == want["logprob"]


@pytest.mark.parametrize("branch", [0, 1, None], ids=["branch0", "branch1", "whole-run"])
def test_one_run_against_the_reference(real_runs, branch):
    run = real_runs[0]
    rep = stats.report([stats.select(run, branch, top=4)], bins=7)
    tokens = ref.counted(run, branch, ("generated",))
    assert len(tokens) > 20
    assert rep.rows[0].source.kinds == ("generated",)
    assert_stats(rep.all, tokens, 7, 4)
    assert_summary(rep.rows[0].summary, ref.summary(tokens))


def test_the_whole_run_counts_each_recorded_token_once(real_runs):
    run = real_runs[0]
    whole = stats.select(run)
    own = sum(1 for b in run.branches for i in range(len(b.steps)) if b.kind(i) == "generated")
    assert len(whole) == own
    # branch 1's own tokens keep their place in branch 1's sequence: i counts from its start
    child = ref.counted(run, 1)
    fork = run.branches[1].fork_position
    tail = [t["i"] for t in child if t["position"] >= fork]
    assert whole.index[-len(tail) :].tolist() == tail and set(whole.length[-len(tail) :].tolist()) == {len(child)}


def test_kinds_auto_forced_prompt_and_all(real_runs):
    run, _, scored = real_runs
    n_forced = run.branches[0].n_forced
    assert n_forced >= 1
    forced = stats.select(run, 0, ("forced",))
    assert len(forced) == n_forced and forced.sources[0].kinds == ("forced",)
    with_prompt = stats.select(run, 0, None, include_prompt=True)
    assert with_prompt.sources[0].kinds == ("prompt", "generated")
    assert len(with_prompt) == len(ref.counted(run, 0, ("prompt", "generated")))
    everything = stats.select(run, 0, stats.parse_kinds("all"))
    assert len(everything) == run.length(0) - 1  # every position but 0
    # a teacher-forced run has only prompt positions: auto counts them
    auto = stats.select(scored)
    assert auto.sources[0].kinds == ("prompt",)
    assert_stats(stats.compute(auto, 10), ref.counted(scored, None, ("prompt",)), 10, 5)


def test_several_runs_are_the_statistics_of_their_tokens_together(real_runs):
    a, b, scored = real_runs
    sels = [
        stats.select(a, top=6, label="1"),
        stats.select(b, 0, top=6, label="2"),
        stats.select(scored, top=6, label="3"),
    ]
    rep = stats.report(sels, bins=5)
    parts = [ref.counted(a), ref.counted(b, 0), ref.counted(scored, None, ("prompt",))]
    assert_stats(rep.all, [t for p in parts for t in p], 5, 6)
    assert [r.source.label for r in rep.rows] == ["1", "2", "3"]
    for row, tokens in zip(rep.rows, parts, strict=True):
        assert_summary(row.summary, ref.summary(tokens))
        assert [p.count for p in row.positions] == [p["count"] for p in ref.positions(tokens, 5)]
    # not the mean of the runs' perplexities: the token-weighted one
    ppl = [r.summary.perplexity for r in rep.rows]
    assert rep.all.summary.perplexity != pytest.approx(float(np.mean(ppl)))


def test_position_bins_are_exact_at_their_edges():
    """100 tokens in 100 bins: one each. With floats, 57/100·100 = 56.99999999999999 would put
    token 57 into bin 56."""
    run = make_run(n_branch_steps=(100, 3))
    rep = stats.stats_of(run, 0, bins=100)
    assert [p.count for p in rep.all.positions] == [1] * 100
    tokens = ref.counted(run, 0)
    assert [p.mean_entropy for p in rep.all.positions] == pytest.approx([t["entropy"] for t in tokens])


def test_ties_deciles_and_extremes_follow_the_definitions():
    """Entropies with many ties: quantile edges fall on repeated values (some deciles empty), and
    the extremes take the earlier token first."""
    run = make_run(n_branch_steps=(40, 3))
    steps = run.branches[0].steps
    steps.set_values("entropy", 0, np.array([0.5, 0.5, 0.5, 1.0, 2.0] * 8, dtype=np.float32))
    steps.set_values("logprob", 0, np.full(40, -0.25, dtype=np.float32))
    rep = stats.stats_of(run, 0, top=3)
    tokens = ref.counted(run, 0)
    assert_stats(rep.all, tokens, 10, 3)
    assert [d.count for d in rep.all.deciles].count(0) >= 3
    assert [t.position for t in rep.all.extremes["most_confident"]] == [4, 5, 6]


def test_a_loss_past_floats_range_has_an_infinite_perplexity(tmp_path):
    """A run file may hold log-probabilities of −800 (tokentui records −10,000 for a ruled-out
    token): the mean loss's exp overflowed and `stats` crashed (`S` closed the explorer). The
    perplexity is ∞, written ∞ in tables and null in JSON and CSV."""
    import json

    from tokentui.store.export import json_text
    from tokentui.store.seed_tables import sample_record

    run = make_run(n_branch_steps=(10, 3))
    for b in run.branches:
        b.steps._a["logprob"][:] = -800.0
    run.prompt._a["logprob"][1:] = -800.0
    run = load_run(save_run(run, tmp_path / "r.tokentui"))
    rep = stats.stats_of(run, 0)
    assert rep.all.summary.mean_loss == pytest.approx(800.0) and rep.all.summary.perplexity == math.inf
    assert stats.fmt(rep.all.summary.perplexity) == "∞"
    text = json_text(rep.to_dict())  # (as `stats --json` writes it: standard JSON, no Infinity)
    assert "Infinity" not in text and '"perplexity":null' in text.replace(" ", "") and json.loads(text)
    assert stats.perplexity(700.0) == pytest.approx(math.exp(700.0)) and math.isnan(stats.perplexity(math.nan))
    from tokentui.core.metrics import summary  # (`score`'s summary line: one masked token, −10,000)

    assert summary(np.array([math.nan, -1e4, -1.0, -2.0]), np.ones(4))["perplexity"] == math.inf
    assert sample_record(run, 0, "all")["perplexity"] is None
    from tokentui.store.seed_tables import ModelTotals, _Results  # (batch's summary CSV and seed 003's file)

    totals = ModelTotals()
    totals.add(run, "all")
    assert totals.row("m")["perplexity"] is None and totals.row("m")["mean_loss"] == pytest.approx(800.0)
    out = io.StringIO()
    results = _Results(out, "m", [0, 1], {})
    results.add(sample_record(run, 0, "all"))
    results.add(sample_record(make_run(), 1, "all"))  # (a finite one: the mean was of it alone)
    results.close()
    assert out.getvalue().rstrip().endswith('"average_perplexity": null}')  # (∞: it was the other items' mean)


def test_options_and_errors():
    assert stats.parse_kinds("auto") is None
    assert stats.parse_kinds("prompt, generated") == ("prompt", "generated")
    with pytest.raises(stats.StatsError):
        stats.parse_kinds("sampled")
    for bins, top in ((0, 5), (10, -1), (stats.MAX_BINS + 1, 5)):
        with pytest.raises(stats.StatsError):
            stats.check_options(bins, top)
    with pytest.raises(stats.StatsError, match="no branch 7"):
        stats.stats_of(make_run(), 7)


def test_plots_break_their_lines_at_empty_bins():
    """Every bin is a point, an empty one NaN; the drawn line has no ink over an empty bin
    between filled ones (it was drawn straight across, showing values no token had)."""
    from tokentui.tui.plots import plot_text

    run = make_run(n_branch_steps=(6, 3))
    rep = stats.stats_of(run, 0, bins=20)  # 6 tokens in 20 bins: most bins empty
    entropy, probability, ranks = stats.plots(rep.all)
    bins = rep.all.positions
    assert entropy.x == tuple((p.low + p.high) / 2 for p in bins)
    for spec, attr in ((entropy, "mean_entropy"), (probability, "mean_probability")):
        for p, y in zip(bins, spec.y):
            assert (math.isnan(y) and not p.count) or y == getattr(p, attr)
    assert ranks.y == tuple(float(c) for c in rep.all.summary.ranks) and ranks.labels == stats.RANK_LABELS
    lines = plot_text(entropy, 102, 20).splitlines()
    top = next(i for i, ln in enumerate(lines) if "┌" in ln)
    bottom = next(i for i, ln in enumerate(lines) if "└" in ln)
    left, right = lines[top].index("┌"), lines[top].index("┐")
    filled = [i for i, p in enumerate(bins) if p.count]
    inner = [i for i in range(filled[0] + 1, filled[-1]) if not bins[i].count]
    assert inner  # (the case holds gaps between filled bins)
    lone = [i for i in filled if all(not (0 <= j < len(bins)) or not bins[j].count for j in (i - 1, i + 1))]
    assert lone and sum(ln.count("•") for ln in lines) == len(lone)  # (a lone point: a dot, seen)
    for i in inner:
        col = left + 1 + round(entropy.x[i] * (right - left - 2))
        assert all(ln[col : col + 1] in ("", " ") for ln in lines[top + 1 : bottom]), (i, col)


def test_probability_plot_scales_to_its_bins():
    """Bins of p(chosen) 0.52…0.58 fill the plot's height (a fixed 0–1 axis drew them as one flat
    row); the axis always holds every bin, stays inside [0, 1] and is at least 0.1 tall."""
    from dataclasses import replace

    from tokentui.tui.plots import plot_text

    rep = stats.stats_of(make_run(n_branch_steps=(40, 3)), 0, bins=5)
    close = replace(rep.all, positions=[replace(p, mean_probability=0.52 + 0.015 * p.bin) for p in rep.all.positions])
    probability = stats.plots(close)[1]
    assert probability.y == tuple(0.52 + 0.015 * k for k in range(5))
    lines = plot_text(probability, 60, 14).splitlines()
    top = next(i for i, ln in enumerate(lines) if "┌" in ln)
    bottom = next(i for i, ln in enumerate(lines) if "└" in ln)
    inked = [ln for ln in lines[top + 1 : bottom] if any(0x2580 <= ord(c) <= 0x259F for c in ln)]
    assert len(inked) >= 5, "\n".join(lines)
    rng = np.random.default_rng(5)
    for _ in range(300):
        ys = tuple(float(y) for y in rng.uniform(0, 1) * rng.uniform(0, 1, rng.integers(1, 8)) + rng.uniform(0, 0.5))
        ys = tuple(min(y, 1.0) for y in ys) + (math.nan,)
        low, high = stats.probability_range(ys)
        finite = [y for y in ys if math.isfinite(y)]
        assert 0.0 <= low <= min(finite) and max(finite) <= high <= 1.0
        assert high - low >= stats.MIN_PROBABILITY_SPAN - 1e-12
    assert stats.probability_range((math.nan,)) == (0.0, 1.0)


def test_branches_of_branches_count_each_token_in_its_own_sequence():
    """Branches forking their parents' own tokens and their inherited prefixes, some with forced
    tokens: every stored token once, with i and n of the sequence of the branch that holds it."""
    run = make_run(n_branch_steps=(40, 3))
    add_random_branches(run, np.random.default_rng(11), 60, forced_every=3)
    for kinds in (("generated",), ("forced", "generated"), stats.KINDS):
        sel = stats.select(run, None, kinds, top=5)
        tokens = ref.counted(run, None, kinds)
        assert sel.index.tolist() == [t["i"] for t in tokens] and sel.length.tolist() == [t["n"] for t in tokens]
        assert_stats(stats.compute(sel, 8), tokens, 8, 5)


def test_forced_tokens_left_out_are_said():
    """A trial took the rank-2 alternative (a forced token) and read "100% rank 1": auto counts the
    generated tokens only. The forced tokens it leaves out are now counted and said."""
    run = make_run()  # branch 1: one forced step, then generated ones
    auto = stats.select(run, 1)
    assert auto.sources[0].forced_out == 1 and stats.forced_left_out(auto.sources) == " · 1 forced not counted"
    every = stats.select(run, 1, ("generated", "forced"))
    assert every.sources[0].forced_out == 0 and stats.forced_left_out(every.sources) == ""
    assert stats.select(run, 0).sources[0].forced_out == 0  # (branch 0 has none)


def test_a_possible_token_s_p_never_reads_zero():
    """A trial's random model had every extreme at "p 0.000"; the p keeps three decimals, or
    scientific form where they would read 0."""
    import math

    from tokentui.core.stats import fmt_p

    assert [fmt_p(p) for p in (0.5, 0.0005, 0.0003, 3.2e-7, 0.0, math.nan)] == [
        "0.500",
        "0.001",
        "3e-4",
        "3e-7",
        "0.000",
        "–",
    ]
    assert float(fmt_p(0.0003)) == pytest.approx(0.0003, rel=0.2)


def test_a_context_with_no_room_beside_the_token_shows_the_token_whole():
    """In a column narrower than the token and two "…", the sides' "…" pushed the token itself
    past the width (`…␠hel…` for ␠hello in 7 cells): the token alone, whole."""
    from rich.cells import cell_len

    from tokentui.core.display import lone_token
    from tokentui.core.stats import Token, fit_context

    t = Token(0, 0, 0, 5, b" hello", b"some text before it", b" and after it", 1.0, -1.0, 1)
    tok = lone_token(b" hello")
    for width in range(cell_len(tok), cell_len(tok) + 2):
        assert fit_context(t, width) == ("", tok, "")
    b, shown, a = fit_context(t, cell_len(tok) + 2)
    assert shown == tok and b == "…" and a == "…"
    b, shown, a = fit_context(t, 40)
    assert cell_len(b + shown + a) <= 40 and shown == tok
