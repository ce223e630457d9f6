"""Attribution in the explorer (issue 15), driven by keys on a tiny real model: `a` attributes the
token under the cursor (scores equal plain autograd's), the stream is coloured by them with the
target marked, the attribution pane lists the true top contributors; `M` switches the method;
the alternatives pane's `a` contrasts with the selected alternative; `A` computes the association
matrix on its own screen (rows equal the record's, stored with the run, shown again without
recomputing), escape cancels a slow one keeping the rows done; a replay with stored records shows
them without a model; a model source without gradients and position 0 are refused in one line;
NO_COLOR sends no colour codes and the sizes show as bars."""

from __future__ import annotations

import re

import numpy as np
import pytest
from rich.style import Style

from tests.engine.test_attribution import reference
from tests.factories import explorer, make_run, rendered, wait_for, wait_generated
from tests.terminal import Terminal, tokentui_command
from tokentui.core.attribution import Attribution, top_contributors
from tokentui.core.params import GenerationSettings, SamplingParams
from tokentui.engine.events import AttributionProgress
from tokentui.store.runfile import load_run, save_run
from tokentui.tui.bridge import EngineMessage
from tokentui.tui.heat import TOP
from tokentui.tui.screens.matrix import MatrixScreen
from tokentui.tui.state import AppState
from tokentui.tui.widgets.attribution_pane import AttributionPane
from tokentui.tui.widgets.heat_map import HeatMap

PROMPT = "def wrap(text, width):\n    "
ROW = re.compile(r"^\s*(\d+) .*? (-?\d[\d.]*(?:e[-+]?\d+)?) ?[█▉▊▋▌▍▎▏]*$")


def close(got: np.ndarray, want: np.ndarray, rel: float = 1e-4) -> None:
    scale = max(float(np.abs(want).max()), 1e-12)
    assert np.abs(np.asarray(got, dtype=np.float64) - want).max() <= rel * scale, (got, want)


def token_styles(app) -> dict[int, Style]:
    """Each position's style as the stream draws it (every line, laid out as on screen)."""
    stream, view = app.stream, app.stream.view
    out = {}
    for line in range(view.n_lines):
        segs = list(stream._draw(line))
        if view.carried(line)[1]:
            segs = segs[1:]
        start, _end = view.line_range(line)
        for i, seg in enumerate(segs):
            out[start + i] = seg.style
    return out


def bucket_colours(scale, level: float) -> set:
    """The background a level gets, allowing the neighbouring step at a boundary (float noise)."""
    return {scale.style(min(1.0, max(0.0, level + d))).bgcolor for d in (-1e-3, 0.0, 1e-3)}


def heat_cells(heat, y: int) -> list:
    """The segments of line y of the heat map after its row label: one per input position."""
    out, col = [], 0
    for seg in heat.render_line(y):
        if col >= heat.label_width:
            out.append(seg)
        col += len(seg.text)
    return out


def pane_rows(app) -> list[tuple[int, float]]:
    """(position, score) of each top-contributor row the attribution pane drew."""
    rows = []
    for line in app.query_one(AttributionPane).lines:
        m = ROW.match(line)
        assert m, line
        rows.append((int(m.group(1)), float(m.group(2))))
    return rows


def last_note(app) -> str:
    notes = [n.message for n in app._notifications]
    return notes[-1] if notes else ""


async def generated(pilot, app, loaded_model) -> None:
    await wait_for(pilot, lambda: app.state is AppState.IDLE, what="model load")
    await pilot.press("ctrl+r")
    await wait_generated(pilot, app, 0)


async def attributed(pilot, app, n: int) -> None:
    """Until the run holds n records and the explorer is idle with one on show."""
    await wait_for(
        pilot,
        lambda: len(app.run_obj.attributions) >= n and app.state is AppState.IDLE and app.session.attribution,
        what=f"attribution #{n}",
    )


@pytest.fixture
def settings():
    return GenerationSettings(SamplingParams(max_new_tokens=8), k=6)


async def test_a_attributes_the_token_under_the_cursor_and_M_switches_method(model_dirs, loaded, cache_dir, settings):
    lm = loaded("gpt2")
    app = explorer(model=str(model_dirs["gpt2"]), prompt=PROMPT, settings=settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await generated(pilot, app, lm)
        run = app.run_obj
        before = {i: s.bgcolor for i, s in token_styles(app).items()}
        await pilot.press("left", "left")
        t = app.stream.cursor
        ids = run.sequence(0).tolist()
        await pilot.press("a")
        await attributed(pilot, app, 1)
        rec = run.attributions[-1]
        assert (rec.method, rec.branch, rec.positions, rec.token_ids, rec.alternative) == (
            "gradient-norm", 0, [t], [ids[t]], None)  # fmt: skip
        want = reference(lm.model, ids, t, "gradient-norm")
        close(rec.row(t), want)
        assert app.session.note.startswith("attributed 1 token")

        # the stream: positions before t coloured by their score's share of the largest, t marked,
        # later ones dim; the metric's colours are gone
        styles = token_styles(app)
        scale = app.stream.scale
        for i in range(t):
            assert styles[i].bgcolor in bucket_colours(scale, abs(want[i]) / np.abs(want).max()), i
        assert styles[t].bgcolor == app.stream.target_style().bgcolor and styles[t].underline
        assert all(styles[i].dim for i in range(t + 1, run.length(0)))
        assert {i: s.bgcolor for i, s in styles.items()} != before
        legend = rendered(app.query_one("#legend"))
        assert f"attribution: gradient norm of position {t}" in legend

        # the pane: the true top contributors, largest first, with their scores
        order = sorted(range(t), key=lambda i: (-abs(want[i]), i))[:TOP]
        rows = pane_rows(app)
        assert [p for p, _ in rows] == order
        for p, score in rows:  # (one column: 4 significant digits of the largest, as many decimals for all)
            assert score == pytest.approx(want[p], abs=1e-3 * abs(want[order[0]]))
        decimals = {len(ROW.match(line).group(2).partition(".")[2]) for line in app.query_one(AttributionPane).lines}
        assert len(decimals) == 1, decimals  # (the points line up)
        pane = rendered(app.query_one(AttributionPane))
        assert "gradient norm" in pane and f"pos {t}" in pane

        # the cursor moves on, the attribution stays; the pane gives the score under it
        await pilot.press("home", "right")
        assert app.session.attribution is not None and app.session.attribution.position == t
        assert "cursor  pos 1 " in rendered(app.query_one(AttributionPane))

        # M: the next method, recomputed for the same target (a new record, other values)
        await pilot.press("M")
        await attributed(pilot, app, 2)
        sal = run.attributions[-1]
        assert sal.method == "saliency" and sal.positions == [t] and app.session.attribution.record is sal
        close(sal.row(t), reference(lm.model, ids, t, "saliency"))
        assert not np.allclose(sal.row(t), rec.row(t))
        assert "saliency" in rendered(app.query_one(AttributionPane))

        # a again on the target (the cursor back on it) leaves; escape leaves too
        app.stream.move_to(t)
        await pilot.press("a")
        assert app.session.attribution is None and app.stream.overlay is None
        assert "probability" in rendered(app.query_one("#legend"))
        assert {i: s.bgcolor for i, s in token_styles(app).items()} == before
        await pilot.press("a")  # saliency of t is stored now: shown again without a job
        assert app.session.attribution.record is sal and len(run.attributions) == 2
        await pilot.press("escape")
        assert app.session.attribution is None

        # position 0 has nothing before it
        await pilot.press("home", "a")
        await pilot.pause(0.1)
        assert "position 0 has nothing before it" in last_note(app)
        assert app.session.attribution is None and len(run.attributions) == 2 and app.state is AppState.IDLE


async def test_the_alternatives_pane_contrasts_with_the_selected_alternative(model_dirs, loaded, cache_dir, settings):
    lm = loaded("gpt2")
    app = explorer(model=str(model_dirs["gpt2"]), prompt=PROMPT, settings=settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await generated(pilot, app, lm)
        run = app.run_obj
        await pilot.press("left")
        t = app.stream.cursor
        step = run.step(0, t)
        await pilot.click("#alternatives")
        await pilot.press("down")  # the runner-up (the chosen token is row 1)
        alt = int(step.topk_ids[1])
        assert alt != step.token_id
        await pilot.press("a")
        await attributed(pilot, app, 1)
        rec = run.attributions[-1]
        assert rec.alternative == alt and rec.positions == [t] and rec.method == "gradient-norm"
        ids = run.sequence(0).tolist()
        close(rec.row(t), reference(lm.model, ids, t, "gradient-norm", alt=alt))
        pane = rendered(app.query_one(AttributionPane))
        assert " vs " in pane and "Δlog p" in pane
        # the target: log p(chosen) − log p(alternative), as decoding recorded them (through the KV
        # cache: float32 noise of ~1e-3 on this random model)
        assert rec.target_values[0] == pytest.approx(step.logprob - float(step.topk_logprobs[1]), abs=1e-2)
        # attention has no target to contrast: M to it attributes the token's own (a trial stored an
        # attention record "vs" a token), and the pane's a refuses an alternative under it
        from tokentui.core.attribution import METHODS

        n = len(run.attributions)
        while METHODS[app.session.attribution_method].needs != "attention":
            await pilot.press("M")
            await wait_for(pilot, lambda: app.state is AppState.IDLE, what="the attribution")
        await attributed(pilot, app, 1)
        rec = run.attributions[-1]
        assert len(run.attributions) > n and rec.method == app.session.attribution_method
        assert rec.alternative is None and " vs " not in rendered(app.query_one(AttributionPane))
        count = len(run.attributions)
        await pilot.click("#alternatives")
        await pilot.press("a")
        await pilot.pause(0.2)
        assert "has no target to contrast" in last_note(app) and len(run.attributions) == count


async def test_A_computes_the_association_matrix_and_shows_it_again_from_the_run(model_dirs, loaded, cache_dir):
    lm = loaded("gpt2")
    events = []
    app = explorer(
        model=str(model_dirs["gpt2"]), prompt=PROMPT, settings=GenerationSettings(SamplingParams(max_new_tokens=10))
    )
    async with app.run_test(size=(80, 24), message_hook=events.append) as pilot:
        await generated(pilot, app, lm)
        run = app.run_obj
        await pilot.press("left")
        cursor = app.stream.cursor
        await pilot.press("A")
        # what runs is on the screen's own progress line: no toast (one covered the key line at 80×24)
        assert not [n for n in app._notifications if "computing" in n.message]
        await wait_for(pilot, lambda: app.state is AppState.IDLE and app.screen.record is not None, what="matrix")
        screen = app.screen
        rec = run.attributions[-1]
        positions = list(range(len(run.prompt), cursor + 1))
        assert rec.positions == positions and rec.method == "gradient-norm"
        progress = [
            m.event for m in events if isinstance(m, EngineMessage) and isinstance(m.event, AttributionProgress)
        ]
        assert progress and progress[-1].done == len(positions)  # progress came, and the end
        assert "rows in" in rendered(screen.query_one("#matrix-progress"))
        # the heat map shows the record's rows, each the autograd reference's
        heat = screen.query_one(HeatMap)
        np.testing.assert_array_equal(heat.scores, rec.scores)
        ids = run.sequence(0).tolist()
        for r in (0, len(positions) - 1):
            close(rec.scores[r, : positions[r]], reference(lm.model, ids, positions[r], "gradient-norm"))
        # the cursor starts on the last row's largest contributor; the line under the map says so
        last = rec.scores[-1, : positions[-1]]
        assert heat.cell == (positions[-1], top_contributors(last, 1)[0], pytest.approx(float(last.max())))
        cell_line = rendered(screen.query_one("#matrix-cell"))
        assert f"output {positions[-1]} " in cell_line
        assert f"{float(np.abs(last).max() / np.abs(last).sum()):.1%} of Σ|row|" in cell_line, cell_line
        # its cells are coloured by the row's share of its largest score
        cells = heat_cells(heat, heat.row - int(heat.scroll_offset.y) + 1)
        x0 = int(heat.scroll_offset.x)
        assert len(cells) > 5
        for k, seg in enumerate(cells):
            j = x0 + k
            if j < positions[-1] and j != heat.col:
                assert seg.style.bgcolor in bucket_colours(app.stream.scale, last[j] / last.max()), j
            elif j == heat.col:
                assert seg.text == "◆"  # the cursor cell
        # keys move the cursor cell
        await pilot.press("up", "home")
        assert heat.cell[:2] == (positions[-2], 0)
        await pilot.press("escape")  # nothing runs: closes
        await pilot.pause(0.1)
        assert app.screen is not screen
        # stored with the run (the worker saves after it) and shown again without a job
        await wait_for(pilot, lambda: not run.dirty, what="the autosave")
        saved = load_run(cache_dir / f"{run.id}.tokentui")
        assert saved.attributions[-1].positions == positions
        np.testing.assert_array_equal(saved.attributions[-1].scores, rec.scores)
        n = len(run.attributions)
        await pilot.press("A")
        await pilot.pause(0.2)
        assert "stored with the run" in rendered(app.screen.query_one("#matrix-progress"))
        assert app.screen.record is rec and len(run.attributions) == n and app.state is AppState.IDLE
        await pilot.press("q")
        await pilot.pause(0.1)
        assert app.screen is not screen and app.is_running  # q closes the matrix, not the app


async def test_escape_cancels_a_slow_matrix_and_keeps_the_rows_done(model_dirs, loaded, cache_dir):
    lm = loaded("gpt2")
    app = explorer(
        model=str(model_dirs["gpt2"]), prompt=PROMPT, settings=GenerationSettings(SamplingParams(max_new_tokens=200))
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await generated(pilot, app, lm)
        run = app.run_obj
        await pilot.press("M", "M", "M")
        assert app.session.attribution_method == "integrated-gradients"
        await pilot.press("A")
        total = len(app.screen.positions)
        progress = app.screen.query_one("#matrix-progress")
        await wait_for(pilot, lambda: re.search(r"computing: [1-9]\d*/", rendered(progress)), what="a chunk")
        assert "escape cancels" in rendered(app.query_one("#status"))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.state is AppState.IDLE, what="the cancel")
        rec = run.attributions[-1]
        assert rec.method == "integrated-gradients" and 0 < len(rec.positions) < total
        assert rec.positions == app.screen.positions[: len(rec.positions)]
        assert f"cancelled: {len(rec.positions)} of {total} rows kept" in rendered(progress)
        np.testing.assert_array_equal(app.screen.query_one(HeatMap).scores, rec.scores)
        await pilot.press("escape")  # nothing runs now: closes
        await pilot.pause(0.1)
        assert not isinstance(app.screen, MatrixScreen)


def stored_run() -> tuple:
    """A synthetic run with two stored records at position 7 of branch 0: gradient norm (the top
    contributors known) and input × gradient (signed)."""
    run = make_run(n_branch_steps=(8, 3))
    t = 7
    seq = run.sequence(0)
    norm = np.array([0.1, 0.5, 0.2, 0.05, 0.9, 0.3, 0.0], dtype=np.float32)
    signed = np.array([0.1, -0.5, 0.2, 0.05, -0.9, 0.3, 0.0], dtype=np.float32)
    for method, scores in (("gradient-norm", norm), ("input-x-gradient", signed)):
        run.attributions.append(
            Attribution(method, 0, [t], [int(seq[t])], scores[None, :], target_values=np.array([-1.5], np.float32))
        )
    return run, t, norm, signed


async def test_a_replay_shows_stored_attributions_without_a_model(tmp_path):
    run, t, norm, signed = stored_run()
    path = save_run(run, tmp_path / "r.tokentui")
    app = explorer(run_path=path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run")
        assert app.state is AppState.REPLAY
        app.stream.move_to(t)
        await pilot.press("a")
        shown = app.session.attribution
        assert shown is not None and shown.position == t and shown.record.method == "gradient-norm"
        np.testing.assert_array_equal(shown.scores, norm)
        assert [p for p, _ in pane_rows(app)] == [4, 1, 5, 2, 0, 3, 6]
        assert app.query_one("#attribution").display  # narrow: the attribution pane comes up
        # the method on show follows M: input × gradient is stored too; saliency is not
        await pilot.press("M", "M")
        assert app.session.attribution.record.method == "input-x-gradient"
        rows = pane_rows(app)
        assert rows[0] == (4, pytest.approx(-0.9)) and rows[1] == (1, pytest.approx(-0.5))
        # signed scores on the diverging scale: negative and positive apart, by their share of 0.9
        styles, diverging = token_styles(app), app.stream.diverging
        for i in range(t):
            assert styles[i].bgcolor == diverging.style(signed[i] / 0.9).bgcolor, i
        assert styles[4].bgcolor != styles[5].bgcolor and styles[1].bgcolor != styles[2].bgcolor
        # v cycles the side panes, the attribution pane among them
        await pilot.press("v")
        assert app.query_one("#layers").display and not app.query_one("#attribution").display
        await pilot.press("v", "v", "v")
        assert app.query_one("#attribution").display
        # a token without a stored record: one line saying why nothing is computed
        app.stream.move_to(t - 2)
        await pilot.press("a")
        await pilot.pause(0.1)
        note = last_note(app)
        assert "no stored input × gradient attribution of this token" in note and "no model is loaded" in note
        assert "stored here" not in note  # no record holds that token
        # a method not stored for the token on show: the note names those that are
        await pilot.press("M")  # integrated gradients
        await pilot.pause(0.1)
        assert "stored here: input × gradient, gradient norm (M: method)" in last_note(app)
        assert app.session.attribution.position == t  # still the one on show
        # v cycles through the attribution pane too; escape leaves and restores the pane
        await pilot.press("escape")
        assert app.session.attribution is None and not app.query_one("#attribution").display
        assert app.query_one("#alternatives").display


async def test_the_attribution_of_a_steered_token_says_it_ran_unsteered(tmp_path):
    """Attribution runs the model unsteered: beside a token the branch made steered the pane says
    so (a trial saw log p −2.97 beside a token chosen at −1.27, and nothing to explain it)."""
    from tests.factories import rendered
    from tokentui.core.steering import SteeringSpec

    run, t, _, _ = stored_run()
    for steered in (False, True):
        run.branches[0].steering = SteeringSpec.of(np.ones(8), [1], name="v.npy").record() if steered else None
        app = explorer(run_path=save_run(run, tmp_path / f"r{steered}.tokentui"))
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.stream.view is not None, what="the run")  # noqa: B023
            app.stream.move_to(t)
            await pilot.press("a")
            await pilot.pause(0.1)
            text = " ".join(rendered(app.query_one("#attribution")).split())
            assert ("unsteered (token made steered)" in text) is steered, text


async def test_explorer_keys_do_nothing_behind_the_matrix_screen(tmp_path):
    """The matrix fills the terminal: the explorer's keys (metric, attribution method, branch,
    side pane) must not change what is underneath, unseen; help and the palette still open, and
    over the matrix the palette offers only what works there."""
    run, t, _norm, _signed = stored_run()
    run.add_branch(0, 5)
    app = explorer(run=run)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = MatrixScreen(run, 0, [t], "gradient-norm", app.look(), app._cancel_attribution)
        app.push_screen(screen)
        screen.show_record(run.attributions[0], stored=True)
        await pilot.pause()
        shown = lambda: [n for n in app.side_panes() if app.query_one(f"#{n}").has_class("shown")]  # noqa: E731
        before = (app.metric, app.session.attribution_method, app.branch_id, shown())
        await pilot.press("m", "M", "J", "L", "v", "D", "S")
        await pilot.pause()
        assert app.screen is screen
        assert (app.metric, app.session.attribution_method, app.branch_id, shown()) == before
        theme = app.theme
        await pilot.press("T")  # the theme changes what is on show: it works here
        assert app.theme != theme
        offered = {c.title.split(" (")[0] for c in app.get_system_commands(screen)}
        assert offered == {"Screenshot", "Help", "Quit", "Save", "Theme"}
        await pilot.press("question_mark")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        await pilot.press("escape")  # closes the matrix: the keys work again
        await pilot.pause()
        assert app.screen is app.screen_stack[0]
        await pilot.press("m", "J")
        assert app.metric != before[0] and app.branch_id == 1


async def test_a_note_over_the_matrix_leaves_its_header_alone(tmp_path, monkeypatch):
    """At 80×24 a screenshot's note goes bottom right on the matrix screen (the header, at the top,
    stays readable) and names the file whole on one line (in the current folder: its name only)."""
    from textual.widgets._toast import Toast

    monkeypatch.chdir(tmp_path)
    run, t, _norm, _signed = stored_run()
    app = explorer(run=run)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.pause()
        screen = MatrixScreen(run, 0, [t], "gradient-norm", app.look(), app._cancel_attribution)
        app.push_screen(screen)
        screen.show_record(run.attributions[0], stored=True)
        await pilot.pause()
        await pilot.press("X")
        await wait_for(pilot, lambda: any(screen.query(Toast)), what="the note")
        await pilot.pause(0.3)
        [toast] = screen.query(Toast)
        [svg] = tmp_path.glob("*.svg")
        for header in ("#matrix-title", "#matrix-progress"):
            assert not toast.region.overlaps(screen.query_one(header).region), header
        assert toast.region.bottom == 24 and toast.region.right >= 76  # bottom right
        assert svg.name in [line.strip("▌ ") for line in rendered(toast).splitlines()]


async def test_a_model_source_without_gradients_is_refused_in_one_line(model_dirs, cache_dir, settings, monkeypatch):
    from tokentui.engine.capabilities import Capabilities
    from tokentui.engine.hf.backend import HFBackend

    # a model source that decodes but offers neither gradients nor attention (as a remote server)
    monkeypatch.setattr(
        HFBackend, "capabilities", Capabilities(generate=True, lens=True, kv_fork=True, full_distribution=True)
    )
    app = explorer(model=str(model_dirs["gpt2"]), prompt=PROMPT, settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await generated(pilot, app, None)
        await pilot.press("a")
        await pilot.pause(0.1)
        note = last_note(app)
        assert (
            note
            == f"gradient norm attribution is not available: {model_dirs['gpt2']} does not provide gradients (attribution)"
        )
        await pilot.press("M", "M", "M", "M", "a")
        await pilot.pause(0.1)
        assert "does not provide attention weights" in last_note(app)
        assert "\n" not in note and app.state is AppState.IDLE and not app.run_obj.attributions


def test_no_color_shows_the_weights_as_bars_and_styles_without_colour_codes(tmp_path):
    """`tokentui replay` on a pseudo-terminal with NO_COLOR: the stored attribution shows (bars in
    the pane, bold on the top tokens) and no SGR sequence sets a colour."""
    run, t, _, _ = stored_run()
    path = save_run(run, tmp_path / "r.tokentui")
    with Terminal([*tokentui_command(), "replay", str(path)], size=(100, 30), env={"NO_COLOR": "1"}) as term:
        term.wait_for("━ tokens ━".encode(), b"branch #0/2")
        term.press(b"g")
        for _ in range(t):
            term.press(b"l")
        term.wait_for(f"pos {t}".encode())
        term.press(b"a")
        term.wait_for(b"gradient norm", b"top 7 of 7", "█████".encode())
        term.press(b"q")
        assert term.wait_exit() == 0
        sgr = re.findall(rb"\x1b\[([0-9;:]*)m", term.output)
        for params in sgr:
            codes = [int(c or 0) for c in params.replace(b":", b";").split(b";")]
            assert not {38, 48, 58} & set(codes), params
            assert not any(30 <= c <= 37 or 40 <= c <= 47 or 90 <= c <= 97 or 100 <= c <= 107 for c in codes), params
        assert any(b"1" in p.split(b";") for p in sgr) and any(b"4" in p.split(b";") for p in sgr)  # bold, underline


async def test_A_takes_the_last_256_output_tokens_up_to_the_cursor_and_says_so():
    run = make_run(n_branch_steps=(300, 3))  # output tokens 4…303
    positions = list(range(303 - 255, 304))
    seq = run.sequence(0)
    scores = np.tril(np.ones((256, 303), dtype=np.float32), k=positions[0] - 1)  # row r: positions 0…t−1
    run.attributions.append(Attribution("gradient-norm", 0, positions, [int(seq[p]) for p in positions], scores))
    app = explorer(run=run)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run")
        await pilot.press("end", "A")
        await pilot.pause(0.2)
        assert isinstance(app.screen, MatrixScreen) and app.screen.positions == positions
        assert "the last 256 of 300 output tokens" in rendered(app.screen.query_one("#matrix-title"))
        assert app.screen.record is run.attributions[-1]  # stored: shown without a model
        await pilot.press("q", "left", "A")  # one token less: a row not stored, and no model to compute it
        await pilot.pause(0.1)
        assert isinstance(app.screen, MatrixScreen) and app.screen.record.positions == positions[:-1]
        line = app.screen.progress_line
        assert line.startswith("255 of 256 rows, stored with the run") and "no model is loaded" in line, line


async def test_A_up_to_an_earlier_cursor_reads_the_stored_matrix_s_rows(tmp_path):
    """A matrix stored for positions 4…33: `A` with the cursor at 20 computed again (and in a
    replay without a model was refused), though every row it needs is stored. It now shows those
    rows, as stored."""
    from tests.factories import attributed_run

    run = attributed_run()
    [matrix] = [r for r in run.attributions if len(r.positions) > 1]
    app = explorer(run_path=save_run(run, tmp_path / "r.tokentui"))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run")
        app.stream.move_to(20)
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen) and app.screen.record is not None, what="A")
        rec = app.screen.record
        assert rec.positions == list(range(4, 21)) and rec.token_ids == matrix.token_ids[:17]
        np.testing.assert_array_equal(rec.scores, matrix.scores[:17, :20])
        np.testing.assert_array_equal(rec.target_values, matrix.target_values[:17])
        assert app.screen.progress_line.startswith("stored with the run") and "17 rows" in app.screen.progress_line


async def test_A_after_the_cursor_moved_on_computes_only_the_rows_not_stored(model_dirs, loaded, cache_dir):
    """`A`, then the cursor three tokens on and `A` again: the first matrix's rows are read, only
    the three new ones computed (the whole range was computed again), and the screen shows all of
    them as one matrix, each row autograd's."""
    lm = loaded("gpt2")
    events = []
    app = explorer(
        model=str(model_dirs["gpt2"]), prompt=PROMPT, settings=GenerationSettings(SamplingParams(max_new_tokens=10))
    )
    async with app.run_test(size=(80, 24), message_hook=events.append) as pilot:
        await generated(pilot, app, lm)
        run = app.run_obj
        end = run.length(0) - 1
        app.stream.move_to(end - 3)
        await pilot.press("A")
        await wait_for(pilot, lambda: app.state is AppState.IDLE and app.screen.record is not None, what="matrix")
        first = run.attributions[-1]
        await pilot.press("q")
        events.clear()
        app.stream.move_to(end)
        await pilot.press("A")
        await wait_for(pilot, lambda: app.state is AppState.IDLE and app.screen.record is not None, what="matrix 2")
        new = run.attributions[-1]
        assert new is not first and new.positions == [end - 2, end - 1, end]  # (what was computed and stored)
        progress = [
            m.event for m in events if isinstance(m, EngineMessage) and isinstance(m.event, AttributionProgress)
        ]
        assert progress and all(ev.total == 3 for ev in progress)
        shown = app.screen.record
        positions = list(range(len(run.prompt), end + 1))
        assert shown.positions == positions and shown.token_ids == run.sequence(0)[positions].tolist()
        assert shown.scores.shape == (len(positions), end)
        np.testing.assert_array_equal(shown.scores[: len(first.positions), : first.width], first.scores)
        ids = run.sequence(0).tolist()
        for r in (0, len(positions) - 4, len(positions) - 1):
            t = positions[r]
            close(shown.scores[r, :t], reference(lm.model, ids, t, "gradient-norm"))
            assert not shown.scores[r, t:].any()
        line = rendered(app.screen.query_one("#matrix-progress"))
        assert "3 rows in" in line and f"({len(first.positions)} stored)" in line, line
        np.testing.assert_array_equal(app.screen.query_one(HeatMap).scores, shown.scores)


async def test_A_past_a_stored_matrix_in_a_replay_shows_its_rows_and_says_why_not_the_rest(tmp_path):
    """No model: the rows stored are shown (of a matrix, and of a token's own record), and the
    line says how many are missing and why."""
    from tests.factories import attributed_run

    run = attributed_run()
    matrix = run.attributions.pop()
    run.attributions.append(matrix.rows_of(list(range(4, 21))))
    [token] = [r for r in run.attributions if r.method == "gradient-norm" and r.positions == [30]]
    app = explorer(run_path=save_run(run, tmp_path / "r.tokentui"))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.stream.view is not None, what="the run")
        app.stream.move_to(33)
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen) and app.screen.record is not None, what="A")
        rec = app.screen.record
        assert rec.positions == [*range(4, 21), 30] and rec.scores.shape == (18, 30)
        np.testing.assert_array_equal(rec.scores[:17, :20], matrix.scores[:17, :20])
        assert not rec.scores[:17, 20:].any()
        np.testing.assert_array_equal(rec.scores[17], token.scores[0])
        np.testing.assert_array_equal(rec.target_values, [*matrix.target_values[:17], *token.target_values])
        line = app.screen.progress_line
        assert (
            line.startswith("18 of 30 rows, stored with the run")
            and "no stored gradient norm rows of the other 12 — replay: no model is loaded" in line
        ), line
        assert "no model is loaded" in line
