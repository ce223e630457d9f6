"""The explorer app: composes the panes and wires them together — keys to actions (from the action
table), engine events to the session (tui/state.py) and the session to the widgets. What each
action does lives in the action modules it inherits from (generation, navigation, viewing,
files); nothing here reads files."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult, SystemCommand
from textual.containers import Horizontal, Vertical
from textual.filter import Monochrome, NoColor
from textual.reactive import Reactive
from textual.theme import Theme
from textual.widgets import Footer, TextArea

from tokentui.core.display import sanitize
from tokentui.core.files import terminal_gone, write_crash_log
from tokentui.core.params import GenerationSettings
from tokentui.store.cache import cache_dir as default_cache_dir
from tokentui.tui.actions import bindings, description, palette_entries, shown_keys, spec_of, works_over
from tokentui.tui.attribution import AttributionActions
from tokentui.tui.comparing import CompareActions
from tokentui.tui.files import FileActions
from tokentui.tui.generation import GenerationActions
from tokentui.tui.layers_view import LayersViewActions
from tokentui.tui.navigation import NavigationActions
from tokentui.tui.screens.messages import MessageLog
from tokentui.tui.state import AppState, Needs, Session
from tokentui.tui.theme import DEFAULT_THEME, TokentuiTheme
from tokentui.tui.tree_search import TreeActions
from tokentui.tui.typeahead import TypeAhead
from tokentui.tui.viewing import ViewActions
from tokentui.tui.widgets.alternatives import AlternativesPane
from tokentui.tui.widgets.attribution_pane import AttributionPane
from tokentui.tui.widgets.branch_tree import BranchTree
from tokentui.tui.widgets.layers import LayersPane, LayersScroll
from tokentui.tui.widgets.legend import Legend
from tokentui.tui.widgets.prompt_area import PromptArea
from tokentui.tui.widgets.settings_line import SettingsLine
from tokentui.tui.widgets.status_bar import Part, StatusBar
from tokentui.tui.widgets.token_stream import TokenStream

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from textual.actions import ActionParseResult
    from textual.dom import DOMNode
    from textual.driver import Driver
    from textual.notifications import SeverityLevel
    from textual.screen import Screen

    from tokentui.core.run import Run
    from tokentui.core.steering import SteeringSpec
    from tokentui.store.cache import RunSummary
    from tokentui.store.header import RunFileError
    from tokentui.tui.bridge import EngineBridge, EngineMessage

# numpy, the run's arrays, the engine (through tui.bridge), exports: imported by the methods that
# need them, once there is a run or a model. `tokentui replay` draws its first frame from the run file's
# header alone and reads the arrays after (benchmarks/tui_latency.py: replay start vs a bare app).


TREE_WHILE_SEARCHING = 0.5  # seconds between the tree pane's updates while a search runs
# How often streamed tokens reach the screen. Every update redraws the stream, the side panes on
# the newest token and the status bar (~35 ms of compositing at 120×40), in the interpreter the
# generation runs in: at 20 a second SmolLM2 generated at 0.56× its speed without the explorer on
# 2 CPU cores, at 8 at 0.68× (benchmarks/explorer_generate.py). Keys are answered at once.
STREAM_UPDATES_PER_SECOND = 8


class TokentuiApp(
    GenerationActions,
    NavigationActions,
    TreeActions,
    AttributionActions,
    CompareActions,
    ViewActions,
    FileActions,
    LayersViewActions,
    TypeAhead,  # (an App: keys typed ahead of a screen wait for it)
):
    CSS_PATH = "app.tcss"
    TITLE = "tokentui"
    BINDINGS = bindings()
    # The tokens have the focus when the screen comes up (Textual would pick the first focusable
    # widget, the prompt, where `q` is text): keys are commands until the user presses i.
    AUTO_FOCUS = "#stream"
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
        generate_at_once: bool = False,
        run: Run | None = None,
        run_path: Path | None = None,
        opening: RunSummary | None = None,
        cache_dir: Path | None = None,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        settings: GenerationSettings | None = None,
        lens_chunk: int = 32,
        lens_precision: str = "auto",
        themes: dict[str, TokentuiTheme] | None = None,
        theme_problems: list[str] | None = None,
        hint: str = "",
        steering: SteeringSpec | None = None,
        compare: str | None = None,
        branch: int = 0,
        position: int | None = None,
    ) -> None:
        """`compare`: model B, loaded beside `model` and compared live (`explore --compare B`). `prompt`: the text in the prompt box; `generate_at_once`: generate it as soon as the
        model is loaded (`explore --prompt`). `run_path` with `opening` (its header, read by
        tui.start): draw from the header, read the arrays after the first frame; `branch`: its
        branch shown first (`replay --branch`; 0 when it has no such branch), the cursor at
        `position` (`replay --position`; None: the branch's end). `themes`: loaded
        by tui.start (this reads no files; without them the app uses Textual's dark theme)."""
        self.themes_ = themes or {}
        self.theme_problems = theme_problems or []
        self.hint = hint
        # before App.__init__, which builds the stylesheet from the theme (see available_themes)
        self.set_reactive(TokentuiApp.theme, DEFAULT_THEME if DEFAULT_THEME in self.themes_ else "textual-dark")
        super().__init__()
        self.set_class(True, f"-theme-{self.theme}", update=False)  # as Textual's own theme watcher does
        if self.no_color:  # NO_COLOR: no colour codes at all (Textual's Monochrome still sends greys)
            self._filters = [NoColor() if isinstance(f, Monochrome) else f for f in self._filters]
        self.session = Session.start(model, settings or GenerationSettings(), run)
        self.session.steering, self.session.steer_on = steering, steering is not None  # `explore --steer`
        self.initial_prompt = prompt
        self.compare_with = compare if model is not None else None
        self.generate_at_once = generate_at_once and bool(prompt.strip())
        self.run_path = run_path
        self.first_branch = branch  # the branch of run_path shown first (`replay --branch`)
        self.first_position = position  # … and the cursor's position there (`replay --position`; None: its end)
        self.opening = opening if run is None else None  # the header of run_path while its arrays are read
        self.open_error: RunFileError | None = None  # why that file could not be read (the app exits)
        self.save_dir = default_cache_dir(cache_dir)
        self.load_args = (device, dtype, trust_remote_code)
        self.session_options = {"lens_chunk": lens_chunk, "lens_precision": lens_precision}
        self.engine: EngineBridge | None = None
        self.metric = "probability"
        self.decoded = False
        self.side_index = 0
        self._dirty = False
        self._status_due = False  # an engine event changed what the status bar says: drawn with the next frame
        self._tree_due = False  # a search added nodes the tree pane does not show yet
        self._tree_at = 0.0  # when the tree pane last took a running search's new nodes
        self._panes_at: tuple[Run | None, int, int] | None = None  # (run, branch, position) the panes last drew
        self.quitting = False  # quit was asked while a job ran: the app leaves once it has stopped
        self.hung_up = False  # the terminal is gone (SIGHUP): leave without Textual's shutdown
        self.messages = MessageLog()  # every notification, for the messages screen (N)
        self.crash: Exception | None = None  # the unhandled exception that ended the app
        self.crash_log: Path | None = None  # where its traceback went

    @property
    def run_obj(self) -> Run | None:
        """The run on screen (the session's)."""
        return self.session.run

    @property
    def branch_id(self) -> int:
        return self.session.branch_id

    @property
    def state(self) -> AppState:
        return self.session.state

    # --- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                # exact; a run file's prompt is untrusted: the box holds what could act on a
                # terminal as visible stand-ins (widgets/prompt_area.py)
                prompt = self.initial_prompt or self._run_prompt()
                self._prompt_box = PromptArea(prompt, id="prompt", soft_wrap=True, show_line_numbers=False)
                yield self._prompt_box
                yield SettingsLine(id="settings-line")
                self._stream = TokenStream(id="stream")
                yield self._stream
                yield Legend(id="legend")
            with Vertical(id="right"):
                # narrow terminals show one .side pane at a time: the .shown one (v cycles)
                yield AlternativesPane(id="alternatives", classes="side shown")
                # an attribution on show: its pane, where the layers pane is (app.tcss)
                yield AttributionPane(id="attribution", classes="side")
                yield LayersScroll(id="layers", classes="side")  # (holds the LayersPane: it scrolls)
                yield BranchTree(id="tree", classes="side")
        yield Footer(
            show_command_palette=False, compact=True
        )  # ctrl+p is in the help; the footer keeps to the essentials

    @property
    def available_themes(self) -> dict[str, Theme]:
        """Textual's themes and tokentui's (from themes/), the latter already while App.__init__ runs."""
        return {**super().available_themes, **{name: t.theme for name, t in self.themes_.items()}}

    def _run_prompt(self) -> str:
        if self.run_obj is not None:
            return self.run_obj.meta.prompt
        return self.opening.prompt if self.opening is not None else ""

    # (held, not queried: a query finds nothing once the default screen is gone, and a timer or an
    # engine event handled while the app shuts down raised NoMatches at teardown)
    @property
    def stream(self) -> TokenStream:
        return self._stream

    @property
    def prompt_box(self) -> PromptArea:
        return self._prompt_box

    def on_mount(self) -> None:
        self._stop_on_hang_up()
        # one notification (each replaces the last): every skipped theme file, then the hint
        problems = self.theme_problems
        said = [f"theme skipped: {sanitize(p)}" for p in problems[:5]]  # (each one line: a file name may hold \n)
        if len(problems) > 5:
            said.append(f"(and {len(problems) - 5} more theme files skipped)")
        if self.hint:
            said.append(self.hint)
        if said:
            self.notify("\n".join(said), severity="warning" if problems else "information", markup=False, timeout=12)
        self.apply_scale()
        self.stream.border_title = "tokens"
        self.show_side("alternatives")  # (titles the side pane of a narrow terminal)
        self.update_prompt_title()
        self.set_interval(1 / STREAM_UPDATES_PER_SECOND, self._apply_streamed)
        if self.run_obj is not None:
            self.stream.border_title = f"tokens · laying out {self.run_obj.total_steps():,} tokens …"
            self.call_after_refresh(self._open_first_branch)
        elif self.run_path is not None:
            if self.opening is None:  # not read by tui.start: read the header now
                from tokentui.store.cache import summarize

                self.opening = summarize(self.run_path)
            name = sanitize(self.run_path.name)
            self.stream.border_title = f"tokens · reading {name} ({self.opening.tokens:,} tokens) …"
            self.call_after_refresh(self._read_run_file)
        # the tokens have the focus, also while the model loads: keys are commands, not prompt text
        self.stream.focus()
        if self.session.model is not None:
            from tokentui.tui.bridge import EngineBridge

            self.engine = EngineBridge(self, self.save_dir, **self.session_options)
            self.engine.load(self.session.model, *self.load_args)
            if self.compare_with:
                self.load_model_b(self.compare_with)
            if self.run_obj is not None:
                self.engine.adopt(self.run_obj)
        self.update_status()
        self.update_settings_line()

    def _read_run_file(self) -> None:
        """Read the arrays once the first frame is up. Here, not in a thread: for 100k tokens it
        takes ~70 ms (half of it importing numpy) and a thread took ~110 ms, contending for the
        GIL with the app's own start-up."""
        from tokentui.store.header import RunFileError
        from tokentui.store.runfile import load_run

        assert self.run_path is not None  # on_mount calls this only for a run file
        try:
            run = self.opened(load_run(self.run_path), self.run_path)
        except RunFileError as e:
            # `tokentui replay` checked the header before; the arrays are bad: leave with the error
            self.open_error = e
            self.exit(return_code=2)
            return
        self.session.run, self.opening = run, None
        if self.engine is not None:
            self.engine.adopt(run)
        self._open_first_branch()
        self.say_if_not_ours()

    def _open_first_branch(self) -> None:
        """Lay out the run after the first frame: the screen is up at once, even for 100k tokens."""
        self.stream.border_title = "tokens"
        self.update_legend()
        run = self.run_obj
        branch = self.first_branch if run is not None and self.first_branch < len(run.branches) else 0
        cursor = self.first_position
        if run is not None and cursor is not None and cursor >= run.length(branch):
            self.notify(f"branch {branch} ends at position {run.length(branch) - 1}: the cursor is there", markup=False)
            cursor = None
        self.show_branch(branch, cursor=cursor)
        if not gc.isenabled():  # `tokentui replay` starts with the cyclic collector off
            gc.freeze()  # what start-up made lives on: never scan it (else the first pass takes ~30 ms)
            gc.enable()

    async def action_quit(self) -> None:
        """Quit. While a job grows the run, it is cancelled first and the app leaves once the
        model's thread has finished it and saved the run (a process that exits while that thread
        is inside torch aborts, losing the steps since the last autosave). Quit again meanwhile:
        leave at once; the run file keeps what was last saved."""
        engine = self.engine
        busy = self.state in (AppState.GENERATING, AppState.ATTRIBUTING)
        if engine is None or engine.stopped or not busy or self.quitting:
            self._leave()
            return
        self.quitting = True
        engine.stop()
        self.update_status()
        self.set_interval(0.05, self._quit_when_stopped)

    def _stop_on_hang_up(self) -> None:
        """A hang-up (the SSH session dropped) or SIGTERM quits as `q` does: a job running is
        cancelled and the run saved before the explorer leaves (by default the process died at
        once, keeping only the last autosave). Where the loop takes no signal handlers (a loop
        off the main thread), nothing changes."""
        import asyncio
        import signal

        def stopped(sig: int) -> None:
            if sig == signal.SIGHUP:
                terminal_gone()
                self.hung_up = True
            self.quitting = False  # (a first quit asked before: this one still waits for the save)
            self.call_later(self.run_action, "quit")

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stopped, sig)
            except (RuntimeError, ValueError, NotImplementedError):
                return

    def get_driver_class(self) -> type[Driver]:
        """Textual's driver; on Linux and macOS its LinuxDriver with output that survives the
        terminal going (`tui/driver.py`: a hang-up while a large frame was drawn left the explorer
        blocked for good)."""
        driver = super().get_driver_class()
        if (driver.__module__, driver.__name__) == ("textual.drivers.linux_driver", "LinuxDriver"):  # (not Windows')
            from tokentui.tui.driver import Driver as SafeDriver

            return SafeDriver
        return driver

    def _quit_when_stopped(self) -> None:
        if self.engine is None or self.engine.stopped:
            self._leave()

    def _leave(self) -> None:
        """Exit; after a hang-up at once (exit code 129), the run saved: Textual's own shutdown
        writes to the terminal, and with the terminal gone it hung there for good (a process left
        behind on the server, holding the model)."""
        if self.hung_up:
            os._exit(128 + 1)
        self.exit()

    def on_unmount(self) -> None:
        if self.engine is not None:
            self.engine.shutdown(timeout=2.0)

    # --- showing ------------------------------------------------------------------------------
    def show_branch(self, branch_id: int, cursor: int | None) -> None:
        from tokentui.tui.view import BranchView

        run = self.run_obj
        if run is None:
            return
        if branch_id != self.session.branch_id and self.state is AppState.IDLE:
            # the last job's outcome ("eos: 11 new tokens", its speed) was about the branch it grew
            self.session.note, self.session.tokens_per_second = "", 0.0
        self.session.branch_id = branch_id
        from tokentui.core.metrics import metric_order

        if self.metric not in metric_order(run.layout.names):  # a compared run's metric, another run on show
            self.metric = "probability"
        view = BranchView(run, branch_id, self.metric, self.decoded, width=self.stream.text_width())
        self.stream.show(view, cursor)
        self.query_one(BranchTree).show(run, branch_id)
        self.sync_attribution()  # kept where this branch shares the attributed prefix
        self.update_legend()
        self.update_settings_line()
        self.refresh_panes()

    def refresh_panes(self) -> None:
        pos = self.stream.cursor
        self._panes_at = (self.run_obj, self.branch_id, pos)
        self.query_one(AlternativesPane).show(self.run_obj, self.branch_id, pos)
        self.query_one(LayersPane).show(
            self.run_obj, self.branch_id, pos, self.metric, self.stream.view, self.session.lens_unavailable()
        )
        if self.session.attribution is not None:
            self.refresh_attribution_pane()
        self.refresh_layer_map()
        self.update_status()

    def update_prompt_title(self) -> None:
        """The prompt box's title: its keys, or that the text in it is not the run's on show (a
        trial edited the prompt, left the box, and nothing said the answer below was another
        prompt's until ctrl+r asked to start a new run)."""
        run = self.run_obj
        if self.session.model is None:
            title = "prompt · a replay, no model loaded"
        elif run is not None and self.prompt_box.prompt != run.meta.prompt:
            title = "prompt · edited, not run: ctrl+r"  # (whole at 80×24)
        else:
            title = "prompt · i edits · ctrl+r generates · esc leaves"
        if self.prompt_box.border_title != title:
            self.prompt_box.border_title = title

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        if event.text_area is self.prompt_box:
            self.update_prompt_title()

    def update_status(self) -> None:
        self.update_prompt_title()  # (the run on show may have changed)
        s, run = self.session, self.run_obj
        # the model's name ("A vs B" when comparing: that matters) apart from its details, which go first
        name, details = s.model_parts()
        if s.state is AppState.REPLAY and run is not None:  # no model here: name the run's own
            b = run.meta.model_b
            name = f"{run.meta.model} vs {b['model']}" if b else run.meta.model
            details = "no model loaded (replay)"
        # ("A vs B", and a replay's model, whose runs may be of several: above the note)
        named = s.model_b_loaded or s.state is AppState.REPLAY
        parts = [Part(name, 7 if named else 1, "status-bar--dim")]
        if details:
            parts.append(Part(details, 0, "status-bar--dim"))
        if s.tokens_per_second:  # the last job's
            parts.append(Part(f"{s.tokens_per_second:.1f} tok/s", 0, "status-bar--dim"))
        elif s.live_rate:  # the running one's so far: its progress, kept before the model's name
            parts.append(Part(f"{s.live_rate:.1f} tok/s", 7, "status-bar--dim"))
        if s.steering is not None:
            parts.append(Part("steer on" if s.steer_on else "steer off", 8))
        if run is not None:
            parts += [
                Part(f"run {run.id}", 5),
                Part(f"branch #{self.branch_id}/{len(run.branches)}", 8),
                # (while a job grows the run it is unsaved between autosaves: its rate and note matter more)
                Part(
                    "saved" if not run.dirty else "unsaved",
                    5 if s.state is AppState.GENERATING else 7,
                    "status-bar--dim",
                ),
                # (while tokens stream the position is the progress: before the note's "generating …")
                Part(f"pos {self.stream.cursor}", 7 if s.state is AppState.GENERATING else 6),
            ]
        elif self.opening is not None:
            o = self.opening
            parts += [Part(f"run {o.run_id}", 5), Part(f"{o.branches} branches · {o.model} · opening …", 4)]
        if self.quitting:
            parts.append(Part("quitting once the job has stopped and the run is saved (q again: now)", 10))
        if s.note:  # a running search's progress is what matters most then
            busy = s.tree_search or s.state is AppState.ATTRIBUTING or s.comparing_b
            # else the job's outcome (or what runs): above the run id and position (the alternatives
            # pane says the position too), cut with … rather than dropped on a narrow terminal
            parts.append(Part(s.note, 9 if busy else 6, "status-bar--note", shrink=16))
        # (a trial read "idle  quitting once the job has stopped…" while the job still stopped)
        self.query_one(StatusBar).show("stopping" if self.quitting else s.status_label, parts)

    def update_settings_line(self) -> None:
        steering = self.session.active_steering() if self.run_obj is None else None  # (shown only then)
        record = steering.record() if steering is not None else None
        self.query_one(SettingsLine).show(self.run_obj, self.branch_id, self.session.settings, record)

    def on_token_stream_cursor_moved(self, message: TokenStream.CursorMoved) -> None:
        """The panes follow the cursor, unless they were drawn at its position since it moved: a
        streamed update (or a branch shown) moves the cursor and draws the panes itself, and drawing
        them again for its message doubled the explorer's frames while tokens stream."""
        if not message.stream.is_attached:  # not once quitting has taken the screen down
            return
        if self._panes_at != (self.run_obj, self.branch_id, self.stream.cursor):
            self.refresh_panes()

    async def on_alternatives_pane_chosen(self, message: AlternativesPane.Chosen) -> None:
        await self.run_action(f"branch_alt({message.index + 1})")

    def on_alternatives_pane_contrast(self, message: AlternativesPane.Contrast) -> None:
        self.attribute_against(message.token_id)

    def on_tree_node_selected(self, event: BranchTree.NodeSelected[int]) -> None:
        if event.node.data is not None and event.node.data != self.branch_id:
            self.show_branch(int(event.node.data), cursor=None)

    def on_tree_node_highlighted(self, event: BranchTree.NodeHighlighted[int]) -> None:
        """Moving through the tree pane shows the path under its cursor (a search's tree is read
        node by node), with the stream's cursor on the node's last token."""
        data = event.node.data  # the message's own tree: it may arrive while the screen closes
        if event.control.has_focus and data is not None and data != self.branch_id and self.run_obj is not None:
            self.show_branch(int(data), cursor=self.run_obj.length(int(data)) - 1)

    def _apply_streamed(self) -> None:
        """Apply streamed tokens, a search's new nodes and the status of the events since the last
        update, STREAM_UPDATES_PER_SECOND times a second. A search's nodes reach the tree pane twice a second
        (Textual's tree lays out all its lines again after an addition: done 20 times a second,
        with the panes redrawn for nodes off the branch on show, that was most of the explorer's
        time in a search of thousands of nodes)."""
        if not self.is_running:  # shutting down: the panes are going (as for a late engine event)
            return
        now = time.monotonic()
        if self._tree_due and (not self.session.tree_search or now - self._tree_at >= TREE_WHILE_SEARCHING):
            self._tree_due, self._tree_at = False, now
            self.query_one(BranchTree).show(self.run_obj, self.branch_id)
        if not self._dirty:
            if self._status_due:
                self._status_due = False
                self.update_status()
            return
        self._dirty, self._status_due = False, False
        self.stream.update_view()
        self.query_one(BranchTree).show(self.run_obj, self.branch_id)  # lengths grow (per frame, not per token)
        self.update_settings_line()  # a forced prefix streams in as the branch's first tokens
        self.refresh_panes()

    # --- engine events ------------------------------------------------------------------------
    def on_engine_message(self, message: EngineMessage) -> None:
        if not self.is_running:  # shutting down: the panes are going (a late event found none)
            return
        up = self.session.apply(message.event)
        if up.loaded:  # (loading may change the settings: chat off for a model without a template)
            self.update_settings_line()
        if up.loaded and self.generate_at_once and self.run_obj is None:
            self.generate_at_once = False
            if self.session.why_not(Needs.MODEL, generates=True) is None:  # (else the loaded notice said why)
                self.call_later(self.action_generate)  # (asked for: also when a pop-up is up by now)
        if up.show_branch is not None:
            self.show_branch(up.show_branch, cursor=None)
        if up.tokens:
            self._dirty = True
        if up.tree:
            self._tree_due = True
        if up.finished:
            self.stream.update_view()
            self.query_one(BranchTree).show(self.run_obj, self.branch_id)
            self.update_settings_line()
            self.refresh_panes()
        if up.attribution_progress is not None or up.attributed is not None or up.attribution_failed is not None:
            self.apply_attribution(up)
        if up.compared:
            self.show_comparison()
        if up.error is not None:
            self.notify(up.error[1], title=up.error[0], severity="error", markup=False)
        if up.notice:
            if up.notice_seconds is None:
                self.notify(up.notice, markup=False)
            else:
                self.notify(up.notice, markup=False, timeout=up.notice_seconds)
        if up.finished or up.loaded or up.error is not None or up.notice or up.show_branch is not None:
            self.update_status()
        else:  # (the next frame draws it: a tree search's thousands of events each redrew the bar)
            self._status_due = True

    # --- actions: the table's guard, the palette, notifications ---------------------------------
    async def run_action(
        self,
        action: str | ActionParseResult,
        default_namespace: DOMNode | None = None,
        namespaces: Mapping[str, DOMNode] | None = None,
    ) -> bool:
        """Every app action of the table runs only when what it needs is there; otherwise the
        user is told why (one place for 'when enabled', whether from a key or the palette)."""
        if isinstance(action, str) and default_namespace in (None, self):
            spec = spec_of(action)
            reason = self.session.why_not(spec.needs, spec.generates) if spec is not None else None
            if action == "generate" and self.state is AppState.LOADING and self.run_obj is None:
                # a first start converts a model for tens of seconds: keep the request, not a refusal
                self.generate_at_once = bool(self.prompt_box.text.strip())
                if self.generate_at_once:
                    self.notify("the model is still loading: the prompt is generated once it is ready", markup=False)
                    return True
            if reason:
                self.notify(reason, severity="warning", markup=False)
                return True
        return await super().run_action(action, default_namespace, namespaces)

    def action_focus_next(self) -> None:
        """Tab: the next pane, past the prompt box (keys are commands until `i` or a click: Tab
        into the prompt would type them into the prompt)."""
        self._focus_past_prompt(self.screen.focus_next)

    def action_focus_previous(self) -> None:
        self._focus_past_prompt(self.screen.focus_previous)

    def _focus_past_prompt(self, move: Callable[..., object]) -> None:
        move()
        if len(self.screen_stack) == 1 and self.focused is self.prompt_box:
            move()

    def action_help_quit(self) -> None:
        """ctrl+c (Textual's binding: it does not quit) says how to quit. Textual's own line is
        markup, shown raw ("[b]ctrl+q[/b]") by this app's notify, which never parses markup."""
        self.notify("ctrl+c does not quit: q or ctrl+q does", title="Do you want to quit?", markup=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While another screen is up, only the app actions that work over it run (`works_over`:
        its own keys are that screen's); Textual then passes the key on, so nothing happens."""
        return len(self.screen_stack) == 1 or works_over(action, self.screen)

    def get_system_commands(self, screen: Screen[Any]) -> Iterator[SystemCommand]:
        """The palette: the table's app actions, each once (Textual's own theme picker, keys panel,
        quit and screenshot are replaced by ours); over another screen, those that work there."""
        over = screen is not self.screen_stack[0]
        for spec in palette_entries():
            if over and not works_over(spec.action, screen):
                continue
            yield SystemCommand(
                f"{spec.name[:1].upper()}{spec.name[1:]} ({shown_keys(spec)})",
                description(spec),
                lambda a=spec.action: self.run_action(a),
            )

    def _handle_exception(self, error: Exception) -> None:
        """Textual's hook for an unhandled exception (it ends the app with return code 1). Its own
        handling prints a traceback with local variables — untrusted run text among them — on the
        user's terminal once the screen closes: that goes to a log file in the cache folder instead,
        and tui.start ends the process with one line naming it."""
        if self.crash is None:  # the first one is the cause; later ones follow from it
            self.crash, self.crash_log = error, write_crash_log(error, self.save_dir / "logs")
        super()._handle_exception(error)
        self._exit_renderables.clear()  # the traceback Textual just queued for printing

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """One notification at a time (a new one replaces the last), over the prompt box rather
        than the panes being read (app.tcss), and short: 3 s, errors 6 s, longer for a long message
        (a second per 15 characters, up to 20 s: an error's whole reason is only here when the
        status bar cuts it at 80 columns), unless the caller asks for longer (a note that stays true
        while the model is used, read while typing). Messages carry run ids,
        paths and error texts from run files: always sanitised and never parsed as markup (the
        one place every notification passes; `markup` is accepted for Textual's signature only)."""
        # The replaced toasts go with their holders: Textual 8's ToastRack removes a cleared toast
        # but not the ToastHolder around it, and the empty holders piled up, pushing each new
        # message further up the screen until they showed no more.
        for screen in self.screen_stack:
            screen.query("ToastHolder").remove()
        self.clear_notifications()
        if timeout is None:
            timeout = min(20.0, max(6.0 if severity == "error" else 3.0, len(title + message) / 15))
        shown = "\n".join(sanitize(line) for line in message.split("\n"))  # (its lines kept: notes joined in one)
        self.messages.add(f"{sanitize(title)}: {shown}" if title else shown, severity)  # (N shows them whole)
        super().notify(shown, title=sanitize(title), severity=severity, timeout=timeout, markup=False)


class ReplayExplorer(TokentuiApp):
    """The explorer without a model (`tokentui replay RUN`): its footer does not offer the keys
    that need one (generate, continue, settings, tree), which would only say that there is none;
    they stay bound and say so when pressed."""

    BINDINGS = bindings(model=False)
