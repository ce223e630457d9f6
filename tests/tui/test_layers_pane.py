"""The explorer's layer views (issue 14), on a run a tiny real model generated with the lens on
every token, three top tokens per layer and attention entropy, replayed and driven by keys: the
layers pane's numbers for the cursor's token equal the run's stored columns (a derived measure its
definition from the stored one), `Y` cycles every measure the run has, the top-tokens table lists
the run's `layer_topk_ids` tokens with exp(logprob) probabilities and the token taken highlighted;
`Z`'s layer map holds the column's values over the branch, coloured by their level, its cursor
follows the stream's both ways and escape closes it; a fixture run from before these measures
says which it lacks, without crashing; the settings screen keeps the lens's top tokens and
attention entropy; a snapshot at 80×24."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from textual.widgets import Input

from tests.factories import explorer, make_run, rendered
from tokentui.core.params import GenerationSettings, SamplingParams
from tokentui.engine import jobs
from tokentui.store.runfile import load_run
from tokentui.tui.screens.layer_map import LayerMapScreen
from tokentui.tui.widgets.layers import LayersPane
from tokentui.tui.widgets.token_text import lone_id

PROMPT = "def wrap(text, width):\n    "
J = 3
SAMPLES = Path(__file__).resolve().parents[2] / "tests/fixtures/demo_runs"
ROW = re.compile(r"^L(\d+)\s+(\S+)")
TITLES = (
    ("lens entropy", "layer_entropy"),
    ("perplexity", "layer_perplexity"),
    ("margin", "layer_margin"),
    ("KL uniform", "layer_kl_uniform"),
    ("KL final", "layer_kl_final"),
    ("rank", "layer_rank"),
    ("surprisal", "layer_surprisal"),
    ("attention entropy", "attention_entropy"),
)


@pytest.fixture(scope="module")
def lens_run(loaded):
    from tokentui.engine.hf.backend import HFBackend

    lm = loaded("gpt2")
    settings = GenerationSettings(SamplingParams(max_new_tokens=10), k=4, k_lens=J, attention_entropy=True)
    job = jobs.Generate(HFBackend(lm, lens_chunk=1, lens_precision="float32"), PROMPT, settings)
    list(job)
    return job.run


def expected(run, name: str, pos: int) -> np.ndarray:
    """Measure `name` at `pos` of branch 0 from the stored columns, by its definition."""
    col = lambda n: run.column(0, n)[pos].astype(np.float64)  # noqa: E731
    entropy = col("layer_entropy")
    entropy[-1] = run.column(0, "entropy")[pos]  # layer L: the model's own, in float32 (not float16)
    if name == "layer_perplexity":
        return np.exp(entropy)
    if name == "layer_kl_uniform":
        return math.log(run.meta.vocab_size) - entropy
    return entropy if name == "layer_entropy" else col(name)


def pane_lines(pane) -> list[str]:
    """The pane's text lines as it was last given them (all of them: the pane scrolls)."""
    parts = getattr(pane.content, "renderables", [pane.content])
    return [row.strip() for part in parts for row in part.plain.splitlines()]


def pane_rows(pane) -> dict[int, str]:
    """Layer → the value the pane's bar rows show (the first block of L rows)."""
    out: dict[int, str] = {}
    for line in pane_lines(pane):
        m = ROW.match(line)
        if m and int(m.group(1)) not in out:
            out[int(m.group(1))] = m.group(2)
        if len(out) and m is None and out:
            if len(out) == pane.app.run_obj.n_layers:
                break
    return out


def same(shown: str, want: float, name: str) -> None:
    if name == "layer_rank":
        assert int(shown.replace(",", "")) == int(want), (shown, want)
    elif name == "layer_perplexity":
        assert abs(float(shown) - want) <= 1e-3 * want, (shown, want)
    else:
        assert abs(float(shown) - want) <= 5e-4 + 1e-3 * abs(want), (shown, want)


async def test_the_pane_shows_each_measure_of_the_cursor_token_and_Y_cycles_them(lens_run, tmp_path):
    run = lens_run
    assert {"layer_margin", "layer_topk_ids", "attention_entropy"} <= set(run.layout.names)
    app = explorer(run=run, cache_dir=tmp_path)
    async with app.run_test(size=(160, 60)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("end", "left", "left")
        pos = run.length(0) - 3
        assert app.stream.cursor == pos
        pane = app.query_one(LayersPane)
        for title, name in (*TITLES, TITLES[0]):
            text = "\n".join(pane_lines(pane))
            assert text.startswith(f"{title} per layer · pos {pos}"), text
            rows = pane_rows(pane)
            want = expected(run, name, pos)
            assert sorted(rows) == list(range(1, run.n_layers + 1))
            for layer, shown in rows.items():
                same(shown, float(want[layer - 1]), name)
            if name == "layer_entropy":  # layer L is the alternatives pane's H=…, to the digit
                assert rows[run.n_layers] == f"{float(run.column(0, 'entropy')[pos]):.3f}"
            assert "not in this run" not in text
            await pilot.press("Y")
        # the model's own layer: KL to itself 0, and (greedy) the token taken is its top choice
        assert np.all(run.column(0, "layer_rank")[pos][-1] == 1)
        # a lens in bfloat16 says so (a trial compared with a float32 lens of its own and wondered)
        precision = run.meta.lens.rsplit("matmul in ", 1)[-1]
        assert ("lensed in bfloat16" in "\n".join(pane_lines(pane))) is (precision == "bfloat16")
        run.meta.lens = run.meta.lens.replace(f"matmul in {precision}", "matmul in bfloat16")
        await pilot.press("left")
        assert "lensed in bfloat16 (--lens-precision float32: exact)" in "\n".join(pane_lines(pane))


async def test_the_top_tokens_table_lists_each_layers_tokens_and_marks_the_token_taken(lens_run, tmp_path):
    run = lens_run
    app = explorer(run=run, cache_dir=tmp_path)
    async with app.run_test(size=(160, 60)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("end", "left")
        pos = run.length(0) - 2
        pane = app.query_one(LayersPane)
        lines = rendered(pane).splitlines()
        head = next(i for i, line in enumerate(lines) if line.strip().startswith("top tokens per layer"))
        assert lines[head].strip().startswith("top tokens per layer (p) · taken: ")
        chosen = int(run.sequence(0)[pos])
        assert lone_id(run, chosen, 16).plain in lines[head]
        ids, logprobs = run.column(0, "layer_topk_ids")[pos], run.column(0, "layer_topk_logprobs")[pos]
        assert ids.shape == (run.n_layers, J)
        for layer in range(run.n_layers):
            line = lines[head + 1 + layer].strip()
            assert line.startswith(f"L{layer + 1} ")
            whole = [lone_id(run, int(t)).plain for t in ids[layer]]  # (wider than 7: start … end)
            cells = [c if len(c) <= 7 else c[:3] + "…" + c[-3:] for c in whole]
            probs = [f"{math.exp(float(lp)):.2f}" for lp in logprobs[layer]]
            found = re.findall(r"(\S.{0,6}?)\s+(\d\.\d\d)", line[len(f"L{layer + 1}") :])
            assert [p for _, p in found] == probs, (line, probs)
            for (tok, _), want in zip(found, cells, strict=True):
                assert tok.strip() == want.strip(), (line, cells)
        # the token taken is highlighted where it appears: greedy, so first in layer L's row
        assert int(ids[-1, 0]) == chosen
        strips = pane.render_lines(pane.region.reset_offset)
        marked = [
            (y, s.text)
            for y, strip in enumerate(strips)
            for s in strip
            if s.style and s.style.reverse and s.text.strip()
        ]
        want_text = lone_id(run, chosen, 7).plain.strip()
        assert any(text.strip() == want_text and y == head + run.n_layers for y, text in marked), marked


async def test_long_tokens_in_the_top_tokens_table_keep_their_ends(lens_run, tmp_path):
    """At 80 columns a layer's two top tokens read `␠scatt… 0.37 ␠scatt… 0.22` (scattered,
    scattering): a token wider than its cell keeps its start and its end around the …"""
    from tokentui.core.tokens import TokenTable

    run = lens_run.copy()
    pos = run.length(0) - 2
    ids = run.column(0, "layer_topk_ids")[pos]
    table = {t: run.tokens.bytes_of(t) for t in range(run.meta.vocab_size)}
    table[int(ids[0, 0])], table[int(ids[0, 1])] = b" scattered", b" scattering"
    run.tokens = TokenTable(table)
    app = explorer(run=run, cache_dir=tmp_path)
    async with app.run_test(size=(160, 60)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("end", "left")
        lines = rendered(app.query_one(LayersPane)).splitlines()
        head = next(i for i, line in enumerate(lines) if line.strip().startswith("top tokens per layer"))
        row = lines[head + 1]
        assert "␠sc…red" in row and "␠sc…ing" in row, row


async def test_the_layer_map_holds_the_column_and_its_cursor_follows_the_streams(lens_run, tmp_path):
    run = lens_run
    app = explorer(run=run, cache_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("end", "left", "left", "left")
        pos = run.length(0) - 4
        await pilot.press("Z")
        await pilot.pause(0.2)
        screen = app.screen
        assert isinstance(screen, LayerMapScreen)
        heat = screen.heat_map
        n = run.length(0)
        entropy = run.column(0, "layer_entropy").astype(np.float64)  # [n, L]
        final = run.column(0, "entropy")
        entropy[:, -1] = np.where(np.isfinite(entropy[:, -1]), final, entropy[:, -1])  # (layer L's: float32)
        assert (screen.lo, screen.hi) == (0, n)
        assert np.array_equal(heat.scores, entropy.T, equal_nan=True)
        assert heat.col == pos and heat.row == run.n_layers - 1
        # the drawn cells: each layer's row coloured by H / ln V on the theme's scale
        scale = app.scale
        lines = heat.render_lines(heat.region.reset_offset)
        first_col = heat.content_region.x - heat.region.x + heat.label_width
        for layer in range(run.n_layers):
            cells = [seg for seg in lines[heat.content_region.y - heat.region.y + 1 + layer] for _ in seg.text]
            for p in range(1, min(n, heat.scrollable_content_region.width - heat.label_width)):
                level = entropy[p, layer] / math.log(run.meta.vocab_size)
                got = cells[first_col + p].style.bgcolor
                assert got in {scale.style(min(1.0, max(0.0, level + d))).bgcolor for d in (-1e-3, 0, 1e-3)}
        cell = rendered(screen.query_one("#layer-map-cell"))
        assert f"layer {run.n_layers} · pos {pos} " in cell and f"{entropy[pos, -1]:.3f} nats" in cell
        # the map's cursor moves the stream's …
        await pilot.press("left", "up")
        assert app.stream.cursor == pos - 1 and heat.col == pos - 1 and heat.row == run.n_layers - 2
        assert f"layer {run.n_layers - 1} · pos {pos - 1} " in rendered(screen.query_one("#layer-map-cell"))
        # … and follows it
        app.stream.move_to(pos + 2)
        await pilot.pause(0.1)
        assert heat.col == pos + 2
        # Y switches the measure here too: rank, 0 (unknown) shown as no value
        for _ in range(5):
            await pilot.press("Y")
        assert screen.measure == "layer_rank"
        ranks = run.column(0, "layer_rank").astype(np.float64)
        assert np.array_equal(heat.scores, np.where(ranks > 0, ranks, np.nan).T, equal_nan=True)
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, LayerMapScreen) and app.stream.cursor == pos + 2
        assert pane_lines(app.query_one(LayersPane))[0].startswith(f"rank per layer · pos {pos + 2}")


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_a_run_without_the_new_columns_says_what_it_lacks(size, tmp_path):
    run = load_run(SAMPLES / "generate.tokentui")
    assert "layer_margin" not in run.layout.names
    app = explorer(run=run, cache_dir=tmp_path)
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.2)
        await pilot.press("left", "Y")  # narrow: Y brings the layers pane up
        pane = app.query_one(LayersPane)
        assert pane.display and pane.region.width > 0
        text = "\n".join(pane_lines(pane))
        assert text.startswith("perplexity per layer"), text
        assert "not in this run: margin, KL final, rank, surprisal, attention entropy" in " ".join(text.split())
        assert "no top tokens per layer in this run" in " ".join(text.split())
        pos = app.stream.cursor
        want = np.exp(run.column(0, "layer_entropy")[pos].astype(np.float64))
        for layer, shown in pane_rows(pane).items():
            same(shown, float(want[layer - 1]), "layer_perplexity")
        await pilot.press("Y", "Z")
        await pilot.pause(0.1)
        assert isinstance(app.screen, LayerMapScreen)
        assert "not in this run: margin" in " ".join(rendered(app.screen.query_one("#layer-map-definition")).split())
        await pilot.press("Z")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, LayerMapScreen)


async def test_editing_settings_keeps_the_lens_top_tokens_and_attention_entropy(tmp_path, model_dirs):
    settings = GenerationSettings(
        SamplingParams(max_new_tokens=7, stop=["\n\n"]), k=4, k_lens=9, attention_entropy=True
    )
    app = explorer(model=str(model_dirs["gpt2"]), settings=settings, cache_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        await pilot.press("s")
        await pilot.pause(0.1)
        app.screen.query_one("#set-temperature", Input).value = "0.5"
        await pilot.press("enter")
        await pilot.pause(0.1)
        s = app.session.settings
        assert s.sampling.temperature == 0.5 and s.sampling.max_new_tokens == 7 and s.sampling.stop == ["\n\n"]
        assert s.k_lens == 9 and s.attention_entropy is True


async def test_the_layer_map_without_colour_draws_shades(tmp_path, monkeypatch):
    """NO_COLOR: each cell's shade glyph is its level (H / ln V), position 0 a dot (the app's NoColor
    filter drops the colours themselves, as for every pane)."""
    from tokentui.tui.heat import shade

    monkeypatch.setenv("NO_COLOR", "1")
    run = make_run(n_branch_steps=(30, 12))
    app = explorer(run=run, cache_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("left", "Z")
        await pilot.pause(0.2)
        heat = app.screen.heat_map
        entropy = run.column(0, "layer_entropy").astype(np.float64)
        entropy[:, -1] = np.where(np.isfinite(entropy[:, -1]), run.column(0, "entropy"), entropy[:, -1])  # (layer L)
        lines = heat.render_lines(heat.region.reset_offset)
        x0 = heat.content_region.x - heat.region.x + heat.label_width
        for layer in range(run.n_layers):
            strip = lines[heat.content_region.y - heat.region.y + 1 + layer]
            text = strip.text
            assert text[x0] == "·"  # position 0: nothing predicted it
            for p in range(1, run.length(0)):
                if (layer, p) != (heat.row, heat.col):
                    assert text[x0 + p] == shade(entropy[p, layer] / math.log(run.meta.vocab_size)), (layer, p)


def test_layer_map_narrow(snap_compare, tmp_path, monkeypatch):
    """The layer map of a run with entropy only (the synthetic run of the other snapshots)."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    app = explorer(run=make_run(n_branch_steps=(30, 12)), cache_dir=tmp_path)
    assert snap_compare(app, terminal_size=(80, 24), press=["left", "left", "Z", "up"])


def test_layer_perplexity_keeps_four_digits_so_a_column_lines_up():
    from tokentui.tui.layer_data import fmt

    assert [fmt(v, "layer_perplexity") for v in (3.15, 3.487, 31.5, 315.0, 3150.0, 1.0)] == [
        "3.150", "3.487", "31.50", "315.0", "3150", "1.000"
    ]  # fmt: skip
    assert fmt(float("nan"), "layer_perplexity") == "–" and fmt(3.15, "layer_entropy") == "3.150"


@pytest.mark.parametrize("layers", [3, 30])
async def test_the_title_points_to_the_layer_map_when_layers_are_out_of_sight(tmp_path, layers):
    """At 120×40 a 30-layer run's bars do not all fit the pane: its title says that Z shows every
    layer; a 3-layer run's do, and it does not."""
    from tests.factories import make_run

    app = explorer(run=make_run(n_branch_steps=(20, 3), layers=layers), cache_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        pane = app.query_one(LayersPane)
        rows = pane_rows(pane)
        assert sorted(rows) == list(range(1, layers + 1))
        assert ("Z: every layer" in pane_lines(pane)[0]) == (layers == 30), pane_lines(pane)[0]
        box = app.query_one("#layers")  # the pane scrolls in it: its rows on show at once
        assert (box.scrollable_content_region.height < layers + 2) == (layers == 30)


async def test_the_layer_map_following_the_stream_past_its_right_edge_scrolls_before_it_draws(tmp_path):
    """Following streamed tokens, the map drew each new grid with the old scroll (it scrolled only
    after the frame): in a trial the cursor cell was off the right edge in up to half the frames.
    Each follow now leaves the cursor's column on screen at once."""
    run = load_run(SAMPLES / "generate.tokentui")
    app = explorer(run=run, cache_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("home", "Z")
        await pilot.pause(0.2)
        screen = app.screen
        assert isinstance(screen, LayerMapScreen)
        heat = screen.heat_map
        cols = heat.scrollable_content_region.width - heat.label_width
        assert run.length(0) > cols + 20  # (the map scrolls)
        for pos in range(cols - 5, run.length(0), 7):
            screen.follow(run, 0, pos)  # (as the explorer does with each streamed update)
            x = int(heat.scroll_offset.x)
            assert x <= heat.col < x + cols, (pos, x, cols)
            await pilot.pause(0.02)


async def test_another_run_opens_the_layers_pane_at_its_top(lens_run, tmp_path):
    """Scrolled down on one run, the pane opened the next at "L29 3.020", its title (what the
    numbers are) out of sight (a trial). Another run starts at the pane's top; moving through the
    same run's tokens keeps where the pane was scrolled."""
    from tests.factories import open_picker
    from tokentui.store.runfile import save_run
    from tokentui.tui.widgets.layers import LayersScroll

    other = lens_run.copy()
    other.meta.run_id = "20260101-000000-aaaaaa"
    save_run(other, tmp_path / f"{other.id}.tokentui")
    app = explorer(run=lens_run, cache_dir=tmp_path)
    async with app.run_test(size=(80, 16)) as pilot:  # (a short terminal: the test model's few layers overflow it)
        await pilot.pause(0.2)
        await pilot.press("v")  # the lens pane, on a narrow terminal
        scroll = app.query_one(LayersScroll)
        scroll.focus()
        await pilot.press("end")
        await pilot.pause(0.1)
        assert scroll.scroll_y > 0
        await pilot.press("h")  # another token of the same run: where it was
        await pilot.pause(0.1)
        assert scroll.scroll_y > 0
        await open_picker(pilot, app)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.run_obj.id == other.id and scroll.scroll_y == 0
