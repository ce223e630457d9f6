"""The run cache: a folder of run files, and how a user names a run (an id, any unique part of one,
or a path). The run picker finds runs by any part of their id; a reference on the command line
does the same — always literally: a reference is never a glob or a pattern.

Run ids come from files strangers send, so a path in the cache is only ever built from an id that
`valid_run_id` accepts, and checked to lie inside the cache folder."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokentui.core.display import cut_middle
from tokentui.store.header import SUFFIX, RunFileError, check_sizes, read_header, valid_run_id

ENV_VAR = "TOKENTUI_CACHE_DIR"
MAX_REF_CHARS = 1000
ELSEWHERE = "collections-elsewhere.txt"  # the folders of collections made outside the cache (batch --out)
MAX_ELSEWHERE = 200  # folders that list keeps (the oldest go)
MAX_ELSEWHERE_BYTES = 1 << 20
# `.{name}.{pid}.{thread}.{random}.tmp` (core.files.temporary_name), or `.{name}.{pid}.tmp` (older
# tokentui): the first form is tried first, so that a random part of digits alone is never taken
# for the process (a live save's file would then be removed as a dead one's)
TEMPORARY_RE = re.compile(
    r"\.(?P<name>.+)\.(?P<pid>[0-9]{1,10})\.[0-9]{1,24}\.[0-9a-f]{1,32}\.tmp"
    r"|\.(?P<old_name>.+)\.(?P<old_pid>[0-9]{1,10})\.tmp"
)


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
    """The file of run `run_id` in the cache `directory`. Raises RunFileError for an id that is not
    a plain run id (a path, '..', a hidden name …): autosave must never write outside the cache."""
    if not valid_run_id(run_id):
        raise RunFileError(str(run_id)[:80], "not a valid run id (letters, digits, '.', '_', '-'; at most 64)")
    path = directory / f"{run_id}{SUFFIX}"
    inside = os.path.normpath(directory.absolute())
    if os.path.dirname(os.path.normpath(path.absolute())) != inside:
        raise RunFileError(run_id, f"would not be saved inside the cache {directory}")
    return path


def other_version(path: Path, run_id: str, directory: Path) -> Path | None:
    """The cache's file of run `run_id` when it holds other content than `path` (a copy of the run
    made elsewhere, then grown apart), else None. Every change to a run is saved in the cache by
    its id, so growing the file at `path` would replace that other version: callers refuse, or
    save under a new id."""
    import filecmp

    cached = run_path(run_id, directory)
    try:
        if not cached.exists() or cached.samefile(path) or filecmp.cmp(cached, path, shallow=False):
            return None
    except OSError:  # (unreadable: not known to be the same run)
        pass
    return cached


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
    model_b: str = ""  # a comparison's second model ("" for any other run)
    status: str = ""  # the root branch's status (eos, length, cancelled, error, running …; "" when none)
    chat: bool | None = None  # made with the chat template (None: the header does not say)
    k: int | None = None  # alternatives recorded per token (None: the header does not say)

    @property
    def what(self) -> str:
        """What a list shows of the run's kind and end: a generation's status (eos, length …); the
        mode of other runs (tree, score, compare …), unless it did not end well (cancelled, error,
        running: a killed process)."""
        if self.mode == "generate" or self.status in ("cancelled", "error", "running"):
            return self.status or self.mode
        return self.mode

    @property
    def models(self) -> str:
        """The model as a list shows it: "A vs B" for a comparison."""
        return f"{self.model} vs {self.model_b}" if self.model_b else self.model

    def models_in(self, width: int) -> str:
        """`models` in at most `width` characters, each name cut in its middle (its start and its
        end, where folders differ: …-tuned, …-ckpt-900). A comparison keeps both names in sight:
        what they share at the start goes first (SmolLM2-135M-Instruct vs SmolLM2-360M-Instruct →
        …135M-Instruct vs …360M-Instruct; then each keeps its start, where they differ)."""
        if not self.model_b:
            return cut_middle(self.model, width)
        a, b = self.model, self.model_b
        common = len(os.path.commonprefix([a, b]))
        shared = len(f"{a} vs {b}") > width and 4 <= common < min(len(a), len(b))
        if shared:
            a, b = "…" + a[common:], "…" + b[common:]
        if len(f"{a} vs {b}") <= width:
            return f"{a} vs {b}"
        room = max(2, width - 4)  # (a short name keeps all of it; the other takes the rest)
        n = room - len(b) if len(b) <= room // 2 else len(a) if len(a) <= room // 2 else room // 2
        n, m = max(1, n), max(1, room - n)
        if shared:
            return f"{a[:n]} vs {b[:m]}"
        return f"{cut_middle(a, n)} vs {cut_middle(b, m)}"


MAX_COUNT = 1 << 40  # no run has more steps than this; a larger count is a forged header


def _text(d: dict[str, Any], key: str) -> str:
    value = d[key]
    if not isinstance(value, str):
        raise ValueError(f"{key!r} is not text")
    return value


def _count(value: object, what: str) -> int:
    """A step count from the header: an int (not a bool, float or string) in 0..MAX_COUNT."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT:
        raise ValueError(f"{what} is not a step count")
    return value


def summarize(path: Path) -> RunSummary:
    """One line's worth of a run, from its header only. Whatever the header holds, a bad file is a
    summary with `error` set (one line), never an exception: one bad file must not break the list."""
    try:
        d = read_header(path)
        meta, branches = d.get("meta"), d.get("branches")
        if not isinstance(meta, dict) or not isinstance(branches, list):
            raise ValueError("malformed header")
        if not valid_run_id(meta.get("run_id")):
            raise ValueError("bad run id")
        check_sizes(path, meta)
        tokens = _count(d.get("prompt_steps"), "prompt_steps")
        for b in branches:
            tokens += _count(b.get("steps") if isinstance(b, dict) else None, "a branch's steps")
        return RunSummary(
            path=path,
            run_id=_text(meta, "run_id"),
            created=_text(meta, "created"),
            model=_text(meta, "model"),
            mode=_text(meta, "mode"),
            prompt=_text(meta, "prompt"),
            tokens=tokens,
            branches=len(branches),
            model_b=_second_model(meta),
            status=(meta.get("mode") == "tree" and _search_status(meta)) or _root_status(branches),
            chat=meta["chat"] if isinstance(meta.get("chat"), bool) else None,
            k=meta["k"] if type(meta.get("k")) is int else None,
        )
    except RunFileError as e:
        return RunSummary(path=path, run_id=path.stem, error=e.problem)
    except KeyError as e:
        return RunSummary(path=path, run_id=path.stem, error=f"malformed header (no {str(e)[:40]})")
    except (TypeError, ValueError) as e:
        return RunSummary(path=path, run_id=path.stem, error=RunFileError(path, str(e)).problem)


def _root_status(branches: list[Any]) -> str:
    """The first branch's status as the header gives it ("" when it gives none as text)."""
    first = branches[0] if branches else None
    status = first.get("status") if isinstance(first, dict) else None
    return status[:20] if isinstance(status, str) else ""


def _search_status(meta: dict[str, Any]) -> str:
    """How a tree run's last search ended (completed, cancelled, running …), as its header says
    ("" when it says none): a cancelled search's run was listed as a plain `tree`."""
    record = meta.get("tree")
    searches = record.get("searches") if isinstance(record, dict) else None
    last = searches[-1] if isinstance(searches, list) and searches else None
    stopped = last.get("stopped") if isinstance(last, dict) else None
    return stopped[:20] if isinstance(stopped, str) else ""


def _second_model(meta: dict[str, Any]) -> str:
    """A comparison run's model B as its header names it ("" when none, or not a name)."""
    b = meta.get("model_b")
    name = b.get("model") if isinstance(b, dict) else None
    return name if isinstance(name, str) else ""


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (ours, or another user's: then it is alive too)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists but is not ours, or cannot tell: keep its file
    return True


def clean_stale_temporaries(directory: Path, name: str | None = None) -> list[Path]:
    """Delete the temporary files of saves whose process is gone (killed mid-save); never those of
    a live process, which may be saving right now. `name`: only those of saves to that file (an
    export's folder is the user's: nothing else there is touched). Returns what was deleted."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = TEMPORARY_RE.fullmatch(entry.name)
        if m is None or (name is not None and (m["name"] or m["old_name"]) != name):
            continue
        if _pid_alive(int(m["pid"] or m["old_pid"])):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass  # another process cleaned it first, or it is not ours to remove
    return removed


def _run_files(directory: Path) -> list[Path]:
    """The run files in the cache: `*.tokentui`, never hidden files (temporaries of saves)."""
    if not directory.is_dir():
        return []
    return [p for p in directory.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith(".")]


def list_runs(directory: Path, stop: Callable[[], bool] | None = None) -> list[RunSummary]:
    """Every run in the cache, newest first; unreadable files are listed with their error. Stale
    temporaries of killed saves are removed first (listing is how the CLI and the picker start).
    `stop`: asked before each file; once true, the runs read so far (the picker's thread, its box
    closed: quitting waited for thousands of headers on a slow disk)."""
    if not directory.is_dir():
        return []
    clean_stale_temporaries(directory)
    runs = []
    for path in _run_files(directory):
        if stop is not None and stop():
            break
        runs.append(summarize(path))
    return sorted(runs, key=lambda r: (r.created, r.run_id), reverse=True)


AMBIGUOUS_SHOWN = 5  # ids named in an "ambiguous" error before "and N more"


def _as_path(ref: str) -> Path | None:
    """`ref` as a path when it is one: it exists, has a slash or ends with the suffix."""
    p = Path(ref).expanduser()
    try:
        exists = p.exists()
    except (OSError, ValueError):  # a name too long, a NUL …
        exists = False
    return p if exists or "/" in ref or os.sep in ref or ref.endswith(SUFFIX) else None


def resolve(ref: str, directory: Path) -> Path:
    """A run reference → its file. A path (existing, or with a slash or the suffix) is taken as is;
    otherwise a run id in the cache, or any part of one that only one run's id contains (case
    ignored, compared literally: '*' or '[s]' are characters, not patterns). An ambiguous part is
    an error naming the runs it matches, newest first. Every fault is one RunFileError line."""
    if not ref:
        raise RunFileError(ref, "no run given")
    if len(ref) > MAX_REF_CHARS or "\x00" in ref:
        raise RunFileError(ref[:80], "not a run id, part of one, or a path")
    p = _as_path(ref)
    if p is not None:
        return p
    try:
        ids = [f.name[: -len(SUFFIX)] for f in _run_files(directory)]
    except OSError as e:
        raise RunFileError(directory, e.strerror or str(e)) from None
    ids = [i for i in ids if valid_run_id(i)]
    if ref in ids:
        return run_path(ref, directory)
    part = ref.lower()
    matches = sorted((i for i in ids if part in i.lower()), reverse=True)
    if len(matches) == 1:
        return run_path(matches[0], directory)
    if matches:
        shown = ", ".join(matches[:AMBIGUOUS_SHOWN])
        more = f" and {len(matches) - AMBIGUOUS_SHOWN} more" if len(matches) > AMBIGUOUS_SHOWN else ""
        raise RunFileError(ref, f"ambiguous: {len(matches)} runs match: {shown}{more}")
    found = _in_collections(ref, directory)
    if found is not None:
        return found
    raise RunFileError(ref, f"no such run in {directory} or its batch collections (and no such file)")


def _in_collections(run_id: str, directory: Path) -> Path | None:
    """The run file of a `tokentui batch` item whose id is `run_id`, in a collection kept in the
    cache (`<cache>/collections/<name>/runs/`, where a batch without --out writes) or in one the
    cache remembers (`remember_collection`): its runs are named by their ids, as the batch printed
    and the manifest lists them."""
    if not valid_run_id(run_id):
        return None
    for folder in collection_folders(directory):
        path = folder / "runs" / f"{run_id}{SUFFIX}"
        if _own_run_file(path, run_id):
            return path
    return None


def collection_folders(directory: Path) -> list[Path]:
    """The `tokentui batch` collections the cache knows: those kept in it (`<cache>/collections/`,
    by name), then those `remember_collection` listed (newest first). Folders only; a remembered
    one may be gone or hold anything (callers check what they read)."""
    try:
        inside = sorted(p for p in (directory / "collections").iterdir() if p.is_dir())
    except OSError:
        inside = []
    return [*inside, *(p for p in reversed(_elsewhere(directory)) if p.is_dir())]


def _own_run_file(path: Path, run_id: str) -> bool:
    """Whether `path` is a collection's own run file holding run `run_id`: a regular file in a
    `runs` folder, neither of them a symbolic link (a remembered folder may hold received files,
    and a link may lead anywhere), whose header names that id."""
    import stat

    try:
        if path.parent.is_symlink() or not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        meta = read_header(path).get("meta")
    except (OSError, RunFileError):
        return False
    return isinstance(meta, dict) and meta.get("run_id") == run_id


def remember_collection(folder: Path, directory: Path) -> bool:
    """Note a collection made outside the cache (`batch --out`) in the cache's list of them, so
    that its runs are found by id as those of the cache's own collections are (newest last; past
    MAX_ELSEWHERE the oldest are dropped). Best effort: a cache that takes no file only loses
    this shortcut (two batches ending at once may each drop the other's entry). A folder whose
    path holds a line break cannot be listed: False (the caller says so)."""
    from tokentui.core.files import write_atomically

    folder = Path(os.path.abspath(folder))
    if "\n" in str(folder):
        return False
    if folder.parent == Path(os.path.abspath(directory / "collections")):
        return True
    listed = [p for p in _elsewhere(directory) if p != folder] + [folder]
    text = "".join(f"{p}\n" for p in listed[-MAX_ELSEWHERE:])
    with suppress(OSError):
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(directory / ELSEWHERE, lambda f: f.write(os.fsencode(text)))
    return True


def _elsewhere(directory: Path) -> list[Path]:
    """The folders `remember_collection` listed (absolute paths only, as many as it keeps)."""
    import stat

    try:
        if not stat.S_ISREG(os.stat(directory / ELSEWHERE).st_mode):  # (a FIFO there would hang)
            return []
        with open(directory / ELSEWHERE, "rb") as f:
            lines = os.fsdecode(f.read(MAX_ELSEWHERE_BYTES)).split("\n")
    except (OSError, ValueError):
        return []
    return [Path(line) for line in lines[:MAX_ELSEWHERE] if line and "\x00" not in line and os.path.isabs(line)]
