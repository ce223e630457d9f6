"""The files a finished batch writes into its collection folder, in the shapes the earlier tools'
users know, computed from the saved runs (reloaded, so a resumed batch's tables cover every item):

- `model_analysis_stats.csv` — seed 000's per-token table: one row per counted token of every
  done item of every model (the export's CSV columns, seed 000's first, then `model`, `run_id`,
  `absolute_position`); `prompt_id` is the item's line number in the source, `token_position`
  the seed's (the place in the generation, from 0);
- `model_analysis_summary.csv` — seed 000's summary: one row per model over all its counted
  tokens (count, mean / median / std / min / max of entropy, mean / median / std of p, mean
  log-prob, mean loss, perplexity);
- `token_losses-<slot>-<model>.json` — seed 003's `*_token_losses.json`, one file per model, in
  its shape (`model`, `dataset`, `results`: per item `avg_loss`, `perplexity`, `token_losses` of
  `{loss, token, rank}`, then `average_perplexity`), so its calculate_KL.py reads the folder; each
  result and token also carries tokentui's own fields (item, run, positions, ids). Every model's
  `results` hold one entry per item of the collection, in the same order: an item a model has no
  run of (skipped, failed, not reached, unreadable) is a placeholder with no tokens, because
  seed 003's script pairs the models' results by their place in the list.

Which tokens count is `--loss-over` (`core.dataset.loss_positions`): the response (a dataset's
response, a generation's generated tokens — seed 000 analyses generated tokens only, seed 003 the
response) or every predicted position. Units: nats; loss = −log p of the token under the model's
raw next-token distribution; perplexity = exp(mean loss); rank 1 = the model's top choice.
Token text is untrusted: CSV cells go through `csv_cell`, JSON through `json_text`. Every file is
written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from tokentui.core.dataset import loss_positions
from tokentui.core.display import decode_bytes
from tokentui.core.files import new_temporary
from tokentui.core.metrics import perplexity
from tokentui.core.run import Run
from tokentui.store.collection import Collection, CollectionItem, load_item_run
from tokentui.store.export import CSV_COLUMNS, branch_rows, csv_cell, json_text
from tokentui.store.header import RunFileError

STATS_CSV = "model_analysis_stats.csv"
SUMMARY_CSV = "model_analysis_summary.csv"
STATS_COLUMNS = [*CSV_COLUMNS, "model", "run_id", "absolute_position"]
SUMMARY_COLUMNS = [
    "model",
    "items",
    "total_tokens",
    "mean_entropy",
    "median_entropy",
    "std_entropy",
    "min_entropy",
    "max_entropy",
    "mean_probability",
    "median_probability",
    "std_probability",
    "mean_logprob",
    "mean_loss",
    "perplexity",
]


def token_losses_name(slot: int, model: str) -> str:
    """`token_losses-<slot>-<model>.json`: the model's name reduced to a safe file name (its slot
    keeps two models whose names reduce alike apart). Seed 003's readers take the files whose
    name holds "token_losses"."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model.rstrip("/\\")).name or model).strip("._") or "model"
    return f"token_losses-{slot}-{name[:60]}.json"


# the per-sample files of earlier versions (per_sample-*), removed when the tables are written again
OLD_SAMPLE_GLOBS = ("per_sample-*.json", "token_losses-*.json")


def remove_tables(folder: Path) -> None:
    """Remove a collection's tables: a command that drops or redoes runs makes them describe runs
    no longer there (a batch stopped midway left the old tables, their run ids now other runs)."""
    for name in (STATS_CSV, SUMMARY_CSV):
        (folder / name).unlink(missing_ok=True)
    for pattern in OLD_SAMPLE_GLOBS:
        for old in folder.glob(pattern):
            old.unlink(missing_ok=True)


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def sample_record(run: Run, index: int, loss_over: str) -> dict[str, Any]:
    """Seed 003's result of one run: `avg_loss` (the mean of the counted tokens' losses, nats),
    `perplexity` (exp of it; both null when no token counts) and `token_losses` (per counted token
    its loss = −log p, decoded token, rank; and tokentui's position and id), then the item's own
    fields."""
    positions = loss_positions(run, loss_over)
    seq = run.sequence(0)
    logprob = run.column(0, "logprob")[positions.start : positions.stop].astype(np.float64)
    rank = run.column(0, "rank")[positions.start : positions.stop]
    losses = -logprob
    mean_loss = float(losses.mean()) if losses.size else math.nan
    root = run.branches[0]
    tokens = [
        {
            "loss": _num(float(loss)),
            "token": decode_bytes(run.tokens.bytes_of(int(seq[p]))),
            "rank": int(r),
            "position": p,
            "token_id": int(seq[p]),
        }
        for p, loss, r in zip(positions, losses, rank)
    ]
    return {
        "avg_loss": _num(mean_loss),
        "perplexity": _num(perplexity(mean_loss)) if losses.size else None,
        "token_losses": tokens,
        "index": index,
        "run_id": run.id,
        "prompt": run.meta.prompt,
        "response": decode_bytes(run.text(0, root.fork_position)),
        "status": "done",
        "n_tokens": len(positions),
    }


def placeholder_record(index: int, status: str, error: str | None) -> dict[str, Any]:
    """The result of an item without a run under this model: seed 003's fields with no token (its
    calculate_KL.py skips a pair with an empty side, so the next items stay paired), and why."""
    return {"avg_loss": None, "perplexity": None, "token_losses": [], "index": index, "status": status,
            "error": error, "n_tokens": 0}  # fmt: skip


def stats_rows(run: Run, index: int, model: str, loss_over: str) -> Iterator[dict[str, Any]]:
    """Seed 000's per-token rows of one run (the export's CSV rows of the root branch) at the
    counted positions, with `prompt_id` = the item's number, the model and the run id.
    `token_position` is seed 000's "position of the token in the generation": the counted token's
    place among the item's counted tokens, from 0, so that rows of prompts of different lengths
    line up (a seed user groups by it); the export's absolute position is `absolute_position`."""
    positions = loss_positions(run, loss_over)
    text = ""  # a long text is on the branch's first row only (a prompt row, not counted): moved to the first counted
    place = 0
    for row in branch_rows(run, 0):
        text = text or row["full_text"]
        if row["token_position"] + 1 not in positions:  # (token_position is the current token's: next = +1)
            continue
        yield {**row, "full_text": row["full_text"] or (text if place == 0 else ""), "prompt_id": index,
               "token_position": place, "model": model, "run_id": run.id,
               "absolute_position": row["token_position"]}  # fmt: skip
        place += 1


@dataclass
class ModelTotals:
    """What the summary row of one model is computed from."""

    items: int = 0
    entropy: list[np.ndarray] = field(default_factory=list)
    logprob: list[np.ndarray] = field(default_factory=list)

    def add(self, run: Run, loss_over: str) -> None:
        p = loss_positions(run, loss_over)
        self.items += 1
        self.entropy.append(run.column(0, "entropy")[p.start : p.stop].astype(np.float64))
        self.logprob.append(run.column(0, "logprob")[p.start : p.stop].astype(np.float64))

    def row(self, model: str) -> dict[str, Any]:
        """The summary: count, mean / median / sample std (n − 1, as seed 000's pandas `.std()` and
        as `stats`; empty below 2 tokens) / min / max of entropy,
        of p = exp(logprob) the same but min/max, mean log-prob, mean loss = −mean log-prob,
        perplexity = exp(mean loss). Empty cells when no token counts."""
        h = np.concatenate(self.entropy) if self.entropy else np.zeros(0)
        lp = np.concatenate(self.logprob) if self.logprob else np.zeros(0)
        p = np.exp(lp)
        out: dict[str, Any] = {"model": model, "items": self.items, "total_tokens": int(lp.size)}
        if not lp.size:
            return out
        mean_lp = float(lp.mean())
        if lp.size > 1:
            out.update(std_entropy=float(h.std(ddof=1)), std_probability=float(p.std(ddof=1)))
        out.update(
            mean_entropy=float(h.mean()),
            median_entropy=float(np.median(h)),
            min_entropy=float(h.min()),
            max_entropy=float(h.max()),
            mean_probability=float(p.mean()),
            median_probability=float(np.median(p)),
            mean_logprob=mean_lp,
            mean_loss=-mean_lp,
            perplexity=_num(perplexity(-mean_lp)),  # (past float's range: an empty cell, as `stats`)
        )
        return out


@dataclass
class Tables:
    """What `write_tables` wrote: the files, the summary rows, and the runs it could not read."""

    files: list[Path] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[tuple[CollectionItem, str]] = field(default_factory=list)


class _AtomicFiles:
    """Text files written under temporary names in one folder, renamed into place together at the
    end (all or none: an error or Ctrl-C leaves the previous tables as they were)."""

    def __init__(self, folder: Path, stack: ExitStack) -> None:
        self.folder, self.stack = folder, stack
        self.open: dict[Path, tuple[Path, IO[str]]] = {}
        stack.callback(self._discard)

    def new(self, name: str) -> IO[str]:
        fd, tmp = new_temporary(self.folder / name)  # (a new file's mode as the umask gives it)
        f = open(fd, "w", encoding="utf-8", newline="")
        self.open[self.folder / name] = (tmp, f)
        return f

    def commit(self) -> list[Path]:
        for _path, (_tmp, f) in self.open.items():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        for path, (tmp, _f) in self.open.items():
            os.replace(tmp, path)
        done = list(self.open)
        self.open.clear()
        return done

    def _discard(self) -> None:
        for tmp, f in self.open.values():
            f.close()
            tmp.unlink(missing_ok=True)


class _Results:
    """One model's `results` list as it is written: records arrive in item order (the manifest's),
    and every item of the collection this model has no record of gets its placeholder in its
    place, so that all models' lists line up item by item."""

    def __init__(self, f: IO[str], model: str, every_item: list[int], entries: dict[tuple[str, int], CollectionItem]):
        self.f, self.model, self.entries = f, model, entries
        self.todo = iter(every_item)
        self.first = True
        self.perplexities: list[float] = []

    def add(self, record: dict[str, Any]) -> None:
        for index in self.todo:
            if index == record["index"]:
                break
            self._write(self._missing(index))
        self._write(record)
        if record["avg_loss"] is not None:  # (an item with tokens whose perplexity is past float's range: ∞)
            self.perplexities.append(math.inf if record["perplexity"] is None else record["perplexity"])

    def close(self) -> None:
        for index in self.todo:
            self._write(self._missing(index))
        # seed 003's average_perplexity: the mean of the items' perplexities (not the pooled one)
        ppl = self.perplexities
        self.f.write(f'\n], "average_perplexity": {json_text(_num(float(np.mean(ppl))) if ppl else None)}}}\n')

    def _missing(self, index: int) -> dict[str, Any]:
        it = self.entries.get((self.model, index))
        if it is None:
            return placeholder_record(index, "not run", None)
        return placeholder_record(index, it.status, it.error)

    def _write(self, record: dict[str, Any]) -> None:
        self.f.write(("\n" if self.first else ",\n") + json_text(record))
        self.first = False


def write_tables(
    coll: Collection, loss_over: str = "response", raw: bool = False, held: Mapping[Path, Run] | None = None
) -> Tables:
    """Write seed 000's two CSV files and seed 003's per-sample JSON of every model into the
    collection folder, from its done runs (each loaded once). A run that no longer loads is left
    out and reported in `unreadable`. `raw`: CSV cells as they are (`csv_cell`). `held`: runs
    already in memory by their file (what a batch saved in this process): taken as they are,
    not read back (reading every run was ~2% of a batch of short prompts)."""
    out = Tables()
    coll.sort()  # (a hand-edited manifest may not be): each model's records must come in item order
    totals = {m: ModelTotals() for m in coll.models}
    with ExitStack() as stack:
        files = _AtomicFiles(coll.path, stack)
        stats = csv.DictWriter(files.new(STATS_CSV), fieldnames=STATS_COLUMNS, lineterminator="\n")
        stats.writeheader()
        samples: dict[str, _Results] = {}
        every_item = sorted({it.index for it in coll.items})
        entries = {(it.model, it.index): it for it in coll.items}
        for slot, model in enumerate(coll.models):
            f = files.new(token_losses_name(slot, model))
            head = {"format": "tokentui-token-losses/1", "model": model, "dataset": coll.settings.get("source"),
                    "loss_over": loss_over, "unit": "nats"}  # fmt: skip
            f.write(json_text(head)[:-1] + ', "results": [')
            samples[model] = _Results(f, model, every_item, entries)
        for item, path in coll.runs():
            try:
                run = held[path] if held is not None and path in held else load_item_run(path)
            except RunFileError as e:
                out.unreadable.append((item, str(e)))
                samples[item.model].add(placeholder_record(item.index, "unreadable", str(e)))
                continue
            for row in stats_rows(run, item.index, item.model, loss_over):
                stats.writerow({k: csv_cell(v, raw) for k, v in row.items()})
            samples[item.model].add(sample_record(run, item.index, loss_over))
            totals[item.model].add(run, loss_over)
        for results in samples.values():
            results.close()
        summary = csv.DictWriter(files.new(SUMMARY_CSV), fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
        summary.writeheader()
        for model in coll.models:
            row = totals[model].row(model)
            out.summary.append(row)
            summary.writerow({k: csv_cell(v, raw) for k, v in row.items()})
        out.files = files.commit()
    for pattern in OLD_SAMPLE_GLOBS:  # of models an earlier command named, or an earlier version's
        for old in coll.path.glob(pattern):
            if old not in out.files:
                old.unlink(missing_ok=True)
    return out
