"""Modal screens: help, text input (branch with typed text, export path), the run picker."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from tokentui.core.display import sanitize
from tokentui.store.cache import RunSummary, list_runs


class HelpScreen(ModalScreen[None]):
    """Every key of the explorer, grouped; Esc or ? closes it."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", justify="right")
        table.add_column()
        for title, keys in self.sections:
            table.add_row(Text(""), Text(""))
            table.add_row(Text(title, style="bold underline"), Text(""))
            for key, what in keys:
                table.add_row(Text(key), Text(what))
        with VerticalScroll(id="help-box"):
            yield Static(Text("tokentui keys — Esc closes", style="bold"), markup=False)
            yield Static(table, markup=False)


class TextPrompt(ModalScreen[str | None]):
    """Ask for one line of text; Enter returns it, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.title_text, self.value, self.placeholder = title, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Static(Text(self.title_text, style="bold"), markup=False)
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class RunPicker(ModalScreen[Path | None]):
    """The runs in the cache, newest first, filtered by what is typed (id, model or prompt)."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self.runs: list[RunSummary] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield Static(Text(f"open a run from {self.directory}", style="bold"), markup=False)
            yield Input(placeholder="search id, model or prompt …", id="picker-search")
            yield OptionList(id="picker-list")

    def on_mount(self) -> None:
        self.runs = list_runs(self.directory)
        self._fill("")

    def _fill(self, query: str) -> None:
        q = query.lower()
        options = []
        for r in self.runs:
            hay = f"{r.run_id} {r.model} {r.prompt}".lower()
            if q and q not in hay:
                continue
            if r.error:
                label = Text(f"{sanitize(r.run_id)}  unreadable: {sanitize(r.error)}", style="dim")
                options.append(Option(label, id=str(r.path), disabled=True))
                continue
            label = Text(f"{r.created[:16]}  {sanitize(r.model)[-20:]:<20} {r.tokens:>6} tok {r.branches:>3} br  ")
            label.append(sanitize(r.prompt, visible_whitespace=True)[:50], style="italic")
            options.append(Option(label, id=str(r.path)))
        ol = self.query_one(OptionList)
        ol.clear_options()
        ol.add_options(options)
        if not options:
            ol.add_option(Option(Text("no runs match", style="dim"), disabled=True))

    def on_input_changed(self, event: Input.Changed) -> None:
        self._fill(event.value)

    def on_input_submitted(self) -> None:
        ol = self.query_one(OptionList)
        if ol.option_count and not ol.get_option_at_index(0).disabled:
            self.dismiss(Path(ol.get_option_at_index(ol.highlighted or 0).id))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(Path(event.option.id))

    def action_cancel(self) -> None:
        self.dismiss(None)


class SettingsScreen(ModalScreen[dict | None]):
    """Sampling settings, k, forced prefix and chat template: Enter on any field applies, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]
    FIELDS = (
        ("temperature", "temperature (0 = greedy)"),
        ("top_k", "top-k (0 = off)"),
        ("top_p", "top-p (1 = off)"),
        ("seed", "seed (empty = random)"),
        ("max_new_tokens", "max new tokens"),
        ("k", "alternatives recorded (k)"),
        ("forced", "forced prefix (the answer starts with this)"),
        ("chat", "chat template (yes/no)"),
    )

    def __init__(self, values: dict) -> None:
        super().__init__()
        self.values = values

    def compose(self) -> ComposeResult:
        with Vertical(id="settings-box"):
            yield Static(Text("settings — Enter applies, Esc cancels", style="bold"), markup=False)
            for key, label in self.FIELDS:
                yield Static(Text(label, style="dim"), markup=False)
                v = self.values.get(key)
                text = "yes" if v is True else "no" if v is False else "" if v is None else str(v)
                yield Input(text, id=f"set-{key}")

    def on_input_submitted(self) -> None:
        out, errors = {}, []
        for key, label in self.FIELDS:
            raw = self.query_one(f"#set-{key}", Input).value.strip()
            try:
                if key in ("temperature", "top_p"):
                    out[key] = float(raw)
                elif key in ("top_k", "max_new_tokens", "k"):
                    out[key] = int(raw)
                elif key == "seed":
                    out[key] = int(raw) if raw else None
                elif key == "chat":
                    out[key] = raw.lower() in ("yes", "y", "true", "1", "on")
                else:
                    out[key] = self.query_one(f"#set-{key}", Input).value
            except ValueError:
                errors.append(label)
        if errors:
            self.notify(f"not a number: {errors[0]}", severity="error", markup=False)
            return
        self.dismiss(out)

    def action_cancel(self) -> None:
        self.dismiss(None)
