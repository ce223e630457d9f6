"""Memory and time bombs: tiny files that declare huge sizes, huge headers, deep nesting. Each is
built and loaded in a child process under a 1 GiB address-space limit and a time limit: loading
must end in a RunFileError (or a valid run) without allocating what the header merely declares."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.factories import bare_run_file, make_run, rewrite_header, with_raw_value, with_run_desc
from tokentui.core.run import Run
from tokentui.store.header import MAX_VOCAB
from tokentui.store.runfile import encode_run

LIMIT_BYTES = 1 << 30
SECONDS_PER_BOMB = 10.0
ROOT = Path(__file__).resolve().parents[2]


def _empty_run(vocab: int, k: int, n_layers: int) -> Run:
    """A run with no steps at all whose metadata declares these sizes."""
    meta = make_run().meta
    meta.vocab_size, meta.k, meta.n_layers, meta.eos_ids = vocab, k, n_layers, []
    run = Run(meta)
    run.add_branch(None, 0)
    return run


def _empty_branches(run: Run, n: int) -> bytes:
    """The run's file with n branches, each with zero-length arrays (forged: no Run has them)."""
    from safetensors.numpy import load

    data = encode_run(run)
    tensors = dict(load(data))
    desc = json.loads(json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])["__metadata__"]["run"])
    for i in range(1, n):
        desc["branches"].append({**desc["branches"][0], "id": i, "parent": 0, "fork_position": 1})
        tensors.update({k.replace("b0/", f"b{i}/"): v for k, v in tensors.items() if k.startswith("b0/")})
    return bare_run_file(desc, tensors)


def _outer_raw(data: bytes, raw: bytes) -> bytes:
    """`data` with `"d": raw` first in its safetensors header (JSON that json.dumps cannot write)."""
    n = int.from_bytes(data[:8], "little")
    head = b'{"d": ' + raw + b", " + data[9 : 8 + n]
    return len(head).to_bytes(8, "little") + head + data[8 + n :]


def bombs() -> dict[str, bytes]:
    """name → file bytes (built lazily in the child: a broken store would blow up right here)."""
    small = encode_run(make_run())
    deep = 4_000_000
    return {
        "k-vocab-16M": encode_run(_empty_run(MAX_VOCAB, MAX_VOCAB, 3)),
        "40-branches-k-16M": _empty_branches(_empty_run(MAX_VOCAB, MAX_VOCAB, 3), 40),
        "40-branches-k1000-L4096": _empty_branches(_empty_run(1000, 1000, 4096), 40),
        "prompt-40MB": rewrite_header(
            small, with_run_desc(lambda d: d["meta"].__setitem__("prompt", "x" * 40_000_000))
        ),
        "prompt-12MB": rewrite_header(
            small, with_run_desc(lambda d: d["meta"].__setitem__("prompt", "x" * 12_000_000))
        ),
        "deep-4M-outer": _outer_raw(small, b"[" * deep + b"]" * deep),
        "deep-2M-run": with_raw_value(small, lambda d, v: d.__setitem__("x", v), "{" * 1_000_000 + "}" * 1_000_000),
        "branch-list-without-arrays": rewrite_header(
            small, with_run_desc(lambda d: d.__setitem__("branches", d["branches"] * 5_000))
        ),
    }


def child(folder: str) -> None:
    """Run in a child process: cap memory, then build and load each bomb; print one JSON line each."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))
    from tokentui.store.cache import summarize
    from tokentui.store.header import RunFileError
    from tokentui.store.runfile import load_run

    for name, data in bombs().items():
        path = Path(folder) / f"{name}.tokentui"
        path.write_bytes(data)
        del data
        start = time.monotonic()
        try:
            load_run(path)
            outcome = "loaded"
        except RunFileError as e:
            outcome = str(e)
        summary = summarize(path)
        print(
            json.dumps({"name": name, "seconds": time.monotonic() - start, "outcome": outcome, "listed": summary.error})
        )
        path.unlink()


def test_bombs_load_under_a_memory_cap_and_a_time_limit(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    code = f"import tests.store.test_bombs as t; t.child({str(tmp_path)!r})"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == 8, proc.stdout
    for r in results:
        assert r["seconds"] < SECONDS_PER_BOMB, r
        assert r["outcome"] != "loaded" and "\n" not in r["outcome"], r
        assert r["listed"] is None or "\n" not in r["listed"], r  # the cache listing never breaks
