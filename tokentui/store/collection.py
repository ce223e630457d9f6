"""A collection: the runs of one `tokentui batch` (every model × every item of a prompts file or
dataset) in one folder, with a manifest that says what each item became.

    DIR/collection.json    the manifest (FORMAT, SCHEMA): id, models, settings, items, complete
    DIR/runs/*.tokentui    one run per item and model that is done

Each manifest item names the item (its line number in the source), the model, its status (done,
skipped: the input was unusable, failed: the model failed on it), the run file of a done item
(relative to DIR, so the folder can be moved), the reason of a skipped or failed one, and its
`key`: a hash of what makes the item what it is (the model and how it was opened, the settings
that shape the run, the item's text). A resumed batch skips exactly the items whose entry is done
with the same key and whose run file loads (on the item's line, or on the line it had before it
moved: the entry then names the new line, the run keeps its file), and redoes the others. The
manifest always describes the last command run into the folder: items it did not ask for are
dropped.

The manifest is rewritten atomically (temporary file, fsync, rename) after every item, so a kill
at any moment leaves either the old or the new manifest, each consistent with the run files (a
run file is saved before the manifest names it, and never written while a manifest on disk names
it for another run). Run files are named by the collection's id, a hash of the model and a number:
the line the run was made for, or, when a run that moved there holds that name, a number past
every line (`run_id`).

A manifest may come from anyone: `load_collection` checks everything (size, nesting, types,
statuses, keys, that run files lie inside DIR/runs) and turns any fault into one CollectionError
line. Strings it returns (model names, errors, settings) are bounded but not escaped: pass them
through `core.display.sanitize` before they reach a terminal.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokentui.core.display import sanitize
from tokentui.core.files import temporary_name
from tokentui.store.export import json_text
from tokentui.store.header import SUFFIX, RunFileError, json_too_deep, valid_run_id

if TYPE_CHECKING:
    from tokentui.core.run import Run

FORMAT = "tokentui-collection"
SCHEMA = 1
MANIFEST = "collection.json"
RUNS = "runs"
LOCK = ".lock"
STATUSES = ("done", "skipped", "failed")
MAX_MANIFEST_BYTES = 256 << 20  # parsed, a manifest takes ~11× its size in memory
MAX_ITEMS = 500_000  # runs (items × models) a collection takes: ~255 bytes each in its manifest
MAX_DEPTH = 32
MAX_MODELS = 256
MAX_STRING = 10_000
MAX_INDEX = 1 << 40
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")  # room for "-<model hash>-<index>" in a 64-character run id
KEY_RE = re.compile(r"[0-9a-f]{64}")


class CollectionError(ValueError):
    """A collection cannot be used; str() is one line naming the folder and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.problem = sanitize(" ".join(str(problem).split())[:300])  # (without the path)
        super().__init__(f"{sanitize(str(path))}: {self.problem}")
        self.path = Path(path)


def item_key(model: dict[str, Any], settings: dict[str, Any], item: dict[str, Any]) -> str:
    """The hash (sha256, hex) of what makes an item's run what it is: the model and how it was
    opened, the settings that shape the run, and the item's text. Any change to one of them
    gives another key, so a resumed batch redoes that item."""
    text = json.dumps({"model": model, "settings": settings, "item": item}, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class CollectionItem:
    """What one item became under one model."""

    index: int  # the item's line number in the source (1-based)
    model: str  # as given to --model
    status: str  # "done" | "skipped" | "failed"
    run_file: Path | None  # the saved run (absolute, inside DIR/runs); None unless done
    error: str | None  # why it was skipped or failed
    key: str  # item_key of what it was made from

    def to_json(self, folder: Path) -> dict[str, Any]:
        rel = None if self.run_file is None else self.run_file.relative_to(folder).as_posix()
        return {
            "index": self.index,
            "model": self.model,
            "status": self.status,
            "run_file": rel,
            "error": self.error,
            "key": self.key,
        }


@dataclass
class Collection:
    """A collection folder's manifest, in memory. `items` are those finished so far (a batch
    that was interrupted has not reached the rest; `complete` says whether it got to the end)."""

    path: Path
    id: str
    models: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    items: list[CollectionItem] = field(default_factory=list)
    complete: bool = False
    _where: dict[tuple[str, int], int] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def new(cls, path: Path) -> Collection:
        """An empty collection with a fresh id (what names its run files)."""
        from tokentui.core.run import new_run_id

        return cls(Path(path).absolute(), new_run_id())

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    @property
    def runs_dir(self) -> Path:
        return self.path / RUNS

    def runs(self) -> Iterator[tuple[CollectionItem, Path]]:
        """(item, run file) of every done item, in manifest order (by model, then item)."""
        for it in self.items:
            if it.status == "done" and it.run_file is not None:
                yield it, it.run_file

    def run_id(self, model: str, number: int) -> str:
        """The run id (and file name) of run `number` under `model`: the collection's id, a short
        hash of the model and the number — the same on every resume, whatever other models the
        command names. A run is numbered by the line it was made for (`batch` gives another
        number when a run that moved from another line holds that one), and keeps its id, file and
        number when its line moves."""
        return f"{self.id}-{hashlib.sha256(model.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}-{number}"

    def run_file_for(self, model: str, number: int) -> Path:
        return self.runs_dir / f"{self.run_id(model, number)}{SUFFIX}"

    def run_number(self, model: str, path: Path) -> int | None:
        """The number of `path` if it is one of this collection's run files for `model` (in its
        runs folder, named by `run_id`), else None."""
        if path.parent != self.runs_dir or not path.name.endswith(SUFFIX):
            return None
        number = path.name.removesuffix(SUFFIX).rpartition("-")[2]
        if not number.isascii() or not number.isdigit() or path != self.run_file_for(model, int(number)):
            return None
        return int(number)

    def put(self, item: CollectionItem) -> None:
        """Record an item, replacing the entry of the same model and index (amortised O(1): a
        batch puts one after every item; `sort` orders them before they are written)."""
        key = (item.model, item.index)
        i = self._where.get(key)
        if i is None or i >= len(self.items) or (self.items[i].model, self.items[i].index) != key:
            self._where = {(it.model, it.index): n for n, it in enumerate(self.items)}  # items were replaced
            i = self._where.get(key)
        if i is None:
            self._where[key] = len(self.items)
            self.items.append(item)
        else:
            self.items[i] = item

    def sort(self) -> None:
        """Items by model (in `models` order), then by index."""
        order = {m: i for i, m in enumerate(self.models)}
        self.items.sort(key=lambda it: (order.get(it.model, len(order)), it.index))
        self._where = {(it.model, it.index): n for n, it in enumerate(self.items)}

    def remove_unlisted_runs(self) -> list[Path]:
        """Delete this collection's run files that no item names (items dropped from the command,
        or about to be redone), and the temporary files of saves a killed batch left behind."""
        from tokentui.store.cache import clean_stale_temporaries

        removed = clean_stale_temporaries(self.path)  # (the manifest's)
        if self.runs_dir.is_symlink():  # (never another folder's files: `locked` refuses it already)
            return removed
        removed += clean_stale_temporaries(self.runs_dir)
        listed = {path for _, path in self.runs()}
        try:
            entries = list(os.scandir(self.runs_dir))
        except OSError:
            return removed
        for entry in entries:
            p = Path(entry.path)
            if not (entry.name.startswith(f"{self.id}-") and entry.name.endswith(SUFFIX) and p not in listed):
                continue
            with contextlib.suppress(OSError):  # (gone meanwhile: the others are still cleaned)
                if entry.is_file(follow_symlinks=False):
                    p.unlink()
                    removed.append(p)
        return removed

    def to_json(self) -> dict[str, Any]:
        self.sort()
        return {
            "format": FORMAT,
            "schema": SCHEMA,
            "id": self.id,
            "complete": self.complete,
            "models": list(self.models),
            "settings": self.settings,
            "items": [it.to_json(self.path) for it in self.items],
        }

    def save(self) -> Path:
        """Write the manifest atomically: a temporary file beside it, fsync, rename, fsync the folder."""
        self.path.mkdir(parents=True, exist_ok=True)
        data = json_text(self.to_json(), indent=1).encode()
        tmp = temporary_name(self.manifest)
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.manifest)
        finally:
            tmp.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            dfd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return self.manifest


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the collection's lock file while writing it: a second batch on the same folder is
    refused (CollectionError) instead of interleaving its manifest writes with ours.

    What a writer changes in the folder — its runs folder, lock file, manifest — must be there
    itself, not a symbolic link: a received folder whose `runs` led to another folder had that
    folder's run files deleted and new ones written into it. Such a folder is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (RUNS, LOCK, MANIFEST):
        if (folder / name).is_symlink():
            raise CollectionError(
                folder, f"its {name} is a symbolic link: tokentui writes into a collection's own files only"
            )
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no lock
        yield
        return
    try:  # (O_NOFOLLOW: a link made since the check is not followed either)
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as e:
        raise CollectionError(folder, f"cannot open its lock file: {e.strerror or e}") from None
    with open(fd, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise CollectionError(folder, "another tokentui batch is writing this collection") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# --- reading a manifest (untrusted) ------------------------------------------------------------


def _string(path: Path, value: object, what: str, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty):
        raise CollectionError(path, f"{what} is not text")
    if len(value) > MAX_STRING:
        raise CollectionError(path, f"{what} is longer than {MAX_STRING} characters")
    return re.sub("[\ud800-\udfff]", "\ufffd", value)


def _int(path: Path, value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INDEX:
        raise CollectionError(path, f"{what} is not a whole number in 0..{MAX_INDEX}")
    return value


def _run_file(path: Path, folder: Path, value: object, what: str) -> Path:
    """A done item's run file: `runs/<run id>.tokentui`, nothing else (no '..', no absolute path)."""
    if not isinstance(value, str) or not value.startswith(f"{RUNS}/") or not value.endswith(SUFFIX):
        raise CollectionError(path, f"{what}'s run file is not {RUNS}/<run id>{SUFFIX}")
    name = value[len(RUNS) + 1 : -len(SUFFIX)]
    if not valid_run_id(name):
        raise CollectionError(path, f"{what}'s run file is not {RUNS}/<run id>{SUFFIX}")
    return folder / RUNS / f"{name}{SUFFIX}"


def _item(path: Path, folder: Path, d: object, n: int, models: list[str]) -> CollectionItem:
    what = f"items[{n}]"  # (the manifest's list, counted from 0: not a line of the input)
    if not isinstance(d, dict):
        raise CollectionError(path, f"{what} is not an object")
    missing = {"index", "model", "status", "run_file", "error", "key"} - set(d)
    if missing:
        raise CollectionError(path, f"{what} lacks {sorted(missing)[0]!r}")
    index = _int(path, d["index"], f"{what}'s index")
    what = f"items[{n}] (line {index} of the input)"
    model = _string(path, d["model"], f"{what}'s model")
    if model not in models:
        raise CollectionError(path, f"{what}'s model is not one of the collection's models")
    status = d["status"]
    if status not in STATUSES:
        raise CollectionError(path, f"{what}'s status is not one of {', '.join(STATUSES)}")
    key = d["key"]
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        raise CollectionError(path, f"{what}'s key is not a sha256 hex digest")
    error = None if d["error"] is None else _string(path, d["error"], f"{what}'s error", empty=True)
    run_file = None
    if status == "done":
        run_file = _run_file(path, folder, d["run_file"], what)
    elif d["run_file"] is not None:
        raise CollectionError(path, f"{what} is {status} but names a run file")
    return CollectionItem(index, model, status, run_file, error, key)


def load_item_run(path: Path) -> Run:
    """A done item's run, as every reader of a collection takes it: the file itself (a symbolic
    link is refused — a received folder could link to any file on the machine, which would then be
    read, or counted as this item), holding the run its name says. Faults are a RunFileError."""
    import stat

    from tokentui.store.runfile import load_run

    link = RunFileError(path, "is a symbolic link: a collection's runs are files in its runs folder")
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode) or path.parent.is_symlink():
            raise link
    except OSError as e:
        raise RunFileError(path, e.strerror or str(e)) from None
    try:
        run = load_run(path, follow_links=False)  # (a link made after the check above is refused too)
    except RunFileError as e:
        raise (link if e.problem == "is a symbolic link" else e) from None
    if run.id != path.name.removesuffix(SUFFIX):
        raise RunFileError(path, f"holds run {run.id}, not the one its name says")
    return run


def _read_manifest(path: Path) -> tuple[Path, dict[str, Any]]:
    """(the folder, its manifest as JSON) for the folder `path` or the manifest itself, checked as
    far as its format and schema: no manifest, too large, not JSON, nested too deep, another format
    or a newer schema is one CollectionError line naming the manifest."""
    path = Path(path)
    folder = (path.parent if path.name == MANIFEST and not path.is_dir() else path).absolute()
    manifest = folder / MANIFEST
    try:
        if not folder.exists():
            raise CollectionError(folder, "no such folder")
        if manifest.is_symlink():  # (tokentui writes a file: a link in a received folder may lead anywhere)
            raise CollectionError(manifest, "is a symbolic link, not a manifest")
        if not manifest.is_file():
            raise CollectionError(folder, f"not a tokentui collection (no {MANIFEST})")
        size = manifest.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise CollectionError(manifest, f"too large to be a manifest ({size} bytes)")
        raw = manifest.read_bytes()
    except OSError as e:
        raise CollectionError(manifest, e.strerror or str(e)) from None
    if json_too_deep(raw, MAX_DEPTH):
        raise CollectionError(manifest, f"nests deeper than {MAX_DEPTH} levels")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise CollectionError(manifest, "not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CollectionError(manifest, "not a tokentui collection manifest")
    schema = doc.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise CollectionError(manifest, "no valid schema number")
    if schema > SCHEMA:
        raise CollectionError(
            manifest, f"made by a newer tokentui (schema {schema}, this one reads ≤ {SCHEMA}); upgrade tokentui"
        )
    return folder, doc


def describe_collection(path: Path) -> str:
    """One line of what the collection in `path` was made with, for lists (`tokentui runs`): two
    batches of one prompts file differing only in `-n` had folders told apart by a hash alone.
    The manifest is read, not checked item by item (a list stays quick beside a collection of
    100,000 items); what is not as expected is left out. CollectionError: no readable manifest."""
    from tokentui.core.params import SamplingParams

    _folder, doc = _read_manifest(path)
    found = doc.get("settings")
    s: dict[str, Any] = found if isinstance(found, dict) else {}
    found = s.get("generation")
    gen: dict[str, Any] = found if isinstance(found, dict) else s  # (a dataset's k and chat: at the top)
    models = doc.get("models")
    names = [m for m in models if isinstance(m, str)] if isinstance(models, list) else []
    parts = [", ".join(names) or "no model"]
    if s.get("mode") == "dataset":
        over = s.get("loss_over")
        parts.append(f"dataset, loss over {over}" if isinstance(over, str) else "dataset")
    elif s.get("mode") == "prompts":
        parts.append("prompts")
        if isinstance(gen.get("sampling"), dict):
            parts.append(SamplingParams.from_dict(gen["sampling"]).describe())
    k = gen.get("k")
    if isinstance(k, int) and not isinstance(k, bool) and 0 < k < 10**9:
        parts.append(f"k={k}")
    if gen.get("chat") is True:
        parts.append("chat")
    items = doc.get("items")
    done = (
        sum(1 for it in items if isinstance(it, dict) and it.get("status") == "done") if isinstance(items, list) else 0
    )
    parts.append(f"{done} done" + ("" if doc.get("complete") is True else ", not finished"))
    return " · ".join(parts)


def load_collection(path: Path) -> Collection:
    """The collection in the folder `path` (or the manifest file itself), fully checked. Any fault
    — no manifest, too large, not JSON, nested too deep, another format, a newer schema, a wrong
    type, an unknown status, a run file outside DIR/runs, a duplicate item — is one
    CollectionError line naming the manifest."""
    folder, doc = _read_manifest(path)
    manifest = folder / MANIFEST
    cid = doc.get("id")
    if not isinstance(cid, str) or not ID_RE.fullmatch(cid):
        raise CollectionError(manifest, "the collection id is not a plain name of at most 40 characters")
    models = doc.get("models")
    if not isinstance(models, list) or len(models) > MAX_MODELS:
        raise CollectionError(manifest, f"'models' is not a list of at most {MAX_MODELS} names")
    names = [_string(manifest, m, "a model name") for m in models]
    if len(set(names)) != len(names):
        raise CollectionError(manifest, "a model is listed twice")
    settings = doc.get("settings")
    if not isinstance(settings, dict):
        raise CollectionError(manifest, "'settings' is not an object")
    complete = doc.get("complete", False)
    if not isinstance(complete, bool):
        raise CollectionError(manifest, "'complete' is not true or false")
    raw_items = doc.get("items")
    if not isinstance(raw_items, list):
        raise CollectionError(manifest, "'items' is not a list")
    items = [_item(manifest, folder, d, n, names) for n, d in enumerate(raw_items)]
    seen: set[tuple[str, int]] = set()
    files: set[Path] = set()
    for it in items:
        if (it.model, it.index) in seen:
            raise CollectionError(manifest, f"item {it.index} of one model is listed twice")
        seen.add((it.model, it.index))
        if it.run_file is not None:
            if it.run_file in files:
                raise CollectionError(manifest, "two items name the same run file")
            files.add(it.run_file)
    return Collection(folder, cid, names, settings, items, complete)
