"""`tokentui compare`: the JSON lines and the summary object, the saved run (reloaded, exported,
read without torch), the text table, a saved run's ids as the text, and one-line errors."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.factories import other_tokenizer_model_dir, perturbed_model_dir
from tokentui.store.cache import list_runs
from tokentui.store.runfile import load_run

TEXT = "for i in range(3):\n    print(i)\n"
RECORD_KEYS = {"position", "token_id", "token", "logprob_a", "logprob_b", "rank_a", "rank_b", "kl_ab", "kl_ba", "js"}
SUMMARY_KEYS = {
    "mean_loss_a",
    "mean_loss_b",
    "perplexity_a",
    "perplexity_b",
    "mean_kl_ab",
    "mean_kl_ba",
    "sample_kl_estimate",
}


@pytest.fixture(scope="module")
def model_b(model_dirs, tmp_path_factory):
    return perturbed_model_dir(model_dirs["gpt2"], tmp_path_factory.mktemp("gpt2-b"))


def _only_run(cache_dir):
    [saved] = list_runs(cache_dir)
    return load_run(saved.path)


def _full_vocabulary_kl(dir_a, dir_b, ids: list[int]) -> np.ndarray:
    """KL(A‖B) per position 1… from a plain forward of each model (no tokentui code)."""
    from transformers import AutoModelForCausalLM

    logp = []
    for d in (dir_a, dir_b):
        with torch.no_grad():
            logits = AutoModelForCausalLM.from_pretrained(d)(torch.tensor([ids])).logits[0, :-1]
        logp.append(torch.log_softmax(logits.double(), -1))
    return (logp[0].exp() * (logp[0] - logp[1])).sum(-1).numpy()


def test_json_lines_per_position_then_a_summary(cli, model_dirs, model_b, cache_dir):
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", model_b, "--text", TEXT, "-k", 3, "--json")
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    records, summary = lines[:-1], lines[-1]
    run = _only_run(cache_dir)
    ids = run.sequence(0).tolist()
    assert [r["position"] for r in records] == list(range(1, len(ids)))
    assert all(RECORD_KEYS <= set(r) and "summary" not in r for r in records)
    assert [r["token_id"] for r in records] == ids[1:]
    assert run.tokens.bytes_of(ids[0]).decode() + "".join(r["token"] for r in records) == TEXT
    assert summary["summary"] is True and SUMMARY_KEYS <= set(summary) and summary["run_id"] == run.id
    # the numbers: exact KL against a full-vocabulary forward of each model, the summary from the records
    np.testing.assert_allclose(
        [r["kl_ab"] for r in records], _full_vocabulary_kl(model_dirs["gpt2"], model_b, ids), atol=1e-5
    )
    lp_a = np.array([r["logprob_a"] for r in records])
    lp_b = np.array([r["logprob_b"] for r in records])
    assert [r["delta_logprob"] for r in records] == pytest.approx(lp_b - lp_a, abs=1e-6)
    assert summary["tokens"] == len(records)
    assert summary["mean_loss_a"] == pytest.approx(-lp_a.mean(), abs=1e-6)
    assert summary["mean_loss_b"] == pytest.approx(-lp_b.mean(), abs=1e-6)
    assert summary["perplexity_b"] == pytest.approx(math.exp(-lp_b.mean()), rel=1e-6)
    assert summary["sample_kl_estimate"] == pytest.approx((lp_a - lp_b).mean(), abs=1e-6)
    assert summary["mean_kl_ab"] == pytest.approx(np.mean([r["kl_ab"] for r in records]), abs=1e-6)
    assert summary["mean_kl_ba"] == pytest.approx(np.mean([r["kl_ba"] for r in records]), abs=1e-6)
    assert all(r["rank_a"] >= 1 and r["rank_b"] >= 1 and len(r["top_k_a"]) == len(r["top_k_b"]) == 3 for r in records)
    assert all(r["top_k_b"][0][2] >= math.log(r["prob_b"]) - 1e-4 for r in records)  # B's top-1 is at least as likely


def test_the_saved_run_reloads_exports_and_reads_without_torch(cli, model_dirs, model_b, cache_dir, tmp_path):
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", model_b, "--text", TEXT, "-k", 3, "--json")
    records = [json.loads(x) for x in res.stdout.splitlines()[:-1]]
    run = _only_run(cache_dir)
    assert run.meta.mode == "compare" and run.meta.model == model_dirs["gpt2"].name
    assert run.meta.model_b == {
        "model": model_b.name,
        "revision": None,
        "dtype": "float32",
        "device": run.meta.device,  # both models on one device
        "tokenizer": run.meta.tokenizer,  # one tokenizer: the same files, the same hash
        "weights_file": None,
    }
    for r in records:
        st = run.step(0, r["position"])
        assert (st.logprob, st.get("logprob_b"), st.get("kl_ab"), st.get("rank_b")) == (
            pytest.approx(r["logprob_a"]),
            pytest.approx(r["logprob_b"]),
            pytest.approx(r["kl_ab"]),
            r["rank_b"],
        )
    # JSONL export: the usual record plus model B's fields, equal to what compare printed
    jsonl = [json.loads(x) for x in cli("export", run.id, "--format", "jsonl").stdout.splitlines()]
    for r, e in zip(records, jsonl[1:]):
        assert (e["logprob"], e["logprob_b"], e["rank_b"], e["kl_ab"], e["kl_ba"], e["js"], e["top_k_b"]) == (
            r["logprob_a"],
            r["logprob_b"],
            r["rank_b"],
            r["kl_ab"],
            r["kl_ba"],
            r["js"],
            r["top_k_b"],
        )
    doc = json.loads(cli("export", run.id, "--format", "json").stdout)
    assert doc["meta"]["model_b"]["model"] == model_b.name
    assert doc["comparison"] == json.loads(res.stdout.splitlines()[-1])
    rows = list(csv.DictReader(io.StringIO(cli("export", run.id).stdout)))
    assert [float(x["kl_ab"]) for x in rows] == pytest.approx([r["kl_ab"] for r in records])
    assert [int(x["rank_of_next_token_b"]) for x in rows] == [r["rank_b"] for r in records]
    # a replay machine without torch: the run loads and gives the same lines
    code = (
        "import sys; from tokentui.store.runfile import load_run; from tokentui.store.export import comparison_lines; "
        f"print('\\n'.join(comparison_lines(load_run({str(list_runs(cache_dir)[0].path)!r})))); "
        "assert 'torch' not in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == res.stdout


def test_text_table_and_summary_with_hostile_text(cli, model_dirs, model_b, cache_dir):
    hostile = "x = '\x1b]52;c;cHduZWQ=\x07\u202e[/]'\n"
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", model_b, "--text", hostile)
    assert res.exit_code == 0, res.output
    assert not any(c in res.stdout for c in ("\x1b", "\x07", "\u202e"))
    run = _only_run(cache_dir)
    lines = res.stdout.splitlines()
    assert lines[0].split()[:4] == ["pos", "token", "logp", "A"]
    assert len([x for x in lines if x[:5].strip().isdigit()]) == len(run.prompt) - 1
    assert f"A = {model_dirs['gpt2'].name} · B = {model_b.name}" in res.stdout
    assert "mean loss (nats)" in res.stdout and "seed 003's" in res.stdout and "the exact mean KL(A‖B)" in res.stdout


def test_a_saved_runs_ids_are_compared_as_they_are(cli, model_dirs, model_b, cache_dir):
    assert cli("score", "-m", model_dirs["gpt2"], "--text", TEXT, "-k", 3).exit_code == 0
    [scored] = list_runs(cache_dir)
    source = load_run(scored.path)
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", model_b, "--run", scored.run_id, "-k", 3, "--json")
    assert res.exit_code == 0, res.output
    records = [json.loads(x) for x in res.stdout.splitlines()[:-1]]
    assert [r["token_id"] for r in records] == source.sequence(0).tolist()[1:]
    np.testing.assert_allclose([r["logprob_a"] for r in records], source.prompt.col("logprob")[1:], atol=1e-5)


@pytest.mark.parametrize(
    "args, expect",
    [
        (["-m", "{a}", "--text", "x = 1"], "give --model twice"),
        (["-m", "{a}", "-m", "{a}", "-m", "{a}", "--text", "x = 1"], "give --model twice"),
        (["-m", "{a}", "-m", "{a}"], "one of --text, --file, --run or --dataset"),
        (["-m", "{a}", "-m", "{a}", "--text", "x", "--run", "nope"], "only one of"),
        (["-m", "{a}", "-m", "{a}", "--run", "nope", "--chat"], "--chat goes with --text"),
        (["-m", "{a}", "-m", "{a}", "--text", "x", "-k", "0"], "k, the alternatives recorded (-k), must be at least 1"),
        (["-m", "{a}", "-m", "{a}", "--text", "x", "-k", "700"], "more than the vocabulary"),
        (["-m", "{a}", "-m", "{a}", "--dataset", "/nonexistent/d.jsonl"], "/nonexistent/d.jsonl: no such file"),
        (["-m", "{a}", "-m", "{a}", "--dataset", "{a}"], "is a folder, not a file"),
    ],
)
def test_errors_before_the_weights_load_are_one_line(cli, weightless_model, cache_dir, args, expect):
    res = cli("compare", *[a.format(a=weightless_model) for a in args])
    [err] = _error_lines(res)
    assert res.exit_code == 2 and err.startswith("tokentui: error:") and expect in err, res.stderr
    assert not list_runs(cache_dir)


def _error_lines(res) -> list[str]:
    """Standard error without the progress lines (`… reading the configuration`)."""
    return [x for x in res.stderr.splitlines() if not x.startswith("…")]


def test_models_with_different_tokenizers_are_refused(cli, model_dirs, cache_dir, tmp_path):
    other = other_tokenizer_model_dir(tmp_path / "other")
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", other, "--text", TEXT)
    assert res.exit_code == 2 and "tokenizers differ" in res.stderr and not list_runs(cache_dir)
    [err] = _error_lines(res)
    assert err.startswith("tokentui: error:")


def _logprobs(model_dir, ids: list[int]) -> np.ndarray:
    """log p(token t | 0…t−1) for t = 1…, from a plain forward (no tokentui code)."""
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        logits = AutoModelForCausalLM.from_pretrained(model_dir)(torch.tensor([ids])).logits[0, :-1]
    return torch.log_softmax(logits.double(), -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0].numpy()


def test_a_dataset_compares_each_response_and_skips_bad_lines(cli, model_dirs, model_b, cache_dir, tmp_path):
    """`--dataset`: one comparison per usable line — the prompt, then the response encoded on its
    own — whose summary counts the response's positions only (seed 003's loss); a line without a
    response is reported by number and skipped."""
    from transformers import AutoTokenizer

    src = tmp_path / "data.jsonl"
    rows = [("def f(x):", " return x + 1"), ("class A:", "\n    pass  # nothing to do")]  # (of other lengths)
    lines = [json.dumps({"q": p, "a": r}) for p, r in rows]
    lines.insert(1, json.dumps({"q": "no answer"}))
    src.write_text("\n".join(lines) + "\n")
    args = ["compare", "-m", model_dirs["gpt2"], "-m", model_b, "--dataset", src, "--json"]
    res = cli(*args, "--prompt-field", "q", "--response-field", "a")
    assert res.exit_code == 0, res.output
    assert "line 2: skipped" in res.stderr
    summaries = [json.loads(x) for x in res.stdout.splitlines() if '"summary": true' in x]
    assert summaries.pop()["dataset"] is True  # (the whole dataset's numbers: the test below)
    assert len(summaries) == 2
    tok = AutoTokenizer.from_pretrained(model_dirs["gpt2"])
    for (prompt, response), s in zip(rows, summaries, strict=True):
        p_ids = tok(prompt)["input_ids"]
        ids = p_ids + tok(response, add_special_tokens=False)["input_ids"]
        lp_a, lp_b = _logprobs(model_dirs["gpt2"], ids), _logprobs(model_b, ids)
        kl = _full_vocabulary_kl(model_dirs["gpt2"], model_b, ids)
        response = slice(len(p_ids) - 1, None)  # row t−1 predicts token t; the response starts at len(p_ids)
        assert s["first_position"] == len(p_ids) and s["tokens"] == len(ids) - len(p_ids)
        assert s["mean_loss_a"] == pytest.approx(-lp_a[response].mean(), abs=1e-5)
        assert s["mean_loss_b"] == pytest.approx(-lp_b[response].mean(), abs=1e-5)
        assert s["mean_kl_ab"] == pytest.approx(kl[response].mean(), abs=1e-5)
        assert s["sample_kl_estimate"] == pytest.approx((lp_a - lp_b)[response].mean(), abs=1e-5)
        run = load_run(next(r.path for r in list_runs(cache_dir) if r.run_id == s["run_id"]))
        assert run.branches[0].fork_position == len(p_ids) and run.sequence(0).tolist() == ids


def _dataset(tmp_path) -> tuple:
    """A dataset of two usable items on lines 1 and 3 (line 2 has no response)."""
    src = tmp_path / "data.jsonl"
    rows = [("def f(x):", " return x + 1"), ("class A:", "\n    pass  # nothing to do")]  # (of other lengths)
    lines = [json.dumps({"prompt": p, "response": r}) for p, r in rows]
    lines.insert(1, json.dumps({"prompt": "no answer"}))
    src.write_text("\n".join(lines) + "\n")
    return src, rows


def test_a_datasets_json_names_each_items_line_and_ends_with_the_overall_numbers(
    cli, model_dirs, model_b, cache_dir, tmp_path
):
    """Each item's summary carries its line in the file; one last object gives the dataset's numbers
    over all the responses' tokens, each token weighing the same — checked here against the
    per-position lines themselves (the positions from each item's first_position on)."""
    src, _rows = _dataset(tmp_path)
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", model_b, "--dataset", src, "--json")
    assert res.exit_code == 0, res.output
    objects = [json.loads(x) for x in res.stdout.splitlines()]
    *texts, overall = objects
    summaries = [o for o in texts if o.get("summary")]
    assert [s["line"] for s in summaries] == [1, 3]
    counted = []
    for s in summaries:
        counted += [
            o
            for o in texts
            if not o.get("summary") and o["run_id"] == s["run_id"] and o["position"] >= s["first_position"]
        ]
    lp_a = np.array([r["logprob_a"] for r in counted])
    lp_b = np.array([r["logprob_b"] for r in counted])
    assert overall["summary"] is True and overall["dataset"] is True and "run_id" not in overall
    assert (overall["texts"], overall["tokens"]) == (2, len(counted)) == (2, sum(s["tokens"] for s in summaries))
    assert overall["model_a"] == model_dirs["gpt2"].name and overall["model_b"] == model_b.name
    assert overall["mean_loss_a"] == pytest.approx(-lp_a.mean(), abs=1e-6)
    assert overall["mean_loss_b"] == pytest.approx(-lp_b.mean(), abs=1e-6)
    assert overall["perplexity_a"] == pytest.approx(math.exp(-lp_a.mean()), rel=1e-6)
    assert overall["perplexity_b"] == pytest.approx(math.exp(-lp_b.mean()), rel=1e-6)
    for key in ("kl_ab", "kl_ba", "js"):
        assert overall[f"mean_{key}"] == pytest.approx(np.mean([r[key] for r in counted]), abs=1e-6)
    assert overall["sample_kl_estimate"] == pytest.approx((lp_a - lp_b).mean(), abs=1e-6)
    assert overall["sample_kl_error"] == pytest.approx((lp_a - lp_b).mean() - overall["mean_kl_ab"], abs=1e-6)
    # seed 003's calculate_KL.py, written out: per item the mean over its tokens of log p_A − log p_B,
    # then the mean over the items (items weigh the same); it prints abs() of it, tokentui the sign
    per_item = []
    for s in summaries:
        mine = [o for o in counted if o["run_id"] == s["run_id"]]
        per_item.append(np.mean([o["logprob_a"] - o["logprob_b"] for o in mine]))
    assert overall["item_mean_kl_estimate"] == pytest.approx(np.mean(per_item), abs=1e-6)
    assert abs(overall["item_mean_kl_estimate"] - overall["sample_kl_estimate"]) > 1e-4  # (lengths differ)


def test_a_datasets_text_names_each_line_and_marks_where_the_response_starts(
    cli, model_dirs, model_b, cache_dir, tmp_path
):
    src, rows = _dataset(tmp_path)
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", model_b, "--dataset", src)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "dataset line 1 · prompt: def␠f(x):" in out and "dataset line 3 · prompt: class␠A:" in out
    runs = {r.run_id: load_run(r.path) for r in list_runs(cache_dir)}
    for run in runs.values():
        start = run.branches[0].fork_position
        n = run.length(0) - start
        assert f"{n} scored tokens (the response, positions {start}–{run.length(0) - 1})" in out
    # the rule comes right before the response's first row
    lines = out.splitlines()
    rules = [i for i, x in enumerate(lines) if "── the response from position" in x]
    assert len(rules) == 2
    for i in rules:
        start = int(lines[i].split("position ")[1].split()[0])
        assert int(lines[i + 1][:5]) == start and int(lines[i - 1][:5]) == start - 1
    assert "the whole dataset: 2 texts" in out and out.index("the whole dataset") > out.rindex("dataset line 3")


def test_a_one_text_dataset_s_overall_line_counts_one_text(cli, model_dirs, model_b, tmp_path):
    """A trial's dataset with one usable line said "the whole dataset: 1 texts"."""
    src = tmp_path / "one.jsonl"
    src.write_text(json.dumps({"prompt": "def f(x):", "response": " return x"}) + "\n")
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", model_b, "--dataset", src)
    assert res.exit_code == 0, res.output
    n = int(res.stdout.split("the whole dataset: 1 text · ")[1].split()[0])
    assert f"{n} response token{'s' if n != 1 else ''}, each weighing the same" in res.stdout


def test_a_response_after_a_one_token_prompt_is_marked_too(cli, model_dirs, model_b, cache_dir, tmp_path):
    """A prompt of one token: the response starts at position 1, the first scored one; the text
    still says it is the response (a plain text's tokens all count and have no such rule)."""
    src = tmp_path / "one.jsonl"
    src.write_text(json.dumps({"prompt": "x", "response": " = 1"}) + "\n")
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", model_b, "--dataset", src)
    assert res.exit_code == 0, res.output
    [saved] = list_runs(cache_dir)
    run = load_run(saved.path)
    assert run.branches[0].fork_position == 1
    lines = res.stdout.splitlines()
    [rule] = [i for i, x in enumerate(lines) if "── the response from position 1 " in x]
    assert int(lines[rule + 1][:5]) == 1
    n = run.length(0) - 1
    assert f"{n} scored tokens (the response, positions 1–{n}) · dataset line 1" in res.stdout
    plain = cli("compare", "-m", model_dirs["gpt2"], "-m", model_b, "--text", "x = 1")
    assert "── the response" not in plain.stdout and "(the response" not in plain.stdout


def test_each_models_configuration_is_read_once_and_no_lens_is_announced(cli, model_dirs, model_b, cache_dir):
    """The configuration checked before the weights load is the one the load uses: one progress
    line per model, not one for the check and one for the load; the lens is off, so nothing says
    a logit lens is prepared."""
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", model_b, "--text", TEXT)
    assert res.exit_code == 0, res.output
    progress = [x for x in res.stderr.splitlines() if x.startswith("…")]
    reads = [x for x in progress if "reading the configuration" in x]
    assert reads == [
        f"… reading the configuration of {model_dirs['gpt2']}",
        f"… reading the configuration of {model_b}",
    ]
    assert not [x for x in progress if "lens" in x]


def test_a_one_token_text_is_refused_before_model_b_loads(cli, model_dirs, weightless_model, cache_dir):
    """Model A's tokenizer alone says the text is one token: B (here without weights: loading it
    would fail) is never read."""
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", weightless_model, "--text", "x")
    [err] = _error_lines(res)
    assert res.exit_code == 2 and "the text is one token" in err, res.stderr
    assert [x for x in res.stderr.splitlines() if "loading weights" in x] == [
        f"… loading weights of {model_dirs['gpt2']}"
    ]


def test_a_one_token_run_is_refused_before_any_model_loads(cli, weightless_model, cache_dir, tmp_path):
    from tests.factories import synthetic_meta
    from tokentui.core.columns import nan_step
    from tokentui.core.run import Run
    from tokentui.core.tokens import TokenTable
    from tokentui.store.runfile import save_run

    run = Run(synthetic_meta(), TokenTable({i: bytes([i]) for i in range(8)}))
    run.prompt.append(nan_step(0, 1))
    run.add_branch(None, 1).status = "scored"
    path = save_run(run, tmp_path / "one.tokentui")
    res = cli("compare", "-m", weightless_model, "-m", weightless_model, "--run", path)
    [err] = _error_lines(res)
    assert res.exit_code == 2 and "is one token" in err, res.stderr
    assert not [x for x in res.stderr.splitlines() if "loading weights" in x]


def test_chat_on_a_model_without_a_chat_template_is_refused_before_its_weights(cli, cache_dir):
    res = cli("compare", "-m", "demo", "-m", "demo", "--text", "x = 1", "--chat")  # (no chat template)
    [err] = _error_lines(res)
    assert res.exit_code == 2 and err == "tokentui: error: demo has no chat template; leave out --chat", res.stderr
    assert "loading weights" not in res.stderr and not list_runs(cache_dir)


def test_vocabularies_of_other_sizes_are_refused_before_any_weights(cli, model_dirs, cache_dir):
    """Both configurations declare their vocabulary's size: two that differ are refused before
    either model's weights are read (a trial saw both load first)."""
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", "demo", "--text", "x = 1")
    [err] = _error_lines(res)
    assert res.exit_code == 2 and "the models' vocabularies differ" in err and ": 8192)" in err, res.stderr
    assert "loading weights" not in res.stderr and not list_runs(cache_dir)


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_during_a_dataset_prints_and_keeps_the_texts_finished(
    cli, model_dirs, model_b, cache_dir, tmp_path, monkeypatch, presses
):
    """Ctrl-C (a real SIGINT, raised once the second text is saved; one text a batch) stops after
    the texts under way: those finished are printed with their lines and a dataset summary over
    them alone, and the exit says how many were saved. A trial saw nothing printed and "nothing
    saved" while eleven runs were in the cache. A second press stops at once (here: inside the
    second text's save, which is done and counted)."""
    import signal

    from tokentui.cli import compare as cli_compare
    from tokentui.engine.hf import compare as engine_compare

    monkeypatch.setattr(engine_compare, "BATCH_TOKENS", 1)  # each text alone: a batch boundary after each
    save, saved = cli_compare.save_to_cache, []

    def save_then_press(run, cache):
        path = save(run, cache)
        saved.append(run.id)
        if len(saved) == 2:
            for _ in range(presses):
                signal.raise_signal(signal.SIGINT)
        return path

    monkeypatch.setattr(cli_compare, "save_to_cache", save_then_press)
    src = tmp_path / "data.jsonl"
    rows = [("def f(x):" + " x" * n, " return x + 1") for n in range(6)]  # longest first: lines 6, 5, …
    src.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in rows))
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", model_b, "--dataset", src, "--json")
    assert res.exit_code == 130, res.output
    assert res.stderr.strip().splitlines()[-1] == "tokentui: interrupted: 2 of 6 texts compared, each saved as a run"
    objects = [json.loads(x) for x in res.stdout.splitlines()]
    summaries = [o for o in objects if o.get("summary") and not o.get("dataset")]
    assert [s["line"] for s in summaries] == [5, 6]
    assert sorted(s["run_id"] for s in summaries) == sorted(saved) == sorted(r.run_id for r in list_runs(cache_dir))
    overall = objects[-1]
    assert overall["dataset"] is True and overall["texts"] == 2
    assert overall["tokens"] == sum(s["tokens"] for s in summaries)


def test_one_ctrl_c_during_the_last_text_still_exits_130(cli, model_dirs, model_b, cache_dir, monkeypatch):
    """One text, one Ctrl-C while it is under way: it is finished and saved (the first press stops
    after the texts under way), and the exit is still an interrupt's (a trial got 0)."""
    import signal

    from tokentui.cli import compare as cli_compare

    save = cli_compare.save_to_cache

    def press_then_save(run, cache):
        signal.raise_signal(signal.SIGINT)
        return save(run, cache)

    monkeypatch.setattr(cli_compare, "save_to_cache", press_then_save)
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", model_b, "--text", TEXT)
    assert res.exit_code == 130, res.output
    assert res.stderr.strip().splitlines()[-1] == "tokentui: interrupted: 1 of 1 text compared, each saved as a run"
    assert len(list_runs(cache_dir)) == 1


def test_ctrl_c_while_the_results_print_says_the_texts_were_saved(
    cli, model_dirs, model_b, cache_dir, tmp_path, monkeypatch
):
    """A trial pressed Ctrl-C as a long dataset's tables were printing (every text compared and
    saved): it said "interrupted: nothing saved" beside 145 saved runs. A real SIGINT, raised as
    the second text's table is made, now says every text was saved."""
    import signal

    from tokentui.cli import compare as cli_compare

    table, made = cli_compare.table, []

    def press_on_the_second(run):
        made.append(run.id)
        if len(made) == 2:
            signal.raise_signal(signal.SIGINT)
        return table(run)

    monkeypatch.setattr(cli_compare, "table", press_on_the_second)
    src = tmp_path / "data.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"def f{n}(x):", "response": " return x"}) + "\n" for n in range(3)))
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", model_b, "--dataset", src)
    assert res.exit_code == 130, res.output
    assert res.stderr.strip().splitlines()[-1] == (
        "tokentui: interrupted while printing the results: 3 of 3 texts compared, each saved as a run"
        " (tokentui runs lists them)"
    )
    assert len(list_runs(cache_dir)) == 3 and "dataset line" in res.stdout


def test_runs_lists_a_comparison_with_both_models(cli, model_dirs, model_b, cache_dir):
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", model_b, "--text", TEXT)
    assert res.exit_code == 0, res.output
    run = _only_run(cache_dir)
    listed = cli("runs").stdout
    both = f"{run.meta.model} vs {run.meta.model_b['model']}"
    assert both in listed or both[-24:] in listed, listed
    [summary] = list_runs(cache_dir)
    assert summary.models == both and summary.model == run.meta.model
    # long names: each cut to its end, both in sight
    summary.model, summary.model_b = "SmolLM2-135M-Instruct", "SmolLM2-360M-Instruct"
    assert summary.models_in(40) == "…135M-Instruct vs …360M-Instruct"
    assert summary.models_in(24) == "…135M-Inst vs …360M-Inst"
    assert summary.models_in(12) == "…135 vs …360"
    summary.model_b = "ft"
    assert summary.models_in(12) == "Sm…uct vs ft"
    summary.model, summary.model_b = "gpt2", "distilgpt2-finetuned-wikitext"
    assert summary.models_in(24) == "gpt2 vs distilg…wikitext"
    # a name is cut in its middle: a fine-tune's folder differs at its end (a try lost "-tuned")
    summary.model, summary.model_b = "smollm2", "SmolLM2-135M-tuned"
    assert summary.models_in(24) == "smollm2 vs SmolLM…-tuned"


def test_the_numbers_table_keeps_large_perplexities_apart():
    """A random model's perplexity of 66120190.411 filled its 12-wide column and ran into B's:
    "66120190.41166120190.411". Each value stays a separate, readable number."""
    from tokentui.cli.compare import _numbers_text

    s = dict.fromkeys(("mean_kl_ab", "mean_kl_ba", "mean_js", "sample_kl_estimate", "sample_kl_error"), 0.0)
    s |= {"mean_loss_a": 17.9, "mean_loss_b": 16.26, "perplexity_a": 66120190.411, "perplexity_b": 11553976.039}
    row = next(line for line in _numbers_text(s, "x") if line.startswith("perplexity"))
    a, b = (float(x) for x in row.removeprefix("perplexity").split())
    assert a == pytest.approx(s["perplexity_a"], rel=1e-4) and b == pytest.approx(s["perplexity_b"], rel=1e-4)


def test_a_dataset_of_many_bad_lines_says_the_first_then_how_many_more(cli, model_dirs, model_b, tmp_path):
    """compare keeps no manifest: past SHOWN_PROBLEMS bad lines it says how many more there were
    (a dataset of thousands printed a line for each, burying the comparison's own lines)."""
    from tokentui.cli.output import SHOWN_PROBLEMS

    src = tmp_path / "data.jsonl"
    good = json.dumps({"prompt": "def f(x):", "response": " return x"})
    src.write_text("\n".join([good, *["{not json"] * (SHOWN_PROBLEMS + 3)]) + "\n")
    res = cli("compare", "-m", model_dirs["gpt2"], "-m", model_b, "--dataset", src, "--json")
    assert res.exit_code == 0, res.output
    said = [line for line in res.stderr.splitlines() if ": skipped: " in line]
    assert [line.split(": skipped:")[0] for line in said] == [
        f"tokentui: {src} line {i}" for i in range(2, SHOWN_PROBLEMS + 2)
    ]
    assert "tokentui: … and 3 more lines skipped" in res.stderr
    assert sum('"summary": true' in line for line in res.stdout.splitlines()) == 2  # (the text, the dataset)
