"""The CLI end to end on a tiny real model: JSON records, saved runs, listing, export, errors."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from typer.testing import CliRunner

from tokentui.cli import app
from tokentui.store.cache import list_runs
from tokentui.store.runfile import load_run

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_generate_json_matches_the_saved_run_and_generate(model_dirs, cache_dir, loaded):
    m = model_dirs["llama"]
    res = invoke(
        "generate",
        "--model",
        m,
        "--prompt",
        "def f(x):",
        "-n",
        7,
        "-k",
        5,
        "--json",
        "--lens-chunk",
        3,
        "--lens-precision",
        "bfloat16",
    )
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 7
    for rec in lines:
        assert {"position", "token_id", "token", "logprob", "prob", "rank", "entropy", "top_k", "layer_entropy"} <= set(
            rec
        )
        assert len(rec["top_k"]) == 5 and len(rec["layer_entropy"]) == 3
        assert all(isinstance(x, float) for x in rec["layer_entropy"])
    [saved] = list_runs(cache_dir)
    run = load_run(saved.path)
    assert [r["token_id"] for r in lines] == run.sequence(0)[run.branches[0].fork_position :].tolist()
    lm = loaded("llama")
    ids = torch.tensor([lm.tokenizer("def f(x):")["input_ids"]])
    ref = lm.model.generate(ids, max_new_tokens=7, do_sample=False, pad_token_id=0)
    assert run.sequence(0).tolist() == ref[0].tolist()
    assert run.meta.k == 5 and run.meta.sampling["max_new_tokens"] == 7 and run.meta.chat is False
    assert "bfloat16" in run.meta.lens


def test_generate_table_score_runs_export_rm(model_dirs, cache_dir, tmp_path):
    m = model_dirs["gpt2"]
    res = invoke("generate", "-m", m, "-p", "import os", "-n", 5, "--temperature", 0.8, "--seed", 3, "--chat")
    assert res.exit_code == 0, res.output
    assert "entropy" in res.stdout and "saved to" in res.stdout
    res = invoke("score", "-m", m, "--text", "x = 1\ny = 2\n", "-k", 4)
    assert res.exit_code == 0 and "perplexity" in res.stdout
    runs = list_runs(cache_dir)
    assert {r.mode for r in runs} == {"generate", "score"} and all(r.error is None for r in runs)
    listing = invoke("runs")
    assert all(r.run_id in listing.stdout for r in runs)
    gen = next(r for r in runs if r.mode == "generate")
    run = load_run(gen.path)
    assert run.meta.chat and run.meta.chat_template and run.meta.sampling["seed"] == 3
    # exports, by id prefix and by path
    out = invoke("export", gen.run_id[:18], "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert {
        "prompt_id",
        "full_text",
        "token_position",
        "current_token",
        "next_token",
        "entropy",
        "probability_of_next_token",
        "rank_of_next_token",
        "logprob_of_next_token",
    } <= set(rows[0])
    gen_rows = [r for r in rows if r["next_token_kind"] == "generated"]
    assert len(gen_rows) == 5
    steps = [run.step(0, p) for p in range(run.branches[0].fork_position, run.length(0))]
    assert [float(r["probability_of_next_token"]) for r in gen_rows] == pytest.approx([s.prob for s in steps])
    jsonl = tmp_path / "x.jsonl"
    assert invoke("export", gen.path, "--format", "jsonl", "--out", jsonl).exit_code == 0
    recs = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert len(recs) == run.length(0) and recs[-1]["token_id"] == steps[-1].token_id
    whole = json.loads(invoke("export", gen.path, "--format", "json").stdout)
    assert whole["meta"]["run_id"] == run.id and len(whole["branches"][0]["steps"]) == 5
    assert invoke("runs", "rm", gen.run_id).exit_code == 0
    assert len(list_runs(cache_dir)) == 1


@pytest.mark.parametrize(
    "args, expect",
    [
        (["generate", "-m", "./missing-model", "-p", "hi"], "no such folder"),
        (["generate", "-m", "someone/not-here", "-p", "hi"], "offline"),
        (["generate", "-m", "{gpt2}", "-p", "  "], "prompt is empty"),
        (["generate", "-m", "{gpt2}", "-p", "hi", "-k", "100000"], "more than the vocabulary"),
        (["generate", "-m", "{gpt2}", "-p", "hi", "--top-p", "0"], "top-p"),
        (["score", "-m", "{gpt2}"], "exactly one"),
        (["generate", "-m", "{gpt2}", "-p", "hi", "--lens-precision", "int4"], "unknown lens precision"),
        (["explore", "-m", "{gpt2}", "--lens-precision", "fp8"], "unknown lens precision"),
        (["export", "{junk}"], "not a tokentui run file"),
        (["export", "nonexistent-run-id"], "no such run"),
        (["export", "{junk}", "--format", "xml"], "unknown format"),
        (["runs", "rm", "nonexistent"], "no such run"),
    ],
)
def test_errors_are_one_line_with_nonzero_exit(model_dirs, cache_dir, tmp_path, args, expect):
    junk = tmp_path / "junk.tokentui"
    junk.write_bytes(b"\x00" * 100)
    args = [a.format(gpt2=model_dirs["gpt2"], junk=junk) for a in args]
    res = invoke(*args)
    assert res.exit_code != 0
    err = res.stderr.strip().splitlines()
    assert err and err[-1].startswith("tokentui: error:") and expect in err[-1]
    assert "Traceback" not in res.output


def test_help_everywhere():
    for cmd in ([], ["generate"], ["score"], ["runs"], ["runs", "rm"], ["export"]):
        res = invoke(*cmd, "--help")
        assert res.exit_code == 0 and "Usage" in res.stdout


def test_export_into_a_closed_pipe_is_quiet(tmp_path):
    import subprocess

    from tests.factories import make_run
    from tokentui.store.runfile import save_run

    path = save_run(make_run(n_branch_steps=(3000, 3)), tmp_path / "r.tokentui")
    res = subprocess.run(f"tokentui export {path} --format jsonl | head -1", shell=True, capture_output=True, text=True)
    assert res.stdout.startswith("{") and "error" not in res.stderr
