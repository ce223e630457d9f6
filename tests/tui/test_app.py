"""The explorer driven with real key presses on a tiny real model (App.run_test + Pilot)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from rich.style import Style

from tests.factories import (
    SMOLLM2,
    explorer,
    generating_explorer,
    hold_forwards,
    needs_smollm2,
    open_picker,
    rendered,
    stop_after_first_tokens,
    wait_first_tokens,
    wait_for,
    wait_generated,
)
from tokentui.core.params import GenerationSettings, SamplingParams
from tokentui.store.runfile import load_run
from tokentui.tui.state import AppState
from tokentui.tui.widgets.alternatives import AlternativesPane
from tokentui.tui.widgets.branch_tree import BranchTree
from tokentui.tui.widgets.layers import LayersPane


def assert_same_run(ours, saved) -> None:
    assert ours.id == saved.id and ours.tokens.items() == saved.tokens.items()
    assert [(b.parent, b.fork_position, b.n_forced, b.status) for b in ours.branches] == [
        (b.parent, b.fork_position, b.n_forced, b.status) for b in saved.branches
    ]
    for name in ours.layout.names:
        np.testing.assert_array_equal(ours.prompt.col(name), saved.prompt.col(name), err_msg=name)
        for a, b in zip(ours.branches, saved.branches, strict=True):
            np.testing.assert_array_equal(a.steps.col(name), b.steps.col(name), err_msg=f"{name} #{a.id}")


@pytest.mark.asyncio
async def test_generate_move_branch_navigate_save(model_dirs, loaded, cache_dir):
    lm = loaded("gpt2")
    app = explorer(model=str(model_dirs["gpt2"]), settings=GenerationSettings(SamplingParams(max_new_tokens=12), k=6))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="model load")
        await pilot.click("#prompt")
        await pilot.press(*"def f(x):")
        await pilot.press("ctrl+r")
        await wait_generated(pilot, app, 0)
        run = app.run_obj
        ids = torch.tensor([lm.tokenizer("def f(x):")["input_ids"]])
        ref = lm.model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0)
        assert run.sequence(0).tolist() == ref[0].tolist()
        stream = app.stream
        assert stream.cursor == run.length(0) - 1 and len(stream.view) == run.length(0)
        # move the cursor and read the alternatives
        await pilot.press("left", "left", "left")
        pos = run.length(0) - 4
        assert stream.cursor == pos
        step = run.step(0, pos)
        alt_text = rendered(app.query_one(AlternativesPane))
        assert f"position {pos}" in alt_text and run.tokens.display(int(step.topk_ids[1]))[:24] in alt_text
        assert "lens entropy" in rendered(app.query_one(LayersPane))
        # branch with alternative #2
        await pilot.press("2")
        await wait_generated(pilot, app, 1)
        assert run.branches[1].fork_position == pos and run.branches[1].parent == 0
        assert run.sequence(1)[pos] == step.topk_ids[1]
        assert app.branch_id == 1 and len(stream.view) == run.length(1)
        prefix = torch.tensor([run.sequence(1)[: pos + 1].tolist()])
        ref1 = lm.model.generate(prefix, max_new_tokens=12, do_sample=False, pad_token_id=0)
        assert run.sequence(1).tolist() == ref1[0].tolist()
        # tree navigation: parent, child, and the tree lists both branches
        assert len(list(app.query_one(BranchTree).root.children)) == 1
        await pilot.press("K")
        assert app.branch_id == 0
        await pilot.press("J")
        assert app.branch_id == 1
        await pilot.press("d")
        assert stream.cursor == pos
        # an alternative some branch already takes there shows that branch; none grows (#0's own
        # token is #1's alternative 1, #1's is #0's alternative 2)
        await pilot.press("1")
        assert app.branch_id == 0 and stream.cursor == pos
        await pilot.press("2")
        assert app.branch_id == 1 and stream.cursor == pos
        await pilot.pause(0.2)
        assert len(run.branches) == 2 and app.state is AppState.IDLE
        # metric and theme
        await pilot.press("m")
        assert app.metric == "entropy"
        before = app.theme
        await pilot.press("T")
        assert app.theme != before
        # continue the branch
        n1 = run.length(1)
        await pilot.press("c")
        await wait_for(pilot, lambda: run.length(1) > n1 and app.state is AppState.IDLE, what="continue")
        # the app's run was grown from the events alone: not the worker's object, and equal to
        # what the worker autosaved (before Finished) in every array
        assert app.run_obj is run and run is not app.engine.worker.run
        assert_same_run(run, load_run(cache_dir / f"{run.id}.tokentui"))
        # the autosave is known, said once (the bar is drawn with the next frame: waited for, a loaded
        # machine's frame came after the check)
        await wait_for(pilot, lambda: " · saved · " in rendered(app.query_one("#status")), timeout=10, what="saved")
        assert rendered(app.query_one("#status")).count("saved") == 1
        # save
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
    saved = load_run(cache_dir / f"{run.id}.tokentui")
    assert saved.sequence(1).tolist() == run.sequence(1).tolist() and len(saved.branches) == 2


@needs_smollm2
@pytest.mark.asyncio
async def test_the_status_bar_at_80x24_shows_the_position_while_generating_and_no_stale_rate(loaded, cache_dir):
    """A trial at 80×24: while tokens streamed the bar kept "generating a new run from the prompt ……"
    (the note cut after its own "…") and dropped the position, the one thing that moved; and it
    showed the last job's tok/s through the next job as if live. (The real model: the tiny ones
    fill their context before a frame.)"""
    loaded(SMOLLM2)  # converted into this session's models folder
    app = generating_explorer(SMOLLM2)
    async with app.run_test(size=(80, 24)) as pilot:
        await stop_after_first_tokens(pilot, app)
        assert app.session.tokens_per_second > 0  # (shown where the bar has room)
        first = app.run_obj.id
        seen: list[tuple[str, float]] = []  # (the bar, the rate) while the new run's tokens stream

        def streaming() -> bool:
            run, bar = app.run_obj, rendered(app.query_one("#status"))
            if app.state is AppState.GENERATING and run.id != first and run.branches and len(run.branches[0].steps) > 3:
                seen.append((bar, app.session.tokens_per_second))
            return bool(seen) and re.search(r"pos \d+", seen[-1][0]) is not None

        await pilot.press("ctrl+r")
        await wait_for(pilot, streaming, what="the position in the bar while tokens stream")
        assert all(rate == 0 and "……" not in bar for bar, rate in seen), seen  # (no rate: not the last job's)


@pytest.mark.asyncio
async def test_cancel_mid_generation_keeps_the_partial_branch(model_dirs, cache_dir):
    app = generating_explorer(str(model_dirs["llama"]))
    async with app.run_test(size=(120, 40)) as pilot:
        await stop_after_first_tokens(pilot, app)
        b = app.run_obj.branches[0]
        assert b.status == "cancelled" and 3 < len(b.steps) < 5000
        n = len(b.steps)
        await pilot.pause(0.3)
        assert len(b.steps) == n  # nothing more arrives
        app.run_obj.validate()
        await wait_for(pilot, lambda: not app.run_obj.dirty, what="the autosave")
    assert load_run(cache_dir / f"{app.run_obj.id}.tokentui").length(0) == app.run_obj.length(0)  # autosaved


@pytest.mark.asyncio
async def test_c_does_not_continue_past_an_end_of_sequence_token(model_dirs, cache_dir):
    """A branch that ended with an end-of-sequence token: c says so and generates nothing (a trial
    saw a chat answer go on after its <|im_end|>); any other branch continues."""
    app = explorer(
        model=str(model_dirs["gpt2"]),
        prompt="import os",
        generate_at_once=True,
        settings=GenerationSettings(SamplingParams(max_new_tokens=4)),
    )
    notes: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_generated(pilot, app, 0)
        run = app.run_obj
        run.branches[0].status = "eos"  # (how a generation that met the end-of-sequence token ends)
        app.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
        n = run.length(0)
        await pilot.press("c")
        await pilot.pause(0.5)
        assert app.state is AppState.IDLE and run.length(0) == n
        assert notes[-1].startswith("branch #0 ended with an end-of-sequence token: nothing to continue")
        run.branches[0].status = "length"
        await pilot.press("c")
        await wait_for(pilot, lambda: run.length(0) > n and app.state is AppState.IDLE, what="continue")


@pytest.mark.asyncio
async def test_while_the_model_loads_keys_are_commands_and_q_quits(model_dirs, cache_dir):
    """The tokens have the focus from the start (not the prompt): `q` quits instead of being typed
    into the prompt, where it would have become part of the first generation."""
    app = explorer(model=str(model_dirs["gpt2"]), prompt="def f():")
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.focused is app.stream
        await pilot.press("q")
        await pilot.pause(0.1)
        assert app.prompt_box.text == "def f():"
    assert app.return_code == 0


async def test_a_generation_config_s_unapplied_processors_are_told_once_loaded(tmp_path, model_dirs, cache_dir):
    """Loading a model whose generation config asks generate() for a repetition penalty leaves a
    notification saying tokentui does not apply it (the status bar's progress line is replaced
    by "loaded in …" at once)."""
    import shutil

    from transformers import GenerationConfig

    folder = tmp_path / "penalised"
    shutil.copytree(model_dirs["gpt2"], folder)
    GenerationConfig(repetition_penalty=1.3).save_pretrained(folder)
    app = explorer(model=str(folder), prompt="x = 1")
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="loaded")
        await pilot.pause(0.1)
        notes = [n.message for n in app._notifications]
        assert len(notes) == 1 and "repetition_penalty=1.3" in notes[0] and "without it" in notes[0], notes
        assert next(iter(app._notifications)).timeout >= 15  # (read while typing: 3 s passed unseen in a trial)


async def test_load_failure_is_shown_and_the_app_stays_usable(tmp_path, cache_dir):
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    (bad / "config.json").write_text("{ broken json")
    app = explorer(model=str(bad), prompt="x = 1")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.NO_MODEL, what="load failure")
        assert any("failed" in (n.title or "") for n in app._notifications)
        status = rendered(app.query_one("#status"))  # the failure, not the load's last progress line
        assert "the model failed to load" in status and "reading the configuration" not in status, status
        assert app.focused is app.stream and app.stream.styles.border_top[0] == "heavy"  # marked
        await pilot.press("ctrl+r")  # refused, saying why
        assert [n.message for n in app._notifications] == ["the model failed to load"]
        await pilot.press("question_mark")  # a command, not text: the tokens have the focus
        assert type(app.screen).__name__ == "HelpScreen" and app.prompt_box.text == "x = 1"
        await pilot.press("escape", "i", "end", "q")  # i: into the prompt, where q is text
        assert app.focused is app.prompt_box and app.prompt_box.text == "x = 1q"
        assert app.prompt_box.styles.border_top[0] == "heavy" and app.stream.styles.border_top[0] == "round"
        await pilot.press("f1")  # F1 opens the help even from the prompt
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("f1")  # and closes it (it kept it up)
        assert type(app.screen).__name__ != "HelpScreen" and app.focused is app.prompt_box
        await pilot.press("f1", "escape", "escape")  # escape closes the help, then leaves the prompt
        assert app.focused is app.stream
        await pilot.press("q")
        await pilot.pause(0.1)
    assert app.return_code == 0


async def test_pick_alternative_with_enter_export_reopen_and_picker(
    model_dirs, loaded, cache_dir, tmp_path, monkeypatch
):
    from tokentui.tui.screens.run_picker import RunPicker

    monkeypatch.chdir(tmp_path)
    app = explorer(
        model=str(model_dirs["qwen2"]),
        prompt="class A:",
        generate_at_once=True,
        settings=GenerationSettings(SamplingParams(max_new_tokens=8), k=5),
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_generated(pilot, app, 0, "length")
        run = app.run_obj
        await pilot.press("left", "left")
        pos = app.stream.cursor
        third = int(run.step(0, pos).topk_ids[2])
        app.query_one(AlternativesPane).focus()
        await pilot.press("down", "down", "enter")
        await wait_generated(pilot, app, 1, "length")
        assert run.sequence(1)[pos] == third
        # export through the modal: the extension picks the format
        await pilot.press("x")
        await pilot.pause()
        inp = app.screen.query_one("#prompt-input")
        inp.value = str(tmp_path / "out.jsonl")
        await pilot.press("enter")
        await pilot.pause(0.2)
        lines = (tmp_path / "out.jsonl").read_text().splitlines()
        assert len(lines) == run.length(0) + (run.length(1) - run.branches[1].fork_position)
        # the same name again: the explorer asks before it replaces the file (n keeps it, y replaces)
        (tmp_path / "out.jsonl").write_text("keep me")
        for answer, expect_kept in (("n", True), ("y", False)):
            await pilot.press("x")
            await pilot.pause()
            app.screen.query_one("#prompt-input").value = str(tmp_path / "out.jsonl")
            await pilot.press("enter")
            await pilot.pause(0.2)
            assert type(app.screen).__name__ == "Confirm"
            await pilot.press(answer)
            await pilot.pause(0.2)
            assert ((tmp_path / "out.jsonl").read_text() == "keep me") == expect_kept
        assert len((tmp_path / "out.jsonl").read_text().splitlines()) == len(lines)
        assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, none left
        await pilot.press("X")  # screenshot into the current folder
        await pilot.pause(0.2)
        assert list(tmp_path.glob("*.svg"))
        # the picker lists the autosaved run and reopens it
        await open_picker(pilot, app)
        assert isinstance(app.screen, RunPicker)
        await pilot.press(*run.id[-6:], "enter")
        await pilot.pause(0.2)
        assert app.run_obj is not run and app.run_obj.id == run.id and len(app.run_obj.branches) == 2
    # reopen as `tokentui replay RUN --model M` does: the file is read after the first frame and
    # handed to the model's worker; the same tokens on the stream, and it grows new branches
    replay = explorer(
        model=str(model_dirs["qwen2"]),
        run_path=cache_dir / f"{run.id}.tokentui",
        settings=GenerationSettings(SamplingParams(max_new_tokens=8), k=5),
    )
    async with replay.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: replay.stream.view is not None and replay.state is AppState.IDLE, what="the run")
        assert replay.focused is replay.stream
        view = replay.stream.view  # a token's text after its newline opens the next line
        shown = [head + tail for head, tail in zip(view.texts, view.tails)]
        assert shown == [run.tokens.display(t) for t in run.sequence(0).tolist()]
        await pilot.press("J")
        assert replay.branch_id == 1 and len(replay.stream.view) == run.length(1)
        await pilot.press("K", "home", "right", "right")
        pos = replay.stream.cursor
        second = int(replay.run_obj.step(0, pos).topk_ids[1])
        await pilot.press("2")
        await wait_generated(pilot, replay, 2, "length")
        assert replay.run_obj.sequence(2)[pos] == second and replay.run_obj.branches[2].fork_position == pos


async def test_no_color_still_shows_the_metric(monkeypatch):
    from tests.factories import make_run

    monkeypatch.setenv("NO_COLOR", "1")
    run = make_run(n_branch_steps=(30, 3))
    app = explorer(run=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        strip = app.stream._draw(0)
        styles = [seg.style for seg in strip]
        assert len({(s.color, s.bgcolor) for s in styles}) == 1  # colour carries nothing …
        assert any(s.underline or s.bold or s.reverse for s in styles[4:])  # … but the buckets show
        levels = app.stream.view.levels
        i_max, i_min = int(np.nanargmax(levels[1:])) + 1, int(np.nanargmin(levels[1:])) + 1
        assert app.stream.scale.style(levels[i_max], True) != app.stream.scale.style(levels[i_min], True)


async def test_without_colour_the_cursor_shows_on_a_token_of_any_bucket(monkeypatch):
    """Under NO_COLOR the cursor was reverse bold, the top bucket's very style: on an uncertain
    token it did not show, and any token under it read as uncertain. The cursor's cell now differs
    from every bucket's style (and from forced and prompt tokens' and the attribution target's): by
    reverse, or by two other attributes (bold alone told it from a forced top-bucket token)."""
    from tests.factories import make_run

    monkeypatch.setenv("NO_COLOR", "1")
    app = explorer(run=make_run(n_branch_steps=(30, 3)))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        scale, stream = app.stream.scale, app.stream

        def look(style) -> tuple:
            return tuple(bool(x) for x in (style.reverse, style.bold, style.underline, style.italic, style.dim))

        forced = Style(italic=True)  # (every bucket as a generated, a forced and a prompt token, and the target)
        buckets = [scale.style(level, True) for level in np.linspace(0, 1, 12)]
        others = {look(b + kind) for b in buckets for kind in (Style(), forced, Style(dim=True))}
        others.add(look(stream.target_style()))
        n = len(stream.view.levels)
        for i in range(1, n):  # the cursor on each token: whatever its bucket, it looks like no other token
            stream.cursor = i
            cursor = look(stream._style(stream.view, i, Style()))
            for other in others:  # reversed where it is not, or two other attributes apart
                apart = [k for k, (a, b) in enumerate(zip(cursor, other)) if a != b]
                assert apart == [0] or len(apart) >= 2, (i, cursor, other)
        stream.cursor = 0
        assert {look(stream._style(stream.view, i, Style())) for i in range(1, n)} <= others  # (the model above)


@pytest.mark.parametrize("no_color", [False, True])
async def test_legend_names_each_rank_bucket_in_the_style_its_tokens_get(monkeypatch, no_color):
    from tests.factories import make_run

    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    app = explorer(run=make_run(n_branch_steps=(30, 3)))
    async with app.run_test(size=(80, 24)) as pilot:  # every bucket fits even here
        await pilot.pause()
        legend = app.query_one("#legend")
        assert "sure" in rendered(legend) and "uncertain" in rendered(legend)  # probability: a scale
        await pilot.press("m", "m")
        assert app.metric == "rank"
        segments = [seg for strip in legend.render_lines(legend.region.reset_offset) for seg in strip]
        scale = app.stream.scale
        for i, name in enumerate(("1", "≤10", "≤100", "≤1000", ">1000")):
            seg = next(s for s in segments if f" {name} " in s.text)  # equal styles merge
            want = scale.style(i / 4, no_color)  # what the stream gives a token of bucket i
            got = seg.style
            if no_color:  # the bucket shows as plain, underline, bold … (no colour at all)
                assert [bool(x) for x in (got.underline, got.bold, got.reverse)] == [
                    bool(x) for x in (want.underline, want.bold, want.reverse)
                ], name
            else:
                assert got.bgcolor == want.bgcolor, name


async def test_the_chosen_row_gives_the_headers_probability():
    """The alternatives pane's header (p of the token, from the float32 log-prob) and the chosen
    token's row among the top-k (stored in float16) must not disagree: p = 0.087251 is 0.0873 in
    float32 and 0.0872 from the float16 log-prob."""
    import math

    from tests.factories import make_run

    run = make_run(n_branch_steps=(5, 3))
    step, steps = run.step(0, 5), run.branches[0].steps  # (position 5: the root's second step)
    lp = math.log(0.087251)
    for name, value in (("token_id", step.topk_ids[0]), ("rank", 1), ("logprob", lp)):
        steps.set_values(name, 1, np.array([value]))
    steps.set_values("topk_logprobs", 1, np.r_[lp, step.topk_logprobs[1:]][None])
    app = explorer(run=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        while app.stream.cursor > 5:
            await pilot.press("left")
        shown = rendered(app.query_one(AlternativesPane))
        assert "p=0.0873 · rank 1" in shown, shown
        chosen = next(line for line in shown.splitlines() if line.lstrip().startswith("▶"))
        assert " 0.0873 " in chosen, shown


async def test_narrow_lines_keep_their_parts_whole(tmp_path, monkeypatch):
    """At 80×24: the settings line breaks between its parts ("chat off" whole, no line ending in
    " · "); the run picker gives each run's prompt room (the date and the model go first)."""
    from tests.factories import make_run
    from tokentui.store.runfile import save_run
    from tokentui.tui.widgets.settings_line import SettingsLine

    run = make_run(n_branch_steps=(30, 3))
    run.meta.prompt = "The capital of France is a city of bridges"
    save_run(run, tmp_path / f"{run.id}.tokentui")
    app = explorer(run=run, cache_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        lines = [line.strip() for line in rendered(app.query_one(SettingsLine)).splitlines() if line.strip()]
        assert any("chat off" in line for line in lines), lines
        assert not [line for line in lines if line.endswith("·") or line.startswith("·")], lines
        await open_picker(pilot, app)
        await pilot.pause()
        shown = rendered(app.screen.query_one("#picker-list"))
        assert "The capital of France is" in shown.replace("␠", " "), shown


async def test_legend_lines_break_between_its_parts(monkeypatch):
    """At 80×24 the legend wraps between its parts: no line starts or ends on a " · " separator,
    for every metric, and the key to the next metric stays whole."""
    from tests.factories import make_run
    from tokentui.core.metrics import METRICS

    monkeypatch.delenv("NO_COLOR", raising=False)
    app = explorer(run=make_run(n_branch_steps=(30, 3)))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        legend = app.query_one("#legend")
        seen = set()
        for _ in METRICS:
            seen.add(app.metric)
            lines = [line.strip() for line in rendered(legend).splitlines() if line.strip()]
            assert any("m: next metric" in line for line in lines), lines
            assert not [line for line in lines if line.startswith("·") or line.endswith("·")], (app.metric, lines)
            await pilot.press("m")
        assert len(seen) > 3


async def test_the_layer_view_says_why_it_has_no_lens_values(model_dirs, cache_dir):
    """A run made with the lens off shows its intermediate layers greyed out with the reason,
    not as values still pending; a model source without hidden states says so once loaded."""
    settings = GenerationSettings(SamplingParams(max_new_tokens=4), k=4)
    app = explorer(model=str(model_dirs["gpt2"]), prompt="def f(x):", settings=settings, lens_chunk=0)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="model load")
        assert app.session.lens_unavailable() is None  # the HF backend has hidden states
        await pilot.press("ctrl+r")
        await wait_generated(pilot, app, 0)
        text = rendered(app.query_one(LayersPane))
        assert "the lens was off for this run" in text
        assert "L1" in text and not re.search(r"L1 +…", text)  # greyed out, not pending

    from tokentui.engine.capabilities import Capabilities
    from tokentui.engine.events import Loaded
    from tokentui.tui.state import Session

    s = Session.start("remote-model", GenerationSettings())
    s.apply(Loaded("remote-model", "remote", "?", 24, 1000, 0.1, Capabilities(full_distribution=False)))
    assert s.lens_unavailable() == "remote-model does not provide hidden states for the logit lens"


async def test_a_model_without_a_lens_says_why_in_the_layer_view_live_and_in_replay(tokenizer_dir, tmp_path):
    """A model whose final norm tokentui cannot name (a post-norm BART decoder) opens with the lens
    off: its layer view gives that reason, not '--lens-chunk 0' (never asked for), and so does a
    replay of its run without the model."""
    from tests.conftest import build_model_dir
    from tokentui.store.cache import list_runs

    cache = tmp_path / "runs"
    why = "no logit lens: tokentui cannot tell which module of BartDecoder is its final norm"
    settings = GenerationSettings(SamplingParams(max_new_tokens=3), k=4)
    app = explorer(model=str(build_model_dir("bart", tokenizer_dir, tmp_path / "bart")), prompt="def f(x):",
                   settings=settings, cache_dir=cache)  # fmt: skip
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="model load")
        await pilot.press("ctrl+r")
        await wait_generated(pilot, app, 0)
        text = " ".join(rendered(app.query_one(LayersPane)).split())
        assert why in text and "--lens-chunk" not in text
    [saved] = list_runs(cache)
    app = explorer(run_path=saved.path, cache_dir=cache)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.run_obj is not None, what="the replay")
        assert why in " ".join(rendered(app.query_one(LayersPane)).split())


async def test_a_model_that_cannot_generate_says_so_once_loaded_and_refuses_generating_keys(tokenizer_dir, tmp_path):
    """A model tokentui cannot decode (RWKV: a recurrent state, no key-value cache) opens without
    generation: loading says so, and the keys that grow text are refused by the action table's
    guard, saying why, before any job starts (the prompt given with --prompt too); the run was left
    as it was."""
    from tests.conftest import build_model_dir

    why = "tokentui cannot generate with this model: it returns no key-value cache"
    app = explorer(model=str(build_model_dir("rwkv", tokenizer_dir, tmp_path / "rwkv")), prompt="def f(x):",
                   generate_at_once=True, cache_dir=tmp_path / "runs")  # fmt: skip
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="model load")
        await pilot.pause(0.2)
        notes = [n.message for n in app._notifications]
        assert len(notes) == 1 and why in notes[0], notes  # (said once loaded: --prompt's generation did not start)
        assert app.run_obj is None
        app.clear_notifications()
        for key in ("ctrl+r", "e", "c", "1", "t"):  # (c, 1, t said "no run yet: … generate (ctrl+r)")
            await pilot.press(key)
            await pilot.pause(0.1)
            [note] = app._notifications
            assert why in note.message and note.severity == "warning", note.message
            assert app.state is AppState.IDLE and app.run_obj is None and not app.screen_stack[1:]
            app.clear_notifications()


async def test_branch_keys_on_the_first_token_say_why_they_do_nothing(model_dirs, cache_dir):
    """On position 0 the number keys and `t` did nothing and said nothing (`r` said why): each
    now says it, `t` before asking for a text, and no branch is made."""
    app = explorer(model=str(model_dirs["gpt2"]), prompt="def f(x):", generate_at_once=True,
                   settings=GenerationSettings(SamplingParams(max_new_tokens=4), k=6))  # fmt: skip
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await wait_generated(pilot, app, 0)
        await pilot.press("g")
        assert app.stream.cursor == 0
        app.clear_notifications()
        for key in ("3", "1", "t", "r"):
            await pilot.press(key)
            await pilot.pause(0.1)
            assert [n.message for n in app._notifications] == ["the first token has no alternatives to branch on"], key
            assert len(app.run_obj.branches) == 1 and app.state is AppState.IDLE and not app.screen_stack[1:]
            app.clear_notifications()


def _contrast(a, b) -> float:
    """WCAG contrast ratio of two rich colours."""

    def lum(c) -> float:
        ch = [x / 255 for x in c.get_truecolor()]
        ch = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in ch]
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("theme", ["tokentui-dark", "tokentui-light", "tokentui-high-contrast"])
async def test_muted_text_is_readable_and_muted_in_every_theme(theme):
    """Muted lines ($text-muted: "auto 60%") resolve against the pane's background: readable
    (contrast ≥ 3:1) and quieter than the pane's normal text. (A partial component style resolved
    them against nothing: pure white, invisible on the light theme.)"""
    from tests.factories import make_run
    from tokentui.tui.widgets.settings_line import SettingsLine
    from tokentui.tui.widgets.status_bar import StatusBar

    app = explorer(run=make_run(n_branch_steps=(30, 3)))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        for _ in range(4):  # T cycles to it: what was drawn in the theme before is drawn again
            if app.theme == theme:
                break
            await pilot.press("T")
            await pilot.pause(0.2)
        assert app.theme == theme
        for widget, muted_text, normal_text in (
            (app.query_one(AlternativesPane), "sampler", "p="),
            (app.query_one(StatusBar), "unsaved", "run "),
            (app.query_one(SettingsLine), "run:", None),  # (the whole line is muted: its label italic)
        ):
            segments = [seg for strip in widget.render_lines(widget.region.reset_offset) for seg in strip]
            muted = next(seg for seg in segments if seg.text.startswith(muted_text))
            background = widget.rich_style.bgcolor
            assert _contrast(muted.style.color, background) >= 3.0, (widget, muted_text)
            if normal_text is not None:
                normal = next(seg for seg in segments if seg.text.strip(" ·").startswith(normal_text))
                assert _contrast(muted.style.color, background) < _contrast(normal.style.color, background), widget


async def test_tab_moves_between_panes_past_the_prompt_box():
    """Keys are commands until `i`: Tab never lands in the prompt box (a trial's K K K went into
    the prompt after Tab, Tab), `i` still does, and Tab leaves it again."""
    from tests.factories import make_run

    app = explorer(run=make_run(n_branch_steps=(30, 3)))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        prompt = app.prompt_box.text
        seen = set()
        for _ in range(8):
            await pilot.press("tab")
            seen.add(app.focused.id if app.focused is not None else None)
        assert "prompt" not in seen and {"stream", "tree"} <= seen, seen
        for _ in range(8):
            await pilot.press("shift+tab")
            assert app.focused is not app.prompt_box
        await pilot.press("K", "K")
        assert app.prompt_box.text == prompt
        await pilot.press("i")
        assert app.focused is app.prompt_box
        await pilot.press("tab")
        assert app.focused is not app.prompt_box


async def test_opening_a_run_shows_its_prompt_unless_another_was_typed(tmp_path):
    """`o` puts the opened run's prompt in the prompt box (ctrl+r would have generated the one
    before); a prompt the user typed there stays. The export prompt refuses a name whose
    extension picks no format and asks again with the name as typed (there is no --format here)."""
    from tests.factories import make_run
    from tokentui.store.runfile import save_run

    first, second = make_run(n_branch_steps=(8, 3)), make_run(n_branch_steps=(8, 3))
    first.meta.prompt, second.meta.prompt = "first prompt", "second prompt"
    first.meta.run_id, second.meta.run_id = "20260101-000000-aaaaaa", "20260101-000001-bbbbbb"
    for run in (first, second):
        save_run(run, tmp_path / f"{run.id}.tokentui")
    app = explorer(run=first, cache_dir=tmp_path)
    notes: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        app.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]

        async def open_run(suffix: str) -> None:
            await open_picker(pilot, app)
            await pilot.press(*suffix, "enter")
            await wait_for(pilot, lambda: app.run_obj.id.endswith(suffix), what="the run opened")

        assert app.prompt_box.text == "first prompt"
        await open_run("bbbbbb")
        assert app.prompt_box.text == "second prompt"
        await pilot.press("i")
        app.prompt_box.text = "my own prompt"
        await pilot.press("escape")
        await open_run("aaaaaa")
        assert app.prompt_box.text == "my own prompt"
        await pilot.press("x")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "TextPrompt", what="the export prompt")
        app.screen.query_one("#prompt-input").value = str(tmp_path / "out.txt")
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(notes), what="the refusal")
        assert "end the name in .csv, .jsonl, .json, .tree.json, .seed002.jsonl or .seed004.json" in notes[-1]
        assert "--format" not in notes[-1]
        await wait_for(pilot, lambda: type(app.screen).__name__ == "TextPrompt", what="asked again")
        assert app.screen.query_one("#prompt-input").value == str(tmp_path / "out.txt")
        assert not (tmp_path / "out.txt").exists()
        app.screen.query_one("#prompt-input").value = ""  # an emptied name: said, not silent
        await pilot.press("enter")
        await wait_for(pilot, lambda: "no file name" in notes[-1], what="the note")


@pytest.mark.asyncio
async def test_streamed_tokens_draw_the_panes_once_an_update_not_again_for_the_cursor_they_moved(
    cache_dir, monkeypatch
):
    """Each streamed update moved the cursor to the newest token and drew the side panes, and the
    cursor's message drew them a second time at the same position: twice the frames while tokens
    stream (the explorer generated at 0.63× the job alone on SmolLM2, 0.73× without). A cursor the
    user moves still draws them. (Each forward is held 3 ms: the tokens stream over a second or
    more, several updates, on a fast CPU too.)"""
    hold_forwards(monkeypatch, 0.003)
    app = generating_explorer("demo", max_new_tokens=400)
    draws: list[int] = []
    updates = [0]
    draw, apply = app.refresh_panes, app._apply_streamed

    def counted_draw() -> None:
        draws.append(app.stream.cursor)
        draw()

    def counted_apply() -> None:
        updates[0] += app._dirty
        apply()

    app.refresh_panes, app._apply_streamed = counted_draw, counted_apply  # (before the timer takes it)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_generated(pilot, app)
        assert updates[0] >= 4, updates  # (tokens streamed over several updates)
        assert len(draws) <= updates[0] + 3, (len(draws), updates[0])  # (+ the branch shown, the end)
        at = app.stream.cursor
        await pilot.press("left")
        await wait_for(pilot, lambda: draws[-1] == at - 1, what="the panes at the cursor moved")
        assert f"position {at - 1} " in rendered(app.query_one(AlternativesPane))


@pytest.mark.asyncio
async def test_j_onto_the_branch_tokens_stream_into_follows_them(cache_dir, monkeypatch):
    """J put the cursor on a child's fork even while its tokens streamed in, and it stayed there
    (the tree pane's way to it follows them): now both follow a branch that is growing. (The
    branch's forwards are slowed down by 20 ms: the demo model would end it first.)"""
    app = generating_explorer("demo", max_new_tokens=300)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_generated(pilot, app, 0)
        hold_forwards(monkeypatch, 0.02)
        app.stream.move_to(10)
        await pilot.press("3")
        await wait_for(pilot, lambda: len(app.run_obj.branches) > 1 and len(app.run_obj.branches[1].steps) > 3,
                       what="the branch's first tokens")  # fmt: skip
        await pilot.press("K")
        assert app.branch_id == 0
        await pilot.press("J")
        assert app.branch_id == 1 and app.state is AppState.GENERATING
        n = app.run_obj.length(1)
        await wait_for(pilot, lambda: app.run_obj.length(1) > n + 20, what="more tokens")
        assert app.stream.cursor >= n + 10 and app.stream.follow  # (following them: not left at the fork, 10)
        await pilot.press("escape")


@pytest.mark.asyncio
async def test_the_status_bar_shows_the_running_generations_rate(cache_dir, monkeypatch):
    """A trial: no tok/s while generating, at any width (the last job's rate was dropped from the
    bar when a job began, and the new one came only at its end). The bar shows the running job's
    rate so far: each forward slowed to ≥ 10 ms bounds it at 100 tok/s."""
    hold_forwards(monkeypatch, 0.01)
    app = generating_explorer("demo", max_new_tokens=300)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_first_tokens(pilot, app, n=60)
        assert app.state is AppState.GENERATING and app.session.tokens_per_second == 0
        app.update_status()
        await pilot.pause()
        shown = re.search(r"(\d+\.\d) tok/s", rendered(app.query_one("#status")))
        assert shown is not None and 5 < float(shown.group(1)) <= 100, rendered(app.query_one("#status"))
        await pilot.press("escape")


async def test_a_long_error_stays_up_long_enough_to_read():
    """At 80 columns the status bar cuts a refusal ("model B not loaded: the models…"): the toast
    holds the whole reason, and stays up a second per 15 characters (6 s at least, 20 at most)."""
    from tests.factories import make_run

    app = explorer(run=make_run())
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        reason = "the models' tokenizers differ: id 100 is ‹A6› under gpt2 and ␋ under gpt2c; " * 2
        for message, title, timeout in (
            ("short", "", 6.0),
            (reason, "model B failed to load", pytest.approx(len("model B failed to load" + reason) / 15)),
            (reason * 3, "", 20.0),
        ):
            app.notify(message, title=title, severity="error")
            await pilot.pause()  # (a notification is a message to the app)
            assert [n.timeout for n in app._notifications] == [timeout]


async def test_the_picker_names_each_file_and_the_run_a_copy_holds(tmp_path):
    """A trial's picker showed a run and two copies of it (saved under other names) as three
    identical rows, and opening one could not say which file it was. Rows now show the file's
    name, as `tokentui runs` does, and a copy says which run it holds."""
    import shutil

    from tests.factories import make_run
    from tokentui.store.runfile import save_run

    run = make_run()
    path = save_run(run, tmp_path / f"{run.id}.tokentui")
    shutil.copy(path, tmp_path / f"{run.id}-2.tokentui")
    app = explorer(run=run, cache_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await open_picker(pilot, app)
        listed = app.screen.query_one("#picker-list")
        rows = [str(listed.get_option_at_index(i).prompt) for i in range(listed.option_count)]
        [own] = [r for r in rows if r.startswith(f"{run.id} ")]
        [copy] = [r for r in rows if r.startswith(f"{run.id}-2 ")]
        assert "holds run" not in own and f"(holds run …{run.id[-6:]}) " in copy
        await pilot.press(*"-2", "enter")  # (the search finds the file by its name)
        await wait_for(pilot, lambda: app.run_path == tmp_path / f"{run.id}-2.tokentui", what="the copy opened")


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_picker_shows_each_runs_kind_and_finds_runs_by_it(tmp_path, size):
    """A cache of comparisons and generations had rows alike but for their kind, which the rows
    did not show (typing it found them): each row now says it, as `tokentui runs` does, the model
    and the date giving up their room first."""
    import dataclasses

    from tests.factories import make_run
    from tokentui.store.cache import list_runs
    from tokentui.store.runfile import save_run

    run = make_run()
    save_run(run, tmp_path / f"{run.id}.tokentui")
    scored = make_run()
    scored.meta = dataclasses.replace(scored.meta, run_id="20260102-000000-abcdef", mode="score")
    save_run(scored, tmp_path / f"{scored.meta.run_id}.tokentui")
    kinds = {r.run_id: r.what for r in list_runs(tmp_path)}
    assert kinds == {run.id: "length", scored.meta.run_id: "score"}  # (what `tokentui runs` shows)
    app = explorer(run=run, cache_dir=tmp_path)
    async with app.run_test(size=size) as pilot:
        await open_picker(pilot, app)
        listed = app.screen.query_one("#picker-list")
        rows = {str(listed.get_option_at_index(i).id): str(listed.get_option_at_index(i).prompt) for i in range(2)}
        for run_id, what in kinds.items():
            row = rows[str(tmp_path / f"{run_id}.tokentui")]
            assert row.startswith(f"{run_id} ") and f" {what} " in row, row
            assert "hi ✓" in row  # (the prompt keeps its room)
        await pilot.press(*"score")
        await pilot.pause()
        assert listed.option_count == 1 and listed.get_option_at_index(0).id == str(
            tmp_path / f"{scored.meta.run_id}.tokentui"
        )


async def test_closing_the_picker_stops_its_reading_and_quitting_does_not_wait_for_it(tmp_path, monkeypatch):
    """On a slow disk the picker's thread read every header to the end after its box had closed,
    and quitting waited for it (the executor's threads are joined at exit). It now stops between
    two files."""
    import time

    import tokentui.store.cache as cache
    from tests.factories import make_run
    from tokentui.store.runfile import save_run

    run = make_run()
    for i in range(40):
        save_run(run, tmp_path / f"{run.id}-{i}.tokentui")
    read = []
    summarize = cache.summarize

    def slow(path):  # (a slow disk: 40 files, 8 s)
        time.sleep(0.2)
        read.append(path)
        return summarize(path)

    monkeypatch.setattr(cache, "summarize", slow)
    app = explorer(run=run, cache_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("o")
        await wait_for(pilot, lambda: read, what="the first header read")
        await pilot.press("escape")
        await pilot.pause(0.3)
        closed = len(read)
        await pilot.pause(1.0)
        assert len(read) == closed < 10  # (5 more files in that second, before)
        await pilot.press("q")
    time.sleep(0.5)
    assert len(read) == closed


async def test_chat_on_a_model_without_a_chat_template_is_turned_off_and_said(tmp_path):
    """`explore --chat` on the demo model (no chat template) opened with chat on, and the first
    generation failed; the CLI refuses before loading. The explorer turns chat off and says so."""
    from tokentui.tui.widgets.settings_line import SettingsLine

    app = explorer(
        model="demo",
        prompt="def f(x):",
        settings=GenerationSettings(SamplingParams(max_new_tokens=3), chat=True),
        cache_dir=tmp_path,
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="the model")
        await pilot.pause(0.1)
        assert "chat off" in rendered(app.query_one(SettingsLine))  # (at once: it said "chat on" until a run)
        await pilot.press("ctrl+r")
        await wait_generated(pilot, app, 0)
        assert not app.session.settings.chat and app.run_obj.meta.chat is False
        assert any("demo has no chat template: chat is off (s: settings)" in n.message for n in app._notifications)
        assert "chat off" in rendered(app.query_one(SettingsLine))
        assert app.run_obj.branches[0].status == "length"
        # the settings refuse chat on for it (it failed at the next generation, advising --chat)
        await pilot.press("s")
        await pilot.pause(0.1)
        screen = app.screen
        screen.query_one("#set-chat").value = "yes"
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.screen is screen and "chat: demo has no chat template (answer no)" in rendered(
            screen.query_one("#form-error")
        )
        await pilot.press("escape")
        assert not app.session.settings.chat


async def test_a_settings_line_too_long_for_two_rows_ends_in_an_ellipsis():
    """At 80×24 the settings line has two rows: a third (the forced prefix, last) went unseen with
    no sign of it. The rest of the line now ends its second row, cut with "…"; filters that are
    off (top-k 0, top-p 1) are left out."""
    from tokentui.tui.widgets.settings_line import SettingsLine

    sampling = SamplingParams(temperature=0.8, top_k=40, top_p=0.9, seed=42, max_new_tokens=1000)
    app = explorer(model="demo", settings=GenerationSettings(sampling, forced="return the value " * 4))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        rows = [r.rstrip() for r in rendered(app.query_one(SettingsLine)).splitlines() if r.strip()]
        assert len(rows) == 2 and rows[1].endswith("…") and "chat off" in rows[1], rows
    app = explorer(model="demo", settings=GenerationSettings(SamplingParams(temperature=0.8, seed=5), forced="ab"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        shown = rendered(app.query_one(SettingsLine))
        assert "T=0.8 seed=5" in shown and "top-k" not in shown and "forced ab" in shown, shown
