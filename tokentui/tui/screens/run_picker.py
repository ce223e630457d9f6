"""The run picker: the runs in the cache, newest first, filtered by what is typed (id, kind, model
or prompt). Down moves from the search box into the list; Enter opens the highlighted run.

A cache of thousands of runs (a few `compare --dataset` calls save one per text) took a trial 5 to
20 s to open with nothing on screen: the headers are now read in a thread, the box says so
meanwhile, and the list shows the first SHOWN matches (typing narrows it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from tokentui.core.display import sanitize
from tokentui.store.cache import RunSummary, list_runs
from tokentui.tui.widgets.styles import part_style

PROMPT_ROOM = 20  # cells of the prompt a row keeps before it gives up the date and the model
ID_ROOM = 30  # ids up to this long are padded to the longest of the list (a run id is 22)
SHOWN = 300  # rows listed at most (then a row says how many more match: typing narrows)
WHAT_ROOM = 9  # cells of a run's kind ("cancelled" is the longest tokentui writes)


class RunPicker(ModalScreen[Path | None]):
    AUTO_FOCUS = "*"  # the first field (the app's own picks the tokens)
    BINDINGS = [
        Binding("escape", "cancel", "cancel"),
        Binding("down", "into_list", "to the list", show=False),
    ]
    COMPONENT_CLASSES = {"run-picker--muted", "run-picker--prompt"}

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self.runs: list[RunSummary] = []
        self.loaded = False
        self._haystacks: list[str] = []  # per run, what a search looks in (lower case)
        self._id_width = 0  # the longest readable id shown (up to ID_ROOM): every row's id is padded to it
        self._what_width = 0  # the longest kind shown (up to WHAT_ROOM), for the same reason

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield Static(Text(f"open a run from {sanitize(str(self.directory))}"), classes="box-title", markup=False)
            yield Input(placeholder="search id, model, kind or prompt … (↓ to the list)", id="picker-search")
            yield OptionList(id="picker-list")

    def on_mount(self) -> None:
        ol = self.query_one(OptionList)
        ol.add_option(Option(Text(f"reading the runs in {sanitize(str(self.directory))} …"), disabled=True))
        app = self.app  # (taken here: the thread must not look it up)
        self.run_worker(lambda: self._read(app), thread=True, exit_on_error=False)

    def _read(self, app: App[Any]) -> None:
        """In a thread: every run's header (a second or more for thousands of runs); a cache that
        cannot be read is said in the list, not left "reading …". Stops between two files once
        the box has closed."""
        from textual.worker import get_current_worker

        worker = get_current_worker()  # (cancelled when the box closes, or the app quits)
        try:
            runs = list_runs(self.directory, stop=lambda: worker.is_cancelled)
        except OSError as e:
            app.call_from_thread(self._unreadable, e.strerror or str(e))
            return
        app.call_from_thread(self._loaded, runs)

    def _unreadable(self, why: str) -> None:
        if self.is_attached:
            ol = self.query_one(OptionList)
            ol.clear_options()
            ol.add_option(
                Option(Text(f"cannot read the runs here: {sanitize(why)}"), disabled=True)
            )  # (the box names the folder)

    def _loaded(self, runs: list[RunSummary]) -> None:
        if not self.is_attached:  # (dismissed before the headers were read)
            return
        self.runs, self.loaded = runs, True
        # (the kind too, as `runs` shows it: a trial's cache of 2,771 comparisons had no way to pick them out)
        self._haystacks = [f"{r.path.stem} {r.run_id} {r.models} {r.what} {r.prompt}".lower() for r in runs]
        self._id_width = min(ID_ROOM, max((len(sanitize(r.path.stem)) for r in runs if not r.error), default=0))
        self._what_width = min(WHAT_ROOM, max((len(sanitize(r.what)) for r in runs if not r.error), default=0))
        self._refill()
        self.call_after_refresh(self._refill)  # once laid out: rows as wide as the list really is

    def on_resize(self) -> None:
        self._refill()

    def _refill(self) -> None:
        if not self.loaded:
            return
        ol = self.query_one(OptionList)
        at = ol.highlighted
        self._fill(self.query_one(Input).value)
        if at is not None and at < ol.option_count and not ol.get_option_at_index(at).disabled:
            ol.highlighted = at

    def label(self, r: RunSummary) -> Text:
        """id · created · kind · model · tokens · branches · prompt (all untrusted: sanitised). The
        kind is what `tokentui runs` calls "what" (eos, length, tree, compare, cancelled …): a cache
        of comparisons and generations had rows alike but for it. The id is the file's name, as
        `tokentui runs` lists it: a file holding a run under another name (a copy, a version saved
        beside another's) says which run it holds before its prompt (copies read as one row
        repeated, and opened one could not tell which)."""
        muted = part_style(self, "run-picker--muted")
        handle = r.path.stem
        if r.error:
            return Text(f"{sanitize(handle)}  unreadable: {sanitize(r.error)}", style=muted)
        width = self.list_width()
        created = f" {sanitize(r.created[5:16].replace('T', ' '))}"
        what = f" {sanitize(r.what)[:WHAT_ROOM]:<{self._what_width}}"
        model = f" {sanitize(r.models_in(12)):<12}"
        # every row's id as wide as the longest (up to a cap), so that the columns line up and each
        # row keeps or drops the same ones (a short id kept a date the others had dropped)
        label = Text(sanitize(handle).ljust(self._id_width))
        counts = f" {r.tokens:>6} tok {r.branches:>2} br "
        # on a narrow terminal the date, then the model, then the kind make room: the prompt tells
        # runs apart
        parts: list[tuple[str, Style | str]] = [(created, muted), (what, muted), (model, "")]
        while parts and label.cell_len + sum(len(t) for t, _ in parts) + len(counts) + PROMPT_ROOM > width:
            parts.pop(0 if len(parts) == 3 else -1)
        for text, style in parts:
            label.append(text, style=style)
        label.append(counts)
        # (the id's end: its random part; the whole id left no room for the prompt at 120 columns)
        held = f"(holds run …{sanitize(r.run_id)[-6:]}) " if r.run_id != handle else ""
        prompt = held + sanitize(r.prompt, visible_whitespace=True)[:50]  # running text: its line breaks shown as ↵
        label.append(prompt, style=part_style(self, "run-picker--prompt"))
        label.truncate(max(20, width), overflow="ellipsis")
        return label

    def list_width(self) -> int:
        """Cells a row of the list has: the list's own width once laid out, less its scroll bar
        (rows as wide as the list with one lost their end to it at 80×24), else what the box's
        screen less border, padding and scroll bar (refilled once it is laid out)."""
        laid_out = self.query_one("#picker-list").scrollable_content_region.width
        return laid_out or self.app.size.width - 10

    def _fill(self, query: str) -> None:
        q = query.lower()
        matches = [r for r, hay in zip(self.runs, self._haystacks, strict=True) if not q or q in hay]
        options = [Option(self.label(r), id=str(r.path), disabled=bool(r.error)) for r in matches[:SHOWN]]
        ol = self.query_one(OptionList)
        ol.clear_options()
        ol.add_options(options)
        if not options:
            ol.add_option(Option(Text("no runs match"), disabled=True))
        elif len(matches) > SHOWN:
            more = f"… and {len(matches) - SHOWN:,} more {'matching' if q else 'runs'}: type to narrow the list"
            ol.add_option(Option(Text(more, style=part_style(self, "run-picker--muted")), disabled=True))
        ol.highlighted = next((i for i, o in enumerate(options) if not o.disabled), None)

    def on_input_changed(self, event: Input.Changed) -> None:
        if self.loaded:
            self._fill(event.value)

    def action_into_list(self) -> None:
        ol = self.query_one(OptionList)
        if self.focused is not ol:
            ol.focus()

    def on_input_submitted(self) -> None:
        """Enter in the search box opens the highlighted run (the first match until ↓ moves)."""
        ol = self.query_one(OptionList)
        if ol.highlighted is not None:
            option = ol.get_option_at_index(ol.highlighted)
            if not option.disabled and option.id is not None:  # every enabled option is a run file
                self.dismiss(Path(option.id))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:  # always: only the runs' options (which have ids) can be selected
            self.dismiss(Path(event.option.id))

    def action_cancel(self) -> None:
        self.dismiss(None)
