"""Seeded fuzzing of load_run from the sample runs and the schema-1 fixtures: bit flips,
truncations, poisoned numbers in arrays and header, escapes and paths in metadata, deep JSON,
forged sizes and broken trees. Every case either loads a run that validates (and exports to JSON)
or raises RunFileError with a one-line message — nothing else, and quickly. A run with a tree
search's record is fuzzed too, its record included."""

from __future__ import annotations

import io
import json
import random
import re
import struct
import time
from pathlib import Path

import pytest

from tests.factories import make_tree_run, rewrite_header, rewrite_run_text, with_run_desc
from tokentui.store.export import FORMATS, ExportError, export
from tokentui.store.header import RunFileError
from tokentui.store.runfile import load_run, save_run

ROOT = Path(__file__).resolve().parents[2]
SOURCES = (
    sorted((ROOT / "sample_runs").glob("*.tokentui"))
    + sorted((ROOT / "tests/fixtures/demo_runs").glob("*.tokentui"))
    + sorted((ROOT / "tests/fixtures/schema1").glob("*.tokentui"))
)
CASES_PER_SOURCE = 40
SECONDS_PER_CASE = 3.0  # of this thread's CPU time: a loader stuck on a forged size, not a busy machine

POISON_NUMBERS = [
    math_inf := float("inf"),
    -math_inf,
    float("nan"),
    1e400,
    -1,
    0,
    2**63,
    10**30,
    34.5,
    True,
    "34",
    None,
]
POISON_TEXT = ["../../x", "/abs/x", "\x1b]0;owned\x07", "\u202e", "\ud800", "a" * 20_000, "", "\x00", "[s]*"]


def _desc(rng: random.Random):
    """A change of the run description: a random field gets a poisoned value."""

    def change(d):
        targets = [(d["meta"], k) for k in d["meta"]] + [(d, k) for k in d]
        targets += [(b, k) for b in d["branches"] for k in b]
        targets += [(d.get("dims", {}), k) for k in d.get("dims", {})]
        obj, key = rng.choice(targets)
        obj[key] = rng.choice(POISON_NUMBERS + POISON_TEXT + [[], {}, [1, 2], {"a": [1]}])

    return change


def _tree(rng: random.Random):
    """A broken tree: branches dropped, duplicated, reordered or re-parented."""

    def change(d):
        bs = d["branches"]
        op = rng.randrange(4)
        if op == 0 and len(bs) > 1:
            bs.pop(rng.randrange(len(bs)))
        elif op == 1:
            bs.append(dict(rng.choice(bs)))
        elif op == 2:
            rng.shuffle(bs)
        else:
            b = rng.choice(bs)
            b["parent"], b["fork_position"] = rng.choice([None, 0, len(bs), -1]), rng.randrange(-2, 400)

    return change


def _tree_record(rng: random.Random):
    """A poisoned tree-search record: a random field of a search or a node gets a bad value."""

    def change(d):
        t = d["meta"]["tree"]
        targets = [(t, k) for k in t] + [(x, k) for x in t["searches"] for k in x]
        targets += [(x["parameters"], k) for x in t["searches"] for k in x["parameters"]]
        targets += [(t["nodes"], k) for k in t["nodes"]] + [(x, k) for x in t["nodes"].values() for k in x]
        obj, key = rng.choice(targets)
        obj[key] = rng.choice(POISON_NUMBERS + POISON_TEXT + [[], {}, [[1, 0.5]], [[1, 2]], {"a": [1]}])

    return change


def _array_poison(data: bytes, rng: random.Random) -> bytes:
    """Overwrite 4 bytes inside an array with a float32 NaN/inf/positive value or a huge int."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    name = rng.choice(
        [k for k in header if k != "__metadata__" and header[k]["data_offsets"][1] > header[k]["data_offsets"][0] + 4]
    )
    lo, hi = header[name]["data_offsets"]
    at = 8 + n + lo + rng.randrange(0, max(1, hi - lo - 4)) // 4 * 4
    value = rng.choice(
        [
            b"\x00\x00\xc0\x7f",
            b"\x00\x00\x80\x7f",
            b"\x00\x00\x80\xff",
            b"\x00\x00\x80\x3f",
            b"\xff\xff\xff\x7f",
            b"\x00\x7c\x00\x7c",
        ]
    )
    return data[:at] + value + data[at + 4 :]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random damage of a run file."""
    kind = rng.randrange(9)
    if kind == 0:  # bit flips anywhere
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 1:  # bit flips in the header only
        n = struct.unpack("<Q", data[:8])[0]
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(8, 8 + n)
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 2:  # truncation
        return data[: rng.randrange(len(data))]
    if kind == 3:
        desc = json.loads(json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])["__metadata__"]["run"])
        has_tree = desc["meta"].get("tree") is not None
        return rewrite_header(data, with_run_desc(_tree_record(rng) if has_tree and rng.random() < 0.5 else _desc(rng)))
    if kind == 4:
        return rewrite_header(data, with_run_desc(_tree(rng)))
    if kind == 5:
        return _array_poison(data, rng)
    if kind == 6:  # raw numbers and deep JSON in the description
        raw = rng.choice(["1e400", "-1e400", "NaN", "Infinity", "9" * 5000, "[" * 3000 + "]" * 3000, '"\\udfff"'])
        key = rng.choice(["prompt_steps", "meta", "branches", "dims", "columns", "zz"])
        return rewrite_run_text(data, lambda t: t.replace(f'"{key}": ', f'"{key}": {raw}, "old_{key}": ', 1))
    if kind == 7:  # forged sizes
        field = rng.choice(["vocab_size", "k", "n_layers"])
        value = rng.choice([16_777_215, 2**31, 1001, 4097, 0])
        return rewrite_header(data, with_run_desc(lambda d: d["meta"].__setitem__(field, value)))

    # the safetensors table: shapes and offsets
    def change(h):
        name = rng.choice([k for k in h if k != "__metadata__"])
        if rng.random() < 0.5:
            h[name]["shape"] = [rng.choice([0, 1, 2**40, -1, 16_777_215]) for _ in h[name]["shape"]] or [5]
        else:
            h[name]["data_offsets"] = [rng.randrange(0, 2**20), rng.choice([0, 2**62, 7])]

    return rewrite_header(data, change)


def _check(path: Path) -> str:
    """Load; the outcome in a word. Anything but a valid run or a one-line RunFileError fails."""
    try:
        run = load_run(path)
    except RunFileError as e:
        assert "\n" not in str(e) and str(e), repr(e)
        return "refused"
    run.validate()
    for fmt in FORMATS:  # every export of what loaded: strict JSON, no raw controls
        if fmt == "seed004" and not run.attributions:  # (a record's export: refused without one)
            continue
        buf = io.StringIO()
        try:
            export(run, fmt, buf)
        except ExportError:  # a clean refusal (seed 002's lines of a run with nothing generated)
            continue
        text = buf.getvalue()
        raw = RAW_CONTROLS.search(text)
        assert raw is None, f"{fmt} export holds raw {raw.group()!r}"
        docs = [text] if fmt in ("json", "tree-json", "seed004") else text.splitlines() if fmt != "csv" else []
        for doc in docs:
            json.loads(doc, parse_constant=_no_constants)
    return "loaded"


# what may never reach a terminal raw from an export: C0 controls but tab and newline, DEL, C1, bidi
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _no_constants(name: str) -> None:
    raise AssertionError(f"not strict JSON: {name}")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fuzzed_run_files_load_or_fail_cleanly(tmp_path, source):
    _fuzz(tmp_path, source.read_bytes(), f"tokentui-fuzz-{source.parent.name}-{source.name}")


def test_fuzzed_tree_search_runs_load_or_fail_cleanly(tmp_path):
    """A run with a tree search's record (`meta.tree`), whose fields are poisoned too."""
    original = save_run(make_tree_run(), tmp_path / "tree.tokentui").read_bytes()
    _fuzz(tmp_path, original, "tokentui-fuzz-tree-search")


def _fuzz(tmp_path: Path, original: bytes, seed: str) -> None:
    rng = random.Random(seed)
    outcomes = {"loaded": 0, "refused": 0}
    for case in range(CASES_PER_SOURCE):
        data = mutate(original, rng)
        path = tmp_path / f"case{case}.tokentui"
        path.write_bytes(data)
        start = time.thread_time()
        try:
            outcomes[_check(path)] += 1
        except Exception as e:  # noqa: BLE001 - any other exception is the failure: name the case
            raise AssertionError(f"case {case}: {type(e).__name__}: {e}") from None
        assert time.thread_time() - start < SECONDS_PER_CASE, f"case {case} took too long"
        path.unlink()
    assert outcomes["refused"] > CASES_PER_SOURCE // 4  # the damage is real
