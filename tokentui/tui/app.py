"""The explorer app: composes the panes, maps keys to actions, and turns engine events into
screen updates (throttled to ~20 frames a second while tokens stream in)."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import Reactive
from textual.theme import Theme
from textual.widgets import Footer, Static, TextArea

from tokentui.core.display import safe_text, sanitize
from tokentui.core.params import GenerationSettings, RunError, SamplingParams
from tokentui.store.cache import RunSummary, summarize
from tokentui.store.cache import cache_dir as default_cache_dir
from tokentui.store.header import RunFileError
from tokentui.tui.screens import HelpScreen, RunPicker, SettingsScreen, TextPrompt
from tokentui.tui.theme import DEFAULT_SCALE, DEFAULT_THEME, load_themes
from tokentui.tui.widgets.alternatives import AlternativesPane
from tokentui.tui.widgets.branch_tree import BranchTree
from tokentui.tui.widgets.layers import LayersPane
from tokentui.tui.widgets.token_stream import TokenStream

if TYPE_CHECKING:
    from tokentui.core.run import Run
    from tokentui.tui.bridge import EngineBridge, EngineMessage

# numpy, the run's arrays, the engine (through tui.bridge), exports: imported by the methods that
# need them, once there is a run or a model. `tokentui replay` draws its first frame from the run file's
# header alone and reads the arrays after (benchmarks/tui_latency.py: replay start vs a bare app).


HELP = [
    (
        "generate",
        [
            ("ctrl+r / F5", "generate a new run from the prompt"),
            ("c", "continue the current branch"),
            ("escape", "cancel generation at once (the partial branch is kept)"),
            ("s", "settings: temperature, top-k, top-p, seed, max tokens, k, forced prefix, chat"),
            ("i", "edit the prompt"),
        ],
    ),
    (
        "move",
        [
            ("← → / h l", "previous / next token"),
            ("ctrl+← → / b w", "previous / next word"),
            ("↑ ↓ / k j, PgUp PgDn", "line / page"),
            ("home end / g G", "first / last token"),
            ("[ ]", "previous / next token the model did not rank first"),
            ("{ }", "previous / next high-entropy token (top 10%)"),
            ("click", "put the cursor on a token"),
        ],
    ),
    (
        "branch",
        [
            ("1 … 9", "branch here with alternative n"),
            ("t", "branch here with typed text"),
            ("tab to alternatives, ↑ ↓, enter", "branch on the selected alternative"),
            ("K J", "parent / first child branch"),
            ("H L", "previous / next sibling branch"),
            ("d", "compare with the parent: jump to where they diverge"),
            ("tree: enter", "show that branch"),
        ],
    ),
    (
        "view",
        [
            ("m", "next metric: probability, entropy, rank, surprisal"),
            ("T", "next theme"),
            ("D", "tokens ↔ decoded text (characters split over tokens joined, real line breaks)"),
            ("v", "next side pane (narrow terminals)"),
            ("tab", "next pane"),
        ],
    ),
    (
        "files",
        [
            ("ctrl+s", "save the run (runs also autosave)"),
            ("o", "open a run from the cache"),
            ("x", "export the run (CSV, JSONL, JSON)"),
            ("X", "save an SVG screenshot"),
        ],
    ),
    ("app", [("? / F1", "this help"), ("ctrl+p", "command palette"), ("q / ctrl+q", "quit")]),
]


class TokentuiApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "tokentui"
    BINDINGS = [
        # not priority: keys typed into the prompt just before must reach it first
        Binding("ctrl+r,f5", "generate", "generate"),
        Binding("escape", "cancel", "cancel", priority=False),
        Binding("c", "continue_branch", "continue"),
        Binding("s", "settings", "settings"),
        Binding("i", "focus_prompt", "prompt", show=False),
        Binding("m", "cycle_metric", "metric"),
        Binding("t", "branch_text", "branch: text", show=False),
        Binding("K", "tree_move('parent')", "parent", show=False),
        Binding("J", "tree_move('child')", "child", show=False),
        Binding("H", "tree_move('prev')", "prev sibling", show=False),
        Binding("L", "tree_move('next')", "next sibling", show=False),
        Binding("d", "compare", "diff parent", show=False),
        Binding("T", "cycle_theme", "theme", show=False),
        Binding("D", "toggle_decoded", "decoded text", show=False),
        Binding("v", "cycle_pane", "pane", show=False),
        Binding("ctrl+s", "save", "save"),
        Binding("o", "open_run", "open"),
        Binding("x", "export", "export"),
        Binding("X", "screenshot", "screenshot", show=False),
        Binding("question_mark", "help", "help"),
        Binding("f1", "help", "help", show=False, priority=True),
        Binding("q", "quit", "quit"),
    ] + [Binding(str(n), f"branch_alt({n})", f"branch #{n}", show=False) for n in range(1, 10)]
    # Screen classes Textual sets on every resize (app.tcss: narrow → one side pane at a time,
    # short → a smaller prompt box). An App's own on_resize never sees terminal resizes.
    HORIZONTAL_BREAKPOINTS = [(0, "narrow"), (110, "wide")]
    VERTICAL_BREAKPOINTS = [(0, "short"), (30, "tall")]
    # The theme the app starts in. Textual builds its stylesheet from it inside App.__init__; setting
    # a theme afterwards would parse and apply all CSS a second time before the first frame.
    theme: Reactive[str] = Reactive(DEFAULT_THEME)

    def __init__(
        self,
        *,
        model: str | None = None,
        prompt: str = "",
        run: Run | None = None,
        run_path: Path | None = None,
        cache_dir: Path | None = None,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        params: SamplingParams | None = None,
        k: int = 20,
        chat: bool = False,
        lens_chunk: int = 32,
        lens_precision: str = "auto",
    ) -> None:
        # before App.__init__, which builds the stylesheet from the theme (see available_themes)
        self.themes_, self.theme_problems = load_themes()
        super().__init__()
        self.set_class(True, f"-theme-{self.theme}", update=False)  # as Textual's own theme watcher does
        self.model_spec = model
        self.initial_prompt = prompt
        self.run_obj: Run | None = run
        self.run_path = run_path
        # run_path without run: read that file after the first frame, showing its header meanwhile
        self.opening: RunSummary | None = summarize(run_path) if run is None and run_path is not None else None
        self.open_error: RunFileError | None = None  # why that file could not be read (the app exits)
        self.save_dir = default_cache_dir(cache_dir)
        self.load_args = (device, dtype, trust_remote_code)
        self.params = params or SamplingParams()
        self.k, self.chat, self.forced = k, chat, ""
        self.session_options = {"lens_chunk": lens_chunk, "lens_precision": lens_precision}
        self.branch_id = 0
        self.metric = "probability"
        self.state = "replay" if model is None else "loading"
        self.status_note = ""
        self.tokens_per_second = 0.0
        self.engine: EngineBridge | None = None
        self.model_info = "no model (replay)" if model is None else f"{model} · loading"
        self._dirty = False
        self.no_color = bool(os.environ.get("NO_COLOR"))
        self.side_index = 0
        self.decoded = False

    # --- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="status", markup=False)
        with Horizontal(id="main"):
            with Vertical(id="left"):
                # a run file's prompt is untrusted: escapes made visible, newlines kept
                prompt = self.initial_prompt or safe_text(self._run_prompt().encode())
                yield TextArea(
                    prompt,
                    id="prompt",
                    soft_wrap=True,
                    show_line_numbers=False,
                )
                yield Static("", id="settings-line", markup=False)
                yield TokenStream(id="stream")
                yield Static("", id="legend", markup=False)
            with Vertical(id="right"):
                # narrow terminals show one .side pane at a time: the .shown one (v cycles)
                yield AlternativesPane(id="alternatives", classes="side shown")
                yield LayersPane(id="layers", classes="side")
                yield BranchTree(id="tree", classes="side")
        yield Footer()

    @property
    def available_themes(self) -> dict[str, Theme]:
        """Textual's themes and tokentui's (from themes/), the latter already while App.__init__ runs."""
        return {**super().available_themes, **{name: t.theme for name, t in self.themes_.items()}}

    def _run_prompt(self) -> str:
        if self.run_obj is not None:
            return self.run_obj.meta.prompt
        return self.opening.prompt if self.opening is not None else ""

    def on_mount(self) -> None:
        for problem in self.theme_problems:
            self.notify(f"theme skipped: {problem}", severity="warning", markup=False)
        self._apply_scale()
        self.stream.border_title = "tokens"
        self.query_one("#prompt").border_title = "prompt (ctrl+r generates)"
        self.set_interval(1 / 20, self._apply_streamed)
        if self.run_obj is not None:
            self.stream.border_title = f"tokens · laying out {self.run_obj.total_steps():,} tokens …"
            self.call_after_refresh(self._open_first_branch)
            self.stream.focus()
        elif self.opening is not None:
            name = sanitize(self.run_path.name)
            self.stream.border_title = f"tokens · reading {name} ({self.opening.tokens:,} tokens) …"
            self.call_after_refresh(self._read_run_file)
            self.stream.focus()
        if self.model_spec is not None:
            from tokentui.tui.bridge import EngineBridge

            self.engine = EngineBridge(self, self.save_dir, **self.session_options)
            self.engine.load(self.model_spec, *self.load_args)
            if self.run_obj is not None:
                self.engine.adopt(self.run_obj)
            elif self.opening is None:
                self.query_one("#prompt").focus()
        self._update_status()
        self._update_settings_line()

    def _read_run_file(self) -> None:
        """Read the arrays once the first frame is up. Here, not in a thread: for 100k tokens it
        takes ~70 ms (half of it importing numpy) and a thread took ~110 ms, contending for the
        GIL with the app's own start-up."""
        from tokentui.store.runfile import load_run

        try:
            run = load_run(self.run_path)
        except RunFileError as e:
            # `tokentui replay` checked the header before; the arrays are bad: leave with the error
            self.open_error = e
            self.exit(return_code=2)
            return
        self.run_obj, self.opening = run, None
        if self.engine is not None:
            self.engine.adopt(run)
        self._update_legend()
        self._open_first_branch()

    def _open_first_branch(self) -> None:
        """Lay out the run after the first frame: the screen is up at once, even for 100k tokens."""
        self.stream.border_title = "tokens"
        self._show_branch(0, cursor=None)
        if not gc.isenabled():  # `tokentui replay` starts with the cyclic collector off
            gc.freeze()  # what start-up made lives on: never scan it (else the first pass takes ~30 ms)
            gc.enable()

    def _show_side(self) -> None:
        for i, name in enumerate(("alternatives", "layers", "tree")):
            self.query_one(f"#{name}").set_class(i == self.side_index, "shown")

    @property
    def stream(self) -> TokenStream:
        return self.query_one(TokenStream)

    def on_unmount(self) -> None:
        if self.engine is not None:
            self.engine.shutdown(timeout=2.0)

    # --- showing ------------------------------------------------------------------------------
    def _apply_scale(self) -> None:
        t = self.themes_.get(self.theme)
        self.stream.set_scale(t.scale if t else DEFAULT_SCALE, self.no_color)
        self._update_legend()

    def _show_branch(self, branch_id: int, cursor: int | None) -> None:
        from tokentui.tui.view import BranchView

        run = self.run_obj
        if run is None:
            return
        self.branch_id = branch_id
        view = BranchView(run, branch_id, self.metric, self.decoded, width=self.stream.text_width())
        self.stream.show(view, cursor)
        self.query_one(BranchTree).rebuild(run, branch_id)
        self._refresh_panes()

    def _refresh_panes(self) -> None:
        pos = self.stream.cursor
        self.query_one(AlternativesPane).show(self.run_obj, self.branch_id, pos)
        self.query_one(LayersPane).show(self.run_obj, self.branch_id, pos, self.metric, self.stream.view)
        self._update_status()

    def on_token_stream_cursor_moved(self, message: TokenStream.CursorMoved) -> None:
        if message.stream.is_attached:  # not once quitting has taken the screen down
            self._refresh_panes()

    def on_alternatives_pane_chosen(self, message: AlternativesPane.Chosen) -> None:
        self.action_branch_alt(message.index + 1)

    def on_descendant_focus(self, event) -> None:
        if isinstance(event.widget, AlternativesPane):
            self._refresh_panes()  # show the selection bar

    def on_tree_node_selected(self, event: BranchTree.NodeSelected) -> None:
        if event.node.data is not None and event.node.data != self.branch_id:
            self._show_branch(int(event.node.data), cursor=None)

    def _update_status(self) -> None:
        run = self.run_obj
        t = Text()
        t.append(f" {self.state} ", style="reverse bold")
        t.append(f" {sanitize(self.model_info)}")
        if self.tokens_per_second:
            t.append(f" · {self.tokens_per_second:.1f} tok/s")
        if run is not None:
            t.append(f" · run {run.id} · branch #{self.branch_id} of {len(run.branches)}")
            t.append(" · saved" if not run.dirty else " · unsaved", style="dim")
            t.append(f" · pos {self.stream.cursor}")
        elif self.opening is not None:
            o = self.opening
            t.append(f" · run {sanitize(o.run_id)} · {o.branches} branches · {sanitize(o.model)} · opening …")
        if self.status_note:
            t.append(f" · {sanitize(self.status_note)}", style="italic")
        self.query_one("#status", Static).update(t, layout=False)

    def _update_settings_line(self) -> None:
        p = self.params
        mode = "greedy" if p.greedy else f"T={p.temperature} top-k={p.top_k} top-p={p.top_p} seed={p.seed}"
        extra = f" · forced {sanitize(self.forced, True)!r}" if self.forced else ""
        self.query_one("#settings-line", Static).update(
            Text(
                f"{mode} · max {p.max_new_tokens} tokens · k={self.k} · chat {'on' if self.chat else 'off'}{extra}  (s: settings)"
            )
        )

    def _update_legend(self) -> None:
        if self.opening is not None:
            return  # nothing to colour yet, and the metrics need numpy: after the run is read
        from tokentui.core.metrics import METRICS

        m = METRICS[self.metric]
        t = self.themes_.get(self.theme)
        scale = t.scale if t else DEFAULT_SCALE
        if m.buckets:  # each bucket in the colour its tokens get, named (the short name: fits 80 columns)
            legend = Text(f"{m.name}  ")
            last = max(1, len(m.buckets) - 1)
            for i, name in enumerate(m.buckets):
                legend.append(f" {name} ", style=scale.style(i / last, self.no_color))
                legend.append(" ")
        else:  # the scale from sure to unsure; under NO_COLOR its steps are numbered
            legend = Text(f"{m.label} [{m.unit}]  sure ")
            n = len(scale.backgrounds)
            for i in range(n):
                style = scale.style((i + 0.5) / n, self.no_color)
                legend.append(str(i) if self.no_color else " ", style=style)  # one cell: fits 80 columns
            legend.append(" uncertain")
        legend.append(" · dim = prompt · italic underline = forced · m: next metric")
        self.query_one("#legend", Static).update(legend, layout=False)

    def _apply_streamed(self) -> None:
        """Apply streamed tokens at most ~20 times a second."""
        if not self._dirty:
            return
        self._dirty = False
        self.stream.update_view()
        self._refresh_panes()

    # --- engine events ------------------------------------------------------------------------
    def on_engine_message(self, message: EngineMessage) -> None:
        from tokentui.engine.events import (
            BranchStarted,
            Failed,
            Finished,
            LensEvent,
            Loaded,
            Progress,
            Saved,
            StepEvent,
        )

        ev = message.event
        if isinstance(ev, Progress):
            self.status_note = ev.message
        elif isinstance(ev, Loaded):
            self.state = "idle"
            self.status_note = f"loaded in {ev.seconds:.1f}s"
            self.model_info = f"{ev.model} · {ev.device} · {ev.dtype} · {ev.n_layers} layers"
            if self.initial_prompt and self.run_obj is None:
                self.action_generate()
        elif isinstance(ev, BranchStarted):
            if self.engine is not None and self.engine.run is not None:
                self.run_obj = self.engine.run
            self._show_branch(ev.branch_id, cursor=None)
        elif isinstance(ev, (StepEvent, LensEvent)):
            self._dirty = True
        elif isinstance(ev, Finished):
            self.state = "idle"
            self.tokens_per_second = ev.tokens_per_second
            self.status_note = f"{ev.status}: {ev.new_tokens} new tokens"
            self.stream.update_view()
            self.query_one(BranchTree).rebuild(self.run_obj, self.branch_id)
            self._refresh_panes()
        elif isinstance(ev, Saved):
            self.status_note = "autosaved"
        elif isinstance(ev, Failed):
            self.state = "idle" if self.state != "loading" else "no model"
            if self.state == "no model":
                self.model_info = f"{self.model_spec} · failed to load"
            self.notify(ev.message, title=f"{ev.command} failed", severity="error", timeout=10, markup=False)
        self._update_status()

    def _need_model(self) -> bool:
        if self.engine is None:
            self.notify(
                "replay: no model is loaded (start with `tokentui replay RUN --model M` to grow branches)",
                severity="warning",
                markup=False,
            )
            return False
        if self.state == "loading":
            self.notify("the model is still loading", markup=False)
            return False
        if self.state == "no model":
            self.notify("the model failed to load", severity="error", markup=False)
            return False
        if self.state == "generating":
            self.notify("already generating (escape cancels)", markup=False)
            return False
        return True

    # --- actions ------------------------------------------------------------------------------
    def action_generate(self) -> None:
        if not self._need_model():
            return
        prompt = self.query_one("#prompt", TextArea).text
        if not prompt.strip():
            self.notify("the prompt is empty", severity="warning", markup=False)
            return
        self.state = "generating"
        self.engine.generate(prompt, GenerationSettings(self._params(), self.k, self.chat, self.forced))
        self.stream.focus()
        self._update_status()

    def _params(self) -> SamplingParams:
        p = self.params
        return SamplingParams(p.temperature, p.top_k, p.top_p, p.seed, p.max_new_tokens, list(p.stop))

    def action_cancel(self) -> None:
        if self.state == "generating" and self.engine is not None:
            self.engine.cancel()
            self.status_note = "cancelling"
            self._update_status()
        elif self.focused is not None and self.focused.id == "prompt":
            self.stream.focus()

    def action_continue_branch(self) -> None:
        if self.run_obj is None or not self._need_model():
            return
        self.state = "generating"
        self.engine.continue_branch(self.branch_id, self._params())
        self.stream.follow = True
        self._update_status()

    def _branch_at_cursor(self, token_ids: list[int] | None = None, text: str = "") -> None:
        run, pos = self.run_obj, self.stream.cursor
        if run is None or not self._need_model():
            return
        if pos < 1:
            self.notify("the first token has no alternatives to branch on", markup=False)
            return
        self.state = "generating"
        self.engine.branch(self.branch_id, pos, token_ids, text, self._params())
        self._update_status()

    def action_branch_alt(self, n: int) -> None:
        run, pos = self.run_obj, self.stream.cursor
        if run is None or pos < 1 or pos >= run.length(self.branch_id):
            return
        ids = run.step(self.branch_id, pos).topk_ids
        if n > len(ids) or ids[n - 1] < 0:
            self.notify(f"there is no alternative #{n}", markup=False)
            return
        self._branch_at_cursor([int(ids[n - 1])])

    def action_branch_text(self) -> None:
        if self.run_obj is None or not self._need_model():
            return

        def done(text: str | None) -> None:
            if text:
                self._branch_at_cursor(None, text)

        self.push_screen(TextPrompt(f"branch at position {self.stream.cursor}: take this text, then continue"), done)

    def action_cycle_metric(self) -> None:
        from tokentui.core.metrics import METRIC_ORDER

        i = METRIC_ORDER.index(self.metric)
        self.metric = METRIC_ORDER[(i + 1) % len(METRIC_ORDER)]
        if self.stream.view is not None:
            self.stream.view.set_metric(self.metric)
        self.stream.restyle()
        self._update_legend()
        self._refresh_panes()

    def action_toggle_decoded(self) -> None:
        self.decoded = not self.decoded
        self._show_branch(self.branch_id, cursor=self.stream.cursor)
        self.stream.border_title = "decoded text" if self.decoded else "tokens"

    def action_cycle_theme(self) -> None:
        names = sorted(self.themes_)
        if not names:
            return
        i = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(i + 1) % len(names)]
        self._apply_scale()
        self.notify(f"theme: {self.theme}", markup=False)

    def watch_theme(self) -> None:
        if self.screen_stack:  # not while __init__ picks the first theme
            self._apply_scale()

    def action_cycle_pane(self) -> None:
        self.side_index = (self.side_index + 1) % 3
        self._show_side()

    def action_focus_prompt(self) -> None:
        self.query_one("#prompt").focus()

    def action_tree_move(self, where: str) -> None:
        run = self.run_obj
        if run is None or not run.branches:
            return
        b = run.branch(self.branch_id)
        target = None
        if where == "parent":
            target = b.parent
        elif where == "child":
            kids = run.children(b.id)
            target = kids[0].id if kids else None
        else:
            sibs = [x.id for x in run.branches if x.parent == b.parent]
            i = sibs.index(b.id) + (1 if where == "next" else -1)
            target = sibs[i] if 0 <= i < len(sibs) else None
        if target is None:
            self.bell()
            return
        keep = self.stream.cursor if where == "parent" else run.branch(target).fork_position
        self._show_branch(target, cursor=keep)

    def action_compare(self) -> None:
        run = self.run_obj
        if run is None:
            return
        b = run.branch(self.branch_id)
        if b.parent is None:
            self.notify("the root branch has no parent", markup=False)
            return
        pos = b.fork_position
        theirs = run.step(b.parent, pos).token_id if pos < run.length(b.parent) else None
        ours = run.step(b.id, pos).token_id if pos < run.length(b.id) else None
        self.stream.move_to(pos)
        msg = (
            f"branch #{b.id} leaves #{b.parent} at position {pos}: "
            f"{run.tokens.display(ours) if ours is not None else '∅'} instead of "
            f"{run.tokens.display(theirs) if theirs is not None else '∅'}"
        )
        self.notify(msg, markup=False)

    def action_settings(self) -> None:
        p = self.params
        values = {
            "temperature": p.temperature,
            "top_k": p.top_k,
            "top_p": p.top_p,
            "seed": p.seed,
            "max_new_tokens": p.max_new_tokens,
            "k": self.k,
            "forced": self.forced,
            "chat": self.chat,
        }

        def done(v: dict | None) -> None:
            if not v:
                return
            new = SamplingParams(v["temperature"], v["top_k"], v["top_p"], v["seed"], v["max_new_tokens"])
            try:
                new.check()
                if v["k"] < 1:
                    raise RunError("k must be at least 1")
            except RunError as e:
                self.notify(str(e), severity="error", markup=False)
                return
            self.params, self.k, self.forced, self.chat = new, v["k"], v["forced"], v["chat"]
            self._update_settings_line()

        self.push_screen(SettingsScreen(values), done)

    def action_save(self) -> None:
        run = self.run_obj
        if run is None:
            return
        from tokentui.store.runfile import save_run

        target = self.run_path or (self.save_dir / f"{run.id}.tokentui")
        try:
            path = save_run(run, target)
        except OSError as e:
            self.notify(f"could not save: {e}", severity="error", markup=False)
            return
        self.notify(f"saved {path}", markup=False)
        self._update_status()

    def action_open_run(self) -> None:
        def done(path: Path | None) -> None:
            if path is None:
                return
            from tokentui.store.runfile import load_run

            try:
                run = load_run(path)
            except RunFileError as e:
                self.notify(str(e), severity="error", markup=False)
                return
            self.run_obj, self.run_path = run, path
            if self.engine is not None:
                self.engine.adopt(run)
            self._show_branch(0, cursor=None)

        self.push_screen(RunPicker(self.save_dir), done)

    def action_export(self) -> None:
        run = self.run_obj
        if run is None:
            return

        def done(name: str | None) -> None:
            from tokentui.store.export import FORMATS, export

            if not name:
                return
            path = Path(name).expanduser()
            fmt = path.suffix.lstrip(".").lower()
            if fmt not in FORMATS:
                self.notify(
                    f"name the file .csv, .jsonl or .json (got {sanitize(path.name)})", severity="error", markup=False
                )
                return
            try:
                with open(path, "w", encoding="utf-8", newline="") as f:
                    export(run, fmt, f)
            except OSError as e:
                self.notify(f"could not write {path}: {e.strerror}", severity="error", markup=False)
                return
            self.notify(f"exported {path}", markup=False)

        self.push_screen(
            TextPrompt("export the run to (extension picks the format: .csv .jsonl .json)", f"{run.id}.csv"), done
        )

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """Textual's screenshot action (same arguments), saving into the current folder by default
        (Textual's own picks the Downloads folder, which a server seldom has) and saying where."""
        saved = self.save_screenshot(filename, path or os.getcwd())
        self.notify(f"screenshot saved: {sanitize(saved)}", markup=False)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(HELP))

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for label, action, help_text in (
            ("Generate", "generate", "new run from the prompt"),
            ("Continue branch", "continue_branch", "generate more on the current branch"),
            ("Cancel", "cancel", "stop generating"),
            ("Branch with text", "branch_text", "fork at the cursor with typed text"),
            ("Next metric", "cycle_metric", "probability / entropy / rank / surprisal"),
            ("Next theme", "cycle_theme", "cycle tokentui themes"),
            ("Settings", "settings", "sampling, k, forced prefix, chat"),
            ("Save run", "save", "write the run file now"),
            ("Open run", "open_run", "pick a run from the cache"),
            ("Export run", "export", "CSV, JSONL or JSON"),
            ("Screenshot", "screenshot", "save an SVG of the screen"),
            ("Compare with parent", "compare", "jump to where this branch diverges"),
            ("Keys", "help", "every key binding"),
        ):
            yield SystemCommand(label, help_text, lambda a=action: self.run_action(a))
