"""Steering from the command line: `steer-vector` against the mean difference of hidden states
computed here, `--steer` on generate/score (recorded in the saved run), `steer-compare` and seed
001's comparative export against the reloaded run's columns, and the one-line refusals that come
before the weights load."""

from __future__ import annotations

import csv
import hashlib
import json
import math

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from tokentui.core.steer_compare import compare
from tokentui.core.steering import load_spec
from tokentui.engine.hf.backend import HFBackend
from tokentui.store.cache import list_runs
from tokentui.store.runfile import load_run

PROMPT = "def wrap(text, width):"


def one_error(res) -> str:
    """The command failed with one error line (after any `…` progress lines) and nothing else."""
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2, res.output
    assert all(ln.startswith("… ") for ln in lines[:-1]) and lines[-1].startswith("tokentui: error: "), lines
    return lines[-1]


def only_run(cache_dir):
    [saved] = list_runs(cache_dir)
    return load_run(saved.path)


@pytest.fixture
def spec_file(tmp_path):
    """A spec for the tiny models (hidden size 32, 3 layers) with a strong vector."""

    def make(layers="[2]", size=32, scale=6.0, extra=""):
        rng = np.random.default_rng(11)
        np.save(tmp_path / "v.npy", rng.normal(size=size).astype(np.float32))
        p = tmp_path / "spec.toml"
        p.write_text(f'vector = "v.npy"\nlayers = {layers}\nscale = {scale}\n{extra}', encoding="utf-8")
        return p

    return make


def test_steer_vector_is_the_mean_difference_of_hidden_states(cli, model_dirs, loaded, tmp_path):
    pos, neg = tmp_path / "pos.txt", tmp_path / "neg.txt"
    positive = ["def good(x):", "return x + 1", "import os"]
    negative = ["class Bad:", "raise ValueError()"]
    pos.write_text("\n".join(positive) + "\n\n", encoding="utf-8")
    neg.write_text("\n".join(negative), encoding="utf-8")
    out = tmp_path / "v.safetensors"
    args = ("steer-vector", "-m", model_dirs["qwen2"], "--positive", pos, "--negative", neg, "--layer", 1, "-o", out)
    res = cli(*args)
    assert res.exit_code == 0, res.output
    got = load_file(str(out))["vector"]
    lm = loaded("qwen2")

    def state(p: str) -> np.ndarray:
        ids = lm.tokenizer(p)["input_ids"]
        with torch.inference_mode():
            h = lm.model(torch.tensor([ids]), output_hidden_states=True).hidden_states[1][0].double()
        return h[1:].mean(0).numpy() if len(ids) > 1 else h[0].numpy()

    want = np.mean([state(p) for p in positive], 0) - np.mean([state(p) for p in negative], 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert f"sha256 {hashlib.sha256(out.read_bytes()).hexdigest()}\n" in res.stderr
    # an existing file needs --force; the written vector loads as a spec's vector
    again = cli(*args)
    assert again.exit_code == 2 and "--force" in again.stderr
    (tmp_path / "s.toml").write_text('vector = "v.safetensors"\nlayers = [1]\n')
    np.testing.assert_array_equal(load_spec(tmp_path / "s.toml").vector, got)
    assert "3 positive prompts − 2 negative prompts" in res.stderr


def test_steer_vector_prints_a_spec_that_parses_as_toml_and_steers(cli, model_dirs, cache_dir, tmp_path):
    """Standard output is the spec alone, TOML lines (one field a line, a hostile file name
    escaped): redirected into a file beside the vector it is a spec `generate --steer` accepts."""
    import tomllib

    p = tmp_path / "p.txt"
    p.write_text("def good(x):\n", encoding="utf-8")
    n = tmp_path / "n.txt"
    n.write_text("class Bad:\n", encoding="utf-8")
    out = tmp_path / 'my "happy"\\\x1b[2J.safetensors'
    args = ("steer-vector", "-m", model_dirs["gpt2"], "--positive", p, "--negative", n, "--layer", 2, "-o", out)
    res = cli(*args)
    assert res.exit_code == 0, res.output
    assert "1 positive prompt − 1 negative prompt," in res.stderr and "\x1b" not in res.output
    assert "the vector is zero" not in res.stderr
    # the same prompts on both sides: a zero vector, written as asked, and said (a trial saw no word)
    same = cli("steer-vector", "-m", model_dirs["gpt2"], "--positive", p, "--negative", p, "--layer", 2,
               "-o", tmp_path / "zero.safetensors")  # fmt: skip
    assert same.exit_code == 0 and "‖v‖ = 0," in same.stderr
    assert "warning: the vector is zero (both sides have the same mean)" in same.stderr
    spec = tomllib.loads(res.stdout)
    assert spec == {"vector": out.name, "layers": [2], "scale": 1.0}
    (tmp_path / "happy.toml").write_text(res.stdout, encoding="utf-8")
    np.testing.assert_array_equal(load_spec(tmp_path / "happy.toml").vector, load_file(str(out))["vector"])
    res = cli("generate", "-m", model_dirs["gpt2"], "-p", PROMPT, "-n", 2, "--steer", tmp_path / "happy.toml")
    assert res.exit_code == 0, res.output
    assert only_run(cache_dir).meta.steering["layers"] == [2]


def test_steer_vector_writes_its_spec_with_spec_naming_the_vector_from_the_spec_s_folder(
    cli, model_dirs, cache_dir, tmp_path
):
    """`--spec FILE` writes the spec itself (the README's `> happy.toml` emptied an existing spec
    when --out was refused: the shell truncates before tokentui runs). It names the vector from the
    spec's own folder, which is how specs read it; an existing spec is refused before the model
    loads, unless --force; the spec steers `generate`."""
    p = tmp_path / "p.txt"
    p.write_text("def good(x):\n", encoding="utf-8")
    n = tmp_path / "n.txt"
    n.write_text("class Bad:\n", encoding="utf-8")
    (tmp_path / "vectors").mkdir()
    (tmp_path / "specs").mkdir()
    out, spec = tmp_path / "vectors" / "happy.safetensors", tmp_path / "specs" / "happy.toml"
    args = ("steer-vector", "-m", model_dirs["gpt2"], "--positive", p, "--negative", n, "--layer", 2, "-o", out)
    res = cli(*args, "--spec", spec)
    assert res.exit_code == 0 and res.stdout == "", res.output
    assert f"wrote {spec}" in res.stderr
    np.testing.assert_array_equal(load_spec(spec).vector, load_file(str(out))["vector"])
    assert 'vector = "../vectors/happy.safetensors"' in spec.read_text(encoding="utf-8")
    res = cli("generate", "-m", model_dirs["gpt2"], "-p", PROMPT, "-n", 2, "--steer", spec)
    assert res.exit_code == 0 and only_run(cache_dir).meta.steering["layers"] == [2], res.output
    spec.write_text("kept", encoding="utf-8")
    res = cli(*args, "--force", "--spec", spec)  # (--force: the vector; the spec exists too and is replaced)
    assert res.exit_code == 0 and load_spec(spec).layers == (2,), res.output
    spec.write_text("kept", encoding="utf-8")
    res = cli(*args[:2], "/nonexistent-model", *args[3:-1], tmp_path / "new.safetensors", "--spec", spec)
    assert f"{spec.name} already exists" in one_error(res) and spec.read_text(encoding="utf-8") == "kept"


@pytest.mark.parametrize(
    "args, out_name, expect",
    [
        (["--layer", 9], "v.safetensors", "layer 9 does not exist: the model has layers 1…3"),
        (["--layer", 0], "v.safetensors", "--layer must be ≥ 1"),
        (["--layer", 1, "--position", "first"], "v.safetensors", "unknown --position"),
        (["--layer", 1], "v.npy", "written as a .safetensors file"),
        (
            ["--layer", 1, "--spec", "v.safetensors"],
            "v.safetensors",
            "--spec v.safetensors: a steering spec is written as a .toml",
        ),
    ],
)
def test_steer_vector_refusals_come_before_the_weights(cli, weightless_model, tmp_path, args, out_name, expect):
    (tmp_path / "p.txt").write_text("a\n")
    p = tmp_path / "p.txt"
    res = cli(
        "steer-vector", "-m", weightless_model, "--positive", p, "--negative", p, "-o", tmp_path / out_name, *args
    )
    assert expect in one_error(res)


def test_generate_and_score_with_steer_record_the_spec_and_its_hash(cli, model_dirs, cache_dir, spec_file, loaded):
    spec_path = spec_file(extra="position_weights = [0, 1]\n")
    res = cli("generate", "-m", model_dirs["gpt2"], "-p", PROMPT, "-n", 6, "-k", 4, "--steer", spec_path)
    assert res.exit_code == 0, res.output
    assert "steered: v.npy" in res.stderr
    run = only_run(cache_dir)
    sha = hashlib.sha256((spec_path.parent / "v.npy").read_bytes()).hexdigest()
    rec = run.meta.steering
    assert rec is not None and rec["sha256"] == sha and rec["layers"] == [2] and rec["scale"] == 6.0
    assert rec["position_weights"] == [0.0, 1.0] and rec["spec"] == "spec.toml" and rec["vector"] == "v.npy"
    assert run.branches[0].steering == rec
    # the same tokens as the engine steered by the same spec, and other tokens than unsteered
    backend = HFBackend(loaded("gpt2"))
    from tokentui.core.params import GenerationSettings, SamplingParams
    from tokentui.engine import jobs

    def tokens(steering):
        job = jobs.Generate(
            backend, PROMPT, GenerationSettings(SamplingParams(max_new_tokens=6), k=4), steering=steering
        )
        list(job)
        return job.run.sequence(0).tolist()

    assert run.sequence(0).tolist() == tokens(load_spec(spec_path))
    for r in list_runs(cache_dir):
        r.path.unlink()
    res = cli("score", "-m", model_dirs["gpt2"], "--text", "x = [1, 2, 3]\n", "-k", 4, "--steer", spec_path, "--json")
    assert res.exit_code == 0, res.output
    scored = only_run(cache_dir)
    assert scored.meta.steering == rec == scored.branches[0].steering
    want = backend.score_ids(scored.sequence(0).tolist(), 4, steering=load_spec(spec_path))
    np.testing.assert_array_equal(scored.prompt.col("logprob"), want.prompt.col("logprob"))
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [x["logprob"] for x in lines[1:]] == pytest.approx(want.prompt.col("logprob")[1:].tolist(), abs=1e-6)


def _pickled(tmp_path):
    np.save(tmp_path / "v.npy", np.array([object()], dtype=object), allow_pickle=True)
    (tmp_path / "spec.toml").write_text('vector = "v.npy"\nlayers = [1]\n')
    return tmp_path / "spec.toml"


@pytest.mark.parametrize("command", ["generate", "score", "steer-compare"])
@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda f, t: f(layers="[4]"), "layer 4 does not exist: the model has layers 1…3"),
        (lambda f, t: f(size=31), "has 31 values; the model's hidden size is 32"),
        (lambda f, t: f(extra="layers = [1]\n"), "not valid TOML"),
        (lambda f, t: _pickled(t), "pickle"),
        (lambda f, t: t / "missing.toml", "no such file"),
    ],
)
def test_bad_steering_is_one_line_before_the_weights_load(
    cli, weightless_model, spec_file, tmp_path, command, make, expect
):
    spec_path = make(spec_file, tmp_path)
    what = ["--text", "x = 1"] if command == "score" else ["-p", PROMPT]
    res = cli(command, "-m", weightless_model, *what, "--steer", spec_path)
    assert expect in one_error(res)


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _values(text: str) -> list[float]:
    return [float(x) for x in json.loads(text)]  # NaN as Python's json reads it


def test_steer_compare_and_seed001_comparative_export_match_the_saved_run(
    cli, model_dirs, cache_dir, spec_file, tmp_path
):
    spec_path = spec_file(layers="[1, 3]", scale=8.0)
    res = cli("steer-compare", "-m", model_dirs["llama"], "--steer", spec_path, "-p", PROMPT, "-n", 8, "-k", 3,
              "--lens-chunk", 1, "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    run = only_run(cache_dir)
    assert [b.steering is not None for b in run.branches] == [False, True]
    c = compare(run, 1)
    *records, summary = [json.loads(x) for x in res.stdout.splitlines()]
    assert summary["summary"] is True and summary["divergence"] == c.divergence and summary["positions"] == len(c)
    assert summary["steering"] == run.branches[1].steering
    start = run.branches[1].fork_position
    assert [r["position"] for r in records] == list(range(start, run.length(1)))
    for r in records:
        p = r["position"]
        for side, b in (("standard", 0), ("steered", 1)):
            st = run.step(b, p)
            assert r[side]["token_id"] == st.token_id and r[side]["rank"] == st.rank
            assert r[side]["logprob"] == pytest.approx(st.logprob, abs=1e-6)
            assert r[side]["layer_entropy"] == pytest.approx(st.layer_entropy.tolist(), abs=1e-6)
        assert r["difference"]["entropy"] == pytest.approx(run.step(1, p).entropy - run.step(0, p).entropy, abs=1e-6)
        assert r["difference"]["rank"] == run.step(1, p).rank - run.step(0, p).rank
        assert r["diverged"] == (c.divergence is not None and p >= c.divergence)

    out = tmp_path / "seed001"
    res = cli("export", run.id, "--format", "seed001-comparative", "-o", out)
    assert res.exit_code == 0, res.output
    reloaded = load_run(list_runs(cache_dir)[0].path)
    positions = list(range(start, reloaded.length(1)))
    model = run.meta.model
    # (a per-layer measure's file is named by seed 001's key: layer_entropy → layer_entropies)
    for name, file in (("logprob",) * 2, ("entropy",) * 2, ("rank",) * 2, ("layer_entropy", "layer_entropies")):
        rows = _read_csv(out / "comparative" / "data" / f"{model}_{file}_comparative.csv")
        assert rows[0] == ["sentence", "values"] and len(rows) == 1 + 4 * len(positions)
        for i, p in enumerate(positions):
            four = rows[1 + 4 * i : 5 + 4 * i]
            assert [s.rsplit(" (", 1)[1] for s, _ in four] == [
                "standard)",
                "control)",
                "difference)",
                "percent_change)",
            ]
            assert four[0][0].startswith(f"[{p}] ")
            a = np.atleast_1d(np.asarray(reloaded.step(0, p).get(name), dtype=np.float64))
            b = np.atleast_1d(np.asarray(reloaded.step(1, p).get(name), dtype=np.float64))
            got = [_values(v) for _, v in four]
            np.testing.assert_array_equal(got[0], a)
            np.testing.assert_array_equal(got[1], b)
            np.testing.assert_array_equal(got[2], b - a)
            for x, y, z in zip(got[3], a, b):
                assert (math.isnan(x) and y == 0) or x == pytest.approx(100 * (z - y) / abs(y))
    # seed 001's per-layer perplexities and KL to uniform, derived from the lens entropy: compared too
    for file, of in (("layer_perplexities", np.exp), ("layer_kl_divs", lambda h: math.log(run.meta.vocab_size) - h)):
        rows = _read_csv(out / "comparative" / "data" / f"{model}_{file}_comparative.csv")
        assert len(rows) == 1 + 4 * len(positions)
        for i, p in enumerate(positions):
            want = [of(reloaded.step(b, p).layer_entropy.astype(np.float64)) for b in (0, 1)]
            got = [_values(v) for _, v in rows[1 + 4 * i : 4 + 4 * i]]
            np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
            np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
            np.testing.assert_allclose(got[2], want[1] - want[0], rtol=1e-6, atol=1e-6)
    preds = _read_csv(out / "comparative" / "predictions" / f"{model}_comparative_predictions.csv")
    assert preds[0] == ["Sentence", "Token", "Probability", "Analysis"]
    body = preds[1:]
    assert len(body) == len(positions) * 2 * run.k
    for i, p in enumerate(positions):
        for j, b in enumerate((0, 1)):
            st = reloaded.step(b, p)
            chunk = body[(2 * i + j) * run.k : (2 * i + j + 1) * run.k]
            assert {row[3] for row in chunk} == {("standard", "control")[j]}
            probs = [float(row[2]) for row in chunk]
            assert probs == pytest.approx(np.exp(st.topk_logprobs.astype(np.float64)).tolist(), rel=1e-12)
    # a second export needs --force; a wrong combination of options is one line
    again = cli("export", run.id, "--format", "seed001-comparative", "-o", out)
    assert again.exit_code == 2 and "--force" in again.stderr
    assert cli("export", run.id, "--format", "seed001-comparative", "-o", out, "--force").exit_code == 0
    res = cli("export", run.id, "--format", "seed001-comparative")
    assert res.exit_code == 2 and "--out" in res.stderr
    res = cli("export", run.id, "--format", "csv", "--branch", 1)
    assert res.exit_code == 2 and "--branch goes with" in res.stderr
    res = cli("export", run.id, "--format", "seed001-comparative", "-o", tmp_path / "x", "--branch", 0)
    assert res.exit_code == 2 and "root" in res.stderr
    (tmp_path / "happy.toml").write_text("")
    res = cli("export", run.id, "--format", "seed001-comparative", "-o", tmp_path / "happy.toml")
    assert res.exit_code == 2 and "give a folder name for --format seed001-comparative" in res.stderr, res.stderr


def test_steer_compare_of_a_text_prints_both_and_where_they_part(cli, model_dirs, cache_dir, spec_file, tmp_path):
    spec_path = spec_file(layers="[1]", scale=10.0)
    text = "import os\nprint(os.getcwd())\n\x1b]52;c;eA==\x07"
    res = cli("steer-compare", "-m", model_dirs["gpt2"], "--steer", spec_path, "--text", text, "-k", 3)
    assert res.exit_code == 0, res.output
    run = only_run(cache_dir)
    assert run.meta.mode == "score" and [b.fork_position for b in run.branches] == [1, 1]
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout
    assert "steered: v.npy" in res.stdout and "the same tokens at all" in res.stdout
    lines = res.stdout.splitlines()
    table = [ln for ln in lines if ln[:5].strip().isdigit()]
    assert len(table) == len(run.sequence(0)) - 1
    c = compare(run, 1)
    for ln, d in zip(table, c.difference("logprob")):
        assert float(ln.split()[-3]) == pytest.approx(float(d), abs=1e-3)
    assert "mean Δ layer_entropy (nats) by layer: 1:" in res.stdout


@pytest.mark.parametrize("fmt", ["tree-json", "seed002-jsonl"])
def test_seed002_files_of_a_text_s_steering_comparison_are_refused(cli, model_dirs, cache_dir, spec_file, fmt):
    """Its two branches are the text, teacher-forced: nothing was generated. A trial's tree JSON had
    the whole text as its root and again in every node (root position 1)."""
    spec_path = spec_file(layers="[1]", scale=10.0)
    res = cli("steer-compare", "-m", model_dirs["gpt2"], "--steer", spec_path, "--text", "import os\nprint(os)")
    assert res.exit_code == 0, res.output
    run = only_run(cache_dir)
    res = cli("export", run.id, "--format", fmt)
    assert res.exit_code == 2 and "has no generated tokens" in res.stderr and not res.stdout, res.output


def test_a_branch_grown_from_a_text_s_steering_comparison_exports_with_the_text_s_start_as_root(
    cli, model_dirs, loaded, cache_dir, spec_file
):
    """Grown by hand (the explorer's branch), it has generated tokens: its tree hangs below the
    first token (where the comparison's branches part), whose text is the root's, not the whole
    text (the run's "prompt")."""
    import io

    from tokentui.core.display import decode_bytes
    from tokentui.core.params import SamplingParams
    from tokentui.engine.hf.backend import HFBackend
    from tokentui.store.export import write_tree_json

    spec_path = spec_file(layers="[1]", scale=10.0)
    text = "import os\nprint(os)"
    assert cli("steer-compare", "-m", model_dirs["gpt2"], "--steer", spec_path, "--text", text).exit_code == 0
    run = only_run(cache_dir)
    list(HFBackend(loaded("gpt2")).fork(run, 0, 3, [], SamplingParams(max_new_tokens=2)))
    out = io.StringIO()
    write_tree_json(run, out)
    doc = json.loads(out.getvalue())
    first = decode_bytes(run.tokens.text(run.sequence(0)[:1].tolist()))
    assert doc["metadata"]["tokentui"]["root_position"] == 1 and doc["tree"]["full_text"] == first != text
    [child] = doc["tree"]["children"]  # (the text's second token: every branch passes through it)
    assert child["full_text"] == decode_bytes(run.tokens.text(run.sequence(0)[:2].tolist()))


def test_a_safetensors_spec_vector_with_a_hostile_name_is_shown_escaped(cli, model_dirs, cache_dir, tmp_path):
    name = "v\x1b[2J.safetensors"
    save_file({"vector": np.ones(32, np.float32)}, str(tmp_path / name))
    (tmp_path / "s.toml").write_text('vector = "v\\u001b[2J.safetensors"\nlayers = [1]\nscale = 0.5\n')
    res = cli("generate", "-m", model_dirs["gpt2"], "-p", PROMPT, "-n", 2, "--steer", tmp_path / "s.toml")
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.stderr and "v␛[2J.safetensors" in res.stderr
    assert only_run(cache_dir).meta.steering["vector"] == name


def test_seed001_export_of_a_steer_compare_run_puts_the_steered_rows_under_control(
    cli, model_dirs, cache_dir, spec_file, tmp_path
):
    """seed 001's layout: the standard branch's rows under standard/ (Analysis "standard"), the
    steered branch's under control/ (Analysis "control"), each sentence once per folder."""
    spec_path = spec_file(layers="[1]", scale=10.0)
    res = cli(
        "steer-compare", "-m", model_dirs["gpt2"], "--steer", spec_path, "--text", "import os\nprint(os)", "-k", 3
    )
    assert res.exit_code == 0, res.output
    run = only_run(cache_dir)
    out = tmp_path / "s001"
    res = cli("export", run.id, "--format", "seed001", "--out", out)
    assert res.exit_code == 0, res.output
    model = run.meta.model
    positions = range(1, run.length(0))
    for analysis, b in (("standard", 0), ("control", 1)):
        rows = _read_csv(out / analysis / "data" / f"{model}_layer_entropies.csv")[1:]
        assert len(rows) == len(positions) and len({s for s, _ in rows}) == len(rows)
        got = [[float(x) for x in v[1:-1].split(",")] for _, v in rows]
        np.testing.assert_array_equal(got, run.column(b, "layer_entropy")[1:].astype(np.float64))
        preds = _read_csv(out / analysis / "predictions" / f"{model}_predictions.csv")[1:]
        assert len(preds) == len(positions) * 3 and {p[3] for p in preds} == {analysis}
    assert sorted(p.name for p in out.iterdir()) == ["control", "standard"]


def test_steer_compare_help_describes_its_json_and_one_position_is_singular(cli, model_dirs, cache_dir, spec_file):
    res = cli("steer-compare", "--help")
    text = " ".join(res.stdout.split())
    assert "One JSON object per compared position" in text and "summary" in text
    assert "per line per token" not in text and "JSONL export" not in text
    res = cli(
        "steer-compare", "-m", model_dirs["gpt2"], "--steer", spec_file(layers="[1]", scale=0.0), "-p", PROMPT, "-n", 1
    )
    assert res.exit_code == 0, res.output
    assert len(compare(only_run(cache_dir), 1)) == 1
    assert "the same token at the one compared position" in res.stdout  # (scale 0: nothing changes)
    assert "1 positions" not in res.stdout and "1 tokens" not in res.stderr


def test_seed001_comparative_leaves_out_a_measure_without_values_and_says_so(
    cli, model_dirs, cache_dir, spec_file, tmp_path
):
    """A teacher-forced comparison has no sampler: no all-NaN sampler_logprob file, one line on
    stderr naming it; the measures with values are written."""
    res = cli("steer-compare", "-m", model_dirs["gpt2"], "--steer", spec_file(layers="[1]"), "--text", "import os")
    assert res.exit_code == 0, res.output
    run = only_run(cache_dir)
    assert "sampler_logprob" in [m.name for m in compare(run, 1).measures]
    out = tmp_path / "cmp"
    res = cli("export", run.id, "--format", "seed001-comparative", "-o", out)
    assert res.exit_code == 0, res.output
    data = out / "comparative" / "data"
    names = sorted(p.name for p in data.iterdir())
    assert not any("sampler" in n for n in names), names
    assert f"{run.meta.model}_logprob_comparative.csv" in names
    assert "left out sampler_logprob: no value in either branch" in res.stderr
    assert f"wrote {len(names) + 1} files under" in res.stderr


@pytest.mark.parametrize(
    "command", [["steer-compare", "--text", "import os"], ["generate", "-p", "import os", "-n", 2]]
)
def test_a_steered_command_reads_the_models_configuration_once(cli, model_dirs, cache_dir, spec_file, command):
    """The spec is checked against the configuration before the weights load, and the load takes
    that configuration: one read, one progress line (a trial saw it twice)."""
    res = cli(command[0], "-m", model_dirs["gpt2"], "--steer", spec_file(), *command[1:], "--lens-chunk", 0)
    assert res.exit_code == 0, res.output
    reads = [x for x in res.stderr.splitlines() if "reading the configuration" in x]
    assert reads == [f"… reading the configuration of {model_dirs['gpt2']}"], res.stderr


def test_attributing_a_steered_run_says_the_model_runs_unsteered(cli, model_dirs, cache_dir, spec_file):
    res = cli("generate", "-m", model_dirs["gpt2"], "-p", "import os", "-n", 3, "--steer", spec_file(),
              "--lens-chunk", 0)  # fmt: skip
    assert res.exit_code == 0, res.output
    run = only_run(cache_dir)
    n = run.length(0)
    res = cli("attribute", "--run", run.id, "-m", model_dirs["gpt2"], "--positions", f"{n - 3}:{n}")
    assert res.exit_code == 0, res.output
    assert "note: 3 of the 3 positions were made steered; attribution runs the model unsteered" in res.stderr
    # an unsteered run: no note
    res = cli("generate", "-m", model_dirs["gpt2"], "-p", "import sys", "-n", 2, "--lens-chunk", 0)
    plain = next(r for r in list_runs(cache_dir) if r.run_id != run.id)
    res = cli("attribute", "--run", plain.run_id, "-m", model_dirs["gpt2"])
    assert res.exit_code == 0 and "unsteered" not in res.stderr, res.output


@pytest.mark.parametrize("command", ["generate", "score", "steer-compare"])
def test_a_vector_that_overflows_the_model_is_one_line_and_leaves_no_unreadable_run(
    cli, model_dirs, cache_dir, tmp_path, command
):
    """A vector too large for the model's dtype (float16 here: ±65504) makes the steered model's
    logits NaN: the run was saved anyway and then refused by every reader. The job ends in one
    line, and what is saved opens."""
    from tokentui.store.cache import list_runs
    from tokentui.store.runfile import load_run

    save_file({"vector": np.full(32, 1e6, np.float32)}, str(tmp_path / "huge.safetensors"))
    (tmp_path / "s.toml").write_text('vector = "huge.safetensors"\nlayers = [1]\nscale = 100.0\n')
    text = ("--text", PROMPT) if command == "score" else ("-p", PROMPT)
    res = cli(command, "-m", model_dirs["gpt2"], *text, "--steer", tmp_path / "s.toml", "--lens-chunk", 0,
              "--dtype", "float16")  # fmt: skip
    assert res.exit_code == 2 and "is not finite" in res.stderr and "Traceback" not in res.output, res.output
    for summary in list_runs(cache_dir):
        load_run(summary.path)  # (raises on a run that cannot be opened)


def test_a_spec_names_a_vector_in_a_folder_named_like_a_home_as_a_path(tmp_path):
    """A vector in a folder `~x` beside the spec was named `~x/v.safetensors`, which a spec reads
    as user x's home: "unexpected RuntimeError … a bug in tokentui" where no such user is. --spec
    writes `./~x/…`, and a spec naming `~nosuchuser/…` by hand is read as written (its vector not
    found, in one line)."""
    from tokentui.cli.steer import spec_lines, vector_from
    from tokentui.core.steering import SteeringError

    (tmp_path / "~x").mkdir()
    out = tmp_path / "~x" / "v.safetensors"
    save_file({"vector": np.arange(4, dtype=np.float32)}, str(out))
    spec = tmp_path / "s.toml"
    spec.write_text("\n".join(spec_lines(vector_from(spec, out), 1)), encoding="utf-8")
    np.testing.assert_array_equal(load_spec(spec).vector, np.arange(4, dtype=np.float32))
    spec.write_text('vector = "~nosuchuser-tokentui/v.npy"\nlayers = [1]\n', encoding="utf-8")
    with pytest.raises(SteeringError, match="nosuchuser-tokentui"):
        load_spec(spec)
