"""The explorer's actions on files: save the run, open one from the cache, export, screenshot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tokentui.core.display import sanitize

if TYPE_CHECKING:  # the app this is mixed into, for the type checker only (tui/host.py)
    from tokentui.core.run import Run
    from tokentui.tui.host import ExplorerHost

    _Base = ExplorerHost
else:
    _Base = object


def export_endings() -> list[str]:
    """The endings the export prompt takes: ".csv", ".jsonl", ".json", ".tree.json" … (store.
    export's formats; imported here, not at start-up: the first frame is drawn before numpy loads)."""
    from tokentui.store.export import EXTENSION, NAMED_SUFFIXES

    return list(dict.fromkeys([*(f".{e}" for e in EXTENSION.values()), *NAMED_SUFFIXES]))


def export_extensions() -> str:
    """The endings the export prompt takes, as words: ".csv, .jsonl, .json, .tree.json … or …"."""
    names = export_endings()
    return ", ".join(names[:-1]) + " or " + names[-1]


def export_name_problem(name: str) -> str | None:
    """What is wrong with the export name `name` as typed (one line), or None. A name ending in
    a slash names a folder (Path would drop the slash and write a file of that name); a name
    that is only an ending has nothing before it."""
    if name.rstrip().endswith(("/", os.sep)):
        return f"{sanitize(name)}: a name ending in / is a folder's: give a file name (the ending picks the format)"
    path = Path(name).expanduser()
    if path.is_dir():  # (before its ending: a folder named without one was told to end in .csv …)
        return f"{sanitize(name)} is a folder: give a file name (its ending picks the format)"
    bare = path.name.lower()
    if bare in export_endings():
        return f"{sanitize(path.name)}: no name before {bare}: give one (run{bare})"
    from tokentui.store.export import EXTENSION

    if path.suffix.lower().removeprefix(".") not in EXTENSION.values():  # (the CLI's --format is not here)
        return f"{sanitize(path.name)}: end the name in {export_extensions()} (it picks the format)"
    return None


class FileActions(_Base):
    """Mixed into TokentuiApp (it provides run_obj, run_path, save_dir, engine, show_branch …)."""

    def action_save(self, quiet: bool = False) -> None:
        from tokentui.store.cache_writes import save_in_cache
        from tokentui.store.header import RunFileError

        run = self.run_obj
        assert run is not None  # needs RUN (and _start_run saves only a run there)
        try:
            # into the cache by its id, where the autosave writes too (a file opened from elsewhere
            # is read, never written: `x` writes a copy anywhere)
            saved = save_in_cache(run, self.save_dir)
        except (OSError, RunFileError) as e:
            self.notify(f"could not save: {e}", severity="error", markup=False)
            return
        path = saved.path
        if saved.note is not None:
            self.notify(saved.note, severity="warning", markup=False, timeout=20)
        elif not quiet:
            self.notify(f"saved {sanitize(str(path))}", markup=False)
        self.update_status()

    def opened(self, run: Run, path: Path) -> Run:
        """`run`, read from `path`, ready to be grown: its changes are saved in the cache by its
        id, so when the cache holds another version of that id (a copy grown apart), this one
        takes a new id rather than replace that version, and the user is told."""
        from tokentui.core.run import new_run_id
        from tokentui.store.cache import other_version
        from tokentui.store.cache_writes import remember

        remember(path)  # (as read: a save finding it changed by another process keeps that version)
        cached = other_version(path, run.id, self.save_dir)
        if cached is not None:
            old, run.meta.run_id = run.id, new_run_id()
            self.notify(
                f"the run cache holds another version of run {sanitize(old)} (tokentui replay {sanitize(old)} opens "
                f"it): this one takes the id {run.id}, its changes saved under it",
                severity="warning",
                markup=False,
                timeout=12,
            )
        return run

    def action_open_run(self) -> None:
        from tokentui.tui.screens.run_picker import RunPicker
        from tokentui.tui.state import AppState

        if self.state in (AppState.GENERATING, AppState.ATTRIBUTING):
            # (the job's events go to the run on screen by id: opening that same run from its
            # last autosave would take them at the wrong positions)
            self.notify("not while a job runs (escape stops it)", severity="warning", markup=False)
            return

        def done(path: Path | None) -> None:
            if path is None:
                return
            from tokentui.store.header import RunFileError
            from tokentui.store.runfile import load_run

            try:
                run = self.opened(load_run(path), path)
            except RunFileError as e:
                self.notify(str(e), severity="error", markup=False)
                return
            before = self.run_obj
            self.session.run, self.run_path = run, path
            self.session.note, self.session.tokens_per_second = "", 0.0  # (the last job's, on the run before)
            # the prompt box shows the opened run's prompt (ctrl+r would otherwise generate the
            # previous one), unless the user has typed another there
            shown = before.meta.prompt if before is not None else self.initial_prompt or ""
            if self.prompt_box.prompt in ("", shown):
                self.prompt_box.text = run.meta.prompt  # (exact: the box draws what could act on a terminal escaped)
            if self.engine is not None:
                self.engine.adopt(run)
            self.update_legend()
            self.show_branch(0, cursor=None)
            self.say_if_not_ours()

        self.push_screen(RunPicker(self.save_dir), done)

    def say_if_not_ours(self) -> None:
        """Say, as a run opens, that the loaded model did not make it, so it cannot grow it (a
        trial opened another model's run, pressed c, and the failure was saved into it). Before the
        model is ready, its loaded notice says so instead."""
        why = self.session.not_ours()
        if why is not None:
            self.notify(why, severity="warning", markup=False, timeout=12)

    def action_export(self) -> None:
        """`x`: asks for a file name, whose ending picks the format. A name that cannot be
        written (no such folder, a folder, a FIFO, a device, a symbolic link, a bad ending) is
        refused at once with the dialog asked again, the name as typed kept for correcting; an
        existing regular file is replaced only after a yes."""
        from tokentui.tui.screens.text_prompt import TextPrompt

        run = self.run_obj
        assert run is not None  # needs RUN

        def refuse(message: str, name: str) -> None:
            self.notify(sanitize(message), severity="error", markup=False)
            ask(name)  # asked again, the name as typed

        def write(name: str, path: Path, fmt: str, overwrite: bool) -> None:
            from tokentui.store.export import ExportError, write_file

            which, what = on_show() if fmt == "seed004" else (None, "")
            try:
                write_file(run, fmt, path, overwrite, attribution=which)
            except ExportError as e:
                refuse(str(e), name)
                return
            self.notify(f"exported {sanitize(str(path))}{what}", markup=False)

        def on_show() -> tuple[int | None, str]:
            """seed 004's file holds one record: the attribution on show (the one the user is
            reading), else the newest; the note names it."""
            shown = self.session.attribution
            records = run.attributions
            i = next((j for j, r in enumerate(records) if shown is not None and r is shown.record), len(records) - 1)
            r = records[i]
            span = f"{r.positions[0]}" if len(r.positions) == 1 else f"{r.positions[0]}–{r.positions[-1]}"
            which = "on show" if shown is not None and records[i] is shown.record else "the newest"
            return i, f" (attribution {i}, {which}: {r.method} of position{'s' * (len(r.positions) > 1)} {span})"

        def done(name: str | None) -> None:
            from tokentui.store.export import ExportError, check_target, format_for

            if name is None:  # escape
                return
            if not name.strip():  # (not silent: an Enter on an emptied field wrote nothing)
                self.notify("nothing exported: no file name given", markup=False)
                return
            problem = export_name_problem(name)
            if problem is not None:
                refuse(problem, name)
                return
            path = Path(name).expanduser()
            fmt = format_for(path)
            if fmt == "seed004" and not run.attributions:
                self.notify(f"run {run.id} holds no attributions: a attributes the token under the cursor, "
                            "then x exports it", severity="warning", markup=False)  # fmt: skip
                return
            try:  # everything but an existing regular file is refused now, before the question
                check_target(path, overwrite=True)
            except ExportError as e:
                refuse(str(e), name)
                return
            if not path.exists():
                write(name, path, fmt, overwrite=False)
                return
            from tokentui.tui.screens.confirm import Confirm

            def answered(yes: bool | None) -> None:
                if yes:
                    write(name, path, fmt, overwrite=True)

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
