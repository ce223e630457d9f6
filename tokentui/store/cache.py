"""The run cache: a folder of run files, and how a user names a run (an id, any unique part of one,
or a path). The run picker finds runs by any part of their id; a reference on the command line
does the same."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tokentui.store.header import SUFFIX, RunFileError, read_header

ENV_VAR = "TOKENTUI_CACHE_DIR"


def cache_dir(override: str | Path | None = None) -> Path:
    """`--cache-dir`, else $TOKENTUI_CACHE_DIR, else the platform's user cache folder."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("tokentui")) / "runs"


def run_path(run_id: str, directory: Path) -> Path:
    return directory / f"{run_id}{SUFFIX}"


@dataclass
class RunSummary:
    path: Path
    run_id: str = ""
    created: str = ""
    model: str = ""
    mode: str = ""
    prompt: str = ""
    tokens: int = 0
    branches: int = 0
    error: str | None = None  # set when the file could not be read


def summarize(path: Path) -> RunSummary:
    try:
        d = read_header(path)
        meta = d["meta"]
        branches = d["branches"]
        return RunSummary(
            path=path,
            run_id=str(meta["run_id"]),
            created=str(meta["created"]),
            model=str(meta["model"]),
            mode=str(meta["mode"]),
            prompt=str(meta["prompt"]),
            tokens=int(d["prompt_steps"]) + sum(int(b["steps"]) for b in branches),
            branches=len(branches),
        )
    except RunFileError as e:
        return RunSummary(path=path, run_id=path.stem, error=e.problem)
    except (KeyError, TypeError, ValueError):
        return RunSummary(path=path, run_id=path.stem, error="malformed header")


def list_runs(directory: Path) -> list[RunSummary]:
    """Every run in the cache, newest first; unreadable files are listed with their error."""
    if not directory.is_dir():
        return []
    runs = [summarize(p) for p in directory.glob(f"*{SUFFIX}") if not p.name.startswith(".")]
    return sorted(runs, key=lambda r: (r.created, r.run_id), reverse=True)


AMBIGUOUS_SHOWN = 5  # ids named in an "ambiguous" error before "and N more"


def resolve(ref: str, directory: Path) -> Path:
    """A run reference → its file. A path (existing, or with a slash or the suffix) is taken as is;
    otherwise a run id in the cache, or any part of one that only one run's id contains (case
    ignored). An ambiguous part is an error naming the runs it matches, newest first."""
    if not ref:
        raise RunFileError(ref, "no run given")
    p = Path(ref).expanduser()
    if p.exists() or "/" in ref or ref.endswith(SUFFIX):
        return p
    exact = run_path(ref, directory)
    if exact.exists():
        return exact
    part = ref.lower()
    ids = [f.stem for f in directory.glob(f"*{SUFFIX}") if not f.name.startswith(".")] if directory.is_dir() else []
    matches = sorted((i for i in ids if part in i.lower()), reverse=True)
    if len(matches) == 1:
        return run_path(matches[0], directory)
    if matches:
        shown = ", ".join(matches[:AMBIGUOUS_SHOWN])
        more = f" and {len(matches) - AMBIGUOUS_SHOWN} more" if len(matches) > AMBIGUOUS_SHOWN else ""
        raise RunFileError(ref, f"ambiguous: {len(matches)} runs match: {shown}{more}")
    raise RunFileError(ref, f"no such run in {directory} (and no such file)")
