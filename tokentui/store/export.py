"""Exports of a run for analysis: CSV (seed 000's columns plus rank/logprob), JSONL (one token per
line with its top-k, like seed 002) and JSON (the whole run with its tree). No torch needed."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from typing import TextIO

from tokentui.core.display import decode_bytes
from tokentui.core.run import Run
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
FORMATS = ("csv", "jsonl", "json")


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _text(run: Run, token_id: int) -> str:
    return decode_bytes(run.tokens.bytes_of(token_id))


def step_record(run: Run, branch_id: int, step: Step) -> dict:
    """One token as a JSON-ready dict: the schema of `generate --json` and of JSONL exports."""
    top = [
        [int(i), _text(run, int(i)), round(float(lp), 5)] for i, lp in zip(step.topk_ids, step.topk_logprobs) if i >= 0
    ]
    return {
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
    }


def iter_steps(run: Run, branch_id: int, start: int = 0) -> Iterator[Step]:
    for pos in range(start, run.length(branch_id)):
        yield run.step(branch_id, pos)


def _branch_rows(run: Run, branch_id: int) -> Iterator[dict]:
    """Rows of a branch's own positions (the root also covers the prompt)."""
    b = run.branch(branch_id)
    full_text = decode_bytes(run.text(branch_id))
    seq = run.sequence(branch_id)
    first = 0 if b.parent is None else b.fork_position
    for pos in range(max(first, 1), run.length(branch_id)):
        step = run.step(branch_id, pos)
        yield {
            "prompt_id": run.id,
            "branch_id": branch_id,
            "full_text": full_text,
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


def write_csv(run: Run, out: TextIO) -> None:
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for b in run.branches:
        for row in _branch_rows(run, b.id):
            w.writerow({k: "" if v is None else v for k, v in row.items()})


def write_jsonl(run: Run, out: TextIO) -> None:
    for b in run.branches:
        start = 0 if b.parent is None else b.fork_position
        for step in iter_steps(run, b.id, start):
            out.write(json.dumps({"run_id": run.id, **step_record(run, b.id, step)}, ensure_ascii=False))
            out.write("\n")


def run_to_json(run: Run) -> dict:
    prompt = [step_record(run, 0, run.prompt.get(i, i, "prompt")) for i in range(len(run.prompt))]
    branches = []
    for b in run.branches:
        steps = [
            step_record(run, b.id, b.steps.get(i, b.fork_position + i, "forced" if i < b.n_forced else "generated"))
            for i in range(len(b.steps))
        ]
        branches.append(
            {
                "id": b.id,
                "parent": b.parent,
                "fork_position": b.fork_position,
                "n_forced": b.n_forced,
                "status": b.status,
                "text": decode_bytes(run.text(b.id, b.fork_position)),
                "steps": steps,
            }
        )
    return {"schema": "tokentui-run-json/1", "meta": run.meta.to_dict(), "prompt_steps": prompt, "branches": branches}


def write_json(run: Run, out: TextIO) -> None:
    json.dump(run_to_json(run), out, ensure_ascii=False, indent=1)
    out.write("\n")


def export(run: Run, fmt: str, out: TextIO) -> None:
    {"csv": write_csv, "jsonl": write_jsonl, "json": write_json}[fmt](run, out)


def export_text(run: Run, fmt: str) -> str:
    buf = io.StringIO()
    export(run, fmt, buf)
    return buf.getvalue()
