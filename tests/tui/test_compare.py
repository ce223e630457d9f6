"""A comparison of two models (`tokentui compare`) replayed in the explorer, driven by key presses:
the stream coloured by KL(A‖B) and by Δ log p, the jump to the next high-KL position, and both
models' top-k side by side with the token's rank under each."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from tests.factories import explorer, perturbed_model_dir, rendered, wait_for
from tokentui.store.runfile import load_run, save_run
from tokentui.tui.widgets.alternatives import AlternativesPane
from tokentui.tui.widgets.legend import Legend

TEXT = "def f(x):\n    return [x, x * 2, x * 3]  # three\n"


@pytest.fixture(scope="module")
def compared_path(loaded, model_dirs, tmp_path_factory):
    from tokentui.engine.backend import ModelSpec
    from tokentui.engine.hf.backend import HFBackend
    from tokentui.engine.hf.compare import ModelPair
    from tokentui.engine.hf.loading import load_model

    b = load_model(str(perturbed_model_dir(model_dirs["gpt2"], tmp_path_factory.mktemp("b"))))
    pair = ModelPair(HFBackend(loaded("gpt2"), lens_chunk=0), HFBackend(b, lens_chunk=0), ModelSpec("b"))
    [run] = pair.compare([pair.item(TEXT)], k=4)
    return save_run(run, tmp_path_factory.mktemp("runs") / f"{run.id}.tokentui")


async def test_replay_colours_by_kl_jumps_to_high_kl_and_shows_both_top_k(compared_path):
    run = load_run(compared_path)  # read back from the file, as replay does
    kl = run.column(0, "kl_ab").astype(np.float64)
    high = np.flatnonzero(kl >= np.quantile(kl[1:], 0.9))  # position 0 (NaN) is never high
    app = explorer(run=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run on screen")
        legend = app.query_one(Legend)
        await pilot.press("m", "m", "m", "m")  # probability → entropy → rank → surprisal → KL
        assert app.metric == "kl" and "KL(A‖B) [nats] models agree" in rendered(legend)
        np.testing.assert_array_equal(app.stream.view.metric_values(), kl)
        await pilot.press("m")
        assert app.metric == "delta" and "Δ log p (B − A)" in rendered(legend)
        delta = run.column(0, "logprob_b").astype(np.float64) - run.column(0, "logprob").astype(np.float64)
        np.testing.assert_allclose(app.stream.view.metric_values(), delta)
        await pilot.press("m")
        assert app.metric == "probability"  # and round again
        # ) and ( walk the positions of the top 10 % of KL(A‖B)
        await pilot.press("home")
        for want in high:
            await pilot.press("right_parenthesis")
            assert app.stream.cursor == want
        await pilot.press("right_parenthesis")  # none after the last: the cursor stays
        assert app.stream.cursor == high[-1]
        if len(high) > 1:
            await pilot.press("left_parenthesis")
            assert app.stream.cursor == high[-2]
        # the alternatives: p and rank under each model, the divergences, both top-k side by side
        pos = int(high[0])
        app.show_branch(0, cursor=pos)
        await pilot.pause()
        shown = rendered(app.query_one(AlternativesPane))
        st = run.step(0, pos)
        assert f"A: p={st.prob:.4f} · rank {st.rank} ·" in shown
        assert f"B: p={math.exp(st.get('logprob_b')):.4f} · rank {st.get('rank_b')} ·" in shown
        assert f"KL(A‖B) {st.get('kl_ab'):.3f}" in shown and "model A" in shown and "model B" in shown
        rows = [line for line in shown.splitlines() if "│" in line and line.strip()[:1].isdigit()]
        assert len(rows) == run.k
        for line, a_p, b_p in zip(rows, np.exp(st.topk_logprobs), np.exp(st.get("topk_logprobs_b").astype(np.float64))):
            left, right = line.split("│")
            for p, side in ((a_p, left), (b_p, right)):  # (0.415, or .415 where room is short; 1.00)
                assert f"{p:.3f}"[1:] in side or (p >= 0.9995 and "1.00" in side), line
        marked = sum("▶" in line.split("│")[0] for line in rows), sum("▶" in line.split("│")[1] for line in rows)
        assert marked == (int(st.rank <= run.k), int(st.get("rank_b") <= run.k))  # the token, where in the top k
        # at 80×24 each model's line stays one line (shorter separators rather than broken in two),
        # also with a real vocabulary's ranks and entropies (a trial's "B: p=0.0000 · rank 39990 · H=10.790")
        run.prompt._a["rank_b"][pos], run.prompt._a["entropy_b"][pos] = 39990, 10.79
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.2)
        pane = app.query_one(AlternativesPane)
        if not pane.display or not pane.has_class("shown"):
            await pilot.press("v")
        pane.show(run, 0, pos)
        lines = [line.strip() for line in rendered(pane).splitlines()]
        a = next(line for line in lines if line.startswith("A: p="))
        b = next(line for line in lines if line.startswith("B: p="))
        assert a.endswith(f"H={st.entropy:.3f}") and b.endswith("rank 39990 H=10.790"), lines
        # the side-by-side rows give the token room: p written .415 (a trial read ␠comp… for both
        # ␠complex and ␠complexity), one row each, both columns at one width
        rows = [line for line in rendered(pane).splitlines() if "│" in line and line.strip()[:1].isdigit()]
        assert len(rows) == run.k and len({line.index("│") for line in rows}) == 1
        for line, a_p in zip(rows, np.exp(st.topk_logprobs)):
            cell = re.fullmatch(r"\s*\d+ (.+) (\.\d{3}|1\.00) *", line.split("│")[0])
            assert cell is not None and cell.group(2) in (f"{a_p:.3f}"[1:], f"{a_p:.2f}"), line
            assert len(cell.group(1)) >= 1 + 7, line  # ▶ and a token of 7 cells (it was 6)


async def test_kl_jumps_go_nowhere_when_the_models_agree_everywhere(compared_path):
    """A model compared with itself: KL is 0 at every position, so no position is "where they
    differ most" (the top 10 % of all zeros was every position)."""
    run = load_run(compared_path)
    for cols in (run.prompt, *(b.steps for b in run.branches)):
        cols._a["kl_ab"][:] = 0.0
    app = explorer(run=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run on screen")
        await pilot.press("home", "right_parenthesis", "right_parenthesis")
        assert app.stream.cursor == 0


async def test_kl_jumps_on_a_branch_never_compared_say_so_not_that_the_models_agree(compared_path):
    """A branch with no comparison value at all (steered, so never compared): ( ) said "KL(A‖B) is
    0 at every position (the same model twice?)" — the values are unknown, not 0. A branch of
    zeros still says the models agree."""
    run = load_run(compared_path)
    for cols in (run.prompt, *(b.steps for b in run.branches)):
        cols._a["kl_ab"][:] = np.nan
    app = explorer(run=run)
    notes: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run on screen")
        app.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
        await pilot.press("right_parenthesis")
        assert notes == ["no position of this branch was compared under model B (a steered branch is not)"]
        for cols in (run.prompt, *(b.steps for b in run.branches)):
            cols._a["kl_ab"][:] = 0.0
        await pilot.press("right_parenthesis")
        assert "do not differ on this branch" in notes[-1], notes


async def test_the_kl_jumps_say_why_they_do_nothing_on_a_run_of_one_model():
    from tests.factories import make_run

    app = explorer(run=make_run(n_branch_steps=(30, 3)))
    notes: list[str] = []
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
        cursor = app.stream.cursor
        await pilot.press("left_parenthesis")
        await pilot.press("right_parenthesis")
        assert app.stream.cursor == cursor
        assert len(notes) == 2 and all("no second model in this run" in n for n in notes), notes


async def test_a_replayed_comparison_names_both_models_and_why_it_has_no_lens(compared_path):
    """Without a model the status bar names the run's own ("A vs B"; a trial found the names
    nowhere but in the opening line), and the layers pane says why a comparison has no lens (it
    named --lens-chunk 0, an option compare does not have)."""
    from tokentui.tui.widgets.layers import LayersPane
    from tokentui.tui.widgets.status_bar import StatusBar

    run = load_run(compared_path)
    app = explorer(run=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run on screen")
        status = rendered(app.query_one(StatusBar))
        assert f"{run.meta.model} vs {run.meta.model_b['model']}" in status and "no model loaded" in status, status
        text = " ".join(rendered(app.query_one(LayersPane)).split())
        assert "a comparison records no lens" in text and "--lens-chunk" not in text, text


async def test_the_delta_legend_keeps_its_colour_scale_whole_at_80_columns(compared_path):
    """The Δ log p legend ("Δ log p (B − A) [nats] B likes it more ▒▒▒ B likes it less") is wider
    than the token pane at 80 columns: it wrapped inside, and the scale's cells (spaces) were lost at the break. The name
    goes on its own line instead, the scale whole on the next."""
    app = explorer(run=load_run(compared_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run on screen")
        await pilot.press("m", "m", "m", "m", "m")
        assert app.metric == "delta"
        lines = [line.strip() for line in rendered(app.query_one(Legend)).splitlines()]
        assert lines[0] == "Δ log p (B − A) [nats]", lines
        assert re.match(r"B likes it more {4,}B likes it less", lines[1]), lines


async def test_a_position_b_never_scored_says_so_in_the_alternatives(compared_path):
    """A branch whose comparison was stopped (escape) showed A's alternatives alone, as a run of
    one model would: a trial took it for a run without a comparison. Its pane now says B has no
    values there."""
    run = load_run(compared_path)
    app = explorer(run=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run on screen")
        pane = app.query_one(AlternativesPane)
        await pilot.press("end")
        await pilot.pause(0.1)
        assert "KL(A‖B)" in rendered(pane) and "not compared" not in rendered(pane)
        for cols in (run.prompt, *(b.steps for b in run.branches)):
            cols._a["rank_b"][:] = 0  # (as a branch never compared holds it)
        await pilot.press("left")
        await pilot.pause(0.1)
        assert "model B: not compared here" in rendered(pane)
