"""The explorer comparing live with a second model, driven by key presses: `explore --model A
--compare B` generates, then compares under B; m colours by KL(A‖B), ) jumps to a top-10 % KL
position, the alternatives pane shows B's rank; the numbers are `tokentui compare`'s on the same
ids. B loaded at run time with the B key (a B with another tokenizer refused in one line first),
and the saved run replayed in a process that never imports torch."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.factories import explorer, other_tokenizer_model_dir, perturbed_model_dir, rendered, wait_for
from tokentui.core.params import GenerationSettings, SamplingParams
from tokentui.store.runfile import load_run
from tokentui.tui.state import AppState
from tokentui.tui.widgets.alternatives import AlternativesPane
from tokentui.tui.widgets.status_bar import StatusBar

K = 4
SETTINGS = GenerationSettings(SamplingParams(max_new_tokens=14), k=K)


@pytest.fixture(scope="module")
def b_dir(model_dirs, tmp_path_factory):
    return perturbed_model_dir(model_dirs["gpt2"], tmp_path_factory.mktemp("live-b"))


def compared(app, branch: int) -> bool:
    """Whether every position (1…) of the branch on screen has model B's values."""
    run = app.run_obj
    if run is None or "kl_ab" not in run.layout.names or len(run.branches) <= branch:
        return False
    if run.branches[branch].status == "running":
        return False
    return bool(np.isfinite(run.column(branch, "kl_ab")[1:]).all())


def compare_reference(model_a, model_b, ids: list[int]):
    """`tokentui compare`'s run of these ids (engine/hf/compare.py ModelPair, not the explorer's path)."""
    from tokentui.engine.backend import ModelSpec
    from tokentui.engine.hf.backend import HFBackend
    from tokentui.engine.hf.compare import ModelPair
    from tokentui.engine.hf.loading import load_model

    a, b = load_model(str(model_a)), load_model(str(model_b))
    pair = ModelPair(HFBackend(a, lens_chunk=0), HFBackend(b, lens_chunk=0), ModelSpec(str(model_b)))
    [run] = pair.compare([pair.item_from_ids(ids)], k=K)
    return run


async def test_explore_compare_colours_jumps_and_shows_b(model_dirs, b_dir, cache_dir):
    app = explorer(model=str(model_dirs["gpt2"]), compare=str(b_dir), settings=SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE and app.session.model_b_loaded, what="both models")
        assert f"{model_dirs['gpt2'].name} vs {b_dir.name}" in rendered(app.query_one(StatusBar))
        await pilot.resize_terminal(80, 24)  # at 80 columns the models' details go, "A vs B" stays
        await pilot.pause(0.2)
        status = rendered(app.query_one(StatusBar))
        assert f"{model_dirs['gpt2'].name} vs {b_dir.name}" in status and "layers" not in status
        await pilot.resize_terminal(120, 40)
        await pilot.click("#prompt")
        await pilot.press(*"def f(x):")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: compared(app, 0), what="the comparison")
        run = app.run_obj
        assert run.meta.model_b["model"] == b_dir.name
        # the numbers are what `tokentui compare` gives for the same ids
        ref = compare_reference(model_dirs["gpt2"], b_dir, run.sequence(0).tolist())
        for name in ("kl_ab", "kl_ba", "js", "logprob_b", "entropy_b"):
            np.testing.assert_allclose(run.column(0, name)[1:], ref.prompt.col(name)[1:], atol=1e-5, err_msg=name)
        for name in ("rank_b", "topk_ids_b"):
            np.testing.assert_array_equal(run.column(0, name)[1:], ref.prompt.col(name)[1:], err_msg=name)
        # m until the stream is coloured by KL(A‖B)
        for _ in range(6):
            if app.metric == "kl":
                break
            await pilot.press("m")
        assert app.metric == "kl"
        kl = run.column(0, "kl_ab").astype(np.float64)
        np.testing.assert_array_equal(app.stream.view.metric_values(), kl)
        # ) jumps to a position among the top 10 % of KL(A‖B) of the answer (past the prompt)
        await pilot.press("home", "right_parenthesis")
        pos, n = app.stream.cursor, len(run.prompt)
        top = np.quantile(kl[n:], 0.9)
        assert pos >= n and kl[pos] >= top
        assert pos == n + int(np.flatnonzero((kl[n:] >= top) & (kl[n:] > 0))[0])
        await pilot.pause()
        shown = rendered(app.query_one(AlternativesPane))
        st = run.step(0, pos)
        assert f"B: p={math.exp(st.get('logprob_b')):.4f} · rank {st.get('rank_b')} ·" in shown
        assert f"KL(A‖B) {st.get('kl_ab'):.3f}" in shown
        # a branch is compared too
        await pilot.press("r")
        await wait_for(pilot, lambda: compared(app, 1), what="the branch's comparison")
        assert app.branch_id == 1 and app.metric == "kl"
        await wait_for(pilot, lambda: not app.run_obj.dirty, what="the save after the comparison")
    saved = load_run(cache_dir / f"{run.id}.tokentui")
    assert saved.meta.model_b == run.meta.model_b
    for b in (0, 1):
        np.testing.assert_array_equal(saved.column(b, "kl_ab"), run.column(b, "kl_ab"))
        np.testing.assert_array_equal(saved.column(b, "topk_ids_b"), run.column(b, "topk_ids_b"))
    # the saved run replays with all of it, without torch
    high = pos  # (the answer's first position of high KL, as above)
    code = textwrap.dedent(f"""
        import asyncio, sys
        from tokentui.store.runfile import load_run
        from tokentui.tui.start import explorer
        async def main():
            app = explorer(run=load_run({str(cache_dir / f"{run.id}.tokentui")!r}))
            async with app.run_test(size=(120, 40)) as pilot:
                await pilot.pause(0.3)
                app.show_branch(0, cursor=None)
                await pilot.press("m", "m", "m", "m", "home", "right_parenthesis")
                print("metric:" + app.metric, "cursor:" + str(app.stream.cursor))
        asyncio.run(main())
        print("heavy:" + ",".join(m for m in ("torch", "transformers") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "heavy:" and lines[-2] == f"metric:kl cursor:{high}"


async def test_b_key_loads_model_b_after_refusing_another_tokenizer(model_dirs, b_dir, cache_dir, tmp_path):
    from textual.widgets import Input

    other = other_tokenizer_model_dir(tmp_path / "other")
    app = explorer(model=str(model_dirs["gpt2"]), prompt="x = [1, 2", settings=SETTINGS)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="model load")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.state is AppState.IDLE and app.run_obj is not None, what="generation")
        assert "kl_ab" not in app.run_obj.layout.names
        errors: list[str] = []
        app.notify = lambda message, **kw: errors.append(message)  # type: ignore[method-assign]
        await pilot.press("B")
        app.screen.query_one(Input).value = str(other)
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(errors), what="the refusal")
        assert "one tokenizer" in errors[-1] and "\n" not in errors[-1]
        assert app.state is AppState.IDLE and not app.session.model_b_loaded
        assert app.session.note.startswith("model B not loaded: ") and "one tokenizer" in app.session.note
        await pilot.press("c")  # the explorer keeps working, uncompared
        await wait_for(pilot, lambda: app.state is AppState.IDLE and app.run_obj.length(0) > 20, what="continue")
        assert "kl_ab" not in app.run_obj.layout.names
        await pilot.press("B")
        app.screen.query_one(Input).value = str(b_dir)
        await pilot.press("enter")
        await wait_for(pilot, lambda: compared(app, 0), what="the open run compared")
        assert app.session.model_b_loaded == b_dir.name
        run = app.run_obj
        ref = compare_reference(model_dirs["gpt2"], b_dir, run.sequence(0).tolist())
        np.testing.assert_allclose(run.column(0, "kl_ab")[1:], ref.prompt.col("kl_ab")[1:], atol=1e-5)
        # another refused B leaves this one comparing: the status bar still says "A vs B", and
        # what is grown from now on is compared under it
        errors.clear()
        await pilot.press("B")
        app.screen.query_one(Input).value = str(other)
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(errors), what="the second refusal")
        assert app.session.model_b_loaded == b_dir.name and f"still comparing with {b_dir.name}" in app.session.note
        assert errors[-1].endswith(f"(still comparing with {b_dir.name})"), errors  # (the pop-up too, not only the bar)
        assert f" vs {b_dir.name}" in rendered(app.query_one(StatusBar))
        n = run.length(0)
        await pilot.press("c")
        await wait_for(pilot, lambda: app.run_obj.length(0) > n and compared(app, 0), what="the continuation compared")


def test_while_b_compares_the_status_says_so_and_a_new_job_says_it_waits():
    """A trial saw 'idle' for the 100 s model B compared a run of 26 branches, and a generation
    asked for meanwhile showed nothing for 50 s: the engine takes it after the comparison. The
    Comparing events make the explorer say 'comparing' with the progress; a job begun meanwhile
    says it waits; Compared (or the comparison's failure) ends it."""
    from tests.factories import make_run
    from tokentui.engine.capabilities import Capabilities
    from tokentui.engine.events import Compared, Comparing, Failed, Loaded, PairLoaded, RunStarted
    from tokentui.tui.state import Session

    run = make_run()
    s = Session.start("a", GenerationSettings(), run)
    s.apply(Loaded("a", "cpu", "float32", 4, 1000, 0.1, Capabilities(lens=True)))
    s.apply(PairLoaded("b", "cpu", "float32", 0.2, {"model": "b"}))
    assert s.status_label == "idle"
    s.apply(Comparing(run.id, 1, 1, 26))
    assert s.status_label == "comparing" and s.note == "comparing branch #1 (2 of 26) · escape stops it"
    s.begin("generating a new run from the prompt … · escape cancels")
    assert s.note.endswith("(once the comparison with b is done)") and s.status_label == "generating"
    s.apply(Compared(run.id, (0, 1), 90, 103.7))
    assert not s.comparing_b
    s.apply(RunStarted(make_run()))  # the generation is under way: what runs, without the wait
    assert s.note == "generating a new run from the prompt … · escape cancels"
    s.state = AppState.IDLE
    for failed in ("Compare", "Generate"):  # (an error the comparison did not catch ends it too)
        s.apply(Comparing(run.id, 0, 0, 1))
        s.apply(Failed(failed, "out of memory"))
        assert s.status_label == "idle" and not s.comparing_b


async def test_escape_in_the_prompt_leaves_it_while_b_compares(model_dirs):
    """Model B compares on its own after every job (a trial's took 100 s): escape pressed to leave
    the prompt box left it, and did not stop the comparison; with nothing else to leave, escape
    stops the comparison."""
    app = explorer(model=str(model_dirs["gpt2"]), prompt="def f(x):")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="the model")
        app.session.comparing_b = True  # (as a Comparing event leaves it)
        await pilot.press("i")
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert app.focused is app.stream and app.session.note != "cancelling the comparison"
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert app.session.note == "cancelling the comparison"


async def test_at_80_columns_the_status_bar_says_which_branch_model_b_compares():
    """A tree search's 500 branches compared under model B: the bar read "comparing   gpt2 vs
    gpt2b · branch #1/502 · saved · comparing with gpt2b: b…", the branch compared cut off. The
    progress is what matters while B compares: it goes before the run's details."""
    from tests.factories import make_run
    from tokentui.engine.capabilities import Capabilities
    from tokentui.engine.events import Comparing, Loaded, PairLoaded

    run = make_run(n_branch_steps=(30, 3))
    app = explorer(run=run)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        s = app.session
        s.apply(Loaded("gpt2", "cpu", "float32", 4, 1000, 0.1, Capabilities(lens=True)))
        s.apply(PairLoaded("gpt2b", "cpu", "float32", 0.2, {"model": "gpt2b"}))
        s.apply(Comparing(run.id, 1, 401, 502))
        app.update_status()
        await pilot.pause()
        status = " ".join(rendered(app.query_one(StatusBar)).split())
        assert status.startswith("comparing") and "comparing branch #1 (402 of 502)" in status, status


def test_a_comparison_with_nothing_to_compare_leaves_the_note_as_it_was():
    """After a delete (or opening a run compared already) the check for branches B had not seen
    found none and the status bar said "compared 0 positions of 0 branches": the note the delete
    left stays; a comparison that did compare says what it did."""
    from tests.factories import make_run
    from tokentui.engine.capabilities import Capabilities
    from tokentui.engine.events import Compared, Loaded, PairLoaded
    from tokentui.tui.state import Session

    run = make_run()
    s = Session.start("a", GenerationSettings(), run)
    s.apply(Loaded("a", "cpu", "float32", 4, 1000, 0.1, Capabilities(lens=True)))
    s.apply(PairLoaded("b", "cpu", "float32", 0.2, {"model": "b"}))
    s.note = "deleted branch #2"
    s.apply(Compared(run.id, (), 0, 0.0))
    assert s.note == "deleted branch #2" and not s.comparing_b
    s.apply(Compared(run.id, (1,), 12, 0.5))
    assert s.note == "compared 12 positions of 1 branch in 0.5s"
