"""`attribute` end to end on tiny real models: its JSONL scores equal plain autograd (the engine
tests' `reference`) for forced and generated tokens, with a contrast target by id and by text, on
three families; attention equals `output_attentions` by hand; the record is saved with the run and
`export --format seed004` (and `--out`) gives seed 004's shape with the same matrix and the real
prompt; `--prompt` attributes exactly the generated tokens; token text never reaches the terminal
raw; bad input is one line (before the model loads where it can be); Ctrl-C keeps the rows done."""

from __future__ import annotations

import json
import re
import signal
import time

import numpy as np
import pytest
import torch

from tests.engine.test_attribution import reference
from tests.factories import RAW_CONTROLS, make_run
from tests.terminal import Terminal, tokentui_command
from tokentui.cli import attribute as cli_attribute
from tokentui.core.display import decode_bytes, lone_token
from tokentui.store.cache import list_runs, run_path
from tokentui.store.runfile import load_run, save_run

PROMPT = "def wrap(text, width):\n    "
FORCED = " return text"


def close(got, want, rel: float = 1e-4) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = max(float(np.abs(want).max()), 1e-12)
    assert got.shape == want.shape and np.abs(got - want).max() <= rel * scale, (got, want)


@pytest.fixture(scope="module")
def saved_runs(model_dirs, tmp_path_factory):
    """family → (run file, run): a greedy generation that starts with forced tokens (`generate
    --force`), made by the CLI and kept outside any test's cache."""
    from typer.testing import CliRunner

    from tokentui.cli import app

    out = {}
    for family in ("gpt2", "llama", "gemma"):
        d = tmp_path_factory.mktemp(f"runs-{family}")
        args = ["generate", "-m", str(model_dirs[family]), "-p", PROMPT, "-n", "6", "--force", FORCED]
        res = CliRunner().invoke(app, [*args, "--lens-chunk", "0", "--cache-dir", str(d)], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        [summary] = list_runs(d)
        out[family] = (summary.path, load_run(summary.path))
    return out


def use_run(saved_runs, family: str, cache_dir):
    """The family's run copied into this test's cache; (run id, run)."""
    path, run = saved_runs[family]
    run_path(run.id, cache_dir).parent.mkdir(parents=True, exist_ok=True)
    run_path(run.id, cache_dir).write_bytes(path.read_bytes())
    return run.id, run


def model_of(model_dirs, family: str) -> list[str]:
    """`-m` and the family's folder (a run keeps a local model's folder name only, not its path)."""
    return ["-m", str(model_dirs[family])]


def jsonl(res) -> list[dict]:
    assert res.exit_code == 0, res.output
    return [json.loads(x) for x in res.stdout.splitlines()]


CASES = [
    ("gpt2", "gradient-norm", None),
    ("gpt2", "saliency", None),
    ("gpt2", "saliency", "text"),
    ("gpt2", "input-x-gradient", None),
    ("gpt2", "integrated-gradients", None),
    ("llama", "input-x-gradient", "id"),
    ("gemma", "integrated-gradients", "id"),
]


@pytest.mark.parametrize("family, method, alt_as", CASES)
def test_jsonl_scores_equal_autograd_for_forced_and_generated_tokens(
    cli, saved_runs, model_dirs, loaded, cache_dir, family, method, alt_as
):
    run_id, run = use_run(saved_runs, family, cache_dir)
    ids = run.sequence(0).tolist()
    kinds = run.kinds(0)
    start = len(run.prompt)
    assert {kinds[t] for t in range(start, len(ids))} == {"forced", "generated"}
    model = loaded(family).model
    args, alt = [], None
    if alt_as is not None:
        tok = loaded(family).tokenizer
        # a runner-up of the last token that is one token on its own, also as text
        candidates = [int(i) for i in run.step(0, len(ids) - 1).topk_ids if int(i) != ids[-1]]
        alt = next(i for i in candidates if tok(tok.decode([i]), add_special_tokens=False)["input_ids"] == [i])
        args = ["--alternative", str(alt) if alt_as == "id" else tok.decode([alt])]
    steps = 4
    if method == "integrated-gradients":
        args += ["--steps", str(steps)]
    rows = jsonl(cli("attribute", *model_of(model_dirs, family), "--run", run_id, "--method", method, "--json", *args))
    assert [r["position"] for r in rows] == list(range(start, len(ids)))  # default: after the prompt
    for r in rows:
        t = r["position"]
        assert r["token_id"] == ids[t] and r["token"] == decode_bytes(run.tokens.bytes_of(ids[t]))
        assert r["method"] == method and r["alternative"] == alt
        assert r["target"] == ("logprob" if alt is None else "logprob_contrast")
        close(r["scores"], reference(model, ids, t, method, alt, steps))
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids[:t]])).logits[0, -1].float(), -1)
        want = logp[ids[t]] - (logp[alt] if alt is not None else 0)
        assert r["target_value"] == pytest.approx(float(want), abs=1e-4)
        assert ("completeness_error" in r) == (method == "integrated-gradients")
    # the record is in the saved run, with these numbers
    back = load_run(run_path(run_id, cache_dir))
    rec = back.attributions[-1]
    assert len(back.attributions) == 1 and rec.method == method and rec.alternative == alt
    assert rec.positions == [r["position"] for r in rows]
    for i, r in enumerate(rows):
        np.testing.assert_array_equal(rec.scores[i, : r["position"]], np.float32(r["scores"]))
        if method == "integrated-gradients":
            assert rec.steps == steps and r["completeness_error"] == float(rec.completeness[i])


@pytest.mark.parametrize("inseq_name, method", [("input_x_gradient", "input-x-gradient"),
                                               ("integrated_gradients", "integrated-gradients")])  # fmt: skip
def test_inseqs_spelling_of_a_method_is_the_same_method(cli, saved_runs, model_dirs, loaded, cache_dir, inseq_name,
                                                        method):  # fmt: skip
    """Seed 004's users name inseq's methods as inseq spells them (a trial's `integrated_gradients`
    was refused as unknown); the record keeps tokentui's name."""
    run_id, run = use_run(saved_runs, "gpt2", cache_dir)
    ids = run.sequence(0).tolist()
    t = len(ids) - 1
    steps = ["--steps", "2"] if method == "integrated-gradients" else []
    rows = jsonl(cli("attribute", *model_of(model_dirs, "gpt2"), "--run", run_id, "--method", inseq_name,
                     "--positions", str(t), *steps, "--json"))  # fmt: skip
    assert [r["method"] for r in rows] == [method]
    close(rows[0]["scores"], reference(loaded("gpt2").model, ids, t, method, None, 2))
    assert load_run(run_path(run_id, cache_dir)).attributions[-1].method == method


def test_an_alternative_the_run_never_showed_keeps_its_text(cli, saved_runs, model_dirs, loaded, cache_dir, tmp_path):
    """--alternative naming a token that is nowhere in the run (not a token, not a top-k entry):
    its text goes into the run with the record, so the JSON, the saved run and seed 004's file
    name it (they said '' before)."""
    run_id, run = use_run(saved_runs, "gpt2", cache_dir)
    tok = loaded("gpt2").tokenizer
    alt = next(i for i in range(len(tok) - 1, 0, -1) if run.tokens.bytes_of(i) == b"" and tok.decode([i]).strip())
    text = tok.decode([alt])
    rows = jsonl(cli("attribute", *model_of(model_dirs, "gpt2"), "--run", run_id, "--json", "--alternative", alt))
    assert rows and all(r["alternative"] == alt and r["alternative_token"] == text for r in rows)
    back = load_run(run_path(run_id, cache_dir))
    assert decode_bytes(back.tokens.bytes_of(alt)) == text
    out = tmp_path / "a.seed004.json"
    assert cli("export", run_id, "-o", out).exit_code == 0
    assert json.loads(out.read_text())["tokentui"]["alternative_token"] == text


def test_attention_equals_output_attentions(cli, saved_runs, model_dirs, loaded, cache_dir):
    run_id, run = use_run(saved_runs, "gpt2", cache_dir)
    ids = run.sequence(0).tolist()
    model = loaded("gpt2").model
    m = model_of(model_dirs, "gpt2")
    rows = jsonl(cli("attribute", *m, "--run", run_id, "--method", "attention-mean", "--positions", "3:6", "--json"))
    impl = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            att = model(torch.tensor([ids]), output_attentions=True).attentions
    finally:
        model.set_attn_implementation(impl)
    assert [r["position"] for r in rows] == [3, 4, 5]
    for r in rows:
        t = r["position"]
        close(r["scores"], np.mean([a[0, :, t - 1, :t].mean(0).numpy() for a in att], axis=0), 1e-5)
        assert r["target"] is None and r["target_value"] is None  # attention weights explain no target
    res = cli("attribute", *m, "--run", run_id, "--method", "attention", "--positions", "3:4")
    assert res.exit_code == 0 and "target none (attention weights" in res.stdout, res.output


def seed004_schema():
    """Seed 004's persistence/schema.py (its AnalysisResult, as its tools load a file), written out:
    tokens as {token, token_id, clean_token}, llm_version required, generation_params of strings
    and numbers only, the data version an enum."""
    from datetime import datetime
    from enum import Enum

    from pydantic import BaseModel, Field

    class DataVersion(str, Enum):
        V1_0_0 = "1.0.0"
        V1_0_1 = "1.0.1"

    class TokenData(BaseModel):
        token: str
        token_id: int
        clean_token: str

    class AssociationData(BaseModel):
        input_tokens: list[TokenData]
        output_tokens: list[TokenData]
        association_matrix: list[list[float]]
        normalized_association: list[list[float]] | None = None

    class AnalysisMetadata(BaseModel):
        timestamp: datetime = Field(default_factory=datetime.now)
        llm_id: str
        llm_version: str
        prompt: str
        generation_params: dict[str, str | int | float] = Field(default_factory=dict)
        version: DataVersion = DataVersion.V1_0_0

    class AnalysisResult(BaseModel):
        metadata: AnalysisMetadata
        data: AssociationData

    return AnalysisResult


def test_seed004_from_the_record_export_and_out(cli, model_dirs, loaded, cache_dir, tmp_path):
    """--prompt with --chat: exactly the generated tokens are attributed, seed 004's JSON in --out
    holds the real prompt and the record's matrix, and `export --format seed004` writes the same
    file from the saved run."""
    out = tmp_path / "attr.json"
    res = cli("attribute", "-m", model_dirs["gpt2"], "-p", PROMPT, "-n", 5, "--chat", "--method", "input-x-gradient",
              "--out", out, "--json")  # fmt: skip
    rows = jsonl(res)
    [summary] = list_runs(cache_dir)
    run = load_run(summary.path)
    assert run.meta.chat and run.meta.prompt == PROMPT
    generated = [t for t, k in enumerate(run.kinds(0)) if k == "generated"]
    assert len(generated) == 5 and [r["position"] for r in rows] == generated
    assert generated == list(range(len(run.prompt), run.length(0)))
    [rec] = run.attributions
    doc = json.loads(out.read_text())
    exported = cli("export", summary.run_id, "--format", "seed004")
    assert exported.exit_code == 0 and exported.stdout == out.read_text()
    meta, data = doc["metadata"], doc["data"]
    seed004_schema().model_validate(doc)  # seed 004's own loader takes the file
    assert meta["prompt"] == PROMPT and meta["attribution_method"] == "input-x-gradient"
    assert meta["llm_id"] == run.meta.model and meta["timestamp"] == rec.created
    assert meta["generation_params"]["max_new_tokens"] == 5 and meta["generation_params"]["k"] == run.meta.k
    assert meta["generation_params"]["temperature"] == 0.0
    width = max(generated)
    seq = run.sequence(0)
    assert [t["token"] for t in data["input_tokens"]] == [
        decode_bytes(run.tokens.bytes_of(int(i))) for i in seq[:width]
    ]
    assert [t["token_id"] for t in data["input_tokens"]] == seq[:width].tolist()
    assert [t["token"] for t in data["output_tokens"]] == [r["token"] for r in rows]
    matrix = np.array(data["association_matrix"])
    assert matrix.shape == (len(rows), width)
    norm = np.array(data["normalized_association"])
    assert norm.shape == matrix.shape and (norm >= 0).all()
    for i, r in enumerate(rows):
        t = r["position"]
        np.testing.assert_array_equal(np.float32(matrix[i, :t]), np.float32(r["scores"]))
        assert (matrix[i, t:] == 0).all() and (norm[i, t:] == 0).all()
        assert norm[i].sum() == pytest.approx(1.0, abs=1e-9)
        close(norm[i, :t], np.abs(r["scores"]) / np.abs(r["scores"]).sum(), 1e-9)
    assert doc["tokentui"]["positions"] == generated and doc["tokentui"]["branch"] == 0
    # a second record: --attribution picks, the default is the newest
    m = model_of(model_dirs, "gpt2")
    hint = cli("attribute", "--run", summary.run_id)  # the run knows its model's folder name only
    assert hint.exit_code == 2 and "give its folder with --model" in hint.stderr.splitlines()[-1]
    assert cli("attribute", *m, "--run", summary.run_id, "--positions", "2:4", "--json").exit_code == 0
    newest = json.loads(cli("export", summary.run_id, "--format", "seed004").stdout)
    assert newest["tokentui"]["positions"] == [2, 3] and newest["tokentui"]["attribution"] == 1
    assert cli("export", summary.run_id, "--format", "seed004", "--attribution", 0).stdout == out.read_text()
    # --out refuses an existing file unless --force
    again = cli("attribute", *m, "--run", summary.run_id, "--positions", "3", "--out", out)
    assert again.exit_code == 2 and again.stderr.count("\n") == 1 and "already exists; add --force" in again.stderr
    forced = cli("attribute", *m, "--run", summary.run_id, "--positions", "3", "--out", out, "--force")
    assert forced.exit_code == 0 and json.loads(out.read_text())["tokentui"]["positions"] == [3]


def test_the_text_table_and_hostile_token_text(cli, model_dirs, loaded, cache_dir, tmp_path):
    """A run file from elsewhere whose tokens hold terminal escapes: the table shows them escaped,
    with the top contributors by |score|; the record goes to the cache's copy, the file given is
    left as it was."""
    from tests.factories import score_text
    from tokentui.engine.hf.backend import HFBackend

    backend = HFBackend(loaded("gpt2"), lens_chunk=0)  # (only the model that made a run attributes it)
    run = score_text(backend, "\x1b]52;c;cHduZWQ=\x07\u202e[/]\u009b2J def f(x): return x", k=5)
    seq = run.sequence(0)
    assert run.tokens.bytes_of(int(seq[0])) == b"\x1b"  # (a byte-level BPE: the escape is a token)
    outside = save_run(run, tmp_path / "theirs.tokentui")
    before = outside.read_bytes()
    res = cli("attribute", "-m", model_dirs["gpt2"], "--run", outside, "--positions", "2:6")
    assert res.exit_code == 0, res.output
    assert not any(c in res.stdout + res.stderr for c in RAW_CONTROLS)
    assert outside.read_bytes() == before
    rec = load_run(run_path(run.id, cache_dir)).attributions[-1]
    lines = res.stdout.splitlines()
    assert lines[0].startswith("gradient norm; target log p(token); branch 0 of run ")
    body = lines[2:6]
    assert [int(x.split()[0]) for x in body] == [2, 3, 4, 5]
    for r, line in enumerate(body):
        t = rec.positions[r]
        assert f"'{lone_token(run.tokens.bytes_of(int(seq[t])))[:15]}" in line
        assert f"{float(rec.target_values[r]):.4f}" in line
        row = rec.scores[r, :t]
        top = sorted(range(t), key=lambda i: (-abs(float(row[i])), i))[:5]  # largest |score| first
        at = 0
        for i in top:  # `pos 'token' score`, in that order (tokens shown on their own hold no space)
            m = re.compile(rf" {i} '[^ ]*' {re.escape(f'{float(row[i]):.4g}')}( |$)").search(line, at)
            assert m, (i, line)
            at = m.end() - 1
    assert "'␛'" in res.stdout  # position 0's token, escaped
    js = cli("attribute", "-m", model_dirs["gpt2"], "--run", run.id, "--positions", "2:4", "--json")
    assert js.exit_code == 0 and not any(c in js.stdout for c in RAW_CONTROLS)
    assert json.loads(js.stdout.splitlines()[0])["token"] == decode_bytes(run.tokens.bytes_of(int(seq[2])))


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--run", "{run}", "--method", "lime"], "unknown attribution method 'lime'"),
        (["--run", "{run}", "--positions", "0:3"], "position 0 cannot be attributed"),
        (["--run", "{run}", "--positions", "3:99"], "goes past the end of branch 0"),
        (["--run", "{run}", "--positions", "-99:"], "'-99:' starts before the start of branch 0"),
        (["--run", "{run}", "--positions", "a:b"], "'a' is not a whole number"),
        (["--run", "{run}", "--positions", "1:4:2"], "give a:b (no step)"),
        (["--run", "{run}", "--positions", "5:5"], "holds no position"),
        (["--run", "{run}", "--positions", ""], "--positions is empty"),  # (took the default in silence)
        (["--run", "{run}", "--branch", "5"], "no branch 5"),
        (["--run", "{run}", "--steps", "8"], "--steps goes with --method integrated-gradients"),
        (["--run", "{run}", "--method", "integrated-gradients", "--steps", "0"], "--steps must be 1…1000"),
        (["--run", "{run}", "--method", "attention", "--alternative", "3"], "--alternative needs a gradient method"),
        (["--run", "{run}", "--alternative", "300"], "alternative token id 300 is outside the run's vocabulary"),
        (["--run", "{run}", "--alternative", ""], "--alternative is empty"),
        (["--run", "{run}", "-n", "4"], "--max-new-tokens and --chat go with --prompt"),
        (
            ["--run", "{run}", "--out", "{tmp}/x.csv"],
            "--out x.csv: attribute writes seed 004's JSON; give a .json file",
        ),
        (["--run", "{run}", "--out", "{tmp}"], "is a folder"),
        (["--run", "{run}", "--out", "{tmp}/exists.json"], "already exists; add --force"),
        (["--run", "no-such-run"], "no-such-run"),
        (["--run", "{run}", "-p", "x"], "give either --prompt or --run"),
        ([], "give either --prompt or --run"),
        (["-p", "x", "--positions", "1:3"], "--branch and --positions go with --run"),
        (["-p", "  "], "the prompt is empty"),
        (["-p", "x", "-n", "0"], "max new tokens must be ≥ 1 (got 0)"),
    ],
)
def test_bad_input_fails_in_one_line_before_the_model_loads(cli, weightless_model, cache_dir, tmp_path, args, expect):
    run = make_run()  # a vocabulary of 300
    save_run(run, run_path(run.id, cache_dir))
    (tmp_path / "exists.json").write_text("{}")
    res = cli("attribute", "-m", weightless_model, *[a.format(run=run.id, tmp=tmp_path) for a in args])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("tokentui: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert expect in res.stderr and "Traceback" not in res.output
    assert (tmp_path / "exists.json").read_text() == "{}"


def test_errors_once_the_model_is_loaded_are_one_line(cli, model_dirs, saved_runs, cache_dir):
    run_id, _ = use_run(saved_runs, "gpt2", cache_dir)
    two = cli("attribute", *model_of(model_dirs, "gpt2"), "--run", run_id, "--alternative", "hello world")
    assert two.exit_code == 2 and two.stderr.splitlines()[-1].startswith("tokentui: error: --alternative 'hello world'")
    assert "tokens (" in two.stderr and "not one" in two.stderr and "Traceback" not in two.output
    assert "whole number" not in two.stderr
    # a number that is no token id is read as text, and the line says what an id is
    res = cli("attribute", *model_of(model_dirs, "gpt2"), "--run", run_id, "--alternative", "4528.0")
    assert res.exit_code == 2 and "--alternative '4528.0' encodes to" in res.stderr
    assert "give a token id (a whole number from 0) or one token's text" in res.stderr
    # the token itself as the alternative: a target of 0 and every score 0, said by nothing before
    run = load_run(run_path(run_id, cache_dir))
    at = len(run.prompt)
    own = int(run.sequence(0)[at])
    itself = cli("attribute", *model_of(model_dirs, "gpt2"), "--run", run_id, "--positions", at, "--alternative", own)
    assert itself.exit_code == 2, itself.output
    assert f"the alternative is the token itself at position {at}: nothing to contrast" in itself.stderr
    other = make_run()  # made with a vocabulary of 300
    save_run(other, run_path(other.id, cache_dir))
    res = cli("attribute", "-m", model_dirs["gpt2"], "--run", other.id)
    assert res.exit_code == 2 and "the run was made by m and " in res.stderr.splitlines()[-1]
    for summary in list_runs(cache_dir):
        assert load_run(summary.path).attributions == []  # nothing attributed, nothing saved


def test_export_seed004_of_a_run_without_records_is_one_line(cli, cache_dir):
    run = make_run()
    save_run(run, run_path(run.id, cache_dir))
    res = cli("export", run.id, "--format", "seed004")
    assert res.exit_code == 2 and res.stdout == "" and res.stderr.count("\n") == 1
    assert "holds no attributions" in res.stderr
    res = cli("export", run.id, "--format", "json", "--attribution", "0")
    assert res.exit_code == 2 and "--attribution goes with --format seed004" in res.stderr


@pytest.mark.parametrize(
    "spec, length, want",
    [("2:5", 10, [2, 3, 4]), (":3", 10, [1, 2]), ("7:", 10, [7, 8, 9]), ("-2:", 10, [8, 9]), ("4", 10, [4]),
     ("-1", 10, [9]), (":", 4, [1, 2, 3]), ("1:-1", 5, [1, 2, 3])],
)  # fmt: skip
def test_positions_are_absolute_slices(spec, length, want):
    assert cli_attribute.parse_positions(spec, length) == want


def test_ctrl_c_keeps_the_positions_done(cli, model_dirs, loaded, cache_dir):
    """Integrated gradients over 60 positions (several chunks), on a terminal so that every
    progress event is shown: SIGINT once a chunk is done keeps the finished rows, saved with the
    run and printed, exit code 130."""
    res = cli("generate", "-m", model_dirs["gpt2"], "-p", PROMPT, "-n", 60, "--lens-chunk", 0)
    assert res.exit_code == 0, res.output
    [summary] = list_runs(cache_dir)
    steps = 50
    cmd = [*tokentui_command(), "attribute", "-m", str(model_dirs["gpt2"]), "--run", summary.run_id,
           "--method", "integrated-gradients", "--steps", str(steps), "--cache-dir", str(cache_dir)]  # fmt: skip
    with Terminal(cmd, env={"HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}) as term:
        term.wait_for(b"attributing by integrated gradients: 0/60", timeout=120)
        end, done = time.monotonic() + 120, 0
        while not done:  # until a progress line counts finished positions
            assert time.monotonic() < end and term._read(0.02), term.output[-300:]
            counts = [int(x) for x in re.findall(rb"(\d+)/60 positions", term.text)]
            done = max(counts, default=0)
        term.proc.send_signal(signal.SIGINT)
        rc = term.wait_exit(timeout=60)
        text = term.text.decode()
    assert rc == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert "those under way dropped (Ctrl-C again: now" in text  # said at once (integrated gradients: dropped)
    run = load_run(summary.path)
    [rec] = run.attributions
    kept = len(rec.positions)
    assert (
        done <= kept < 60
        and f"{kept} of 60 positions of branch 0 attributed by integrated gradients (cancelled)" in text
    )
    assert rec.positions == list(range(len(run.prompt), len(run.prompt) + kept))
    shown = [int(x) for x in re.findall(r"^\s*(\d+)  '", text, flags=re.M)]
    assert shown == rec.positions  # the table of the rows kept
    t = rec.positions[-1]
    ids = run.sequence(0).tolist()
    close(rec.scores[-1, :t], reference(loaded("gpt2").model, ids, t, "integrated-gradients", steps=steps))


def test_a_second_ctrl_c_stops_the_attribution_at_once(cli, model_dirs, cache_dir):
    """Integrated gradients over 60 positions: a second Ctrl-C stops now (a trial's second was
    ignored for a minute), exit 130, nothing attributed saved, never a traceback."""
    res = cli("generate", "-m", model_dirs["gpt2"], "-p", PROMPT, "-n", 60, "--lens-chunk", 0)
    assert res.exit_code == 0, res.output
    [summary] = list_runs(cache_dir)
    cmd = [*tokentui_command(), "attribute", "-m", str(model_dirs["gpt2"]), "--run", summary.run_id,
           "--method", "integrated-gradients", "--steps", "400", "--cache-dir", str(cache_dir)]  # fmt: skip
    with Terminal(cmd, env={"HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}) as term:
        term.wait_for(b"attributing by integrated gradients: 0/60", timeout=120)
        term.proc.send_signal(signal.SIGINT)
        term.wait_for(b"Ctrl-C again", timeout=30)
        started = time.monotonic()
        term.proc.send_signal(signal.SIGINT)
        rc = term.wait_exit(timeout=60)
        text = term.text.decode()
    assert rc == 130 and time.monotonic() - started < 20, text
    # (the second press lands where the main thread is: in a save, or in the job, which then ends)
    assert "Traceback" not in text and "nothing saved" in text.splitlines()[-1]
    assert load_run(summary.path).attributions == []


def test_one_attributed_position_is_counted_in_the_singular(cli, model_dirs, saved_runs, cache_dir):
    run_id, _run = use_run(saved_runs, "gpt2", cache_dir)
    res = cli("attribute", *model_of(model_dirs, "gpt2"), "--run", run_id, "--positions", 5)
    assert res.exit_code == 0, res.output
    assert f"run {run_id}: 1 position of branch 0 attributed by" in res.stdout
    assert "1/1 position, 100%" in res.stderr and "positions" not in res.stderr


@pytest.mark.parametrize("command", [["attribute", "--positions", "2"], ["tree", "--max-nodes", "3"]])
def test_a_run_file_from_elsewhere_never_replaces_another_version_in_the_cache(cli, cache_dir, tmp_path, command):
    """`--run PATH` saves into the cache under the run's id: when the cache holds that id with
    other content, the command refuses before the model loads and the cached file is untouched."""
    run = make_run()
    cached = save_run(run, run_path(run.id, cache_dir))
    before = cached.read_bytes()
    run.add_branch(0, 2)  # another version of the same run
    elsewhere = save_run(run, tmp_path / "copy.tokentui")
    res = cli(*command, "--run", elsewhere)
    assert res.exit_code == 2 and f"the cache holds another version of run {run.id}" in res.stderr, res.stderr
    assert cached.read_bytes() == before


def test_a_token_in_the_table_is_quoted_as_python_quotes_it():
    run = make_run()
    assert run.tokens.bytes_of(39) == b"'" and cli_attribute._tok(run, 39) == '"\'"'  # not '''
    assert run.tokens.bytes_of(34) == b'""' and cli_attribute._tok(run, 34) == "'\"\"'"
