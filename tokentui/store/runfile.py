"""One run, one file: a safetensors container (numpy arrays, no pickle) with JSON in its header.

Layout: tensors `prompt/<measure>`, `b<id>/<measure>` for each branch and `tokens/{ids,offsets,blob}`;
header metadata `format`, `schema` and `run` (the RunMeta, the branch list and, from schema 2 on,
the declaration of every column the run records and the sizes k/layer/j). Schema 1 files (a fixed
set of columns) are still read. Token ids are
stored in 2 bytes when the vocabulary allows, else 3 (vocabularies up to 16.7M), with the all-ones
value meaning "none". Files are written atomically; loading trusts nothing and turns every fault into one
RunFileError line naming the file.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from tokentui.core import attribution
from tokentui.core.columns import Columns, Layout
from tokentui.core.files import temporary_name, write_atomically
from tokentui.core.measures import BASE, MEASURES, Measure
from tokentui.core.params import MAX_K
from tokentui.core.run import Branch, Run, RunError, RunMeta
from tokentui.core.steering import check_record as check_steering_record
from tokentui.core.tokens import TokenTable
from tokentui.core.tree import check_tree_record, upgrade_record
from tokentui.store.header import (
    FORMAT,
    MAX_LAYERS,
    SCHEMA_VERSION,
    RunFileError,
    check_sizes,
    header_int,
    parse_header_json,
    read_bytes,
    valid_run_id,
)

# Sane limits on what a header may declare: sizes multiply into buffers, so each is bounded on its
# own, and arrays are only ever allocated as large as the file's own arrays prove.
MAX_J = 4_096
MAX_LAYER_VALUES = 1 << 20  # layers × j per token
MAX_BRANCHES = 100_000
MAX_STEPS = 1 << 40  # steps in one segment (an int beyond this is a forged header)
MAX_EOS_IDS = 1_000
MAX_SAMPLING_KEYS = 64
NO_ID = {2: 0xFFFF, 3: 0xFFFFFF}  # the all-ones value means "no id" (padding of the first step)


def id_width(vocab_size: int) -> int:
    """Bytes per stored token id: 2 when the vocabulary allows, else 3 (little-endian uint8 triples)."""
    return 2 if vocab_size < 0xFFFF else 3


def _to_disk(m: Measure, arr: np.ndarray, vocab_size: int) -> np.ndarray:
    if not m.is_token_id:
        return np.ascontiguousarray(arr)
    width = id_width(vocab_size)
    ids = arr.astype(np.int64)
    ids[ids < 0] = NO_ID[width]
    if width == 2:
        return ids.astype(np.uint16)
    return np.ascontiguousarray(ids.astype("<u4").view(np.uint8).reshape(*ids.shape, 4)[..., :3])


def _from_disk(m: Measure, arr: np.ndarray, width: int) -> np.ndarray:
    if not m.is_token_id:
        return arr
    if width == 2:
        ids = arr.astype(np.int32)  # (no int64 on the way: the lens's ids are most of a large run)
    else:
        four = np.zeros((*arr.shape[:-1], 4), dtype=np.uint8)
        four[..., :3] = arr
        ids = four.view("<u4")[..., 0].astype(np.int32)  # (below 2^24: fits)
    ids[ids == NO_ID[width]] = -1
    return ids


def _segment_tensors(prefix: str, layout: Layout, arrays: dict[str, np.ndarray], vocab: int) -> dict[str, np.ndarray]:
    out = {}
    for m in layout.measures:
        arr = arrays[m.name]
        if not m.required and m.dtype != "int32" and np.isnan(arr).all():
            continue  # e.g. greedy and forced steps have no sampler probability: don't store NaNs
        out[f"{prefix}/{m.name}"] = _to_disk(m, arr, vocab)
    return out


def encode_run(run: Run) -> bytes:
    """The run file's bytes. Every segment's arrays are copied first and the header's sizes are
    taken from those copies, so header and arrays always describe the same moment of the run."""
    from safetensors.numpy import save

    vocab = run.meta.vocab_size
    layout = run.layout
    branches = list(run.branches)
    prompt = run.prompt.arrays()
    own = [b.steps.arrays() for b in branches]
    tensors = _segment_tensors("prompt", layout, prompt, vocab)
    branch_list = []
    for b, arrays in zip(branches, own):
        tensors.update(_segment_tensors(f"b{b.id}", layout, arrays, vocab))
        d = b.to_dict()
        d["steps"] = len(arrays["token_id"])
        d["n_forced"] = min(b.n_forced, d["steps"])
        branch_list.append(d)
    ids, offsets, blob = run.tokens.pack()
    tensors["tokens/ids"], tensors["tokens/offsets"], tensors["tokens/blob"] = ids, offsets, blob
    records = list(run.attributions)
    for i, rec in enumerate(records):
        tensors.update({f"attr{i}/{name}": arr for name, arr in rec.arrays().items()})
    header = {
        "meta": run.meta.to_dict(),
        "dims": layout.dims,
        "columns": {m.name: m.to_dict() for m in layout.measures},
        "prompt_steps": len(prompt["token_id"]),
        "branches": branch_list,
    }
    if records:
        header["attributions"] = [rec.header() for rec in records]
    meta = {"format": FORMAT, "schema": str(SCHEMA_VERSION), "run": json.dumps(header)}
    return save(tensors, metadata=meta)


def save_run(run: Run, path: Path | str, durable: bool = True) -> Path:
    """Write atomically: temp file in the same folder, fsync, rename. A crash keeps the old file.
    A run without a branch (a generation before its first step) is refused: no file could load it.
    `durable` False: not synced to disk (`write_atomically`), for a run whose reader checks it."""
    path = Path(path)
    if not run.branches:
        raise RunFileError(path, "the run has no branch yet: nothing to save")
    path.parent.mkdir(parents=True, exist_ok=True)
    steps, n_attr = run.total_steps(), len(run.attributions)
    data = encode_run(run)
    write_atomically(path, lambda f: f.write(data), tmp=temporary_name(path), durable=durable)
    run.mark_saved(steps, n_attr)
    return path


_META_TYPES = {f.name: f.type for f in fields(RunMeta)}


def _sampling(path: Path, value: object, what: str) -> dict[str, Any]:
    """A sampler's settings (read with SamplingParams.from_dict, which ignores bad values): a small
    dict; its strings were bounded and cleaned with the rest of the header."""
    if not isinstance(value, dict) or len(value) > MAX_SAMPLING_KEYS:
        raise RunFileError(path, f"{what} is not a small dict of settings")
    return value


MODEL_B_KEYS = ("model", "revision", "dtype", "device", "tokenizer", "weights_file")


def _model_b(path: Path, value: object) -> None:
    """A comparison run's second model (absent or None in every other run): a dict of the keys
    MODEL_B_KEYS, "model" and "dtype" text, the others text or null."""
    if value is None:
        return
    if not isinstance(value, dict) or not set(value) <= set(MODEL_B_KEYS):
        raise RunFileError(path, "run metadata 'model_b' is malformed")
    for key in MODEL_B_KEYS:
        v = value.get(key)
        if not (isinstance(v, str) or (v is None and key not in ("model", "dtype"))):
            raise RunFileError(path, f"run metadata 'model_b' {key!r} has the wrong type")


def _meta_from(path: Path, d: object) -> RunMeta:
    if not isinstance(d, dict):
        raise RunFileError(path, "run metadata is missing")
    expect = {
        "run_id": str,
        "created": str,
        "tool_version": str,
        "mode": str,
        "model": str,
        "dtype": str,
        "device": str,
        "tokenizer": str,
        "vocab_size": int,
        "n_layers": int,
        "k": int,
        "prompt": str,
        "chat": bool,
        "sampling": dict,
        "eos_ids": list,
        "lens": str,
    }
    for key, typ in expect.items():
        if key not in d:
            raise RunFileError(path, f"run metadata lacks {key!r}")
        if not isinstance(d[key], typ) or (typ is int and isinstance(d[key], bool)):
            raise RunFileError(path, f"run metadata {key!r} has the wrong type")
    for key in ("revision", "chat_template", "weights_file"):
        if d.get(key) is not None and not isinstance(d[key], str):
            raise RunFileError(path, f"run metadata {key!r} has the wrong type")
    if not valid_run_id(d["run_id"]):
        raise RunFileError(path, "run id is not a plain name (letters, digits, '.', '_', '-'; at most 64)")
    vocab = check_sizes(path, d)
    if len(d["eos_ids"]) > MAX_EOS_IDS:
        raise RunFileError(path, f"run metadata has more than {MAX_EOS_IDS} eos ids")
    for e in d["eos_ids"]:
        header_int(path, e, "an eos id", 0, vocab - 1)
    _sampling(path, d["sampling"], "run metadata 'sampling'")
    if d.get("tree") is not None and not isinstance(d["tree"], dict):
        raise RunFileError(path, "run metadata 'tree' has the wrong type")
    _model_b(path, d.get("model_b"))
    known = {k: v for k, v in d.items() if k in _META_TYPES}
    known.setdefault("revision", None)  # (optional: a file without it crashed every reader)
    known["steering"] = _steering(path, d.get("steering"), "run metadata 'steering'")
    if known.get("tree") is not None:
        known["tree"] = upgrade_record(known["tree"])  # (checked with the branches, after them)
    return RunMeta(**known)


def _steering(path: Path, value: object, what: str) -> dict[str, Any] | None:
    """A steering record (core/steering.py; absent in files made before steering): checked strictly."""
    try:
        return check_steering_record(value)
    except RunError as e:
        raise RunFileError(path, f"{what}: {e}") from None


def _layout(path: Path, desc: dict[str, Any], meta: RunMeta, schema: int) -> Layout:
    """The run's columns: a fixed set in schema 1; declared in the header from schema 2 on. A
    declared column this version knows must match its declaration; an unknown one is read as it
    is declared, unless it is required (then the file needs a newer tokentui)."""
    if schema == 1:
        return Layout.of(meta.k, meta.n_layers)
    dims, cols = desc.get("dims"), desc.get("columns")
    if not isinstance(dims, dict) or not isinstance(cols, dict) or not cols or len(cols) > 256:
        raise RunFileError(path, "column declarations are missing or malformed")
    k = header_int(path, dims.get("k"), "column size k", 1, MAX_K)
    layers = header_int(path, dims.get("layer"), "column size layer", 1, MAX_LAYERS)
    j = header_int(path, dims.get("j", 1), "column size j", 1, MAX_J)
    if k != meta.k or layers != meta.n_layers:
        raise RunFileError(path, "column sizes do not match the run's k and layer count")
    if layers * j > MAX_LAYER_VALUES:
        raise RunFileError(path, f"more than {MAX_LAYER_VALUES} values per token (layers × j)")
    measures = []
    for name, d in cols.items():
        try:
            m = Measure.from_dict(name, d)
        except ValueError as e:
            raise RunFileError(path, str(e)) from None
        known = MEASURES.get(name)
        if known is None and m.required:
            raise RunFileError(path, f"requires column {name!r}, which this tokentui does not know; upgrade tokentui")
        if known is not None and (known.dtype, known.shape, known.is_token_id) != (m.dtype, m.shape, m.is_token_id):
            raise RunFileError(path, f"column {name!r} is declared with another dtype or shape")
        measures.append(known or m)
    missing = [n for n in BASE if MEASURES[n].required and n not in cols]
    if missing:
        raise RunFileError(path, f"required column {missing[0]!r} is missing")
    measures.sort(key=lambda m: (m.name != "token_id",))  # token_id first: Columns sizes by it
    return Layout(tuple(measures), meta.k, meta.n_layers, j)


def _columns(
    path: Path, tensors: dict[str, np.ndarray], prefix: str, n: int, layout: Layout, vocab_size: int
) -> Columns:
    arrays = {}
    width = id_width(vocab_size)
    for m in layout.measures:
        key = f"{prefix}/{m.name}"
        arr = tensors.pop(key, None)
        if arr is None:
            if m.required:
                raise RunFileError(path, f"array {key} is missing")
            continue  # an optional column that holds nothing here stays 'unknown'
        want_shape = m.shape_for(n, layout.dims)
        want_dtype = np.dtype(m.dtype)
        if m.is_token_id:
            want_dtype = np.dtype(np.uint16) if width == 2 else np.dtype(np.uint8)
            want_shape = want_shape if width == 2 else (*want_shape, 3)
        if arr.shape != want_shape:
            raise RunFileError(path, f"array {key} has shape {arr.shape}, expected {want_shape}")
        if arr.dtype != want_dtype:
            raise RunFileError(path, f"array {key} has dtype {arr.dtype}, expected {want_dtype}")
        arrays[m.name] = _from_disk(m, arr, width)
    if "token_id" not in arrays:
        raise RunFileError(path, f"array {prefix}/token_id is missing")
    return Columns.from_arrays(layout, arrays, adopt=True)  # (popped from the file's tensors: given up)


def _branch(
    path: Path, b: object, expected_id: int, tensors: dict[str, np.ndarray], layout: Layout, vocab_size: int
) -> Branch:
    """Branch `expected_id` from its header entry (strictly typed, bounded) and its arrays."""
    what = f"branch {expected_id}"
    if not isinstance(b, dict) or not {"id", "parent", "fork_position", "n_forced", "status", "steps"} <= b.keys():
        raise RunFileError(path, f"branch entry {expected_id} is malformed")
    if header_int(path, b["id"], f"{what}'s id", 0, MAX_BRANCHES) != expected_id:
        raise RunFileError(path, f"branch entry {expected_id} has id {b['id']}")
    parent = b["parent"]
    if parent is not None:
        parent = header_int(path, parent, f"{what}'s parent", 0, MAX_BRANCHES)
    fork = header_int(path, b["fork_position"], f"{what}'s fork_position", 0, MAX_STEPS)
    n_forced = header_int(path, b["n_forced"], f"{what}'s n_forced", 0, MAX_STEPS)
    n = header_int(path, b["steps"], f"{what}'s steps", 0, MAX_STEPS)
    if not isinstance(b["status"], str):
        raise RunFileError(path, f"{what}'s status is not text")
    sampling = b.get("sampling")  # schema 2; absent in schema 1
    if sampling is not None:
        sampling = _sampling(path, sampling, f"{what}'s sampling")
    steering = _steering(path, b.get("steering"), f"{what}'s steering")
    cols = _columns(path, tensors, f"b{expected_id}", n, layout, vocab_size)
    return Branch(expected_id, parent, fork, cols, n_forced, b["status"], sampling, steering)


def _attributions(
    path: Path, records: object, tensors: dict[str, np.ndarray], n_branches: int, vocab_size: int
) -> list[attribution.Attribution]:
    """The attribution records (header entries + `attr<i>/…` arrays), each checked."""
    if not isinstance(records, list) or len(records) > attribution.MAX_RECORDS:
        raise RunFileError(path, "the attribution list is malformed")
    out = []
    for i, h in enumerate(records):
        prefix = f"attr{i}/"
        arrays = {k.removeprefix(prefix): tensors.pop(k) for k in [k for k in tensors if k.startswith(prefix)]}
        try:
            out.append(attribution.from_stored(h, arrays, n_branches, vocab_size))
        except RunError as e:
            raise RunFileError(path, f"attribution {i}: {e}") from None
    return out


def load_run(path: Path | str, follow_links: bool = True) -> Run:
    """Load and fully validate a run file; any fault is a RunFileError (never another exception).
    `follow_links` False: a symbolic link is refused (see read_bytes)."""
    path = Path(path)
    raw = read_bytes(path, follow_links=follow_links)
    # (its size checked as listing checks it: a truncated file was "damaged run file (Error while
    # deserializing: incomplete metadata …)", the container library's words)
    desc, schema = parse_header_json(path, raw, len(raw))
    try:
        from safetensors.numpy import load

        tensors = dict(load(raw))
        del raw  # (the arrays are copies: the file's bytes, as large as they, go before the columns are made)
    except Exception as e:  # noqa: BLE001 - the container library's own errors: truncation, bad offsets …
        raise RunFileError(
            path, f"damaged run file ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    meta = _meta_from(path, desc.get("meta"))
    layout = _layout(path, desc, meta, schema)
    n_prompt = header_int(path, desc.get("prompt_steps"), "prompt_steps", 0, MAX_STEPS)
    blist = desc.get("branches")
    if not isinstance(blist, list) or not blist:
        raise RunFileError(path, "branch list is missing or malformed")
    if len(blist) > MAX_BRANCHES or f"b{len(blist) - 1}/token_id" not in tensors:
        raise RunFileError(path, f"branch list names {len(blist)} branches; the file's arrays do not hold them")

    try:
        tok = [tensors.pop(f"tokens/{x}") for x in ("ids", "offsets", "blob")]
    except KeyError:
        raise RunFileError(path, "token table is missing") from None
    ids, offsets, blob = tok
    if (
        ids.dtype != np.int32
        or offsets.dtype != np.int64
        or blob.dtype != np.uint8
        or ids.ndim != 1
        or offsets.shape != (len(ids) + 1,)
        or blob.ndim != 1
        or (len(offsets) and (offsets[0] != 0 or offsets[-1] != len(blob) or np.any(np.diff(offsets) < 0)))
    ):
        raise RunFileError(path, "token table is inconsistent")
    run = Run(
        meta,
        TokenTable.unpack(ids, offsets, blob),
        _columns(path, tensors, "prompt", n_prompt, layout, meta.vocab_size),
        layout,
    )
    for expected_id, b in enumerate(blist):
        run.branches.append(_branch(path, b, expected_id, tensors, layout, meta.vocab_size))
    run.attributions = _attributions(path, desc.get("attributions", []), tensors, len(blist), meta.vocab_size)
    if tensors:
        raise RunFileError(path, f"unexpected array {sorted(tensors)[0]}")
    try:
        run.validate()
        check_tree_record(
            run.meta.tree,
            len(run.branches),
            meta.vocab_size,
            lambda rb: min(len(run.prompt), run.length(0)) if rb is None else run.length(rb),
        )
        for rec in run.attributions:
            attribution.check_against(rec, run.sequence(rec.branch))
    except RunError as e:
        raise RunFileError(path, str(e)) from None
    _settle_unfinished(run)
    run.mark_saved()
    return run


def _settle_unfinished(run: Run) -> None:
    """A branch (or tree search) saved as "running" was saved mid-generation by an autosave whose
    process then stopped (killed, crashed, left with a second q) or is still at it, elsewhere.
    Whoever loads the file is not generating it, so it is shown and continued as what it is here,
    a generation stopped early: "cancelled" (the explorer's ⋯ promised tokens that never came)."""
    from tokentui.core import tree

    for b in run.branches:
        if b.status == "running":
            b.status = "cancelled"
    searches = tree.searches(run)
    if searches and searches[-1]["stopped"] == "running":  # (only the last can have been running)
        last = searches[-1]
        tree.end_search(run, len(searches) - 1, "cancelled", last["nodes"], last["completed"])
        tree.claim_the_rest(run, len(searches) - 1)  # its nodes made after its last progress
