"""`batch`: many prompts (generated from) or a dataset of prompt/response pairs (scored
teacher-forced) under one or more models, headless and resumable, into a collection.

Everything that can be checked before a model loads is checked first (options, model paths, the
input file); lines of the input that are not usable items are reported once each and skipped.
The models then run one after the other, each loaded once, and only when it has items left to
do. Every item becomes a run saved as it finishes, and the manifest is rewritten after it
(`store/collection.py`), so a kill at any moment leaves a consistent collection and running the
same command again does only what is missing. Prompts of one token length are decoded together
(`batch_groups.py`). Ctrl-C stops after the items in progress (exit 130); a second Ctrl-C also
cancels the generation in progress (its items are redone on resume). At the end the
collection gets seed 000's and seed 003's tables (`store/seed_tables.py`).

Generation and scoring go through the engine's jobs, as `generate` and `score` do.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

import typer

from tokentui.cli.batch_groups import Encoded, Unit, units
from tokentui.cli.options import (
    CacheOpt,
    DeviceOpt,
    DtypeOpt,
    LensOpt,
    LensPrecisionOpt,
    ModelOpt,
    RawCsvOpt,
    RemoteOpt,
    ResponseFieldOpt,
    generation_options,
)
from tokentui.cli.output import (
    Output,
    ProblemLines,
    ProgressLine,
    ctrl_c_not_lost,
    ctrl_c_sets,
    fail,
    interrupted,
    interrupted_code,
    progress,
    runs_dir,
    say_at_once,
    throughput,
    user_errors,
    waiting_for_pipe,
)
from tokentui.core.display import counted, sanitize
from tokentui.core.params import GenerationSettings, RunError, SamplingParams
from tokentui.store.cache import remember_collection

if TYPE_CHECKING:
    from tokentui.core.dataset import Item, Source
    from tokentui.core.run import Run
    from tokentui.engine.backend import Backend, ModelSpec
    from tokentui.engine.events import Event
    from tokentui.store.collection import Collection, CollectionItem

ModelsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        "-m",
        metavar="<str>",  # (typer's default shows the Python type, <list[str]>)
        help=get_args(ModelOpt)[1].help + " Repeat for several models (one after the other).  [default: demo]",
    ),
]


class _Stop(threading.Event):
    """Set by Ctrl-C (through `ctrl_c_sets`): the first press stops the batch after the items in
    progress (an item, or a group decoded together); a second one also cancels them (`current`)."""

    def __init__(self) -> None:
        super().__init__()
        self.current: threading.Event | None = None
        self.presses = 0

    def set(self) -> None:
        self.presses += 1
        again = "Ctrl-C again" if interrupted_code() == 130 else "again"  # (a hang-up or SIGTERM too)
        if self.presses == 1:
            say_at_once(f"tokentui: stopping after the items in progress ({again}: now)")
        elif self.current is not None and not self.current.is_set():
            say_at_once("tokentui: stopping now (the items in progress are redone on resume)")
            self.current.set()
        super().set()


class _Saver:
    """Writes the manifest after an item, at most once per SPACING × the time the last write took
    and once per MIN_GAP seconds, so rewriting it (all of it, synced to disk) never costs more
    than ~1/SPACING of the batch: on short items a write after each was ~4% of the batch's
    time. A write held back is made once its time comes while the next items run (`due`, told
    by their jobs' events), so a kill loses nothing but about MIN_GAP seconds of finished items
    (a trial's group of 16 items stayed unlisted while the next group ran): they are redone on
    resume. Stopping, an error and the end of a model's items write it at once (`_run_model`)."""

    SPACING = 50
    MIN_GAP = 1.0

    def __init__(self, coll: Collection) -> None:
        self.coll = coll
        self.took = 0.0
        self.last = -math.inf
        self.held = False  # entries put since the last write

    def __call__(self) -> None:
        """After an item's entry is put."""
        self.held = True
        self.due()

    def due(self) -> None:
        """Write the entries held back, if any, once the spacing allows."""
        now = time.monotonic()
        if not self.held or now - self.last < max(self.MIN_GAP, self.SPACING * self.took):
            return
        self.coll.save()
        self.held = False
        self.last = time.monotonic()
        self.took = self.last - now


class _Ticker:
    """Told every event of the jobs of the unit in progress (a group of long generations can take
    minutes): makes the manifest's held write when it is due (`_Saver.due`) and shows the progress
    line, whose rate and ETA count the unit's generated tokens as parts of its items (a group's
    items all finish at its end: the count stood still while the rate fell, then both jumped)."""

    EVERY = 0.5  # seconds between two ticks that act

    def __init__(self, save: _Saver, show: ProgressLine, counter: dict[str, float], label: str, per_item: int) -> None:
        """`per_item`: the tokens an item generates at most (its forced ones included)."""
        from tokentui.engine.events import StepEvent

        self.step_event = StepEvent
        self.save, self.show, self.counter, self.label = save, show, counter, label
        self.per_item = max(1, per_item)
        self.t0 = self.last = 0.0
        self.steps = 0
        self.done_before = 0.0
        self.size = 0

    def start(self, size: int) -> float:
        """A unit of `size` items begins; its start time."""
        self.t0 = time.perf_counter()
        self.steps, self.done_before, self.size = 0, self.counter["done"], size
        return self.t0

    def __call__(self, ev: Event) -> None:
        self.steps += isinstance(ev, self.step_event)
        now = time.perf_counter()
        if now - self.last < self.EVERY:
            return
        self.last = now
        try:
            self.save.due()
        except OSError:  # (a full disk for a moment: the entries stay held, the next write tries again)
            pass
        c = self.counter
        recorded = c["done"] - self.done_before
        partial = max(0.0, min(self.size - recorded, self.steps / self.per_item - recorded))  # (items in the making)
        if c["done"] == 0 and partial < 0.5:  # (a first group's first tokens: an ETA of hours, then minutes)
            partial = 0.0
        line = throughput(int(c["done"]), int(c["total"]), c["seconds"] + now - self.t0, partial=partial)
        self.show(f"batch · {self.label} · {line}")


class _HeldRuns(dict):
    """The runs this command saved, by file, kept for the tables at its end (`write_tables`):
    reading every one back was ~2% of a batch of short prompts. Bounded: past LIMIT bytes of
    values the rest are read back from their files."""

    LIMIT = 256 << 20

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def keep(self, path: Path, run: Run) -> None:
        size = run.total_steps() * run.layout.step_bytes
        if self.size + size <= self.LIMIT:
            self[path] = run
            self.size += size


@dataclass
class _Plan:
    """What one model has to do in this command."""

    model: str
    spec: ModelSpec
    todo: list[tuple[Item, str]] = field(default_factory=list)  # (item, key)
    kept: int = 0  # items done by an earlier command, verified
    kept_skipped: int = 0  # items an earlier command skipped for this model (too long for its context)
    moved: int = 0  # of `kept`: runs made for another line, which moved
    shifted: int = 0  # entries (done or skipped) now on another line
    done: int = 0
    skipped: int = 0
    failed: int = 0


def _run_settings(dataset: bool, settings: GenerationSettings, lens: bool) -> dict[str, Any]:
    """The settings that shape every item's run (part of each item's key). `lens`: whether the
    logit lens runs (without it, --lens-top changes nothing recorded: no redo for it)."""
    if dataset:
        return {"mode": "dataset", "k": settings.k, "chat": settings.chat}
    sampling = settings.sampling
    if sampling.greedy:  # a seed, top-k or top-p changes nothing greedy decoding does: no redo for them
        plain = SamplingParams()
        sampling = replace(sampling, seed=plain.seed, top_k=plain.top_k, top_p=plain.top_p)
    shaping = replace(settings, sampling=sampling)
    if not lens:
        shaping = replace(shaping, k_lens=GenerationSettings().k_lens)
    return {"mode": "prompts", "generation": asdict(shaping)}


def _default_out(cache_dir: Path | None, source: Path, identity: dict[str, Any]) -> Path:
    """`<run cache>/collections/<file stem>-<hash>`: the same command gets the same folder (so
    running it again resumes), another command another folder."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, ensure_ascii=True).encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in source.stem)[:40] or "batch"
    return runs_dir(cache_dir) / "collections" / f"{stem}-{digest}"


def _check_folder(folder: Path) -> None:
    """Refuse a --out that is a file, or a folder with other things in it than a collection."""
    from tokentui.store.collection import LOCK, MANIFEST

    if folder.exists() and not folder.is_dir():
        raise RunError(f"--out {folder} is not a folder")
    if folder.is_dir() and not (folder / MANIFEST).exists() and any(p.name != LOCK for p in folder.iterdir()):
        raise RunError(f"{folder} is not empty and holds no collection; give a new or empty folder as --out")


def _make_folder(folder: Path) -> None:
    """Make the collection's folder now, and refuse one that cannot be made or written before any
    model loads."""
    from tokentui.core.files import probe_folder

    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe_folder(folder)
    except OSError as e:
        raise RunError(f"cannot write the collection into {folder}: {e.strerror or e}") from None


def _verified(coll: Collection, old: CollectionItem | None, model: str, key: str) -> bool:
    """Whether an earlier entry settles this exact item (same key): done, with its run file one of
    this collection's for the model (`load_collection` refuses two entries naming one), loading;
    or skipped (the model's context is too short for it: it would be again). A failed item is
    tried again."""
    from tokentui.store.collection import load_item_run
    from tokentui.store.header import RunFileError

    if old is None or old.key != key or old.status == "failed":
        return False
    if old.status == "skipped":
        return True
    if old.run_file is None or coll.run_number(model, old.run_file) is None:
        return False
    try:
        load_item_run(old.run_file)  # (the run its name says)
    except RunFileError:
        return False
    return True


def _plan(coll: Collection, source: Source, specs: list[ModelSpec], run_settings: dict[str, Any]) -> list[_Plan]:
    """Every (model, item) of this command: verified earlier work is kept, input problems are
    recorded as skipped, the rest is to do. The manifest is left holding exactly the kept and
    skipped entries of this command (nothing of earlier commands that this one does not ask for).

    An item is matched with the earlier entry of its line first, then with an unclaimed entry of
    the same key on another line: a line inserted at the top of the file moved every item down
    one, and all of them were redone. A run whose line moved keeps its file and id (only its entry
    names the new line: nothing is written, so nothing is lost to a kill); a line that repeats a
    text claims one earlier entry each, so runs sampled without a seed stay as many as the lines."""
    from tokentui.engine.hf.loading import weights_stamp
    from tokentui.store.collection import CollectionItem, item_key

    old = {(it.model, it.index): it for it in coll.items}
    coll.items = []
    coll.models = [s.model for s in specs]
    plans = []
    for spec in specs:
        plan = _Plan(spec.model, spec)
        model_key = asdict(spec)
        if not spec.lens_chunk:  # the lens off: its precision changes nothing recorded
            model_key.pop("lens_precision")
        stamp = weights_stamp(spec.model)
        if stamp is not None:  # a local model saved again (a new fine-tune in the same folder) redoes its items
            model_key["weights"] = stamp
        unmatched = []
        for item in source.items:
            text = (
                {"prompt": item.prompt} if item.response is None else {"prompt": item.prompt, "response": item.response}
            )
            key = item_key(model_key, run_settings, text)
            prev = old.get((spec.model, item.index))
            if _verified(coll, prev, spec.model, key):
                assert prev is not None
                coll.put(prev)
                plan.kept += prev.status == "done"
                plan.kept_skipped += prev.status == "skipped"
            else:
                unmatched.append((item, key))
        kept = {it.index for it in coll.items if it.model == spec.model}
        elsewhere: dict[str, list[CollectionItem]] = {}  # key -> earlier entries of lines not kept, by line
        for (model, index), it in sorted(old.items(), key=lambda kv: kv[0][1]):
            if model == spec.model and index not in kept:
                elsewhere.setdefault(it.key, []).append(it)
        for item, key in unmatched:
            candidates = elsewhere.get(key, [])
            while candidates:
                prev = candidates.pop(0)
                if _verified(coll, prev, spec.model, key):
                    coll.put(replace(prev, index=item.index))
                    plan.kept += prev.status == "done"
                    plan.kept_skipped += prev.status == "skipped"
                    plan.moved += prev.status == "done"
                    plan.shifted += 1
                    break
            else:
                plan.todo.append((item, key))
        for problem in source.problems:
            key = item_key(model_key, run_settings, {"problem": problem.why, "line": problem.index})
            coll.put(CollectionItem(problem.index, spec.model, "skipped", None, problem.why, key))
        plans.append(plan)
    return plans


class _RunNames:
    """Where a new run of a line goes: the file numbered by its line, unless a run that moved
    there from another line holds it (then the next number past every line and every run's, for
    that model: each model's runs are numbered on their own, so a line gets the same number under
    every model)."""

    def __init__(self, coll: Collection, source: Source) -> None:
        self.coll = coll
        self.taken = {path for _, path in coll.runs()}
        numbers = [coll.run_number(it.model, path) or 0 for it, path in coll.runs()]
        lines = [item.index for item in source.items] + [problem.index for problem in source.problems]
        self.first = 1 + max([0, *numbers, *lines])
        self.next: dict[str, int] = {}  # by model

    def new(self, model: str, index: int) -> tuple[str, Path]:
        """(run id, file) for a new run of line `index` under `model`."""
        number = index
        while self.coll.run_file_for(model, number) in self.taken:
            number = self.next.get(model, self.first)
            self.next[model] = number + 1
        self.taken.add(self.coll.run_file_for(model, number))
        return self.coll.run_id(model, number), self.coll.run_file_for(model, number)


def _process(
    backend: Backend,
    coll: Collection,
    model: str,
    item: Item,
    key: str,
    settings: GenerationSettings,
    stop: _Stop,
    run_names: _RunNames,
    held: _HeldRuns,
    tick: Callable[[Event], None],
    encoded: Encoded | None = None,
) -> CollectionItem | None:
    """One item under the loaded model: generate (a prompt) or score (a prompt + response), save
    the run into the collection (and keep it in `held`). None when a second Ctrl-C cancelled it
    (it stays to do). `tick(event)` on each of its job's events; `encoded`: its prompt's encoding,
    when it was encoded already."""
    from tokentui.core.dataset import response_run
    from tokentui.engine import jobs
    from tokentui.engine.errors import EngineError
    from tokentui.store.collection import CollectionItem

    def skipped(why: str) -> CollectionItem:
        return CollectionItem(item.index, model, "skipped", None, why, key)

    context = backend.info.context_length
    try:
        ids, template = encoded or backend.encode_prompt(item.prompt, settings.chat)
    except EngineError as e:  # e.g. a prompt that encodes to no tokens
        return skipped(" ".join(str(e).split())[:1000])
    try:
        if item.response is None:
            if context is not None and len(ids) >= context:
                return skipped(
                    f"the prompt has {len(ids)} tokens: the model's context ({context} positions) leaves no room to generate"
                )
            job: jobs.Job = jobs.Generate(backend, item.prompt, settings, threading.Event(), encoded=(ids, template))
            stop.current = job.cancel
            jobs.drive(job, lambda _job, ev: tick(ev))
            run = job.run
            if run is None or job.cancel.is_set():
                return None
        else:
            try:
                answer = backend.encode_text(item.response)
            except EngineError as e:  # (far longer than the context: skipped, as when it is counted)
                return skipped(" ".join(str(e).split())[:1000])
            if not answer:
                return skipped("the response encodes to no tokens")
            n = len(ids) + len(answer)
            if context is not None and n > context:
                return skipped(
                    f"prompt + response have {n} tokens, more than the model's context ({context} positions)"
                )
            job = jobs.Score(backend, item.prompt, settings.k, ids=ids + answer)
            jobs.drive(job, lambda _job, ev: tick(ev))
            assert job.run is not None  # the score job made it
            run = response_run(job.run, len(ids))
            run.meta.chat, run.meta.chat_template = settings.chat, template
    except (EngineError, RunError) as e:
        return _failed(item, model, key, e)
    finally:
        stop.current = None
    return _save(run, coll, model, item, key, run_names, held)


def _failed(item: Item, model: str, key: str, e: Exception) -> CollectionItem:
    from tokentui.store.collection import CollectionItem

    return CollectionItem(item.index, model, "failed", None, " ".join(str(e).split())[:1000], key)


def _save(
    run: Run, coll: Collection, model: str, item: Item, key: str, run_names: _RunNames, held: _HeldRuns
) -> CollectionItem:
    """Save an item's run into the collection (and keep it in `held`); its manifest entry."""
    from tokentui.store.collection import CollectionItem
    from tokentui.store.runfile import save_run

    run.meta.run_id, path = run_names.new(model, item.index)
    # (not synced to disk: a resumed batch loads every run its manifest lists (`_verified`), so one
    # a power cut lost is redone; two syncs per item were ~2% of a batch of short items here)
    path = save_run(run, path, durable=False)
    held.keep(path, run)
    return CollectionItem(item.index, model, "done", path, None, key)


def _groupable(backend: Backend, settings: GenerationSettings) -> Callable[[Item], Encoded | None]:
    """`batch_groups.units`' `encode`: a prompt to generate from, as the model encodes it, when
    it may decode in a group (its errors and a prompt that fills the context: said when it is
    done alone)."""
    from tokentui.engine.errors import EngineError

    context = backend.info.context_length

    def encode(item: Item) -> Encoded | None:
        if item.response is not None:
            return None
        try:
            ids, template = backend.encode_prompt(item.prompt, settings.chat)
        except EngineError:
            return None
        return None if context is not None and len(ids) >= context else (ids, template)

    return encode


def _process_unit(
    backend: Backend,
    coll: Collection,
    model: str,
    unit: Unit,
    settings: GenerationSettings,
    stop: _Stop,
    run_names: _RunNames,
    held: _HeldRuns,
    record: Callable[[Item, CollectionItem], None],
    tick: Callable[[Event], None],
) -> bool:
    """`_process` for a unit of items (`batch_groups.units`): several prompts of one length are
    decoded together. `record(item, entry)` as each item's run is saved, as for an item alone
    (the manifest's throttled writes name a group's runs as they are saved, not when it ends). False
    when a second Ctrl-C cancelled the unit (what it did not record stays to do). `tick(event)` on
    each event of its jobs. A group whose
    forward fails (a model that takes one row at a time, a KV cache too large for the GPU) is
    done again item by item."""
    from tokentui.engine import jobs
    from tokentui.engine.errors import EngineError

    def each() -> bool:
        for item, key, encoded in unit:
            result = _process(backend, coll, model, item, key, settings, stop, run_names, held, tick, encoded)
            if result is None:
                return False
            record(item, result)
        return True

    if len(unit) == 1:
        return each()
    prompts = []
    for item, _key, encoded in unit:
        assert encoded is not None  # (a unit of several items holds encoded prompts only)
        prompts.append((item.prompt, *encoded))
    job = jobs.GenerateGroup(backend, prompts, settings, threading.Event())
    stop.current = job.cancel
    try:
        jobs.drive(job, lambda _job, ev: tick(ev))
    except (EngineError, RunError):
        return False if job.cancel.is_set() else each()
    finally:
        stop.current = None
    if job.cancel.is_set():
        return False
    for (item, key, _encoded), run in zip(unit, job.runs, strict=True):
        failure = job.failures.get(run.id)
        record(
            item, _failed(item, model, key, failure) if failure else _save(run, coll, model, item, key, run_names, held)
        )
    return True


def _release_memory() -> None:
    """Return the last model's memory before the next one loads (its backend is gone)."""
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def _run_model(
    plan: _Plan,
    coll: Collection,
    settings: GenerationSettings,
    stop: _Stop,
    report: ProblemLines,
    where: str,
    show: ProgressLine,
    counter: dict[str, float],
    save: _Saver,
    label: str,
    run_names: _RunNames,
    held: _HeldRuns,
    group: int,
) -> str | None:
    """Load the model and do its items, saving the manifest after each (or each group decoded
    together: at most `group` prompts of one length). Returns why the model could not be used
    (its items are then marked failed), or None. `label`: the model in the progress line."""
    from tokentui.engine.backend import check_settings, open_backend
    from tokentui.engine.errors import EngineError
    from tokentui.store.collection import CollectionItem

    show.close()  # (the last model's in-place line ends: this one's loading lines go below it)
    try:
        check_settings(plan.spec, settings, progress)
        with ctrl_c_not_lost():
            backend = open_backend(plan.spec, progress, settings.chat)  # (no chat template: one line, not every item)
        backend.step_latency = math.inf  # (nothing is shown per token: a generation's steps are recorded in blocks)
        no_generation = backend.capabilities.why_not("generate", backend.kind)
        if no_generation is not None and any(item.response is None for item, _key in plan.todo):
            raise EngineError(no_generation)  # (prompts to generate from: one line for the model, not one per item)
    except (EngineError, RunError) as e:
        why = " ".join(str(e).split())[:1000]
        for item, key in plan.todo:
            coll.put(CollectionItem(item.index, plan.model, "failed", None, f"the model could not be used: {why}", key))
        plan.failed += len(plan.todo)
        coll.save()
        return why
    try:
        together = group if backend.capabilities.group_decode and not settings.attention_entropy else 1
        new_tokens = settings.sampling.max_new_tokens + len(settings.forced.encode())  # (bytes ≥ its tokens)

        def record(item: Item, result: CollectionItem) -> None:
            counter["done"] += 1
            coll.put(result)
            save()
            if result.status == "done":
                plan.done += 1
            else:
                setattr(plan, result.status, getattr(plan, result.status) + 1)
                verb = "skipped" if result.status == "skipped" else "failed"
                report(f"{where} line {item.index}: {verb} under {plan.model}: {result.error}")

        tick = _Ticker(save, show, counter, label, new_tokens)
        with ctrl_c_sets(stop):
            todo = units(plan.todo, _groupable(backend, settings), together, new_tokens, backend.info.vocab_size)
            for n, unit in enumerate(todo):
                if stop.is_set():
                    break
                show(
                    f"batch · {label} · " + throughput(int(counter["done"]), int(counter["total"]), counter["seconds"]),
                    force=n == 0,  # (a model's first line, also within 2 s of the last)
                )
                t0 = tick.start(len(unit))
                finished = _process_unit(backend, coll, plan.model, unit, settings, stop, run_names, held, record, tick)
                counter["seconds"] += time.perf_counter() - t0  # (a unit cancelled part-way counts its items done)
                if not finished:
                    break
    finally:
        coll.save()  # (entries the throttled writes held back)
        del backend  # (its memory is returned before the next model loads: `_batch`)
    return None


GROUP = 16  # --group's default: prompts of one token length decoded together

# what a write refused for room or medium raises (with no file name: the write, not the open, failed)
WRITE_FAILURES = (errno.EFBIG, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)


@generation_options
def batch(
    model: ModelsOpt = None,
    prompts: Annotated[
        Path | None,
        typer.Option(
            "--prompts",
            help="Generate from each prompt of this file: one per line, or JSON Lines (*.jsonl, *.ndjson) "
            "with the prompt in --prompt-field.",
        ),
    ] = None,
    dataset: Annotated[
        Path | None,
        typer.Option(
            "--dataset",
            help="Score each item of this JSON Lines file teacher-forced: its prompt, then its response.",
        ),
    ] = None,
    prompt_field: Annotated[
        str | None,
        typer.Option(
            "--prompt-field",
            help="JSON field holding the prompt (default: prompt). With --prompts, given, it reads the file as "
            "JSON Lines whatever its name.",
        ),
    ] = None,
    response_field: ResponseFieldOpt = "response",
    settings: GenerationSettings | None = None,  # the generation options (see options.GENERATION_OPTIONS)
    loss_over: Annotated[
        str,
        typer.Option(
            "--loss-over",
            help="Tokens the tables count: 'response' (a dataset's response, a prompt's generated tokens) or "
            "'all' (every predicted position, the prompt's too).",
        ),
    ] = "response",
    raw_csv: RawCsvOpt = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Collection folder (default: one under the run cache named after the input and the command; "
            "running the same command again resumes it).",
        ),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Let this command drop or redo the runs of an --out collection that was made from another input "
            "file or with other settings, or the runs of a model it does not name.",
        ),
    ] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    trust_remote_code: RemoteOpt = False,
    lens_chunk: LensOpt = 32,
    lens_precision: LensPrecisionOpt = "auto",
    cache_dir: CacheOpt = None,
    group: Annotated[
        int | None,
        typer.Option(
            "--group",
            metavar="N",
            help="Decode up to N prompts of one token length together, one forward a step for all (on a GPU, "
            "short prompts go many times faster), 1…256 (default 16; --prompts only). Each run is what its "
            "prompt alone gives, to float rounding (at a near-tie greedy decoding may take the other token); "
            "1: each prompt alone, as generate does. Not part of an item's key: a resumed collection keeps "
            "its runs.",
        ),
    ] = None,
) -> None:
    """Run many prompts, or score a dataset, under one or more models into a resumable collection
    with seed 000's and seed 003's tables."""
    assert settings is not None  # @generation_options passes it
    from tokentui.store.collection import CollectionError

    try:
        _batch(model, prompts, dataset, prompt_field, response_field, settings, loss_over, raw_csv, out,
               replace, device, dtype, trust_remote_code, lens_chunk, lens_precision, cache_dir, group)  # fmt: skip
    except OSError as e:
        if e.filename is None and e.errno in WRITE_FAILURES:  # ("[Errno 27] File too large" said not where)
            fail(f"writing the collection {'in the run cache' if out is None else out}: {e.strerror or e}")
        fail(str(e))
    except user_errors() + (CollectionError,) as e:  # (a DatasetError is a RunError)
        fail(str(e))
    except KeyboardInterrupt:  # while a model loads, or between two items
        interrupted("interrupted: the collection keeps the items finished so far (run the same command to resume)")


def _batch(
    models: list[str] | None,
    prompts: Path | None,
    dataset: Path | None,
    prompt_field: str | None,
    response_field: str,
    settings: GenerationSettings,
    loss_over: str,
    raw_csv: bool,
    out: Path | None,
    replace: bool,
    device: str,
    dtype: str,
    trust_remote_code: bool,
    lens_chunk: int,
    lens_precision: str,
    cache_dir: Path | None,
    group: int | None = None,
) -> None:
    from tokentui.core.dataset import LOSS_OVER, all_json_objects, field_hint, is_jsonl, read_dataset, read_prompts
    from tokentui.engine.backend import ModelSpec, check_chat, check_device, check_settings, check_spec
    from tokentui.engine.errors import ModelLoadError, NoChatTemplate
    from tokentui.store.collection import MANIFEST, MAX_ITEMS, Collection, load_collection, locked

    # --- everything that needs no model ---------------------------------------------------
    names = list(models or ["demo"])
    twice = [m for i, m in enumerate(names) if m in names[:i]]
    if twice:
        raise RunError(f"--model {twice[0]} is given twice")
    if (prompts is None) == (dataset is None):
        raise RunError("give exactly one of --prompts or --dataset")
    if group is not None and dataset is not None:
        raise RunError("--group goes with --prompts (a dataset's items are scored, one forward each)")
    if group is not None and not 1 <= group <= 256:
        raise RunError(f"--group must be 1…256 (got {group})")
    group = GROUP if group is None else group
    if loss_over not in LOSS_OVER:
        raise RunError(f"unknown --loss-over {loss_over!r} (choose from {', '.join(LOSS_OVER)})")
    settings.check()
    if dataset is None and response_field != "response":  # (a prompts file's items have no response)
        raise RunError("--response-field goes with --dataset (a prompts file's items are prompts alone)")
    if dataset is not None and (settings.sampling != SamplingParams() or settings.forced):
        raise RunError("a dataset is scored, not generated: the generation options (-n, -t, --top-k, --top-p, "
                       "--seed, --stop, --force) go with --prompts")  # fmt: skip
    specs = [ModelSpec(m, device, dtype, trust_remote_code, lens_chunk, lens_precision) for m in names]
    for spec in specs:
        check_spec(spec)
    source_path = Path(os.path.abspath(prompts or dataset or Path()))  # (normalised: ../p.txt is p.txt)
    given_field, prompt_field = prompt_field, prompt_field or "prompt"
    source = (
        read_prompts(source_path, prompt_field, jsonl=True if given_field else None, waiting=waiting_for_pipe)
        if dataset is None
        else read_dataset(source_path, prompt_field, response_field, waiting=waiting_for_pipe)
    )
    where = sanitize(str(prompts or dataset))
    report = ProblemLines()
    # (said once the command is not refused: a trial read a page of "skipped" lines, then a refusal)
    notes = [f"{where} line {problem.index}: skipped: {problem.why}" for problem in source.problems]
    if dataset is None and not is_jsonl(source_path) and not given_field and all_json_objects(source):
        notes.insert(0, f"{where}: every line is a JSON object, read here as the prompt itself (one prompt a "
                        "line); for the objects' prompt field name the file *.jsonl or give --prompt-field")  # fmt: skip
    if not source.items:
        for note in notes:
            report(note)
        what = "prompts" if dataset is None else "prompt/response items"
        raise RunError(f"{where} holds no usable {what}{field_hint(source)}")
    if len(source.items) * len(names) > MAX_ITEMS:  # (its manifest would be too large to read back)
        raise RunError(
            f"{counted(len(source.items), 'item')} × {counted(len(names), 'model')} is more runs than one collection "
            f"takes ({MAX_ITEMS:,}); split {where} into several batches"
        )
    run_settings = _run_settings(dataset is not None, settings, lens_chunk > 0)
    model_options = {"device": device, "dtype": dtype, "trust_remote_code": trust_remote_code,
                     "lens_chunk": lens_chunk, "lens_precision": lens_precision}  # fmt: skip
    fields = {"prompt_field": prompt_field, **({"response_field": response_field} if dataset is not None else {})}
    identity = {"source": str(source_path), "models": names, **run_settings, **model_options, **fields}
    folder = (out or _default_out(cache_dir, source_path, identity)).absolute()
    _check_folder(folder)
    # argument errors, refused before a collection is made: the device (one for every model), k
    # against each model's vocabulary from its configuration, --chat against its tokenizer; a
    # model that cannot be read fails its own items below while the others run
    check_device(device)
    for spec in specs:
        try:
            check_settings(spec, settings, progress)
            if settings.chat:
                check_chat(spec, progress)
        except NoChatTemplate:
            raise
        except ModelLoadError:
            pass
    _make_folder(folder)

    # --- the collection: what is done already, what is left -------------------------------
    with locked(folder):
        coll = load_collection(folder) if (folder / MANIFEST).exists() else Collection.new(folder)
        made_from, made_with = coll.settings.get("source"), coll.settings
        done_before = {(it.model, it.index) for it in coll.items if it.status == "done"}
        files_before = {path for _, path in coll.runs()}
        coll.settings = {**run_settings, "source": str(source_path), **fields, "loss_over": loss_over,
                         "model_options": model_options}  # fmt: skip
        coll.complete = False
        plans = _plan(coll, source, specs, run_settings)
        lost = len(files_before - {path for _, path in coll.runs()})  # (dropped, or to be redone)
        if not replace:  # (first: --replace, which the other refusals offer, lets that model's runs go too)
            _refuse_losing_a_model(folder, done_before, names)
        if lost and made_from not in (None, str(source_path)) and not replace:  # (the manifest is untouched)
            raise RunError(
                f"the collection {sanitize(str(folder))} was made from {sanitize(str(made_from))}: reading "
                f"{where} would drop or redo {lost} of its {counted(len(files_before), 'run')}; give another --out, "
                "or --replace to rebuild it from this file"
            )
        changed = _changed(_shaping(made_with), _shaping(coll.settings))
        if lost and changed and not replace:
            raise RunError(
                f"the collection {sanitize(str(folder))} was made with other settings ({'; '.join(changed)}): "
                f"this command would drop or redo {lost} of its {counted(len(files_before), 'run')}; give another "
                "--out, or --replace to redo them"
            )
        for note in notes:
            report(note)
        moved, shifted = sum(p.moved for p in plans), any(p.shifted for p in plans)
        if lost or shifted:  # (tables of runs gone, or of items on other lines: until this batch writes them)
            from tokentui.store.seed_tables import remove_tables

            remove_tables(folder)
        coll.remove_unlisted_runs()
        coll.save()
        if not remember_collection(folder, runs_dir(cache_dir)):  # (--out: its runs are found by id too)
            typer.echo(
                f"tokentui: the path of {sanitize(str(folder))} holds a line break, so the run cache cannot list "
                "it: `runs` and commands taking a run id will not find its runs (give a run file's path instead)",
                err=True,
            )
        total = sum(len(p.todo) for p in plans)
        skipped = sum(p.kept_skipped for p in plans) + len(source.problems) * len(plans)
        kept = sum(p.kept for p in plans)
        typer.echo(
            f"tokentui: collection {sanitize(str(folder))}: {counted(len(source.items), 'item')} × "
            f"{counted(len(specs), 'model')}, {kept} done before"
            + (f" ({moved} on other lines now)" if moved else "")
            + (f", {counted(lost, 'run')} dropped" if lost else "")
            + (f", {skipped} skipped" if skipped else "")
            + f", {total} to do",
            err=True,
        )
        run_names = _RunNames(coll, source)
        held = _HeldRuns()
        stop = _Stop()
        show = ProgressLine()
        counter = {"done": 0.0, "total": float(total), "seconds": 0.0}
        save = _Saver(coll)
        unusable = []
        loaded = False
        for number, plan in enumerate(plans, start=1):
            if stop.is_set():
                break
            if not plan.todo:
                continue
            if loaded:  # (not after the last model: its full gc.collect was ~4% of a batch of short items)
                _release_memory()
            loaded = True
            # the counts are every model's items: the line says which model of how many runs now
            label = sanitize(plan.model) + (f" (model {number} of {len(plans)})" if len(plans) > 1 else "")
            why = _run_model(
                plan, coll, settings, stop, report, where, show, counter, save, label, run_names, held, group
            )
            if why is not None:
                unusable.append(f"{sanitize(plan.model)}: {why}")
        if total:
            show("batch · " + throughput(int(counter["done"]), total, counter["seconds"]), final=True)
        report.close(f"(each one is in {coll.manifest})")
        if stop.is_set():
            coll.save()
            interrupted(
                f"stopped after {int(counter['done'])} of {total} items: run the same command again to resume "
                f"(collection {sanitize(str(folder))})"
            )
        coll.complete = True
        coll.save()
        _finish(coll, plans, loss_over, raw_csv, source, held, bool(settings.forced))
    if unusable:
        raise RunError(f"{len(unusable)} model{'s' if len(unusable) > 1 else ''} could not be used: "
                       + "; ".join(unusable))  # fmt: skip


def _refuse_losing_a_model(folder: Path, done: set[tuple[str, int]], names: list[str]) -> None:
    """Refuse a command that would drop the done runs of a model it does not name: a rerun that
    forgot a --model deleted hours of its runs, saying only "50 done (50 before)". (Other changes
    redo what they change: new options, changed lines, a model trained again into its folder.)"""
    for model in dict.fromkeys(m for m, _ in sorted(done)):
        if model not in names:
            had = sum(1 for m, _ in done if m == model)
            them = "them" if had > 1 else "it"
            raise RunError(
                f"the collection {sanitize(str(folder))} holds {counted(had, 'done run')} of {sanitize(model)}, "
                f"a model this command does not name: it would drop {them}; give --model {sanitize(model)} too, "
                f"another --out, or --replace to let {them} go"
            )


# a manifest's settings by the option that sets them (the others by their own name)
OPTION_OF = {"max_new_tokens": "-n", "temperature": "-t", "top_k": "--top-k", "top_p": "--top-p", "seed": "--seed",
             "stop": "--stop", "k": "-k", "chat": "--chat", "forced": "--force", "k_lens": "--lens-top",
             "attention_entropy": "--attention-entropy", "lens_chunk": "--lens-chunk",
             "lens_precision": "--lens-precision", "device": "--device", "dtype": "--dtype",
             "trust_remote_code": "--trust-remote-code"}  # fmt: skip


def _shaping(settings: dict[str, Any]) -> dict[str, Any]:
    """A manifest's settings that shape its runs, as items' keys take them: not the input's path or
    fields, nor --loss-over (the tables alone), nor the lens's precision with the lens off (the
    run settings were stored with greedy decoding's and the lens's unused options dropped)."""
    out = {k: v for k, v in settings.items() if k not in ("source", "loss_over", "prompt_field", "response_field")}
    options = dict(out.get("model_options") or {})
    if not options.get("lens_chunk"):
        options.pop("lens_precision", None)
    out["model_options"] = options
    return out


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The settings that differ between two manifests' (`option old → new`, the first three). A
    setting only one of them has (a manifest of another version) is no difference."""
    out: list[str] = []

    def walk(a: object, b: object, name: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in [k for k in a if k in b]:
                walk(a[k], b[k], str(k))
        elif a != b:
            was, now = (sanitize(json.dumps(v, default=str))[:40] for v in (a, b))
            out.append(f"{OPTION_OF.get(name, sanitize(name))} {was} → {now}")

    walk(old, new, "")
    return out[:3] + ([f"{len(out) - 3} more"] if len(out) > 3 else [])


def _finish(
    coll: Collection,
    plans: list[_Plan],
    loss_over: str,
    raw_csv: bool,
    source: Source,
    held: _HeldRuns,
    forced: bool = False,
) -> None:
    """Write the tables (the runs in `held` as they are) and print what the collection holds: a
    line per model. `forced`: the answers begin with a --force prefix, which the tables count."""
    from tokentui.core.metrics import perplexity
    from tokentui.core.stats import fmt
    from tokentui.store.seed_tables import write_tables

    tables = write_tables(coll, loss_over, raw_csv, held)
    for item, why in tables.unreadable:
        typer.echo(f"tokentui: line {item.index} under {sanitize(item.model)}: left out of the tables: {why}", err=True)
    stdout = Output()
    stdout.line(f"collection {sanitize(str(coll.path))}")
    # (a prompts file's "response" is what was generated: seed 000's tokens; with --force, the
    # forced prefix and what followed it — "generated" counted the prefix as generated)
    unit = (
        "token"
        if loss_over != "response"
        else "response token"
        if source.kind == "dataset"
        else "forced or generated token"
        if forced
        else "generated token"
    )
    for plan, row in zip(plans, tables.summary):
        skipped = plan.skipped + plan.kept_skipped + len(source.problems)
        line = (
            f"{sanitize(plan.model)}: {plan.done + plan.kept} done ({plan.kept} before), {skipped} skipped, "
            f"{plan.failed} failed · {counted(row['total_tokens'], unit)}"
        )
        if row["total_tokens"]:
            line += f" · mean loss {row['mean_loss']:.4f} nats · perplexity {fmt(perplexity(row['mean_loss']))}"
        stdout.line(line)
    stdout.line("wrote " + ", ".join(sanitize(p.name) for p in tables.files))
    stdout.flush()
