"""The defects a new user found in the explorer (issue 10), each driven with real key presses:
replays of the shipped sample runs and synthetic runs, and the tiny real models for generation."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from rich.cells import cell_len
from textual.widgets import Input

from tests.factories import explorer, make_run, open_picker, rendered, wait_for, wait_generated
from tokentui.core.display import decode_bytes, lone_text
from tokentui.core.params import GenerationSettings, SamplingParams
from tokentui.core.tokens import TokenTable
from tokentui.store.runfile import load_run, save_run
from tokentui.tui.state import AppState
from tokentui.tui.widgets.alternatives import AlternativesPane
from tokentui.tui.widgets.branch_tree import BranchTree
from tokentui.tui.widgets.layers import LayersPane

SAMPLES = Path(__file__).resolve().parents[2] / "tests/fixtures/demo_runs"


async def _focus(pilot, app, widget) -> None:
    """Tab (a real key) until `widget` has the focus."""
    for _ in range(8):
        if app.focused is widget:
            return
        await pilot.press("tab")
    raise AssertionError(f"tab never reached {widget}")


async def test_the_tree_highlights_and_marks_the_branch_on_show():
    run = load_run(SAMPLES / "tree.tokentui")
    app = explorer(run=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        tree = app.query_one(BranchTree)

        def marked() -> list[int]:
            return [n.data for n in tree._nodes_in_order() if n.label.plain.startswith("▶")]

        assert tree.cursor_node.data == 0 and marked() == [0]
        await _focus(pilot, app, tree)
        order = [n.data for n in tree._nodes_in_order()]  # 0, 1, 4, 2, 3, 5 (depth first)
        await pilot.press(*["down"] * order.index(2), "enter")
        await pilot.pause(0.1)
        assert app.branch_id == 2 and tree.cursor_node.data == 2 and marked() == [2]
        await pilot.press("K")  # parent: #0
        assert app.branch_id == 0 and tree.cursor_node.data == 0 and marked() == [0]
        await pilot.press("J")  # first child: #1
        assert app.branch_id == 1 and tree.cursor_node.data == 1 and marked() == [1]
        await pilot.press("L")  # next sibling: #2
        assert app.branch_id == 2 and tree.cursor_node.data == 2 and marked() == [2]


async def test_tree_labels_show_the_forced_text_once_and_whole():
    run = load_run(SAMPLES / "tree.tokentui")
    typed = run.branches[5]  # a branch made to take typed text: 4 tokens
    assert typed.n_forced == 4
    app = explorer(run=run)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause(0.2)
        tree = app.query_one(BranchTree)
        labels = {n.data: n.label.plain for n in tree._nodes_in_order()}
        for b in run.branches[1:]:
            ids = b.steps.col("token_id").tolist()
            forced = lone_text(decode_bytes(run.tokens.text(ids[: b.n_forced])))
            assert forced in labels[b.id], (b.id, forced, labels[b.id])
            # the forced text is followed by the branch's own words, not by itself again
            after = labels[b.id].split(forced, 1)[1]
            assert not after.lstrip().startswith(forced), labels[b.id]


def _run_with_spaces():
    """make_run with the token under the cursor ' x', its first alternative ' ', and the child
    branch's forced token ' parser'."""
    run = make_run(n_branch_steps=(30, 12))
    table = {i: b"t%d" % i for i in range(run.meta.vocab_size)}
    pos = run.length(0) - 1
    step = run.step(0, pos)
    table[step.token_id] = b" x"
    table[int(step.topk_ids[0])] = b" "
    table[int(run.branches[1].steps.col("token_id")[0])] = b" parser"
    run.tokens = TokenTable(table)
    return run, pos


async def test_whitespace_shows_where_a_token_stands_alone():
    run, pos = _run_with_spaces()
    app = explorer(run=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        assert app.stream.cursor == pos
        alt = rendered(app.query_one(AlternativesPane)).splitlines()
        assert alt[0].strip().endswith("␠x")  # the position header
        assert re.match(r"\s*1 ␠ ", alt[3]), alt[3]  # the lone-space alternative
        label = next(n.label.plain for n in app.query_one(BranchTree)._nodes_in_order() if n.data == 1)
        assert "␠parser" in label and label.count("parser") == 1


@pytest.mark.parametrize("p, shown_as", [(3.2e-5, ("3.2e-5", "3e-5")), (3.2e-12, ("3e-12",))])
@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_an_unlikely_token_never_reads_p_zero(size, p, shown_as):
    """A sampled token of p = 0.0003 and rank 102 read `p=0.000` in the narrow pane's header (and
    `0.0000` in its row): its p shows in scientific form where the decimals would round it to 0,
    and its row stays as wide as the others (`3.0e-12` was a cell too wide)."""
    run = make_run(n_branch_steps=(30, 3))
    pos = 4 + 29  # (the root's last token: the cursor's place when the run opens)
    steps = run.branches[0].steps._a
    steps["logprob"][29], steps["rank"][29], steps["sampler_logprob"][29] = math.log(p), 102, math.log(0.02)
    app = explorer(run=run)
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.2)
        assert app.stream.cursor == pos
        pane = app.query_one(AlternativesPane)
        text = rendered(pane)
        header = text.splitlines()[1]
        shown = re.search(r"p=(\S+) ", header)
        assert shown and shown.group(1) in shown_as and "rank 102" in header, header
        assert f"sampler p=0.0200 (raw {shown_as[0]})" in text
        rows = [line.rstrip() for line in text.splitlines() if re.match(r"\s*[▶ ]\s*\d+ ", line)]
        chosen = next(line for line in rows if line.lstrip().startswith("▶"))
        assert shown_as[0] in chosen and "0.0000" not in chosen, chosen
        assert max(cell_len(line) for line in rows) <= pane.content_region.width


def chain_run(n: int):
    """A run whose branches 2…n+1 each grow from the one before (a tree search's long path)."""
    from tokentui.core.step import Step

    run = make_run(n_branch_steps=(40, 3))
    parent = 1
    for _ in range(n):
        fork = run.branches[parent].fork_position + 1  # (a token of the parent's own)
        b = run.add_branch(parent, fork)
        for k in range(2):
            run.append_step(b.id, Step(fork + k, 7, {"logprob": -0.5, "entropy": 1.0, "rank": 2}, "generated"))
        parent = b.id
    return run


async def test_a_path_deeper_than_python_s_recursion_limit_opens(tmp_path):
    """A chain of 1,500 branches (a tree search's path of 1,500 nodes): Textual's tree lays its
    nodes out recursively and the explorer closed with a RecursionError. It opens, its tree pane
    shows the deepest branch, and the keys that walk the tree and fold it work."""
    path = save_run(chain_run(1500), tmp_path / "chain.tokentui")
    app = explorer(run_path=path, cache_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.run_obj is not None and app.stream.view is not None, what="the run")
        tree = app.query_one(BranchTree)
        while not tree.is_on_screen:
            await pilot.press("v")
        tree.focus()
        await pilot.press("end")
        await pilot.pause(0.2)
        assert tree.cursor_node.data == 1501 and "#1501 " in rendered(tree)
        await pilot.press("enter", "K", "J", "space", "space")  # (show it, walk up and down, fold, unfold)
        await pilot.pause(0.2)
        assert app.is_running and app.branch_id == 1501


async def test_a_deep_branch_s_label_stays_in_view_in_the_tree_pane():
    """A chain of 30 branches each grown from the one before (a tree search's path): below depth
    8 or so the pane showed only guide lines at 80×24. It follows the highlighted branch sideways,
    and back when a shallow one is highlighted again."""
    run = chain_run(30)
    app = explorer(run=run)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        tree = app.query_one(BranchTree)
        while not tree.is_on_screen:
            await pilot.press("v")  # (below 110 columns the side panes take turns)
        tree.focus()
        await pilot.pause()
        seen = []
        top = tree.styles.border_top[0] != ""  # (its title line: what a row's numbers are)
        for _ in range(len(run.branches) - 1):
            await pilot.press("down")
            node = tree.cursor_node
            line = rendered(tree).splitlines()[top + node.line - round(tree.scroll_y)]
            assert f"#{node.data} " in line, (node.data, line)
            seen.append(tree.scroll_x)
        assert max(seen) > 0
        before = tree.scroll_x
        await pilot.resize_terminal(200, 50)  # (a wider pane: less of the guides is scrolled away)
        await pilot.pause(0.3)
        node = tree.cursor_node
        assert 0 <= tree.scroll_x < before and f"#{node.data} " in rendered(tree)
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.3)
        await pilot.press("home")
        assert tree.scroll_x == 0 and "#0 " in rendered(tree).splitlines()[top]


async def test_pressing_the_number_of_the_token_already_there_makes_no_branch(model_dirs, cache_dir):
    settings = GenerationSettings(SamplingParams(max_new_tokens=6), k=5)
    app = explorer(model=str(model_dirs["gpt2"]), prompt="def f(x):", settings=settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="model load")
        await pilot.press("ctrl+r")
        await wait_generated(pilot, app, 0)
        await pilot.press("left")
        step = app.run_obj.step(0, app.stream.cursor)
        assert int(step.topk_ids[0]) == step.token_id  # greedy: the first choice is what is there
        await pilot.press("1")
        await pilot.pause(0.2)
        assert len(app.run_obj.branches) == 1 and app.state is AppState.IDLE
        assert "the token already here" in list(app._notifications)[-1].message
        pos = app.stream.cursor
        await pilot.press("r")  # resample: a new branch at the cursor, its token sampled afresh
        await wait_generated(pilot, app, 1)
        b = app.run_obj.branches[1]
        assert (b.parent, b.fork_position, b.n_forced) == (0, pos, 0) and app.branch_id == 1
        first = b.step(0)
        assert first.kind == "generated" and first.sampler_logprob == pytest.approx(first.logprob, abs=1e-4)
        # the settings line shows what grew the branch on screen: sampling at T=1, not the run's greedy
        line = rendered(app.query_one("#settings-line"))
        assert "branch #1: T=1 " in line and "greedy" not in line
        await pilot.press("K")  # back to the parent: the run's own settings
        await pilot.pause(0.2)
        assert "run: greedy" in rendered(app.query_one("#settings-line"))


async def test_a_new_run_asks_first_when_the_run_has_branches_and_launching_generates_nothing(model_dirs, cache_dir):
    settings = GenerationSettings(SamplingParams(max_new_tokens=5), k=4)
    app = explorer(model=str(model_dirs["gpt2"]), prompt="x = 1", settings=settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="model load")
        await pilot.pause(0.3)
        assert app.run_obj is None and not cache_dir.exists()  # the suggested prompt waits for ctrl+r
        await pilot.press("ctrl+r")
        await wait_generated(pilot, app, 0)
        first = app.run_obj
        await pilot.press("left", "2")
        await wait_generated(pilot, app, 1)
        await pilot.press("ctrl+r")
        await pilot.pause(0.1)
        assert type(app.screen).__name__ == "Confirm" and first.id in rendered(app.screen.query_one(".box-title"))
        await pilot.press("n")
        await pilot.pause(0.1)
        assert app.run_obj is first and len(first.branches) == 2
        await pilot.press("f5", "y")
        await wait_for(pilot, lambda: app.run_obj is not first, what="the new run")
        await wait_generated(pilot, app, 0)
        assert f"run {first.id} is in the cache: o opens it again" in [n.message for n in app._notifications]
    kept = load_run(cache_dir / f"{first.id}.tokentui")
    assert len(kept.branches) == 2 and kept.sequence(1).tolist() == first.sequence(1).tolist()


async def test_the_settings_line_shows_the_run_under_view_and_the_screen_the_session(model_dirs, cache_dir):
    run = load_run(SAMPLES / "sampled.tokentui")
    app = explorer(run=run, model=str(model_dirs["gpt2"]))  # replay --model; the session: greedy
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="model load")
        line = rendered(app.query_one("#settings-line"))
        assert "T=0.8" in line and "top-p=0.9" in line and "seed=42" in line and "max 160" in line
        assert "greedy" not in line
        await pilot.press("s")
        await pilot.pause(0.1)
        assert app.screen.query_one("#set-temperature", Input).value == "0"  # the session's
        # saved, the line still shows the branch on show's: a toast says what the next runs get
        # (a trial set T=0.8 and saw no sign of it until it generated)
        app.screen.query_one("#set-temperature", Input).value = "0.7"
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.session.settings.sampling.temperature == 0.7 and "T=0.8" in rendered(app.query_one("#settings-line"))
        assert [n.message for n in app._notifications][-1].startswith("next runs and branches: T=0.7")


async def test_settings_in_a_replay_without_a_model_say_why_instead_of_opening(tmp_path):
    """Nothing in a model-less replay would use the settings: `s` says so, like ctrl+r and c."""
    from tokentui.tui.screens.settings import SettingsScreen

    app = explorer(run=make_run(), cache_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.1)
        await pilot.press("s")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, SettingsScreen) and len(app.screen_stack) == 1
        assert "nothing would use the settings" in list(app._notifications)[-1].message
        assert "s settings" not in rendered(app.screen.query_one("Footer"))


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_every_settings_field_is_on_screen_and_tab_reaches_it(size, model_dirs, cache_dir):
    app = explorer(model=str(model_dirs["gpt2"]))
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.1)
        await pilot.press("s")  # while the model loads: settings for the first generation
        await pilot.pause(0.1)
        screen = app.screen
        fields = list(screen.query(Input))
        assert len(fields) == 8
        for i, field in enumerate(fields):
            if i:
                await pilot.press("tab")
            assert app.focused is field
            r = field.region
            assert r.height >= 1 and r.y >= 0 and r.bottom <= size[1] and r.right <= size[0], (field.id, r)
        field = screen.query_one("#set-chat", Input)
        await pilot.press("end", "ctrl+u", *"maybe", "enter")  # (a trial's: taken as no)
        await pilot.pause(0.1)
        assert app.screen is screen and "chat template (yes/no): yes or no (got 'maybe')" in rendered(
            screen.query_one("#form-error")
        )
        field.value = "yes"
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.session.settings.chat is True


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_everything_essential_fits(size):
    from tokentui.tui.app import TokentuiApp
    from tokentui.tui.theme import load_themes

    run = make_run(n_branch_steps=(70, 12))
    themes, _ = load_themes()
    app = TokentuiApp(run=run, themes=themes)  # the footer of an explorer with a model (a replay's has fewer keys)
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.2)
        status = rendered(app.query_one("#status"))
        for part in (f"run {run.id}", "branch #0/2", "unsaved", f"pos {run.length(0) - 1}"):
            assert part in status, (part, status)
        legend = " ".join(rendered(app.query_one("#legend")).split())
        assert "sure" in legend and "uncertain" in legend and "forced" in legend and "m: next metric" in legend
        await wait_for(pilot, lambda: len(app.query("FooterKey")) >= 8, what="the footer")
        shown = {
            k.description: k.region
            for k in app.query("FooterKey")
            if k.region.width and k.region.right <= size[0]  # not cut off
        }
        for key in ("generate", "continue", "settings", "tree", "metric", "open", "help", "quit"):
            assert key in shown, (key, list(shown))
        alts = app.query_one(AlternativesPane)
        assert alts.widths()[0] >= 10  # room for a token, not 4 characters
        parts = getattr(alts.content, "renderables", [alts.content])  # the Texts it was last given
        rows = [row for part in parts for row in part.plain.splitlines()]
        assert rows and all(len(r) <= alts.content_region.width for r in rows)


async def test_lens_bars_share_one_scale_with_an_axis_in_nats():
    run = make_run(n_branch_steps=(30, 3))
    steps = run.branches[0].steps
    n_layers = run.n_layers
    steps.set_values("layer_entropy", 0, np.full((1, n_layers), 1.7, dtype=np.float32))
    steps.set_values("layer_entropy", 1, np.full((1, n_layers), 4.0, dtype=np.float32))
    app = explorer(run=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        pane = app.query_one(LayersPane)
        lengths = {}
        for pos in (run.branches[0].fork_position, run.branches[0].fork_position + 1):
            app.stream.move_to(pos)
            await pilot.pause(0.05)
            lines = rendered(pane).splitlines()
            bar_line = next(line for line in lines if line.strip().startswith("L1 "))
            lengths[pos] = sum(1 for ch in bar_line if ch in "█▏▎▍▌▋▊▉")
        short, long = lengths.values()
        top = math.log(run.meta.vocab_size)
        width = pane.content_region.width - 12 - 5

        def cells(h: float) -> int:  # whole cells, plus one for a partial cell of ≥ 1/8
            full, frac = divmod(h / top * width, 1)
            return int(full) + (frac >= 1 / 8)

        assert (short, long) == (cells(1.7), cells(4.0)) and short < long
        axis = next(line for line in lines if line.rstrip().endswith("nats") and line.strip().startswith("0"))
        assert f"{top:.3g}" in axis


async def test_the_selected_alternative_leaves_its_bar_cell_unpainted():
    app = explorer(run=make_run(n_branch_steps=(30, 3)))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        pane = app.query_one(AlternativesPane)
        await _focus(pilot, app, pane)
        await pilot.press("down")
        lines = pane.render_lines(pane.region.reset_offset)
        tok_w, bar_w, _ = pane.widths()
        bar_start = pane.content_region.x - pane.region.x + 5 + tok_w + 8

        def bar_backgrounds(line) -> set:
            cells = []
            for seg in line:
                cells += [seg.style.bgcolor if seg.style else None] * len(seg.text)
            return set(cells[bar_start : bar_start + bar_w])

        selected, other = lines[4], lines[3]  # rows 2 and 1 (after the 3 header lines)
        assert bar_backgrounds(selected) == bar_backgrounds(other)
        first = pane.content_region.x - pane.region.x  # the row's first cell (its marker)
        cell = [[seg.style.bgcolor for seg in line for _ in seg.text][first] for line in (selected, other)]
        assert cell[0] != cell[1]  # the row itself is highlighted


async def test_the_run_picker_enters_its_list_with_down_and_opens_the_highlighted_run(tmp_path):
    runs = []
    for i, suffix in enumerate(("aaaaaa", "bbbbbb")):
        run = make_run()
        run.meta.run_id = f"2026010{i + 1}-000000-{suffix}"
        save_run(run, tmp_path / f"{run.id}.tokentui")
        runs.append(run)
    app = explorer(run=make_run(), cache_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        await open_picker(pilot, app)
        listed = rendered(app.screen.query_one("#picker-list"))
        assert runs[0].id in listed and runs[1].id in listed
        await pilot.press("down", "down", "enter")  # into the list, to the second row, open it
        await pilot.pause(0.2)
        newest_first = sorted(runs, key=lambda r: r.meta.created + r.id, reverse=True)
        assert type(app.screen).__name__ != "RunPicker"
        assert app.run_obj.id == newest_first[1].id


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (120, 40)])
async def test_the_run_pickers_rows_line_up_whatever_their_ids(tmp_path, size):
    """A short id (a received run copied in) and a usual one: both rows show the same columns,
    starting at the same place (a trial saw a date on one row and none on the next)."""
    for run_id in ("sample-chat", "20260101-000000-aaaaaa"):
        run = make_run()
        run.meta.run_id = run_id
        save_run(run, tmp_path / f"{run_id}.tokentui")
    app = explorer(run=make_run(), cache_dir=tmp_path)
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.1)
        await open_picker(pilot, app)
        rows = [line for line in rendered(app.screen.query_one("#picker-list")).splitlines() if " tok " in line]
        assert len(rows) == 2, rows
        assert len({row.index(" tok ") for row in rows}) == 1, rows


async def test_notifications_come_one_at_a_time_and_stay_off_the_panes():
    app = explorer(run=make_run())
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await pilot.pause(0.1)
        await pilot.press("T", "T", "d")  # two theme changes, then a compare: three messages
        await pilot.pause(0.3)
        assert len(app._notifications) == 1
        toasts = list(app.screen.query("Toast"))
        assert len(toasts) == 1
        right = app.query_one("#right").region
        assert not toasts[0].region.overlaps(right)
        assert not toasts[0].region.overlaps(app.stream.region)


async def test_no_color_legend_names_the_styles(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = explorer(run=make_run())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        legend = " ".join(rendered(app.query_one("#legend")).split())
        assert re.search(r"sure plain ▸ underline ▸ bold ▸ bold underline ▸ reverse uncertain", legend), legend


async def test_keys_help_and_palette_come_from_the_one_action_table():
    from tokentui.tui.actions import ACTIONS, APP, description, help_sections, shown_keys

    app = explorer(run=make_run())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        commands = list(app.get_system_commands(app.screen))
        titles = [c.title for c in commands]
        assert len(titles) == len(set(titles))  # no duplicates …
        assert not {"Theme", "Keys", "Quit", "Screenshot"} & set(titles)  # … nor Textual's own beside ours
        app_keys = set(app._bindings.key_to_bindings)  # the app's bound keys
        help_rows = {row for _, rows in help_sections() for row in rows}
        for spec in ACTIONS:
            assert (shown_keys(spec), description(spec)) in help_rows
            name = spec.action.split("(")[0]
            if spec.scope == APP and not spec.textual:
                assert hasattr(app, f"action_{name}"), name
                assert set(spec.keys.split(",")) & app_keys, spec.keys
        await pilot.press("question_mark")
        await pilot.pause(0.1)
        text = rendered(app.screen.query_one("#help-text"))
        assert "branch here with alternative n" in text and "1 … 9" in text


async def test_generate_pressed_while_the_model_loads_runs_once_it_is_loaded(model_dirs, cache_dir, monkeypatch):
    """A first start can convert a model for tens of seconds: ctrl+r then is kept, not refused.
    (The tiny model loads in a blink: the real load is held until ctrl+r has been pressed.)"""
    import threading

    from tests.factories import wait_generated
    from tokentui.core.params import GenerationSettings, SamplingParams
    from tokentui.engine import backend
    from tokentui.tui.state import AppState

    pressed = threading.Event()
    load = backend.open_backend

    def held(*args, **kwargs):
        pressed.wait(30)
        return load(*args, **kwargs)

    monkeypatch.setattr(backend, "open_backend", held)
    app = explorer(
        model=str(model_dirs["gpt2"]), prompt="def f(x):", settings=GenerationSettings(SamplingParams(max_new_tokens=3))
    )
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.state is AppState.LOADING
        await pilot.press("ctrl+r")
        assert any("generated once it is ready" in n.message for n in app._notifications)
        await pilot.press("question_mark")  # a pop-up up when the load ends: the generation still starts
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        pressed.set()
        await wait_generated(pilot, app, 0, "length")
        assert len(app.run_obj.branches[0].steps) == 3


async def test_a_run_opened_from_elsewhere_is_saved_into_the_cache_never_over_the_file(tmp_path, cache_dir):
    """Every change goes to the cache by the run's id (the autosave's place): the file opened is
    left as it was. ctrl+s and the delete key used to write the opened file while the autosave
    wrote the cache, leaving two versions of one id."""
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    run = make_run(n_branch_steps=(6, 3))
    path = save_run(run, elsewhere / "copy.tokentui")
    before = path.read_bytes()
    app = explorer(run_path=path, cache_dir=cache_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.run_obj is not None and app.stream.view is not None, what="the run")
        assert app.run_obj.id == run.id
        await pilot.press("J")  # branch 1 on show
        await pilot.press("delete")
        await pilot.pause(0.1)
        await pilot.press("y")
        await pilot.pause(0.3)
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
    assert path.read_bytes() == before
    saved = load_run(cache_dir / f"{run.id}.tokentui")
    assert len(saved.branches) == 1 and saved.sequence(0).tolist() == run.sequence(0).tolist()


async def test_an_opened_run_whose_id_the_cache_holds_otherwise_gets_a_new_id(tmp_path, cache_dir):
    """A copy grown apart from the cache's run of the same id: saving it there would replace that
    version, so it is saved under a new id, and the user is told."""
    run = make_run(n_branch_steps=(6, 3))
    cached = save_run(run, cache_dir / f"{run.id}.tokentui")
    run.remove_subtree(1)
    path = save_run(run, tmp_path / "grown-apart.tokentui")
    kept, before = cached.read_bytes(), path.read_bytes()
    app = explorer(run_path=path, cache_dir=cache_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.run_obj is not None and app.stream.view is not None, what="the run")
        new_id = app.run_obj.id
        assert new_id != run.id
        assert any(f"another version of run {run.id}" in n.message and new_id in n.message for n in app._notifications)
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
    assert cached.read_bytes() == kept and path.read_bytes() == before
    copy = load_run(cache_dir / f"{new_id}.tokentui")
    assert copy.id == new_id and len(copy.branches) == 1


async def test_a_run_opened_from_elsewhere_is_in_the_cache_once_a_new_run_replaces_it(model_dirs, tmp_path, cache_dir):
    """ctrl+r with a run opened from a file outside the cache on screen says 'it stays in the run
    cache: o opens it again': it is saved there first (it was not, being unchanged)."""
    from tests.factories import generate_run
    from tokentui.engine.hf.backend import HFBackend
    from tokentui.engine.hf.loading import load_model

    run, _ = generate_run(HFBackend(load_model(str(model_dirs["gpt2"]))), "x = 1", SamplingParams(max_new_tokens=3))
    run.add_branch(0, len(run.prompt) + 1)
    path = save_run(run, tmp_path / "elsewhere.tokentui")
    app = explorer(model=str(model_dirs["gpt2"]), run_path=path, cache_dir=cache_dir,
                   settings=GenerationSettings(SamplingParams(max_new_tokens=2), k=4))  # fmt: skip
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE and app.stream.view is not None, what="the run")
        assert not (cache_dir / f"{run.id}.tokentui").exists()
        await pilot.press("ctrl+r")
        await pilot.pause(0.2)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.run_obj is not None and app.run_obj.id != run.id and app.state is AppState.IDLE,
                       what="the new run")  # fmt: skip
    assert load_run(cache_dir / f"{run.id}.tokentui").id == run.id


async def test_o_is_refused_while_a_job_grows_the_run(model_dirs, cache_dir):
    """The run picker during a generation could reopen the very run being generated (from its last
    autosave): the job's later steps would land at the wrong positions. o waits for the job."""
    from tests.factories import wait_first_tokens
    from tokentui.tui.screens.run_picker import RunPicker

    app = explorer(model=str(model_dirs["llama"]), prompt="import os", generate_at_once=True,
                   settings=GenerationSettings(SamplingParams(max_new_tokens=5000)), cache_dir=cache_dir)  # fmt: skip
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_first_tokens(pilot, app)
        await pilot.press("o")
        # (bounded wait, not a fixed pause: on a loaded machine the key can be handled late)
        refused = lambda: any("not while a job runs" in n.message for n in app._notifications)  # noqa: E731
        await wait_for(pilot, lambda: refused() or isinstance(app.screen, RunPicker), what="the key o")
        assert refused() and not isinstance(app.screen, RunPicker)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="cancel")
        await open_picker(pilot, app)
        assert isinstance(app.screen, RunPicker)


async def test_a_generation_that_fails_leaves_the_status_saying_so_not_generating(tokenizer_dir, tmp_path, cache_dir):
    """A job that fails (attention entropy asked of Falcon, whose class does not say where its
    attention weights are) ends in an idle app whose status bar says what failed; a trial's stayed
    on "generating a new run from the prompt … · escape cancels"."""
    from tests.conftest import build_model_dir

    falcon = build_model_dir("falcon", tokenizer_dir, tmp_path / "falcon")
    settings = GenerationSettings(SamplingParams(max_new_tokens=3), k=4, attention_entropy=True)
    app = explorer(model=str(falcon), prompt="def f(x):", settings=settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="model load")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: any("failed" in (n.title or "") for n in app._notifications), what="failure")
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="idle")
        status = rendered(app.query_one("#status"))
        assert "generating" not in status and "Generate failed" in status, status


async def test_a_replay_where_torch_is_missing_does_not_advise_loading_a_model(tmp_path, monkeypatch):
    """On a laptop without torch, a key that needs a model says torch is missing rather than
    "start with --model M", which would only fail to load (a trial's advice loop)."""
    import sys

    app = explorer(run=make_run(), cache_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.1)
        await pilot.press("c")
        assert "--model M" in list(app._notifications)[-1].message
        monkeypatch.setitem(sys.modules, "torch", None)  # (what find_spec sees where it is not installed)
        await pilot.press("c")
        message = list(app._notifications)[-1].message
        assert "needs torch, not installed here" in message and "--model" not in message
        await pilot.press("s")  # the settings' refusal too
        message = list(app._notifications)[-1].message
        assert "needs torch, not installed here" in message and "--model" not in message


async def test_the_status_bar_drops_the_last_jobs_outcome_on_another_branch(model_dirs, cache_dir):
    """A trial read 'branch #0/3 · … · eos: 11 new tokens' on a branch that ended by length: the
    note and the speed were the last job's, on the branch it grew. Moving to another branch drops
    them; coming back does not bring them back (they said what happened then)."""
    from tokentui.tui.widgets.status_bar import StatusBar

    app = explorer(model=str(model_dirs["gpt2"]), prompt="def f(x):", generate_at_once=True, cache_dir=cache_dir,
                   settings=GenerationSettings(SamplingParams(max_new_tokens=6), k=4))  # fmt: skip
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_generated(pilot, app, 0)
        await pilot.press("left", "left", "2")
        await wait_generated(pilot, app, 1)
        status = lambda: " ".join(rendered(app.query_one(StatusBar)).split())  # noqa: E731
        assert "new tokens" in status() and "tok/s" in status()
        await pilot.press("K")
        await pilot.pause(0.1)
        assert app.branch_id == 0 and "new tokens" not in status() and "tok/s" not in status()
        assert "branch #0/2" in status()


async def test_navigation_keys_with_nowhere_to_go_say_why():
    """K on the root, J without a child, H/L without a sibling, and ] past the last token the
    model did not rank first did nothing at all (a bell a terminal over SSH often lacks): each
    says why, and the view stays where it was."""
    run = make_run(n_branch_steps=(6, 3))  # #0 the root, #1 its only child
    app = explorer(run=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        said = lambda: [n.message for n in app._notifications]  # noqa: E731
        for key, branch, why in [("K", 0, "the root branch has no parent"),
                                 ("L", 0, "branch #0 is the last of its siblings"),
                                 ("H", 0, "branch #0 is the first of its siblings")]:  # fmt: skip
            await pilot.press(key)
            await pilot.pause(0.05)
            assert app.branch_id == branch and why in said(), (key, said())
        await pilot.press("J")
        await pilot.pause(0.05)
        assert app.branch_id == 1
        await pilot.press("J")
        await pilot.pause(0.05)
        assert app.branch_id == 1 and "branch #1 has no branch growing from it" in said()
        ranks = run.column(1, "rank")
        last = int(np.flatnonzero(ranks > 1)[-1])
        app.stream.move_to(last)
        await pilot.press("right_square_bracket")
        await pilot.pause(0.05)
        assert app.stream.cursor == last
        assert "no token the model did not rank first after the cursor" in said()


async def test_i_edits_the_prompt_at_its_end_and_at_80x24_the_box_grows_while_edited(model_dirs, cache_dir):
    """A trial typed after `i` and got 'Xdef fibonacci(n):' (the cursor at the start), and at 80×24
    the box showed one line of a two-line prompt. `i` puts the cursor at the end; the focused box
    shows five lines at 80×24 and gives them back to the tokens on leaving."""
    app = explorer(model=str(model_dirs["gpt2"]), prompt="line one\nline two")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.1)
        height = app.prompt_box.size.height
        await pilot.press("i", "X")
        await pilot.pause(0.1)
        assert app.prompt_box.prompt == "line one\nline twoX"
        assert app.prompt_box.size.height >= height + 3
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert app.prompt_box.size.height == height


async def test_a_replay_at_80x24_names_its_model():
    """In a replay at 80×24 the status bar dropped the model's name first (a trial saw it only at
    160 columns): a replayed run's model is what it is about; it stays, the details go."""
    from tokentui.tui.widgets.status_bar import StatusBar

    run = make_run()
    run.meta.model = "SmolLM2-135M-Instruct"
    app = explorer(run=run)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.1)
        status = rendered(app.query_one(StatusBar))
        assert "SmolLM2-135M-Instruct" in status and "no model loaded" not in status


async def test_a_narrow_terminal_s_side_pane_says_what_it_is_and_what_v_brings():
    """At 80×24 one side pane shows at a time: its top line names it and the pane `v` brings (a
    newcomer saw the alternatives only, with no sign of the lens or the branch tree)."""
    app = explorer(run=load_run(SAMPLES / "generate.tokentui"))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run on screen")

        def title() -> str:
            return rendered(app.query_one("#right")).splitlines()[0]

        assert "alternatives · v: lens" in title()
        await pilot.press("v")
        assert "lens · v: branches" in title() and app.query_one(LayersPane).parent.has_class("shown")
        await pilot.press("v")
        assert "branches · v: alternatives" in title() and app.query_one(BranchTree).has_class("shown")
        await pilot.press("v")
        assert "alternatives · v: lens" in title()
        await pilot.resize_terminal(120, 40)  # wide: every pane at once, no such line
        await pilot.pause(0.2)
        assert "v:" not in title()


async def test_escape_in_the_prompt_while_generating_leaves_the_prompt_and_a_second_stops_it(
    model_dirs, cache_dir, monkeypatch
):
    """A trial typed its next prompt while one generated and pressed escape to leave the box: the
    generation stopped and the box kept the focus. Escape in the prompt leaves it, as the help
    says; the generation goes on until a second escape. (Each step is slowed down to 20 ms: the
    tiny model would reach its context's end first.)"""
    import time

    from tests.factories import generating_explorer, wait_first_tokens
    from tokentui.engine.hf import backend

    choose = backend.choose

    def slow(*args, **kwargs):
        time.sleep(0.02)
        return choose(*args, **kwargs)

    monkeypatch.setattr(backend, "choose", slow)

    app = generating_explorer(str(model_dirs["gpt2"]))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_first_tokens(pilot, app)
        await pilot.press("i", "end", "x", "escape")
        await pilot.pause(0.2)
        assert app.focused is app.stream and app.prompt_box.text == "import osx"
        assert app.state is AppState.GENERATING and app.run_obj.branches[0].status == "running"
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="the cancel")
        assert app.run_obj.branches[0].status == "cancelled"


async def test_ctrl_c_says_how_to_quit_in_plain_text():
    """Textual's ctrl+c hint is markup; shown through the app's notify (never markup) it read
    "Press [b]ctrl+q[/b] to quit the app"."""
    app = explorer(run=make_run())
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.press("ctrl+c")
        await pilot.pause(0.1)
        [note] = app._notifications
        assert "q or ctrl+q" in note.message and "[" not in note.message and app.return_code is None


async def test_q_closes_the_help_and_the_statistics_as_it_closes_the_matrix():
    """A trial's q to leave the help quit the explorer: q closes each screen of its own (help,
    statistics, like the matrix and the layer map); q on the explorer itself still quits."""
    app = explorer(run=load_run(SAMPLES / "generate.tokentui"))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run on screen")
        for key in ("question_mark", "S"):
            await pilot.press(key)
            await pilot.pause(0.1)
            assert len(app.screen_stack) == 2, key
            await pilot.press("q")
            await pilot.pause(0.1)
            assert len(app.screen_stack) == 1 and app.return_code is None, key
        await pilot.press("q")
        await pilot.pause(0.1)
    assert app.return_code == 0


async def test_c_on_a_branch_that_fills_the_context_says_so_and_an_empty_prompt_says_type_one(model_dirs, cache_dir):
    """A branch that stopped at the model's context (512 positions here): c said nothing and the
    status bar's "context: 509 new tokens" became "context: 0 new tokens". It says why now, and
    starts no job. ctrl+r on an empty prompt, typed in the box, said "i edits it"."""
    app = explorer(model=str(model_dirs["gpt2"]), prompt="import os", generate_at_once=True,
                   settings=GenerationSettings(SamplingParams(max_new_tokens=600)))  # fmt: skip
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await wait_generated(pilot, app, 0, "context")
        n = len(app.run_obj.branches[0].steps)
        app.clear_notifications()
        await pilot.press("c")
        await pilot.pause(0.2)
        [note] = app._notifications
        assert "fills the model's context" in note.message and app.state is AppState.IDLE
        assert len(app.run_obj.branches[0].steps) == n
        app.clear_notifications()
        await pilot.press("i", "ctrl+a", "ctrl+k", "ctrl+r")  # (the box emptied, then ctrl+r in it)
        await pilot.pause(0.2)
        assert app.prompt_box.text == "" and [x.message for x in app._notifications] == [
            "the prompt is empty: type one"
        ]


async def test_a_terminal_narrowed_and_widened_again_keeps_no_blank_rows():
    """At 80×24 the settings line and the legend take two rows; widened again to 120×40 they kept
    them, blank (their new text was given during the layout pass, which kept the old height)."""

    async def heights(*sizes) -> dict[str, int]:
        app = explorer(run=load_run(SAMPLES / "generate.tokentui"))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.stream.view is not None, what="the run on screen")
            for size in sizes:
                await pilot.resize_terminal(*size)
                await pilot.pause(0.3)
            return {name: app.query_one(f"#{name}").region.height for name in ("settings-line", "legend", "stream")}

    narrow = await heights((80, 24))
    assert narrow["settings-line"] == 2 and narrow["legend"] == 2, narrow  # (what makes the round trip tell)
    assert await heights((80, 24), (120, 40)) == await heights()


@pytest.mark.parametrize("columns", [40, 60, 80])
async def test_a_very_narrow_terminal_leaves_the_tokens_most_of_the_width(columns):
    """The side pane kept 36 columns (at least 30) whatever the width: at 40 the tokens pane was
    2 columns wide. It takes 45 % now, 36 at most (80 columns: as before)."""
    app = explorer(run=load_run(SAMPLES / "generate.tokentui"))
    async with app.run_test(size=(columns, 24)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run on screen")
        left, right = app.query_one("#left").region.width, app.query_one("#right").region.width
        assert left + right == columns and left > right and right == min(36, columns * 45 // 100), (left, right)


async def test_a_run_another_model_made_opens_to_be_read_not_grown(model_dirs, cache_dir):
    """`replay RUN --model M` (and `o`) with a model that did not make the run: a trial's c grew
    smollm2's run with the demo model, and the failure was saved into the run file as an error
    branch. The run opens, says why it cannot grow, and every key that would grow it refuses."""
    from tests.factories import generate_run
    from tokentui.engine.hf.backend import HFBackend
    from tokentui.engine.hf.loading import load_model
    from tokentui.store.cache import run_path

    made = HFBackend(load_model(str(model_dirs["qwen2"])), lens_chunk=0)
    run, _ = generate_run(made, "def f(x):", SamplingParams(max_new_tokens=4), k=4)
    path = save_run(run, run_path(run.id, cache_dir))
    saved = path.read_bytes()
    app = explorer(model=str(model_dirs["gpt2"]), run_path=path, cache_dir=cache_dir)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None and app.state is AppState.IDLE, what="the run")
        why = f"the run was made by {run.meta.model} and {model_dirs['gpt2'].name} is loaded"
        assert any(why in n.message for n in app._notifications)  # said as the run opens, or when the model is ready
        await pilot.press("end")
        for key in ("c", "2", "r", "t", "e", "a"):
            app.clear_notifications()
            await pilot.press(key)
            await pilot.pause(0.2)
            notes = [n.message for n in app._notifications]
            assert len(notes) == 1 and why in notes[0], (key, notes)
            assert app.state is AppState.IDLE and len(app.screen_stack) == 1, key
        assert len(app.run_obj.branches) == 1 and app.run_obj.branches[0].status == run.branches[0].status
    assert path.read_bytes() == saved  # nothing written into it
    app = explorer(model=str(model_dirs["gpt2"]), cache_dir=cache_dir)  # the same run picked with o
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="the model")
        await open_picker(pilot, app)
        await pilot.press(*run.id[-6:], "enter")
        await wait_for(pilot, lambda: app.run_obj is not None, what="the run")
        assert [n.message for n in app._notifications] == [
            f"{why}: a run grows under its own model only (open it with --model {run.meta.model})"
        ]
        await pilot.press("c")
        await pilot.pause(0.2)
        assert app.state is AppState.IDLE and len(app.run_obj.branches) == 1
    assert path.read_bytes() == saved


async def test_notifications_in_a_row_stay_in_one_place():
    """Each notification replaces the last; Textual left the replaced one's holder behind, empty,
    and a trial's burst of refused keys pushed later messages up over the tokens pane, then off
    the screen ("saved", errors: all unseen until a restart)."""
    app = explorer(run=make_run(n_branch_steps=(30, 3)))
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await pilot.pause(0.2)
        places = []
        for key in ("ctrl+r", "c", "e", "s", "ctrl+r", "c", "e", "ctrl+r"):
            await pilot.press(key)  # each refused in replay: a notification
            await pilot.pause(0.3)
            toasts = list(app.screen.query("Toast"))
            assert len(toasts) == 1 and len(app.screen.query("ToastHolder")) == 1, key
            places.append(toasts[0].region.y)
        box = app.prompt_box.region
        assert len(set(places)) == 1 and box.y <= places[0] < box.bottom  # over the prompt box, every time


@pytest.mark.parametrize("repeat", [1, 4])
async def test_the_prompt_box_shows_the_prompts_start_once_left(repeat):
    """At 80×24 the box kept showing where the typing ended: a long prompt's last line alone. Once
    (three lines: all in view while typing, one once left, the box shorter) and four times (past
    the box even while typing)."""
    app = explorer(run=make_run())
    async with app.run_test(size=(80, 24)) as pilot:
        box = app.prompt_box
        await pilot.press("i", "ctrl+a", "ctrl+k")
        words = "Write a short story about a dragon who is afraid of fire and who learns to bake bread. " * repeat
        await pilot.press(*words)
        await pilot.pause(0.1)
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert app.focused is not box and box.scroll_y == 0
        assert "Write a short story" in rendered(box)


async def test_a_run_another_process_grew_while_it_was_open_is_not_overwritten(cache_dir):
    """A trial grew a tree (`tokentui tree --run`) into the run the explorer had open; the
    explorer's next save wrote over it and the tree was gone. Now the other version stays, the
    explorer's goes beside it, and the user is told where."""
    from tests.store.test_saving import _grow_in_another_process

    run = make_run(n_branch_steps=(6, 3))
    path = save_run(run, cache_dir / f"{run.id}.tokentui")
    app = explorer(run_path=path, cache_dir=cache_dir)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.run_obj is not None and app.stream.view is not None, what="the run")
        _grow_in_another_process(path)
        theirs = path.read_bytes()
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        [note] = [n.message for n in app._notifications if "changed on disk" in n.message]
        assert f"saved as {run.id}-2" in note
    assert path.read_bytes() == theirs
    assert load_run(cache_dir / f"{run.id}-2.tokentui").meta.prompt == run.meta.prompt


def test_a_replayed_run_s_chat_and_k_are_the_session_s_settings(tmp_path):
    """A trial replayed a chat run with a model, edited its prompt and generated: the new run had
    chat off (the explorer's default). A replay with a model now starts from the run's chat and k."""
    from tokentui.store.cache import summarize
    from tokentui.tui.start import settings_of

    run = make_run()
    run.meta.chat, run.meta.k = True, 3
    got = settings_of(summarize(save_run(run, tmp_path / "chat.tokentui")))
    assert got is not None and (got.chat, got.k) == (True, 3)
    run.meta.chat = False
    got = settings_of(summarize(save_run(run, tmp_path / "plain.tokentui")))
    assert got is not None and not got.chat
    (tmp_path / "bad.tokentui").write_bytes(b"not a run")
    assert settings_of(summarize(tmp_path / "bad.tokentui")) is None


async def test_replay_reopens_on_the_branch_last_on_show(tmp_path):
    """A newcomer left the explorer on branch 1; `tokentui replay ID` opened branch 0. Leaving now
    names the branch and the cursor's position on show (`--branch 1 --position 2`; the position
    only when it is not the branch's end), and `replay --branch 1 --position 2` opens there."""
    from tokentui.store.cache_writes import remember
    from tokentui.tui.start import replay_line

    run = make_run(n_branch_steps=(5, 3))
    path = tmp_path / f"{run.id}.tokentui"
    remember(save_run(run, path))
    app = explorer(run_path=path, cache_dir=tmp_path, branch=1, position=2)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.run_obj is not None and app.stream.view is not None, what="the run")
        assert (app.branch_id, app.stream.cursor) == (1, 2)
        assert (
            replay_line(app)
            == f"run {run.id} is in the run cache: tokentui replay {run.id} --branch 1 --position 2 opens it"
        )
        app.show_branch(0, cursor=None)  # (its end: where a replay opens anyway)
        await pilot.pause(0.05)
        assert replay_line(app) == f"run {run.id} is in the run cache: tokentui replay {run.id} opens it"
    # a file outside the cache (read, never written): the line names the file
    mine = tmp_path / "my runs" / "mine.tokentui"
    mine.parent.mkdir()
    save_run(run, mine)
    elsewhere = explorer(run_path=mine, cache_dir=tmp_path / "cache", branch=1)
    async with elsewhere.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: elsewhere.stream.view is not None, what="the run")
        assert replay_line(elsewhere) == f"run {run.id} is in {mine}: tokentui replay '{mine}' --branch 1 opens it"
    far = explorer(run_path=path, cache_dir=tmp_path, branch=1, position=500)
    async with far.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: far.stream.view is not None, what="the run")
        assert far.stream.cursor == run.length(1) - 1
        assert [n.message for n in far._notifications] == [
            f"branch 1 ends at position {run.length(1) - 1}: the cursor is there"
        ]


def test_replay_of_a_branch_the_run_lacks_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from tokentui.cli.app import app as cli

    run = make_run(n_branch_steps=(5, 3))
    save_run(run, tmp_path / f"{run.id}.tokentui")
    res = CliRunner().invoke(cli, ["replay", run.id, "--branch", "2", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 2 and "there is no branch 2 in this run (it has 0…1)" in res.output, res.output


async def test_N_shows_the_session_s_messages_whole_after_the_toast_has_gone():
    """A trial's "model B not loaded: …" reason was cut in the status bar at 80 columns once its
    toast had gone. `N` lists every notification whole, newest last, and the status bar's text."""
    from tokentui.tui.screens.messages import MessagesScreen

    app = explorer(run=make_run())
    long = "model B not loaded: the models' vocabularies differ (A: 300 tokens, B: 512) " + "x" * 120 + " END"
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.1)
        app.notify("first note")
        app.notify("first note")  # (said again in a row: counted, not listed twice)
        app.notify(long, severity="warning", timeout=0.1)
        await pilot.pause(0.4)  # (the toast gone)
        await pilot.press("N")
        await pilot.pause(0.1)
        assert isinstance(app.screen, MessagesScreen)
        text = "".join(rendered(app.screen.query_one("#messages-text")).split())
        assert "".join(long.split()) in text and text.index("firstnote") < text.index("modelBnotloaded")
        assert "statusbarnow:replay" in text and text.count("firstnote") == 1 and "firstnote(×2)" in text
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, MessagesScreen)


def save_runs(folder: Path, prompts: list[str], cancelled: tuple[int, ...] = ()) -> None:
    """A run cache for the run picker: one run per prompt, run n ending `cancelled` or `length`."""
    for n, prompt in enumerate(prompts):
        run = make_run()
        run.meta.run_id = f"20260101-0000{n:02d}-abcdef"
        run.meta.prompt = prompt
        run.branches[0].status = "cancelled" if n in cancelled else "length"
        save_run(run, folder / f"{run.meta.run_id}.tokentui")


async def test_the_run_picker_of_a_large_cache_lists_the_first_matches_and_says_how_many_more(tmp_path, monkeypatch):
    """A cache of 2,771 runs (compare --dataset saves one per text) took a trial 5–20 s to open,
    nothing on screen meanwhile (each row measured every id: quadratic). The headers are read in
    a thread, and the list shows the first SHOWN matches and how many more; typing narrows it."""
    from tokentui.tui.screens import run_picker

    monkeypatch.setattr(run_picker, "SHOWN", 5)
    save_runs(tmp_path, [f"prompt number {n}" for n in range(8)], cancelled=(3,))
    app = explorer(run=make_run(), cache_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        await open_picker(pilot, app)
        await pilot.pause(0.1)
        rows = rendered(app.screen.query_one("#picker-list")).splitlines()
        assert len([r for r in rows if " tok " in r]) == 5
        assert any("… and 3 more runs: type to narrow the list" in r for r in rows), rows
        await pilot.press(*"number 6")
        await pilot.pause(0.1)
        rows = [r for r in rendered(app.screen.query_one("#picker-list")).splitlines() if " tok " in r]
        assert len(rows) == 1 and "prompt␠number␠6" in rows[0].replace(" ", "␠"), rows
        # its kind, as `tokentui runs` shows it, is searched too
        app.screen.query_one("#picker-search").value = "cancelled"
        await pilot.pause(0.1)
        rows = [r for r in rendered(app.screen.query_one("#picker-list")).splitlines() if " tok " in r]
        assert len(rows) == 1 and "prompt␠number␠3" in rows[0].replace(" ", "␠"), rows


@pytest.mark.parametrize("pane", ["alternatives", "layers", "tree"])
async def test_token_moves_work_from_a_side_pane_and_leave_the_focus_there(pane):
    """A trial tabbed into the layers pane (as the README says, to scroll it), pressed l for the
    next token's layers, and nothing happened. ← → h l, the word moves and [ ] { } now move the
    tokens' cursor from any side pane; the focus stays in the pane."""
    app = explorer(run=load_run(SAMPLES / "generate.tokentui"))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run on screen")
        at = len(app.run_obj.prompt) + 10  # (in the answer: [ ] { } look there)
        app.stream.move_to(at)
        app.query_one(f"#{pane}").focus()
        await pilot.pause()
        await pilot.press("l", "right")
        assert app.stream.cursor == at + 2 and app.focused is app.query_one(f"#{pane}")
        await pilot.press("h")
        assert app.stream.cursor == at + 1
        mask = app.stream.view.uncertain_mask("entropy")  # (a greedy run: [ ] find no rank > 1 in its answer)
        before = app.stream.view.next_where(at + 1, -1, mask)
        assert before is not None
        await pilot.press("left_curly_bracket")
        assert app.stream.cursor == before
        assert app.focused is app.query_one(f"#{pane}")


async def test_v_on_a_wide_terminal_says_every_pane_is_on_show_and_changes_nothing():
    """At 110 columns and more every side pane is on show: `v` did nothing to see, yet moved the
    hidden turn, so a narrower terminal later showed another pane than the one left. It now says
    why it does nothing, and does nothing."""
    app = explorer(run=make_run())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        shown = [n for n in app.side_panes() if app.query_one(f"#{n}").has_class("shown")]
        await pilot.press("v")
        await pilot.pause(0.1)
        assert [n.message for n in app._notifications][-1].startswith("every side pane is on show at this width")
        assert [n for n in app.side_panes() if app.query_one(f"#{n}").has_class("shown")] == shown
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.2)
        assert app.query_one("#alternatives").display and not app.query_one("#tree").display
    from tests.factories import attributed_run

    app = explorer(run=attributed_run(30))  # (an attribution on show takes the lens pane's place)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run")
        app.stream.move_to(30)
        await pilot.press("a", "v")
        await pilot.pause(0.1)
        assert app.session.attribution is not None and not app.query_one("#layers").display
        assert [n.message for n in app._notifications][-1].startswith("at this width the attribution is where the lens")


async def test_a_run_cache_the_picker_cannot_read_is_said_in_its_list(tmp_path, monkeypatch):
    """The picker reads the cache in a thread: an error there (a folder it may not list) left it
    "reading the runs …" for good. It now says why in the list (an OSError injected as the
    listing's own)."""
    from tokentui.tui.screens import run_picker

    def refused(directory, stop=None):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(run_picker, "list_runs", refused)
    app = explorer(run=make_run(), cache_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        await pilot.press("o")

        def shown() -> str:
            return rendered(app.screen.query_one("#picker-list")) if type(app.screen).__name__ == "RunPicker" else ""

        await wait_for(pilot, lambda: "cannot read" in shown(), what="the picker's line")
        assert "cannot read the runs here: Permission denied" in shown()
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert type(app.screen).__name__ != "RunPicker"


async def test_run_picker_rows_fit_beside_the_scroll_bar_at_80_columns(tmp_path):
    """With more runs than the box holds, a scroll bar takes two cells of the list: rows made as
    wide as the list without it wrapped at 80×24 (a trial), or lost their end. Each run is one
    row, its prompt begun or cut with '…' within the width."""
    save_runs(tmp_path, [f"prompt number {n} " + "and more words " * 8 for n in range(30)])
    app = explorer(run=make_run(), cache_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.1)
        await open_picker(pilot, app)
        await pilot.pause(0.2)
        listed = app.screen.query_one("#picker-list")
        assert listed.show_vertical_scrollbar
        lines = rendered(listed).splitlines()
        rows = [line for line in lines if " tok " in line]
        texts = [line for line in lines if any(ch.isalnum() for ch in line)]
        assert len(rows) == len(texts), lines  # (no row's end on a line of its own)
        assert all("prompt number" in r and r.rstrip(" ▁▂▃▄▅▆▇█▊▌▍▎▏").endswith("…") for r in rows), rows


async def test_the_prompt_box_says_when_its_text_is_not_the_run_on_show_s(model_dirs, cache_dir):
    """A trial edited the prompt after a run, left the box, and read the old answer under the new
    prompt with no sign (until ctrl+r asked to start a new run). The box's title says the text is
    edited and not run; generating it, or putting the run's prompt back, ends that."""
    app = explorer(
        model=str(model_dirs["gpt2"]),
        prompt="def f(x):",
        settings=GenerationSettings(SamplingParams(max_new_tokens=3), k=4),
        cache_dir=cache_dir,
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="model load")

        def title() -> str:
            return str(app.prompt_box.border_title)

        assert title() == "prompt · i edits · ctrl+r generates · esc leaves"  # (no run yet)
        await pilot.press("ctrl+r")
        await wait_generated(pilot, app, 0)
        assert "edited" not in title()
        await pilot.press("i", "X", "escape")
        await pilot.pause(0.1)
        assert app.prompt_box.prompt == "def f(x):X" and title() == "prompt · edited, not run: ctrl+r"
        assert "prompt · edited, not run: ctrl+r" in rendered(app.prompt_box).splitlines()[0]  # (whole, at 80 columns)
        await pilot.press("i", "backspace", "escape")
        await pilot.pause(0.1)
        assert "edited" not in title()
        await pilot.press("i", "Y", "escape", "ctrl+r")
        await wait_for(pilot, lambda: app.run_obj is not None and app.run_obj.meta.prompt == "def f(x):Y"
                       and app.state is AppState.IDLE, what="the new run")  # fmt: skip
        assert "edited" not in title()


async def test_the_uncertainty_jumps_look_in_the_answer_not_the_prompt():
    """In a chat a trial's `}` from the first token walked through the system prompt's uncertain
    tokens first. Where the branch goes on past the prompt, { } [ ] look there alone: the top 10%
    of the answer's entropy; a scored text (all prompt) keeps every position."""
    run = load_run(SAMPLES / "sampled.tokentui")
    app = explorer(run=run)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run on screen")
        n_prompt = len(run.prompt)
        ent = run.column(0, "entropy").astype(np.float64)
        answer = ent[n_prompt:]
        want = n_prompt + int(np.flatnonzero(answer >= np.quantile(answer[np.isfinite(answer)], 0.9))[0])
        prompt_top = np.flatnonzero(ent[1:n_prompt] >= np.quantile(answer[np.isfinite(answer)], 0.9))
        assert prompt_top.size  # (the prompt has tokens as uncertain: the jump passed them)
        app.stream.move_to(0)
        await pilot.press("right_curly_bracket")
        assert app.stream.cursor == want
    scored = load_run(SAMPLES / "score.tokentui")
    app = explorer(run=scored)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run on screen")
        assert app.stream.view.uncertain_mask("entropy").any()
