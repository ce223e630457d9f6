"""The explorer's actions on files: save the run, open one from the cache, export, screenshot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tokentui.core.display import safe_text, sanitize

if TYPE_CHECKING:  # the app this is mixed into, for the type checker only (tui/host.py)
    from tokentui.tui.host import ExplorerHost

    _Base = ExplorerHost
else:
    _Base = object


def export_extensions() -> str:
    """The endings the export prompt takes, as words: ".csv, .jsonl, .json, .tree.json …" (store.
    export's formats; imported here, not at start-up: the first frame is drawn before numpy loads)."""
    from tokentui.store.export import EXTENSION, NAMED_SUFFIXES

    names = list(dict.fromkeys([*(f".{e}" for e in EXTENSION.values()), *NAMED_SUFFIXES]))
    return ", ".join(names[:-1]) + " or " + names[-1]


class FileActions(_Base):
    """Mixed into TokentuiApp (it provides run_obj, run_path, save_dir, engine, show_branch …)."""

    def action_save(self, quiet: bool = False) -> None:
        from tokentui.store.cache import run_path
        from tokentui.store.header import RunFileError
        from tokentui.store.runfile import save_run

        run = self.run_obj
        assert run is not None  # needs RUN (and _start_run saves only a run there)
        try:
            target = self.run_path or run_path(run.id, self.save_dir)  # inside the cache, by a valid id
            path = save_run(run, target)
        except (OSError, RunFileError) as e:
            self.notify(f"could not save: {e}", severity="error", markup=False)
            return
        if not quiet:
            self.notify(f"saved {sanitize(str(path))}", markup=False)
        self.update_status()

    def action_open_run(self) -> None:
        from tokentui.tui.screens.run_picker import RunPicker

        def done(path: Path | None) -> None:
            if path is None:
                return
            from tokentui.store.header import RunFileError
            from tokentui.store.runfile import load_run

            try:
                run = load_run(path)
            except RunFileError as e:
                self.notify(str(e), severity="error", markup=False)
                return
            before = self.run_obj
            self.session.run, self.run_path = run, path
            # the prompt box shows the opened run's prompt (ctrl+r would otherwise generate the
            # previous one), unless the user has typed another there
            shown = safe_text(before.meta.prompt.encode()) if before is not None else self.initial_prompt or ""
            if self.prompt_box.text in ("", shown):
                self.prompt_box.text = safe_text(run.meta.prompt.encode())
            if self.engine is not None:
                self.engine.adopt(run)
            self.update_legend()
            self.show_branch(0, cursor=None)

        self.push_screen(RunPicker(self.save_dir), done)

    def action_export(self) -> None:
        from tokentui.tui.screens.text_prompt import TextPrompt

        run = self.run_obj
        assert run is not None  # needs RUN

        def write(path: Path, fmt: str, overwrite: bool) -> None:
            from tokentui.store.export import ExportError, write_file

            try:
                write_file(run, fmt, path, overwrite)
            except ExportError as e:
                self.notify(sanitize(str(e)), severity="error", markup=False)
                return
            self.notify(f"exported {sanitize(str(path))}", markup=False)

        def done(name: str | None) -> None:
            from tokentui.store.export import EXTENSION, format_for

            if name is None:  # escape
                return
            if not name.strip():  # (not silent: an Enter on an emptied field wrote nothing)
                self.notify("nothing exported: no file name given", markup=False)
                return
            path = Path(name).expanduser()
            if path.suffix.lower().removeprefix(".") not in EXTENSION.values():  # (the CLI's --format is not here)
                self.notify(
                    f"{sanitize(path.name)}: end the name in {export_extensions()} (it picks the format)", markup=False
                )
                ask(name)  # asked again, the name as typed
                return
            fmt = format_for(path)
            if not path.exists():
                write(path, fmt, overwrite=False)
                return
            from tokentui.tui.screens.confirm import Confirm

            def answered(yes: bool | None) -> None:
                if yes:
                    write(path, fmt, overwrite=True)

            self.push_screen(
                Confirm(f"Replace {sanitize(str(path))}?", "It exists; the export would replace it."), answered
            )

        def ask(name: str) -> None:
            self.push_screen(
                TextPrompt(f"export the run to (the extension picks the format: {export_extensions()})", name), done
            )

        ask(f"{run.id}.csv")

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """Textual's screenshot action (same arguments), saving into the current folder by default
        (Textual's own picks the Downloads folder, which a server seldom has) and saying where."""
        saved = self.save_screenshot(filename, path or os.getcwd())
        shown = os.path.relpath(saved) if Path(saved).parent == Path.cwd() else saved  # (a short toast: the name whole)
        self.notify(f"screenshot saved: {sanitize(shown)}", markup=False)
