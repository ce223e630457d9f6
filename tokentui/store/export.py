"""Exports of a run for analysis: CSV (seed 000's columns plus rank/logprob), JSONL (one token per
line with its top-k, like seed 002), JSON (the whole run with its tree), and seed 002's own files:
its tree viewer's JSON (`tree-json`) and its logprobs viewer's lines (`seed002-jsonl`), built from
the run's branches as a token tree (`core/tree.py`); and seed 004's attribution JSON (`seed004`)
of one of the run's attribution records (`core/attribution.py`). No torch needed.

`token_record` is the one per-token record of JSONL exports and of `generate --json` / `score
--json`, so a line printed live and the same line exported later from the saved run are equal.
`write_file` is the one way to write an export to a named file: the format follows the file's
extension, an existing file is kept unless overwriting was asked for, and the write is atomic.

Exports are read with `cat` and opened in spreadsheets, and token text is untrusted:
- every JSON writer goes through `json_text`: strict JSON (non-finite numbers are written as
  null, never NaN/Infinity) with every control, format or line/paragraph-separator character
  (Unicode Cc, Cf, Zl, Zp: ESC, DEL, C1 such as U+009B, bidi overrides such as U+202E) written as
  a \\uXXXX escape, so the file holds no byte that can drive a terminal;
- CSV cells go through `csv_cell`: control characters become the same visible escapes as on
  screen (ESC → ␛), and a text cell that starts with = + - @ (or tab/CR) gets a leading ' so a
  spreadsheet does not run it as a formula; plain numbers such as -0.5 are left alone. `raw=True`
  (`export --raw-csv`) writes the text as it is.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from tokentui.core import comparison, tree
from tokentui.core.attribution import Attribution, normalized
from tokentui.core.display import decode_bytes, decode_open, sanitize
from tokentui.core.files import probe_folder, write_atomically
from tokentui.core.measures import LAYER_MEASURES, derive, has_measure
from tokentui.core.params import RunError
from tokentui.core.run import Branch, Run
from tokentui.core.steer_compare import is_text_comparison
from tokentui.core.step import Step

CSV_COLUMNS = [
    "prompt_id",
    "branch_id",
    "full_text",
    "token_position",
    "current_token",
    "next_token",
    "next_token_id",
    "next_token_kind",
    "entropy",
    "probability_of_next_token",
    "logprob_of_next_token",
    "rank_of_next_token",
]
# a comparison run's CSV adds model B's columns and the divergences (nats)
COMPARISON_CSV_COLUMNS = [
    "logprob_of_next_token_b",
    "rank_of_next_token_b",
    "entropy_b",
    "delta_logprob",
    "kl_ab",
    "kl_ba",
    "js",
]
FORMATS = ("csv", "jsonl", "json", "tree-json", "seed002-jsonl", "seed004")  # written to one stream
EXTENSION = {
    "csv": "csv",
    "jsonl": "jsonl",
    "json": "json",
    "tree-json": "json",
    "seed002-jsonl": "jsonl",
    "seed004": "json",
}
# names that pick a seed's format by themselves (the explorer's export prompt has no --format)
NAMED_SUFFIXES = {".tree.json": "tree-json", ".seed002.jsonl": "seed002-jsonl", ".seed004.json": "seed004"}
SEED001_COMPARATIVE = "seed001-comparative"
# written as a folder of files (`write_seed001`, `write_seed001_comparative`), never to one stream
FOLDER_FORMATS = ("seed001", SEED001_COMPARATIVE)
ALL_FORMATS = FORMATS + FOLDER_FORMATS


class TextSink(Protocol):
    """Where an export is written: an open text file, standard output, or the CLI's pipe-safe output."""

    def write(self, text: str, /) -> object: ...


class ExportError(ValueError):
    """An export cannot be written as asked; the message is one line for the user."""


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


_NON_ASCII = re.compile(r"[^\x00-\x7e]")
_ESCAPED_CATEGORIES = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"))


def _escape_char(m: re.Match[str]) -> str:
    """A character json.dumps left raw, as a \\uXXXX escape (a surrogate pair above U+FFFF) when
    it could act on a terminal or hide text; any other character as it is."""
    ch = m.group()
    code = ord(ch)
    if code != 0x7F and unicodedata.category(ch) not in _ESCAPED_CATEGORIES:
        return ch
    if code > 0xFFFF:
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def _finite(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def json_text(obj: Any, indent: int | None = None) -> str:
    """`obj` as strict JSON that is safe to `cat`: the one serialiser of every JSON output (JSON
    and JSONL exports, `generate --json`, `score --json`). json.dumps escapes only characters
    below U+0020; DEL, C1 controls, bidi overrides and other format characters would reach a
    terminal raw, so they are escaped here too (outside strings JSON is ASCII, so the escapes can
    only land inside strings). Non-finite numbers become null."""
    text = json.dumps(_finite(obj), ensure_ascii=False, allow_nan=False, indent=indent)
    return _NON_ASCII.sub(_escape_char, text)  # (DEL is ASCII: no isascii() shortcut)


_KEPT_IN_CSV = re.compile(r"[^\n\t]+")  # line breaks and tabs stay (quoted cells hold them); the rest is escaped
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: Any, raw: bool = False) -> Any:
    """One CSV cell, safe to open in a spreadsheet and to `cat`: control characters shown as
    visible escapes (core.display.sanitize: ESC → ␛, NUL → ␀, U+202E → <U+202E>; line breaks
    and tabs kept), and text that a
    spreadsheet would run as a formula (starting with = + - @, tab or CR) prefixed with ' — the
    OWASP rule for CSV injection. Plain numbers (-0.5, +3) are kept as numbers. `raw`: as it is."""
    if value is None:
        return ""
    if raw or not isinstance(value, str):
        return value
    text = value if value.isprintable() else _KEPT_IN_CSV.sub(lambda m: sanitize(m.group()), value)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        text = "'" + text
    return text


def _text(run: Run, token_id: int) -> str:
    return decode_bytes(run.tokens.bytes_of(token_id))


def _top_k(run: Run, ids: Any, logprobs: Any) -> list[list[Any]]:
    """[[id, token, log-prob rounded to 5 digits], …] of a step's alternatives (ids < 0: none)."""
    return [[int(i), _text(run, int(i)), round(float(lp), 5)] for i, lp in zip(ids, logprobs) if i >= 0]


def step_record(run: Run, branch_id: int, step: Step) -> dict[str, Any]:
    """One token as a JSON-ready dict (the steps of JSON exports; `token_record` adds the run id).
    A comparison run's steps also carry model B's values (`comparison_fields`)."""
    top = _top_k(run, step.topk_ids, step.topk_logprobs)
    record = {
        "branch": branch_id,
        "position": step.position,
        "kind": step.kind,
        "token_id": step.token_id,
        "token": _text(run, step.token_id),
        "logprob": _num(step.logprob),
        "prob": _num(step.prob),
        "rank": step.rank or None,
        "entropy": _num(step.entropy),
        "sampler_prob": _num(step.sampler_prob),
        "top_k": top,
        "layer_entropy": [_num(float(x)) for x in step.layer_entropy],
        **layer_record(run, step),
    }
    if comparison.is_comparison(run):
        record.update(comparison_fields(run, step))
    return record


def layer_record(run: Run, step: Step) -> dict[str, Any]:
    """The per-layer measures the run records (stored or derived from a stored one), each a list
    over layers 1…L (layer L: the model's own distribution), null where a layer has no value (the
    lens was off): the `layer_*` fields of JSON, JSONL, `generate --json` and `score --json`
    (`layer_entropy` is written by `step_record` for every run). `layer_topk`: per layer a list of
    [id, token, logprob] (nats), most likely first."""
    names = run.layout.names
    out: dict[str, Any] = {}
    for name in LAYER_MEASURES:
        if name == "layer_entropy" or not has_measure(names, name):
            continue
        values = np.asarray(derive(name, lambda n: np.asarray(step.get(n)), run.meta.vocab_size))
        if name == "layer_rank":
            out[name] = [int(r) or None for r in values.tolist()]
        else:
            out[name] = [_num(float(x)) for x in values.tolist()]
    if "layer_topk_ids" in names and "layer_topk_logprobs" in names:
        ids = np.asarray(step.get("layer_topk_ids")).tolist()
        lps = np.asarray(step.get("layer_topk_logprobs"), dtype=np.float32).tolist()
        out["layer_topk"] = [
            [[int(i), _text(run, int(i)), round(float(lp), 5)] for i, lp in zip(li, ll) if i >= 0] or None
            for li, ll in zip(ids, lps)
        ]
    return out


def token_record(run: Run, branch_id: int, step: Step) -> dict[str, Any]:
    """One token of a run as one JSONL line's object: the run id, then `step_record`. The schema of
    JSONL exports, `generate --json` and `score --json` alike."""
    return {"run_id": run.id, **step_record(run, branch_id, step)}


def token_line(run: Run, branch_id: int, step: Step) -> str:
    """`token_record` as one line of JSON (no newline)."""
    return json_text(token_record(run, branch_id, step))


def iter_steps(run: Run, branch_id: int, start: int = 0) -> Iterator[Step]:
    for pos in range(start, run.length(branch_id)):
        yield run.step(branch_id, pos)


# seed 000 repeats the whole text on every row: a file growing with the square of the length (a
# 30,000-token run's CSV was 4.3 GB). A longer text than this goes on its branch's first row only.
FULL_TEXT_EVERY_ROW = 2000


def branch_rows(run: Run, branch_id: int) -> Iterator[dict[str, Any]]:
    """Rows of a branch's own positions (the root also covers the prompt). `full_text` is on
    every row, as seed 000 writes it, while it is at most FULL_TEXT_EVERY_ROW characters long;
    else on the branch's first row only (the other rows: empty)."""
    b = run.branch(branch_id)
    seq = run.sequence(branch_id)
    full_text = decode_bytes(run.tokens.text(seq.tolist()))
    repeat = len(full_text) <= FULL_TEXT_EVERY_ROW
    first = 0 if b.parent is None else b.fork_position
    compared = comparison.is_comparison(run)
    for pos in range(max(first, 1), run.length(branch_id)):
        step = run.step(branch_id, pos)
        row = {
            "prompt_id": run.id,
            "branch_id": branch_id,
            "full_text": full_text if repeat or pos == max(first, 1) else "",
            "token_position": pos - 1,
            "current_token": _text(run, int(seq[pos - 1])),
            "next_token": _text(run, step.token_id),
            "next_token_id": step.token_id,
            "next_token_kind": step.kind,
            "entropy": _num(step.entropy),
            "probability_of_next_token": _num(step.prob),
            "logprob_of_next_token": _num(step.logprob),
            "rank_of_next_token": step.rank,
        }
        if compared:
            f = comparison_fields(run, step)
            row.update(
                dict(zip(COMPARISON_CSV_COLUMNS, [f[n] for n in ("logprob_b", "rank_b", "entropy_b", "delta_logprob")]))
            )
            row.update({n: f[n] for n in ("kl_ab", "kl_ba", "js")})
        yield row


def write_csv(run: Run, out: TextSink, raw: bool = False) -> None:
    """One row per token (see `csv_cell` for what happens to the text, and `raw`)."""
    columns = CSV_COLUMNS + (COMPARISON_CSV_COLUMNS if comparison.is_comparison(run) else [])
    w = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for b in run.branches:
        for row in branch_rows(run, b.id):
            w.writerow({k: csv_cell(v, raw) for k, v in row.items()})


def write_jsonl(run: Run, out: TextSink, raw: bool = False) -> None:
    for b in run.branches:
        start = 0 if b.parent is None else b.fork_position
        for step in iter_steps(run, b.id, start):
            out.write(token_line(run, b.id, step))
            out.write("\n")


# --- comparisons of two models (`tokentui compare`): model B's columns and the divergences -----


def comparison_fields(run: Run, step: Step) -> dict[str, Any]:
    """Model B's values at a step of a comparison run (model A's are the record's usual fields):
    logprob_b, prob_b, rank_b, entropy_b, delta_logprob (logprob_b − logprob), kl_ab, kl_ba, js
    (nats) and top_k_b. Unknown values (position 0, a branch grown later) are null."""
    lp_b = float(step.get("logprob_b"))
    return {
        "logprob_b": _num(lp_b),
        "prob_b": _num(math.exp(lp_b)) if math.isfinite(lp_b) else None,
        "rank_b": int(step.get("rank_b", 0)) or None,
        "entropy_b": _num(float(step.get("entropy_b"))),
        "delta_logprob": _num(lp_b - step.logprob),
        "kl_ab": _num(float(step.get("kl_ab"))),
        "kl_ba": _num(float(step.get("kl_ba"))),
        "js": _num(float(step.get("js"))),
        "top_k_b": _top_k(run, step.get("topk_ids_b", ()), step.get("topk_logprobs_b", ())),
    }


def comparison_record(run: Run, step: Step) -> dict[str, Any]:
    """One position of a comparison as `compare --json` prints it: the token, then each model's
    log-prob, probability, rank, entropy and top-k side by side (`_a`, `_b`), delta_logprob =
    logprob_b − logprob_a, and the exact divergences kl_ab, kl_ba, js (nats)."""
    b = comparison_fields(run, step)
    return {
        "run_id": run.id,
        "position": step.position,
        "token_id": step.token_id,
        "token": _text(run, step.token_id),
        "logprob_a": _num(step.logprob),
        "logprob_b": b["logprob_b"],
        "delta_logprob": b["delta_logprob"],
        "prob_a": _num(step.prob),
        "prob_b": b["prob_b"],
        "rank_a": step.rank or None,
        "rank_b": b["rank_b"],
        "entropy_a": _num(step.entropy),
        "entropy_b": b["entropy_b"],
        "kl_ab": b["kl_ab"],
        "kl_ba": b["kl_ba"],
        "js": b["js"],
        "top_k_a": _top_k(run, step.topk_ids, step.topk_logprobs),
        "top_k_b": b["top_k_b"],
    }


def comparison_summary(run: Run) -> dict[str, Any]:
    """A comparison run's per-text numbers (`core/comparison.summarize`) with both models' names,
    as the object `compare --json` prints after the positions (`"summary": true`)."""
    b = run.meta.model_b or {}
    return {
        "run_id": run.id,
        "summary": True,
        "model_a": run.meta.model,
        "model_b": b.get("model"),
        **comparison.run_summary(run),
    }


def comparison_lines(run: Run) -> Iterator[str]:
    """`compare --json`'s lines for a comparison run: every scored position of its root branch
    (1…), then the summary."""
    if not comparison.is_comparison(run):
        raise ExportError(f"run {run.id} is not a comparison of two models (make one with `tokentui compare`)")
    for step in iter_steps(run, 0, 1):
        yield json_text(comparison_record(run, step))
    yield json_text(comparison_summary(run))


JSON_SCHEMA = "tokentui-run-json/1"


def _branch_head(run: Run, b: Branch) -> dict[str, Any]:
    return {**b.to_dict(), "text": decode_bytes(run.text(b.id, b.fork_position))}


def write_json(run: Run, out: TextSink, raw: bool = False) -> None:
    """The whole run as one JSON document — {schema, meta, prompt_steps, branches: [{…, text,
    steps}], comparison} — written a step at a time (one line each): built whole, a
    30,000-token run's document took 2.7 GB of memory."""

    def steps(records: Iterator[dict[str, Any]]) -> None:
        first = True
        for rec in records:
            out.write(("\n  " if first else ",\n  ") + json_text(rec))
            first = False
        out.write("\n ]" if not first else "]")

    out.write('{\n "schema": ' + json_text(JSON_SCHEMA) + ',\n "meta": ' + json_text(run.meta.to_dict()))
    out.write(',\n "prompt_steps": [')
    steps(step_record(run, 0, run.prompt.get(i, i, "prompt")) for i in range(len(run.prompt)))
    out.write(',\n "branches": [')
    for n, b in enumerate(run.branches):
        head = json_text(_branch_head(run, b))
        out.write(("\n " if n == 0 else ",\n ") + head[:-1] + ', "steps": [')
        steps(step_record(run, b.id, b.step(i)) for i in range(len(b.steps)))
        out.write("}")
    out.write("\n ]")
    if comparison.is_comparison(run):
        out.write(',\n "comparison": ' + json_text(comparison_summary(run)))
    out.write("\n}\n")


# --- seed 002's files: the tree JSON of its D3 tree viewer, the lines of its logprobs viewer ----


def root_text(run: Run, trie: tree.Trie) -> str:
    """The text of a tree's root, seed 002's `prompt`: the prompt as the user wrote it when the
    tree hangs from the prompt's end and the model saw just that, else the decoded prefix — with
    a chat template the template's text, the text the model continued (as seed 002's root is the
    string it tokenized), as after a forced prefix."""
    text, rest = _root_open(run, trie)
    return text + decode_bytes(rest)


def seed_cumulative(p: float) -> float:
    """A path's cumulative p as seed 002 writes it, rounded to 8 decimal places, except where that
    gives 0.0 for a path that has a probability (below 5e-9: deep paths): 8 significant digits."""
    rounded = round(p, 8)
    return rounded if rounded or not p else float(f"{p:.8g}")


def _root_open(run: Run, trie: tree.Trie) -> tuple[str, bytes]:
    """`root_text` as `decode_open` gives it: the text, and an incomplete character's bytes at its end."""
    at_prompt_end = trie.root.position == len(run.prompt)
    # (the prompt's own text, where the run's prompt is what encoding it made: not a steering
    # comparison of a text, whose prompt is the text's first token and whose text is the "prompt")
    whole = not is_text_comparison(run)
    if at_prompt_end and whole and not run.meta.chat and np.array_equal(trie.prefix, run.prompt.col("token_id")):
        return run.meta.prompt, b""
    return decode_open(run.tokens.text(trie.prefix.tolist()))


def export_trie(run: Run) -> tree.Trie:
    """The tree seed 002's files show: the whole run's (from `tree.default_root`) when it has no
    search or a search grew from that root, else the tree below its latest search's root (a
    search grown from a position of an existing branch, `tree --run RUN --position P`), made of
    the branches that search made (the branch it grew from goes on below its root with its old
    tokens: not the search's)."""
    trie = tree.build_trie(run)
    found = tree.searches(run)
    if not found or tree.search_for_root(run, trie) is not None:
        return trie
    latest = found[-1]
    try:
        return tree.build_trie(run, latest["root_branch"], latest["root_position"], tree.own_branches(latest))
    except RunError:  # a record naming a root the run does not hold (a file from elsewhere): the whole tree
        return trie


def _candidates(run: Run, cands: tree.Candidates) -> list[dict[str, Any]]:
    return [{"text": _text(run, t), "prob": round(p, 4), "token_id": t} for t, p in cands]


def tree_json_lines(run: Run, trie: tree.Trie) -> Iterator[str]:
    """Seed 002's tree JSON (`{"metadata": {"prompt", "parameters"}, "tree": {...}}`) as pieces of
    text, written without recursion (seed trees are chains 1000 deep, deeper than Python's and
    json's recursion limits). Each node: text (its token), full_text (the root's text and the path's
    tokens decoded as one — the parent's plus the token, a character split between tokens whole
    once its last byte arrives; the root's is the prompt), prob (rounded to 6 digits, like the
    seed), cumulative_prob (8 digits, see seed_cumulative; the product of the probs from the root, computed from the
    steps), token_id, depth, is_finished, candidates (p rounded to 4 digits) and children, in the
    seed's key order;
    `metadata` adds a `tokentui` object (run id, model, root). As in the seed, a finished node has
    neither candidates nor children: what other branches hold below it (a generation the search
    grew from) is left out, and `left_out_below_finished` counts those nodes."""
    search = tree.search_for_root(run, trie)
    finished = {id(n) for n in trie.walk() if tree.is_finished(run, n)}
    shown, below = 0, list(trie.root.children)
    while below:
        n = below.pop()
        shown += 1
        if id(n) not in finished:
            below.extend(n.children)
    left_out = trie.size - shown
    threshold = tree.candidate_threshold(run, trie)
    params: dict[str, Any] = dict(search["parameters"]) if search else {"candidate_threshold": threshold}
    open0, rest0 = _root_open(run, trie)
    text0 = open0 + decode_bytes(rest0)
    meta = {
        "prompt": text0,
        "parameters": params,
        "tokentui": {
            "run_id": run.id,
            "model": run.meta.model,
            "root_branch": trie.root_branch,
            "root_position": trie.root.position,
            "left_out_below_finished": left_out,
        },
    }
    yield '{"metadata": ' + json_text(meta) + ', "tree": '
    cumulative = trie.cumulative()
    # Depth first without recursion: a stack of nodes to open (with their parent's full_text as a
    # JSON string literal) and of closing brackets. full_text is the seed's: the text the model
    # continued, the parent's plus the node's token. Its literal grows by concatenation (escaping
    # is per character), so a deep chain is not escaped again and again; what grows is the text
    # up to a character split between tokens, whose bytes wait for the next token.
    root_lit = json_text(text0)
    stack: list[tuple[tree.TrieNode, tuple[str, bytes], bool] | str] = [(trie.root, (json_text(open0), rest0), True)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
            continue
        node, (parent_lit, parent_rest), first = item
        if not first:
            yield ", "
        if node.parent is None:
            text_lit = full_lit = root_lit
            open_lit, tail = parent_lit, parent_rest
            prob, token_id = 1.0, None
        else:
            assert node.token_id is not None
            token = run.tokens.bytes_of(node.token_id)
            text_lit = json_text(decode_bytes(token))
            grown, tail = decode_open(parent_rest + token)
            open_lit = parent_lit[:-1] + json_text(grown)[1:]
            full_lit = open_lit[:-1] + json_text(decode_bytes(tail))[1:] if tail else open_lit
            prob, token_id = round(node.prob, 6), node.token_id
        is_finished = id(node) in finished
        rest = {
            "prob": prob,
            "cumulative_prob": seed_cumulative(cumulative[node]),
            "token_id": token_id,
            "depth": node.depth,
            "is_finished": is_finished,
            "candidates": [] if is_finished else _candidates(run, tree.candidates(run, trie, node, threshold)),
        }
        yield '{"text": ' + text_lit + ', "full_text": ' + full_lit + ", " + json_text(rest)[1:-1] + ', "children": ['
        stack.append("]}")
        for i in () if is_finished else range(len(node.children) - 1, -1, -1):
            stack.append((node.children[i], (open_lit, tail), i == 0))
    yield "}\n"


def write_tree_json(run: Run, out: TextSink, raw: bool = False) -> None:
    """The whole run as seed 002's tree JSON, from where its branches first can differ (see
    `tree_json_lines`); any run with generated tokens, hand-grown ones too. A run without any (a
    scored text) is refused as `write_seed002_jsonl` refuses it, not written as a bare root."""
    trie = _grown_trie(run)
    for piece in tree_json_lines(run, trie):
        out.write(piece)


def _grown_trie(run: Run) -> tree.Trie:
    """`export_trie(run)`; ExportError when nothing was generated there (seed 002's files hold
    the paths a generation or a tree search grew)."""
    trie = export_trie(run)
    # (a steering comparison of a text holds the text as two scored branches: a trial's tree of
    # them had the whole text as its root, then again in every node's full_text)
    scored = is_text_comparison(run) and all(b.status == "scored" for b in run.branches)
    if not trie.root.children or scored:
        raise ExportError(
            f"run {run.id} has no generated tokens: seed 002's files hold the paths a generation or a tree search "
            "grew (give --format jsonl for a scored text)"
        )
    return trie


def seed002_records(run: Run, trie: tree.Trie) -> Iterator[dict[str, Any]]:
    """One record per path of the tree (root to leaf, depth first) in the shape of seed 002's
    logprobs viewer: prompt, response (the path's text without end-of-sequence tokens; a character
    whose bytes the root splits from the path's first token is the response's, whole), and per
    token: token, logprob, prob (in percent) and other_tokens (the distribution's top 5, which
    include the token itself, with its own float32 log-prob, when it was among them)."""
    prompt, rest = _root_open(run, trie)  # (a character split at the root goes whole into the responses)
    eos = set(run.meta.eos_ids)
    for leaf in trie.leaves():
        path = trie.path(leaf)
        data = []
        for node in path:
            assert node.cols is not None and node.token_id is not None
            lp = node.logprob
            ids = node.cols.col("topk_ids")[node.index]
            lps = node.cols.col("topk_logprobs")[node.index]
            # the chosen token among the alternatives: its own float32 log-prob, not the float16 top-k copy
            # (as the explorer's alternatives pane shows it), so a line never gives one token two values
            others = [
                {"token": _text(run, int(t)), "logprob": v, "prob": math.exp(v) * 100}
                for t, v in ((int(t), lp if t == node.token_id else float(v)) for t, v in list(zip(ids, lps))[:5])
                if t >= 0
            ]
            data.append(
                {"token": _text(run, node.token_id), "logprob": lp, "prob": math.exp(lp) * 100, "other_tokens": others}
            )
        response = decode_bytes(
            rest + run.tokens.text(n.token_id for n in path if n.token_id is not None and n.token_id not in eos)
        )
        yield {"prompt": prompt, "response": response, "data": data}


def write_seed002_jsonl(run: Run, out: TextSink, raw: bool = False) -> None:
    """Seed 002's lines, one per path; a run without any (a scored text: nothing was generated)
    is refused, not written as an empty file."""
    for record in seed002_records(run, _grown_trie(run)):
        out.write(json_text(record))
        out.write("\n")


# --- seed 004's attribution JSON, and one attributed position as a JSON object ----------------


def attribution_at(run: Run, index: int | None = None) -> tuple[int, Attribution]:
    """(index ≥ 0, record) of the run's attribution record `index` (Python indexing: -1 is the
    newest; None: the newest). A run without records, or an index outside them, is an
    ExportError of one line."""
    n = len(run.attributions)
    if n == 0:
        raise ExportError(
            f"run {run.id} holds no attributions (make one with tokentui attribute --run {run.id}, or a in the explorer)"
        )
    i = n - 1 if index is None else index
    if not -n <= i < n:
        raise ExportError(
            f"run {run.id} holds {n} attribution{'s' if n > 1 else ''}: --attribution must be 0…{n - 1} "
            f"(or −1…−{n} from the newest)"
        )
    i %= n
    return i, run.attributions[i]


def attribution_target(rec: Attribution) -> str | None:
    """What the scores explain: "logprob" (log p of the token) or "logprob_contrast" (log p of
    the token − log p of the alternative); None for the attention methods, whose scores are
    attention weights and explain no target."""
    from tokentui.core.attribution import METHODS

    m = METHODS.get(rec.method)
    if m is not None and m.needs == "attention":
        return None
    return "logprob" if rec.alternative is None else "logprob_contrast"


def _floats(a: np.ndarray | None) -> list[Any] | None:
    return None if a is None else [float(x) for x in np.asarray(a, dtype=np.float64).ravel()]


def attribution_rows(run: Run, rec: Attribution) -> Iterator[dict[str, Any]]:
    """One JSON-ready object per attributed position of `rec` (`attribute --json`'s lines):
    position, token_id, token, method, scores (positions 0…position−1), the target and its value,
    the alternative, and for integrated gradients the steps and the completeness error."""
    ig = rec.completeness is not None
    target = attribution_target(rec)
    for r, t in enumerate(rec.positions):
        row: dict[str, Any] = {
            "run_id": run.id,
            "branch": rec.branch,
            "position": t,
            "token_id": rec.token_ids[r],
            "token": _text(run, rec.token_ids[r]),
            "method": rec.method,
            "scores": _floats(rec.scores[r, :t]),
            "alternative": rec.alternative,
            "alternative_token": None if rec.alternative is None else _text(run, rec.alternative),
            "target": target,
            "target_value": None if rec.target_values is None or target is None else float(rec.target_values[r]),
        }
        if ig:
            assert rec.completeness is not None
            row["steps"] = rec.steps
            row["completeness_error"] = float(rec.completeness[r])
        yield row


SEED004_VERSION = "1.0.0"  # seed 004's DataVersion of this shape


def _seed004_token(run: Run, token_id: int) -> dict[str, Any]:
    """Seed 004's TokenData: the token's text, id, and its text stripped (the seed's clean_token
    strips the byte-level BPE space marker and surrounding white space)."""
    text = _text(run, token_id)
    return {"token": text, "token_id": int(token_id), "clean_token": text.strip()}


def seed004_document(run: Run, index: int | None = None) -> dict[str, Any]:
    """Seed 004's JSON of attribution record `index` (default: the newest), valid against the
    seed's own schema (its persistence/schema.py AnalysisResult): `metadata` (timestamp: the
    record's, llm_id, llm_version: the model's revision or "", prompt: the run's prompt as
    written, generation_params: the run's sampler and k — the seed's values are strings and
    numbers only, so an unset seed and the stop list are left out; of a text scored teacher-forced,
    which generated nothing, k alone — version; and
    attribution_method) and `data` (input_tokens: positions 0…width−1 of the branch, output_tokens:
    the attributed tokens, each {token, token_id, clean_token}; association_matrix: the scores
    [rows, width]; normalized_association: |scores| / Σ|scores| per row), plus a `tokentui`
    object with what the seed's shape has no place for (the whole sampler among it)."""
    i, rec = attribution_at(run, index)
    seq = run.sequence(rec.branch)
    # a text scored teacher-forced (a dataset item, `score`) generated nothing: no sampler to claim
    generated = "generated" in run.kinds(rec.branch)
    params = {**(run.meta.sampling if generated else {}), "k": run.meta.k}
    return {
        "metadata": {
            "timestamp": rec.created,
            "llm_id": run.meta.model,
            "llm_version": run.meta.revision or "",
            "prompt": run.meta.prompt,
            "generation_params": {
                k: v for k, v in params.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)
            },
            "version": SEED004_VERSION,
            "attribution_method": rec.method,
        },
        "data": {
            "input_tokens": [_seed004_token(run, int(t)) for t in seq[: rec.width]],
            "output_tokens": [_seed004_token(run, t) for t in rec.token_ids],
            "association_matrix": [_floats(row) for row in rec.scores],
            "normalized_association": normalized(rec.scores).tolist(),
        },
        "tokentui": {
            "run_id": run.id,
            "attribution": i,
            "branch": rec.branch,
            "positions": list(rec.positions),
            "token_ids": list(rec.token_ids),
            "target": attribution_target(rec),
            "alternative": rec.alternative,
            "alternative_token": None if rec.alternative is None else _text(run, rec.alternative),
            "steps": rec.steps,
            "completeness": _floats(rec.completeness),
            "target_values": None if attribution_target(rec) is None else _floats(rec.target_values),
            "sampling": run.meta.sampling if generated else None,
        },
    }


def write_seed004(run: Run, out: TextSink, raw: bool = False, attribution: int | None = None) -> None:
    out.write(json_text(seed004_document(run, attribution)))  # one line: matrices are long
    out.write("\n")


def export(run: Run, fmt: str, out: TextSink, raw_csv: bool = False, attribution: int | None = None) -> None:
    """Write `run` in `fmt` to `out`; `raw_csv`: CSV cells as they are (see `csv_cell`). JSON is
    always escaped (the escapes are lossless). `attribution`: which record `seed004` writes
    (default: the newest)."""
    if fmt == "seed004":
        write_seed004(run, out, raw_csv, attribution)
        return
    if fmt in FOLDER_FORMATS:
        raise ExportError(f"--format {fmt} writes several files: give a folder with --out")
    writers = {
        "csv": write_csv,
        "jsonl": write_jsonl,
        "json": write_json,
        "tree-json": write_tree_json,
        "seed002-jsonl": write_seed002_jsonl,
    }
    writers[fmt](run, out, raw_csv)


def check_format(fmt: str) -> None:
    """Refuse (ExportError, the name shown safely) a format that writes to one stream but is none of FORMATS."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format '{sanitize(fmt)}' (choose from {', '.join(ALL_FORMATS)})")


def format_for(path: Path, fmt: str | None = None) -> str:
    """The export format for writing to `path`: `fmt` when given, else the name's ending (one of
    NAMED_SUFFIXES: `t.tree.json` is tree-json) or its extension. A known extension or ending that
    disagrees with `fmt` is refused (a .json file holding CSV helps nobody); an unknown extension
    needs `fmt`."""
    ext = path.suffix.lower().removeprefix(".")
    named = next((f for suffix, f in NAMED_SUFFIXES.items() if path.name.lower().endswith(suffix)), None)
    if fmt is None and named is not None:
        return named
    if fmt is not None:
        check_format(fmt)
        # (a known extension: a format's name is not one — `x.tree-json` was refused for not ending in .json)
        if ext in EXTENSION.values() and EXTENSION[fmt] != ext:
            raise ExportError(
                f"--format {fmt} does not match the extension of {path.name} (.{ext}); change one of them"
            )
        # (a name that picks a format by itself, another's: `x.tree.json` held the run's JSON,
        # which the explorer's `x` would have written as a tree)
        if named is not None and named != fmt:
            ending = next(suffix for suffix, f in NAMED_SUFFIXES.items() if f == named)
            raise ExportError(
                f"--format {fmt} does not match {sanitize(path.name)}, whose ending ({ending}) is {named}'s; "
                "change one of them"
            )
        return fmt
    if ext not in EXTENSION.values():
        raise ExportError(
            f"cannot tell the format from the name {sanitize(path.name)}: end it in .csv, .jsonl, .json, "
            f"{', '.join(NAMED_SUFFIXES)}, or give --format ({', '.join(FORMATS)}; {' and '.join(FOLDER_FORMATS)} "
            "write a folder)"
        )
    return ext


def _not_a_folder(folder: Path) -> str:
    """Why `folder` (not a folder) takes no file: a file where a folder is named along its path
    ("no such folder" there sent a user looking for a folder that was a file), or none."""
    for above in (folder, *folder.parents):
        if above.exists() or above.is_symlink():
            if not above.is_dir():
                return f"{above} is a file, not a folder"
            break
    return f"no such folder {folder}"


def check_target(path: Path, overwrite: bool = False, probe: bool = True) -> None:
    """Refuse a name that cannot take a regular file: a folder, a symlink, a FIFO, a device or a
    socket there is never replaced (a rename over it would turn it into a file, or follow the
    link), and an existing file only with `overwrite`. A folder that takes no new file is refused
    too (`probe_folder`; `probe=False` once the file is written there), so that a command refuses
    it before its work, not after."""
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {path}: {_not_a_folder(path.parent)}")
    try:
        if probe:
            probe_folder(path.parent)
    except OSError as e:
        raise ExportError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise ExportError(f"cannot write {path}: {e.strerror or e}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise ExportError(f"{path} is a folder; give a file name")
        if stat.S_ISLNK(st.st_mode):
            raise ExportError(f"{path} is a symbolic link; give the name of a regular file")
        if not stat.S_ISREG(st.st_mode):
            raise ExportError(f"{path} is not a regular file (a FIFO, device or socket); give another name")
        if not overwrite:
            raise ExportError(f"{path} already exists; add --force to overwrite it")


def write_file(
    run: Run, fmt: str, path: Path, overwrite: bool = False, raw_csv: bool = False, attribution: int | None = None
) -> Path:
    """Export `run` into the file `path` atomically (`write_atomic`)."""
    check_target(path, overwrite)
    if fmt == "seed004":
        attribution_at(run, attribution)  # a run without that record: refused before any file is made
    return write_atomic(path, lambda f: export(run, fmt, f, raw_csv, attribution), overwrite)


def write_text(path: Path, text: str, overwrite: bool = False) -> Path:
    """`text` into the file `path`, atomically (`write_atomic`)."""
    return write_atomic(path, lambda f: f.write(text), overwrite)


def write_atomic(path: Path, fill: Callable[[TextSink], object], overwrite: bool = False) -> Path:
    """Write a text file at `path` atomically: `fill` writes into a uniquely named temporary file
    beside it, then fsync and a rename. The temporary file is removed whatever goes wrong, also
    an exception that is not an OSError or a Ctrl-C mid-write. Only a regular file (or a new name)
    is ever replaced (`check_target`, before and after writing); errors name `path`, never the
    temporary file. A temporary file an earlier write to `path` left when killed is removed."""
    from tokentui.store.cache import clean_stale_temporaries

    check_target(path, overwrite)
    clean_stale_temporaries(Path(path).parent, Path(path).name)

    def text(f: IO[bytes]) -> None:
        sink = io.TextIOWrapper(f, encoding="utf-8", newline="")
        fill(sink)
        sink.flush()
        sink.detach()  # (the binary file is closed by write_atomically)

    try:  # (check_target again: nothing non-regular appeared there while writing)
        write_atomically(path, text, check=lambda: check_target(path, overwrite, probe=False))  # (written there)
    except OSError as e:
        raise ExportError(f"cannot write {path}: {e.strerror or e}") from None
    return path


# --- seed 001's data files: one CSV per per-layer measure, `sentence,values` ----------------------

# seed 001's metric key (its file name: {model}_{metric}.csv) → tokentui's measure. The first six are
# the seed's own; the last two are tokentui's additions in the same layout.
SEED001_METRICS = {
    "layer_entropies": "layer_entropy",
    "layer_perplexities": "layer_perplexity",
    "layer_margins": "layer_margin",
    "layer_kl_divs": "layer_kl_uniform",
    "layer_attn_entropies": "attention_entropy",
    "layer_surprisals": "layer_surprisal",
    "layer_kl_finals": "layer_kl_final",
    "layer_ranks": "layer_rank",
}
SEED001_KEYS = {name: key for key, name in SEED001_METRICS.items()}  # tokentui's measure → seed 001's key
SEED001_PREDICTIONS = 5  # the seed's top_k_predictions(k=5)
SENTENCE_CHARS = 1_000  # a longer context is cut to its last characters, after a leading "…"
_FILE_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def seed001_model_name(run: Run) -> str:
    """The `{model}` part of seed 001's file names: the run's model name with every character
    outside letters, digits, '.', '_' and '-' replaced by '_' ('org/name' → 'org_name')."""
    name = _FILE_NAME_UNSAFE.sub("_", run.meta.model).strip("._") or "model"
    return name[:100]


def _seed001_branches(run: Run) -> Iterator[tuple[int, int, int]]:
    """(branch, first position, end) of the rows of seed 001's files: each branch's own positions
    (the root with the prompt's), in branch order; position 0 predicts nothing and has no row."""
    for b in run.branches:
        first = 0 if b.parent is None else b.fork_position
        yield b.id, max(first, 1), run.length(b.id)


def seed001_positions(run: Run) -> Iterator[tuple[int, int]]:
    """(branch, position) of every row of seed 001's files, in order."""
    for b, lo, hi in _seed001_branches(run):
        for pos in range(lo, hi):
            yield b, pos


def seed001_sentences(run: Run) -> Iterator[str]:
    """Each row's `sentence`: the text before the row's position (what the model had read when it
    predicted the position's token), its last SENTENCE_CHARS characters after "…" when longer."""
    for b, lo, hi in _seed001_branches(run):
        seq = run.sequence(b).tolist()
        for pos in range(lo, hi):
            tail = seq[max(0, pos - 2 * SENTENCE_CHARS) : pos]  # tokens enough for SENTENCE_CHARS characters
            cut = len(tail) < pos
            text = decode_bytes(run.tokens.text(tail))
            if cut and len(text) < SENTENCE_CHARS:  # (tokens of less than a character each)
                text, cut = decode_bytes(run.tokens.text(seq[:pos])), False
            yield "…" + text[-(SENTENCE_CHARS - 1) :] if cut or len(text) > SENTENCE_CHARS else text


def _layer_list(values: np.ndarray, integer: bool) -> str:
    """A row's layer-wise list "[v1,…,vL]": the stored values exactly (`_value`; a rank of 0, unknown,
    as NaN), the same numbers as the comparative files write."""
    if integer:
        return "[" + ",".join(str(int(v)) if v > 0 else "NaN" for v in values.tolist()) + "]"
    return _values(values, False)


def seed001_analyses(run: Run) -> Iterator[str]:
    """Each row's analysis (`seed001_positions` order): "control" where the model read the row's
    context under a steering spec (seed 001's control-vector analysis: a steered branch's own
    positions, or the prompt's when the prompt was read steered), else "standard"."""
    n_prompt = len(run.prompt)
    for b, pos in seed001_positions(run):
        branch = run.branch(b)
        steering = run.meta.steering if branch.parent is None and pos < n_prompt else branch.steering
        yield "control" if steering is not None else "standard"


def seed001_tables(run: Run) -> dict[str, np.ndarray]:
    """Seed 001's metric key → [rows, L] values of the run's measure (rows: `seed001_positions`),
    for the measures the run has."""
    spans = list(_seed001_branches(run))
    names = run.layout.names

    def column(stored: str) -> np.ndarray:
        parts = [run.column(b, stored)[lo:hi] for b, lo, hi in spans]
        return np.concatenate(parts) if parts else np.zeros((0, run.n_layers), dtype=np.float32)

    return {
        key: np.asarray(derive(name, column, run.meta.vocab_size))
        for key, name in SEED001_METRICS.items()
        if has_measure(names, name)
    }


def seed001_files(run: Run, raw: bool = False) -> dict[str, str]:
    """Seed 001's files of a run as {relative path: CSV text}, in seed 001's folders: rows read
    without steering under `standard/`, steered rows (`seed001_analyses`) under `control/`, each
    folder with `data/{model}_{metric}.csv` (`sentence,values`, one row per position, the values
    the layer-wise list "[v1,…,vL]" over layers 1…L; NaN where a layer has no value) for each
    measure the run records, and `predictions/{model}_predictions.csv` (`Sentence,Token,
    Probability,Analysis`: the model's 5 most likely tokens at each position, Analysis "standard"
    or "control"). A folder with no rows is not written (`standard/` is, when the run has none)."""
    return seed001_model_files(seed001_model_name(run), [run], raw)


SEED001_ANALYSES = ("standard", "control")  # seed 001's folders: plain, and with its control vector


def seed001_model_files(model: str, runs: Iterable[Run], raw: bool = False) -> dict[str, str]:
    """Seed 001's files of one model's runs (a collection's items, in order), each run's rows in
    turn, each row under its analysis's folder; a measure gets its file when every run records it."""
    tables: dict[tuple[str, str], io.StringIO] = {}
    preds: dict[str, io.StringIO] = {}
    keys: set[str] | None = None
    for run in runs:
        rows = list(seed001_positions(run))
        analyses = list(seed001_analyses(run))
        sentences = [csv_cell(text, raw) for text in seed001_sentences(run)]
        values = seed001_tables(run)
        keys = set(values) if keys is None else keys & set(values)
        for analysis in set(analyses):
            if analysis not in preds:
                preds[analysis] = io.StringIO()
                csv.writer(preds[analysis], lineterminator="\n").writerow(
                    ["Sentence", "Token", "Probability", "Analysis"]
                )
            for key in values:
                if (analysis, key) not in tables:
                    tables[analysis, key] = io.StringIO()
                    csv.writer(tables[analysis, key], lineterminator="\n").writerow(["sentence", "values"])
        for key, table in values.items():
            integer = SEED001_METRICS[key] == "layer_rank"
            for sentence, analysis, v in zip(sentences, analyses, table):
                csv.writer(tables[analysis, key], lineterminator="\n").writerow([sentence, _layer_list(v, integer)])
        for sentence, analysis, (b, pos) in zip(sentences, analyses, rows):
            step = run.step(b, pos)
            pw = csv.writer(preds[analysis], lineterminator="\n")
            for i, lp in list(zip(step.topk_ids.tolist(), step.topk_logprobs.tolist()))[:SEED001_PREDICTIONS]:
                if i >= 0:
                    pw.writerow([sentence, csv_cell(_text(run, int(i)), raw), _num(math.exp(lp)), analysis])
    if not preds:  # no row at all: the standard folder's files, headers only
        preds["standard"] = io.StringIO("Sentence,Token,Probability,Analysis\n")
        for key in keys or ():
            tables["standard", key] = io.StringIO("sentence,values\n")
    files = {}
    for analysis in SEED001_ANALYSES:
        if analysis not in preds:
            continue
        for key in SEED001_METRICS:
            if (analysis, key) in tables and keys is not None and key in keys:
                files[f"{analysis}/data/{model}_{key}.csv"] = tables[analysis, key].getvalue()
        files[f"{analysis}/predictions/{model}_predictions.csv"] = preds[analysis].getvalue()
    return files


def seed001_collection_files(labelled: Iterable[tuple[str, Run]], raw: bool = False) -> dict[str, str]:
    """Seed 001's files of a collection: `labelled` gives (model label, run) of every done item,
    each model's items one after another (a collection's manifest order); each model gets its own
    files, named by its runs' model name (a second model of the same name gets a suffix _2, …)."""
    files: dict[str, str] = {}
    names: set[str] = set()
    for _label, group in itertools.groupby(labelled, key=lambda lr: lr[0]):
        runs = (run for _l, run in group)
        first = next(runs)
        name = base = seed001_model_name(first)
        n = 1
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.add(name)
        files.update(seed001_model_files(name, itertools.chain([first], runs), raw))
    return files


def write_seed001(
    run: Run | dict[str, str],
    folder: Path,
    overwrite: bool = False,
    raw_csv: bool = False,
    fmt: str = "seed001",
) -> list[Path]:
    """Write seed 001's files of `run` (or files made already: {relative path: text}) under
    `folder` (made if missing; its parent must exist), each atomically. Every target is checked
    before any is written: an existing file is replaced only with `overwrite`, and nothing but a
    regular file is ever written over. A folder this call made is removed again when a write
    fails (a full disk left part of the set, then refused a rerun for the files already there).
    `fmt`: the --format its errors name."""
    files = run if isinstance(run, dict) else seed001_files(run, raw_csv)
    if not folder.parent.is_dir():
        raise ExportError(f"cannot write {folder}: {_not_a_folder(folder.parent)}")
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ExportError(f"{folder} is not a folder; give a folder name for --format {fmt}")
    if not folder.exists():
        check_target(folder)  # (its parent takes the new folder: refused now, not halfway)
    targets = [folder / rel for rel in files]
    for path in targets:
        for parent in reversed(path.relative_to(folder).parents):
            sub = folder / parent
            if sub.is_symlink() or (sub.exists() and not sub.is_dir()):
                raise ExportError(f"{sub} is not a folder")
        if path.parent.is_dir():
            check_target(path, overwrite)
    made = not folder.exists()
    written = []
    try:
        for path, text in zip(targets, files.values()):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:  # (was the raw "[Errno 1] Operation not permitted: 'imm/standard'")
                raise ExportError(f"cannot write {path.parent}: {e.strerror or e}") from None
            written.append(write_text(path, text, overwrite))
    except BaseException:
        if made:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        raise
    return written


# --- seed 001's comparative files: a steering comparison (core/steer_compare.py) -----------------

CONTEXT_CHARS = 200  # a row's sentence: the last this many characters of the text before the token
ANALYSES = ("standard", "control", "difference", "percent_change")


def _value(x: float, integer: bool) -> str:
    """One number of a `values` list: integers as such, NaN/Infinity as Python's json reads them."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return str(int(x)) if integer else repr(float(x))


def _values(row: np.ndarray, integer: bool) -> str:
    return "[" + ",".join(_value(float(x), integer) for x in np.atleast_1d(row)) + "]"


def comparison_sentence(run: Run, branch: int, position: int) -> str:
    """Seed 001's `sentence` of a compared position: `[position] ` and the text the model had read
    before the token (the standard branch's positions 0…position−1), its last CONTEXT_CHARS
    characters (… in front when cut)."""
    start = max(0, position - CONTEXT_CHARS)  # a token is at least one byte: enough tokens for the tail
    text = decode_bytes(run.tokens.text(run.sequence(branch)[start:position].tolist()))
    cut = start > 0 or len(text) > CONTEXT_CHARS
    return f"[{position}] " + ("…" + text[-CONTEXT_CHARS:] if cut else text)


def seed001_comparative_tables(
    run: Run, branch: int | None = None, skipped: list[str] | None = None
) -> dict[str, list[list[Any]]]:
    """Seed 001's comparative files of the comparison of `branch` (default:
    `comparison.steered_branch`) with its parent, as relative path → rows (header first):

    - `comparative/data/{model}_{metric}_comparative.csv` for every compared measure
      (`comparison.compared_measures`; `{metric}` seed 001's key where it has one, SEED001_KEYS): `sentence,values`, four rows per compared position —
      `<sentence> (standard)`, `(control)` (the steered branch), `(difference)` (control −
      standard) and `(percent_change)` (100 × difference / |standard|) — where `values` is the
      list over layers 1…L of a per-layer measure, a one-element list of a per-token one;
    - `comparative/predictions/{model}_comparative_predictions.csv`: `Sentence,Token,Probability,
      Analysis`, the recorded top-k of each compared position's distribution, standard then
      control, most probable first (Probability = exp of the stored log-prob).

    A measure with no finite value in either branch (`sampler_logprob` of a greedy or
    teacher-forced run) gets no file: its name is appended to `skipped`."""
    from tokentui.core.steer_compare import compare, steered_branch

    c = compare(run, steered_branch(run) if branch is None else branch)
    model = seed001_model_name(run)
    sentences = [comparison_sentence(run, c.standard, int(p)) for p in c.positions]
    tables: dict[str, list[list[Any]]] = {}
    for m in c.measures:
        if not (np.isfinite(c.standard_values[m.name]).any() or np.isfinite(c.steered_values[m.name]).any()):
            if skipped is not None:
                skipped.append(m.name)
            continue
        rows: list[list[Any]] = [["sentence", "values"]]
        four = c.rows(m.name)
        integer = m.dtype == "int32"
        for i, sentence in enumerate(sentences):
            for analysis in ANALYSES:
                rows.append(
                    [f"{sentence} ({analysis})", _values(four[analysis][i], integer and analysis != "percent_change")]
                )
        metric = SEED001_KEYS.get(m.name, m.name)  # seed 001's own metric names where it has one
        tables[f"comparative/data/{model}_{metric}_comparative.csv"] = rows
    preds: list[list[Any]] = [["Sentence", "Token", "Probability", "Analysis"]]
    for sentence, p in zip(sentences, c.positions):
        for analysis, b in (("standard", c.standard), ("control", c.steered)):
            step = run.step(b, int(p))
            for t, lp in zip(step.topk_ids, step.topk_logprobs):
                if t >= 0:
                    preds.append([sentence, _text(run, int(t)), math.exp(float(lp)), analysis])
    tables[f"comparative/predictions/{model}_comparative_predictions.csv"] = preds
    return tables


def write_seed001_comparative(
    run: Run,
    out_dir: Path,
    overwrite: bool = False,
    branch: int | None = None,
    raw_csv: bool = False,
    skipped: list[str] | None = None,
) -> list[Path]:
    """Write `seed001_comparative_tables` under the folder `out_dir` as `write_seed001` writes
    seed 001's files: every target checked before the first is written, each file atomically, an
    existing one only with `overwrite`, never through a symlink. `skipped` gets the measures
    left out for want of any finite value."""
    files = {}
    for rel, rows in seed001_comparative_tables(run, branch, skipped).items():
        text = io.StringIO()
        w = csv.writer(text, lineterminator="\n")
        for row in rows:
            w.writerow([csv_cell(v, raw_csv) for v in row])
        files[rel] = text.getvalue()
    return write_seed001(files, out_dir, overwrite, fmt=SEED001_COMPARATIVE)
