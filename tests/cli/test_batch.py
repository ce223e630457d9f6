"""`batch` end to end on tiny real models: generated runs are `model.generate()`'s greedy tokens,
a dataset's response losses are a plain forward's, bad lines are skipped with their line number,
a batch killed mid-way resumes with every item done exactly once, and seed 000's and seed 003's
tables hold what the reloaded runs hold."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from tests.factories import drop_a_merged_token
from tokentui.core.display import decode_bytes
from tokentui.core.params import SamplingParams
from tokentui.store.collection import load_collection
from tokentui.store.export import CSV_COLUMNS
from tokentui.store.export import csv_cell as cell
from tokentui.store.runfile import load_run
from tokentui.store.seed_tables import STATS_COLUMNS, SUMMARY_COLUMNS, token_losses_name

PROMPTS = ["def f(x):", "import os", "class A:", "x = [1, 2"]


def _lines(path, lines) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _greedy(lm, prompt: str, n: int) -> list[int]:
    ids = torch.tensor([lm.tokenizer(prompt)["input_ids"]])
    return lm.model.generate(ids, max_new_tokens=n, do_sample=False, pad_token_id=0)[0].tolist()


def _read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_prompts_batch_under_two_models_generates_greedy_runs_and_seed000_tables(cli, model_dirs, loaded, tmp_path):
    src = tmp_path / "prompts.txt"
    _lines(src, [PROMPTS[0], "", PROMPTS[1], PROMPTS[2]])
    out = tmp_path / "coll"
    models = [str(model_dirs["gpt2"]), str(model_dirs["llama"])]
    res = cli("batch", "--prompts", src, "-m", models[0], "-m", models[1], "-n", 6, "-k", 3, "--out", out)
    assert res.exit_code == 0, res.output
    assert f"{src} line 2: skipped: the prompt is empty" in res.stderr
    assert res.stderr.count("line 2:") == 1  # reported once, not once per model
    # the progress counts both models' items and says which model runs
    assert f"batch · {models[1]} (model 2 of 2) · 3/6 items" in res.stderr, res.stderr

    coll = load_collection(out)
    assert coll.models == models and coll.complete
    by = {(it.model, it.index): it for it in coll.items}
    assert sorted(by) == sorted((m, i) for m in models for i in (1, 2, 3, 4))
    assert by[(models[0], 2)].status == "skipped" and by[(models[0], 2)].error == "the prompt is empty"
    runs = {}
    for item, path in coll.runs():
        run = load_run(path)
        runs[(item.model, item.index)] = run
        family = "gpt2" if item.model == models[0] else "llama"
        prompt = {1: PROMPTS[0], 3: PROMPTS[1], 4: PROMPTS[2]}[item.index]
        assert run.meta.prompt == prompt and run.id == path.stem
        assert run.sequence(0).tolist() == _greedy(loaded(family), prompt, 6)
    assert len(runs) == 6 and sorted(p.name for p in (out / "runs").iterdir()) == sorted(
        f"{r.id}.tokentui" for r in runs.values()
    )

    # the tables are as readable as the runs beside them (not a temporary file's 0600)
    run_mode = next((out / "runs").iterdir()).stat().st_mode & 0o777
    assert {p.stat().st_mode & 0o777 for p in out.iterdir() if p.is_file()} == {run_mode}
    # seed 000's per-token CSV: its columns first, one row per generated token of every item
    rows = _read_csv(out / "model_analysis_stats.csv")
    assert list(rows[0]) == STATS_COLUMNS and STATS_COLUMNS[: len(CSV_COLUMNS)] == CSV_COLUMNS
    for col in ("prompt_id", "full_text", "token_position", "current_token", "next_token", "entropy",
                "probability_of_next_token"):  # fmt: skip
        assert col in rows[0]
    expected = []
    for (model, index), run in sorted(runs.items(), key=lambda kv: (models.index(kv[0][0]), kv[0][1])):
        seq, fork = run.sequence(0), run.branches[0].fork_position
        text = cell(decode_bytes(run.tokens.text(seq.tolist())))  # (the export's escaping: tested in store/)
        for pos in range(fork, len(seq)):
            expected.append(
                (
                    str(index),
                    model,
                    run.id,
                    str(pos - fork),  # seed 000's: the place in the generation, from 0
                    str(pos - 1),
                    cell(decode_bytes(run.tokens.bytes_of(int(seq[pos - 1])))),
                    str(int(seq[pos])),
                    "generated",
                    text,
                )  # fmt: skip
            )
    got = [
        (
            r["prompt_id"],
            r["model"],
            r["run_id"],
            r["token_position"],
            r["absolute_position"],
            r["current_token"],
            r["next_token_id"],
            r["next_token_kind"],
            r["full_text"],
        )  # fmt: skip
        for r in rows
    ]
    assert got == expected
    for r in rows:
        run = runs[(r["model"], int(r["prompt_id"]))]
        st = run.step(0, int(r["absolute_position"]) + 1)
        assert float(r["entropy"]) == pytest.approx(st.entropy, rel=1e-6)
        assert float(r["probability_of_next_token"]) == pytest.approx(math.exp(st.logprob), rel=1e-6)
        assert float(r["logprob_of_next_token"]) == pytest.approx(st.logprob, rel=1e-6)
        assert int(r["rank_of_next_token"]) == st.rank

    # seed 000's summary: one row per model, numpy over the reloaded runs' generated tokens
    summary = _read_csv(out / "model_analysis_summary.csv")
    assert list(summary[0]) == SUMMARY_COLUMNS and [s["model"] for s in summary] == models
    for s in summary:
        mine = [r for (m, _), r in runs.items() if m == s["model"]]
        h = np.concatenate([r.column(0, "entropy")[r.branches[0].fork_position :] for r in mine]).astype(np.float64)
        lp = np.concatenate([r.column(0, "logprob")[r.branches[0].fork_position :] for r in mine]).astype(np.float64)
        assert int(s["items"]) == 3 and int(s["total_tokens"]) == lp.size == 18
        # (std as seed 000's pandas .std(): the sample one, n - 1, as `stats` gives it)
        for col, value in [("mean_entropy", h.mean()), ("median_entropy", np.median(h)),
                           ("std_entropy", h.std(ddof=1)), ("std_probability", np.exp(lp).std(ddof=1)),
                           ("max_entropy", h.max()), ("mean_probability", np.exp(lp).mean()),
                           ("median_probability", np.median(np.exp(lp))), ("mean_loss", -lp.mean()),
                           ("perplexity", np.exp(-lp.mean()))]:  # fmt: skip
            assert float(s[col]) == pytest.approx(value, rel=1e-9), col


def _forward_losses(lm, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """−log p and rank of every token from position 1 on, from one plain forward over the
    whole vocabulary (float32)."""
    with torch.no_grad():
        logits = lm.model(torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, -1)[:-1]
    target = torch.tensor(ids[1:])
    chosen = logp.gather(-1, target[:, None])[:, 0]
    rank = (logp > chosen[:, None]).sum(-1) + 1
    return (-chosen).numpy().astype(np.float64), rank.numpy()


@pytest.mark.parametrize("chat", [False, True])
def test_a_dataset_is_scored_teacher_forced_with_the_response_marked(cli, model_dirs, loaded, tmp_path, chat):
    family = "qwen2"
    lm = loaded(family)
    items = [
        {"prompt": "def f(x):", "response": "\n    return x + 1\n"},
        {"prompt": "Name a module.", "response": " shlex, and heapq"},
    ]
    long_text = " ".join(str(i) for i in range(400))  # far more tokens than the tiny models' 512 positions
    src = tmp_path / "data.jsonl"
    _lines(
        src,
        [json.dumps(items[0]), '{"prompt": "broken', json.dumps({"prompt": "no response"}),
         json.dumps({"prompt": "", "response": "x"}), json.dumps({"prompt": "p", "response": long_text}),
         json.dumps(items[1]), json.dumps({"prompt": "p", "response": "word " * 100_000})],
    )  # fmt: skip
    out = tmp_path / "coll"
    args = ["batch", "--dataset", src, "-m", model_dirs[family], "-k", 4, "--out", out]
    res = cli(*args, *(["--chat"] if chat else []))
    assert res.exit_code == 0, res.output
    for line, why in [(2, "not valid JSON"), (3, "no 'response' field"), (4, "field 'prompt' is empty"),
                      (5, "more than the model's context"), (7, "far more than the model's context")]:  # fmt: skip
        [said] = [x for x in res.stderr.splitlines() if f"{src} line {line}:" in x]
        assert why in said
    coll = load_collection(out)
    assert {it.index: it.status for it in coll.items} == {1: "done", 2: "skipped", 3: "skipped", 4: "skipped",
                                                          5: "skipped", 6: "done", 7: "skipped"}  # fmt: skip
    [sheet] = [json.loads((out / token_losses_name(0, coll.models[0])).read_text())]
    assert sheet["loss_over"] == "response" and [s["index"] for s in sheet["results"]] == [1, 2, 3, 4, 5, 6, 7]
    assert [s["status"] for s in sheet["results"]] == ["done", *["skipped"] * 4, "done", "skipped"]
    assert "more than the model's context" in sheet["results"][4]["error"]
    assert (sheet["model"], sheet["dataset"]) == (str(model_dirs[family]), str(src))
    tok = lm.tokenizer
    done = [sample for sample in sheet["results"] if sample["status"] == "done"]
    for (_item, path), data, sample in zip(coll.runs(), items, done, strict=True):
        if chat:
            text = tok.apply_chat_template([{"role": "user", "content": data["prompt"]}], add_generation_prompt=True,
                                           tokenize=False)  # fmt: skip
            prompt_ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            prompt_ids = tok(data["prompt"])["input_ids"]
        answer = tok(data["response"], add_special_tokens=False)["input_ids"]
        ids = prompt_ids + answer
        loss, rank = _forward_losses(lm, ids)
        n = len(prompt_ids)
        want_loss, want_rank = loss[n - 1 :], rank[n - 1 :]  # positions n … end: the response's
        run = load_run(path)
        assert run.sequence(0).tolist() == ids and run.meta.chat is chat
        assert run.kinds(0) == ["prompt"] * n + ["forced"] * len(answer)
        assert run.branches[0].fork_position == n and run.branches[0].status == "scored"
        tl = sample["token_losses"]
        assert [t["position"] for t in tl] == list(range(n, len(ids))) and [t["token_id"] for t in tl] == answer
        assert [t["token"] for t in tl] == [tok.decode([t]) for t in answer]
        np.testing.assert_allclose([t["loss"] for t in tl], want_loss, rtol=1e-5, atol=1e-5)
        assert [t["rank"] for t in tl] == want_rank.tolist()
        assert sample["avg_loss"] == pytest.approx(want_loss.mean(), rel=1e-5)
        assert sample["perplexity"] == pytest.approx(math.exp(want_loss.mean()), rel=1e-5)
        assert sample["response"] == data["response"] and sample["prompt"] == data["prompt"]

    # --loss-over all: the same runs (nothing is recomputed), the tables over every predicted position
    again = cli(*args, *(["--chat"] if chat else []), "--loss-over", "all")
    assert again.exit_code == 0, again.output
    assert "2 done before, 5 skipped, 0 to do" in again.stderr  # (lines 2-5 and 7: not redone)
    sheet = json.loads((out / token_losses_name(0, coll.models[0])).read_text())
    for (_, path), sample in zip(coll.runs(), [s for s in sheet["results"] if s["status"] == "done"], strict=True):
        ids = load_run(path).sequence(0).tolist()
        loss, _ = _forward_losses(lm, ids)
        assert [t["position"] for t in sample["token_losses"]] == list(range(1, len(ids)))
        np.testing.assert_allclose([t["loss"] for t in sample["token_losses"]], loss, rtol=1e-5, atol=1e-5)
    summary = _read_csv(out / "model_analysis_summary.csv")
    assert int(summary[0]["total_tokens"]) == sum(s["n_tokens"] for s in sheet["results"])
    # seed 003's average_perplexity: the mean of the items' perplexities
    assert sheet["average_perplexity"] == pytest.approx(np.mean([s["perplexity"] for s in sheet["results"][::5]]))


def _seed003_kl(folder, target_gen_model: str) -> dict[str, float]:
    """Seed 003's calculate_KL.py, written out: read every *token_losses*.json of `folder`, group
    by (generation model, task) from the dataset's file name, and for each other model average
    log p_gen − log p_test (p = exp(−loss) + 1e-10) over each data point's tokens, then over the
    data points; it reports the absolute value."""
    data = []
    for name in os.listdir(folder):
        if name.endswith(".json") and "token_losses" in name:
            doc = json.loads((folder / name).read_text())
            base = os.path.basename(doc["dataset"])
            for result in doc["results"]:
                if result is not None and "avg_loss" in result:
                    data.append((doc["model"].split("/")[-1], base.split("_")[0], result["token_losses"]))
    by_model: dict[str, list] = {}
    for model, gen, losses in data:
        assert gen == target_gen_model
        by_model.setdefault(model, []).append(losses)
    out = {}
    for model, points in by_model.items():
        if model == target_gen_model:
            continue
        per_point = []
        for gen_losses, test_losses in zip(by_model[target_gen_model], points):
            m = min(len(gen_losses), len(test_losses))
            if m == 0:
                continue
            g = np.exp(-np.array([t["loss"] for t in gen_losses[:m]])) + 1e-10
            t = np.exp(-np.array([t["loss"] for t in test_losses[:m]])) + 1e-10
            per_point.append(np.mean(np.log(g) - np.log(t)))
        out[model] = abs(float(np.mean(per_point)))
    return out


@pytest.mark.parametrize("one_skipped", [False, True])
def test_seed_003s_own_kl_script_reads_a_dataset_collection_and_agrees_with_compare(
    cli, model_dirs, tmp_path, one_skipped
):
    """Seed 003's users point its calculate_KL.py at the folder of token-loss files: a dataset
    batch of two models writes them in that shape, and the seed's number from them (its algorithm
    written out above) is compare --dataset's item_mean_kl_estimate, up to the seed's abs().
    `one_skipped`: the second model's context is too short for the middle item only. The seed
    pairs the two models' results by their place in the list, so the files must still line up
    (a trial found item 3 of one model paired with item 2 of the other: KL 1.86 for 0.22)."""
    gen, other = str(model_dirs["gpt2"]), model_dirs["llama"]
    rows = [("def f(x):", " return x + 1"), ("class A:", "\n    pass  # nothing"), ("import os", "\nimport sys")]
    if one_skipped:
        other = tmp_path / "llama-short"
        shutil.copytree(model_dirs["llama"], other)
        config = json.loads((other / "config.json").read_text())
        (other / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 16}))
        rows[1] = ("class A:", "\n    pass  # nothing to see here, nothing at all, and nothing more")
    src = tmp_path / f"{model_dirs['gpt2'].name}_code.jsonl"  # seed 003's naming: <generation model>_<task>
    _lines(src, [json.dumps({"prompt": p, "response": r}) for p, r in rows])
    out = tmp_path / "coll"
    res = cli("batch", "--dataset", src, "-m", gen, "-m", other, "-k", 4, "--out", out)
    assert res.exit_code == 0, res.output
    skipped = [(it.model, it.index) for it in load_collection(out).items if it.status != "done"]
    assert skipped == ([(str(other), 2)] if one_skipped else [])
    seed = _seed003_kl(out, model_dirs["gpt2"].name)
    res = cli("compare", "-m", gen, "-m", other, "--dataset", src, "--json")
    assert res.exit_code == 0, res.output
    overall = json.loads(res.stdout.splitlines()[-1])
    assert overall["texts"] == 3 - one_skipped
    assert seed == {other.name: pytest.approx(abs(overall["item_mean_kl_estimate"]), abs=1e-5)}


def test_a_long_texts_full_text_is_on_its_first_counted_row(cli, tmp_path):
    """A text over 2,000 characters goes on its branch's first row only (the CSV export's rule),
    which is a prompt row the stats table does not count: every row of the item had an empty
    full_text. The table puts it on the item's first counted row."""
    prompt = "# " + "=" * 2100  # (over 2,000 characters in few of the demo model's tokens)
    src = tmp_path / "p.txt"
    _lines(src, [prompt, "import os"])
    out = tmp_path / "coll"
    res = cli("batch", "-m", "demo", "--prompts", src, "-n", 3, "--lens-chunk", 0, "--out", out)
    assert res.exit_code == 0, res.output
    rows = _read_csv(out / "model_analysis_stats.csv")
    long_rows = [r for r in rows if r["prompt_id"] == "1"]
    assert len(long_rows) == 3 and long_rows[0]["full_text"].startswith(cell(prompt))
    assert [r["full_text"] for r in long_rows[1:]] == ["", ""]
    assert len({r["full_text"] for r in rows if r["prompt_id"] == "2"}) == 1  # (short: on every row)


def test_a_model_tokentui_cannot_decode_fails_a_prompts_batch_once_and_scores_a_dataset(cli, tokenizer_dir, tmp_path):
    """RWKV's recurrent state is not a cache tokentui can decode with: a batch of prompts says so
    once for the model (not once per item) and marks its items failed; a dataset, scored
    teacher-forced in one forward per item, is done."""
    from tests.conftest import build_model_dir

    rwkv = build_model_dir("rwkv", tokenizer_dir, tmp_path / "rwkv")
    prompts = tmp_path / "p.txt"
    _lines(prompts, PROMPTS[:3])
    res = cli("batch", "-m", rwkv, "--prompts", prompts, "-n", 2, "--out", tmp_path / "gen")
    assert res.exit_code != 0 and res.stderr.count("cannot generate with this model") == 1, res.output
    assert {it.status for it in load_collection(tmp_path / "gen").items} == {"failed"}
    data = tmp_path / "data.jsonl"
    _lines(data, [json.dumps({"prompt": "def f(x):", "response": " return x"})])
    res = cli("batch", "-m", rwkv, "--dataset", data, "--out", tmp_path / "scored")
    assert res.exit_code == 0, res.output
    assert [it.status for it in load_collection(tmp_path / "scored").items] == ["done"]


def test_a_model_whose_tokenizer_files_are_broken_fails_and_the_next_model_runs(cli, model_dirs, tmp_path):
    """A tokenizer.json the tokenizers library rejects with a bare Exception ended the whole batch
    as "a bug in tokentui", the next model never run; its items are failed, said once."""
    broken = tmp_path / "broken"
    shutil.copytree(model_dirs["gpt2"], broken)
    drop_a_merged_token(broken)
    prompts = tmp_path / "p.txt"
    _lines(prompts, PROMPTS[:2])
    res = cli("batch", "-m", broken, "-m", model_dirs["llama"], "--prompts", prompts, "-n", 2, "--out", tmp_path / "c")
    assert res.exit_code == 2 and "a bug in tokentui" not in res.output, res.output
    assert res.stderr.count("the tokenizer files of") == 1, res.stderr
    items = load_collection(tmp_path / "c").items
    assert sorted((it.model == str(model_dirs["llama"]), it.status) for it in items) == [
        (False, "failed"),
        (False, "failed"),
        (True, "done"),
        (True, "done"),
    ]


def test_a_resumed_batch_redoes_only_what_changed(cli, model_dirs, tmp_path):
    src = tmp_path / "p.txt"
    _lines(src, PROMPTS[:3])
    out = tmp_path / "coll"
    gpt2, llama = str(model_dirs["gpt2"]), str(model_dirs["llama"])
    args = ["batch", "--prompts", src, "-n", 3, "--lens-chunk", 0, "--out", out]
    assert cli(*args, "-m", gpt2).exit_code == 0
    coll = load_collection(out)
    before = {it.index: (it.run_file.read_bytes(), it.run_file.stat().st_mtime_ns) for it, _ in coll.runs()}

    _lines(src, [PROMPTS[0], "import sys", PROMPTS[2]])  # line 2 changed; and a second model
    damaged = coll.run_file_for(gpt2, 3)
    damaged.write_bytes(damaged.read_bytes()[:-10])  # line 3's run no longer loads: redone too
    res = cli(*args, "-m", gpt2, "-m", llama)
    assert res.exit_code == 0, res.output
    assert "1 done before, 2 runs dropped, 5 to do" in res.stderr
    after = load_collection(out)
    assert after.id == coll.id and after.models == [gpt2, llama]
    assert [(it.model, it.index) for it, _ in after.runs()] == [(m, i) for m in (gpt2, llama) for i in (1, 2, 3)]
    for it, path in after.runs():
        if it.index == 2:
            assert load_run(path).meta.prompt == "import sys"
        elif it.model == gpt2:
            same = (path.read_bytes(), path.stat().st_mtime_ns) == before[it.index]
            assert same == (it.index == 1)
            load_run(path)
    assert len(list((out / "runs").iterdir())) == 6
    assert (out / token_losses_name(1, llama)).exists()

    # a model the command no longer names is refused (a rerun that forgot a -m deleted its runs,
    # saying "3 done (3 before)"), nothing changed; with --replace, it is gone with its runs
    files = {p.name: p.read_bytes() for p in out.glob("*.*") if p.is_file()}
    res = cli(*args, "-m", llama)
    assert res.exit_code == 2 and f"holds 3 done runs of {gpt2}, a model this command does not name" in res.stderr
    assert load_collection(out).models == [gpt2, llama] and len(list((out / "runs").iterdir())) == 6
    assert {p.name: p.read_bytes() for p in out.glob("*.*") if p.is_file()} == files
    res = cli(*args, "-m", llama, "--replace")
    assert res.exit_code == 0, res.output
    assert "3 done before, 3 runs dropped, 0 to do" in res.stderr
    last = load_collection(out)
    assert last.models == [llama] and {it.model for it in last.items} == {llama}
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(p.name for _, p in last.runs())
    assert sorted(p.name for p in out.glob("token_losses-*.json")) == [token_losses_name(0, llama)]
    # greedy decoding uses no seed, top-k or top-p: giving them redoes nothing
    res = cli(*args, "-m", llama, "--seed", 3, "--top-k", 5, "--top-p", 0.5)
    assert res.exit_code == 0 and "3 done before, 0 to do" in res.stderr, res.output
    assert "--temperature 0 decodes greedily: --top-k, --top-p, --seed go unused" in res.stderr  # (and it says so)
    # nor, with the lens off (--lens-chunk 0), the lens's top-k or precision; with it on, they do
    res = cli(*args, "-m", llama, "--lens-top", 2, "--lens-precision", "float32")
    assert res.exit_code == 0 and "3 done before, 0 to do" in res.stderr, res.output
    on = [a if a != 0 else 8 for a in args]  # (--lens-chunk 8)
    res = cli(*on, "-m", llama)
    assert res.exit_code == 2 and "other settings (--lens-chunk 0 → 8)" in res.stderr, res.output
    assert cli(*on, "-m", llama, "--replace").exit_code == 0
    # other settings in the same folder redo its runs only with --replace (a typo lost hours of runs)
    files = {p.name: p.read_bytes() for p in (out / "runs").iterdir()}
    res = cli(*on, "-m", llama, "--lens-top", 2)
    assert res.exit_code == 2, res.output
    assert (
        "was made with other settings (--lens-top 5 → 2): this command would drop or redo 3 of its 3 runs" in res.stderr
    )
    assert {p.name: p.read_bytes() for p in (out / "runs").iterdir()} == files
    res = cli(*on, "-m", llama, "--lens-top", 2, "--replace")
    assert res.exit_code == 0 and "0 done before, 3 runs dropped, 3 to do" in res.stderr, res.output


def test_lines_that_moved_keep_their_runs_under_their_new_line(cli, model_dirs, tmp_path):
    """A line inserted at the top of the prompts file moved every item down one, and the resumed
    batch redid all of them. Now an item is matched by its key on another line too: its entry names
    the new line and its run keeps its file and id (nothing is written, so a kill loses nothing;
    an id printed before still opens the same run); a repeated line claims one earlier run each;
    a new run whose line's number a moved run holds gets a number past every line."""
    from tokentui.store.collection import load_item_run

    src = tmp_path / "p.txt"
    _lines(src, PROMPTS[:3])
    out = tmp_path / "coll"
    args = ["batch", "--prompts", src, "-m", str(model_dirs["gpt2"]), "-n", 3, "--lens-chunk", 0, "--out", out]
    assert cli(*args).exit_code == 0
    made = {}  # run id -> (prompt, tokens) when it was made
    for _, path in load_collection(out).runs():
        run = load_run(path)
        made[run.id] = (run.meta.prompt, run.sequence(0).tolist())

    def check(lines: list[str], kept: int) -> None:
        coll = load_collection(out)
        assert [it.index for it, _ in coll.runs()] == list(range(1, len(lines) + 1))
        ids = []
        for it, path in coll.runs():
            run = load_item_run(path)  # (its id is its file's name)
            assert run.meta.prompt == lines[it.index - 1]
            assert made.setdefault(run.id, (run.meta.prompt, run.sequence(0).tolist())) == (
                run.meta.prompt,
                run.sequence(0).tolist(),
            )
            ids.append(run.id)
        assert len(set(ids)) == len(ids) and len(set(ids) & set(before)) == kept
        assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(p.name for _, p in coll.runs())
        rows = _read_csv(out / "model_analysis_stats.csv")
        assert {(int(r["prompt_id"]), r["run_id"]) for r in rows} == {(it.index, p.stem) for it, p in coll.runs()}

    before = set(made)
    lines = ["x = 1", *PROMPTS[:3], PROMPTS[1]]  # a line at the top, one repeated at the end
    _lines(src, lines)
    res = cli(*args)
    assert res.exit_code == 0, res.output
    assert "3 done before (3 on other lines now), 2 to do" in res.stderr
    check(lines, kept=3)
    coll = load_collection(out)
    assert coll.run_file_for(str(model_dirs["gpt2"]), 1) == next(p for it, p in coll.runs() if it.index == 2)
    assert next(p for it, p in coll.runs() if it.index == 1).stem.endswith("-6")  # (1 held: past lines 1..5)
    before = set(made)
    lines.reverse()
    _lines(src, lines)
    res = cli(*args)
    assert res.exit_code == 0, res.output
    assert "5 done before (4 on other lines now), 0 to do" in res.stderr
    check(lines, kept=5)
    lines.pop(0)  # a line deleted: its run goes, said so
    _lines(src, lines)
    res = cli(*args)
    assert res.exit_code == 0 and "4 done before (4 on other lines now), 1 run dropped, 0 to do" in res.stderr
    before = set(made)
    check(lines, kept=4)


def test_other_settings_are_refused_only_when_they_change_the_runs_and_a_forgotten_model_first(
    cli, model_dirs, tmp_path
):
    """The refusal of other settings compares what shapes the runs: an option that changes nothing
    recorded (the lens's precision with the lens off) beside an edited line is no reason; and a
    command that also forgets a model hears that first (--replace, which the settings refusal
    offers, would let that model's runs go without a word)."""
    src = tmp_path / "p.txt"
    _lines(src, PROMPTS[:3])
    out = tmp_path / "coll"
    gpt2, llama = str(model_dirs["gpt2"]), str(model_dirs["llama"])
    args = ["batch", "--prompts", src, "-n", 2, "--lens-chunk", 0, "--out", out]
    assert cli(*args, "-m", gpt2, "-m", llama).exit_code == 0
    _lines(src, [PROMPTS[0], "import sys", PROMPTS[2]])
    res = cli(*args, "-m", gpt2, "-m", llama, "--lens-precision", "float32")
    assert res.exit_code == 0 and "4 done before, 2 runs dropped, 2 to do" in res.stderr, res.output
    res = cli(*args, "-m", llama, "-k", 3)
    assert res.exit_code == 2 and f"holds 3 done runs of {gpt2}, a model this command does not name" in res.stderr
    _lines(src, [PROMPTS[0], "import sys", PROMPTS[2], ""])  # (a blank line: skipped, said only when not refused)
    res = cli(*args, "-m", gpt2, "-m", llama, "-k", 3)
    assert res.exit_code == 2 and "other settings (-k 20 → 3)" in res.stderr, res.output
    assert "skipped" not in res.stderr  # (a trial read a page of "skipped" lines, then the refusal)
    res = cli(*args, "-m", gpt2, "-m", llama)
    assert res.exit_code == 0 and "line 4: skipped" in res.stderr, res.output


def test_a_model_saved_again_into_its_folder_redoes_its_items(cli, model_dirs, loaded, tmp_path):
    """The fine-tune workflow: train, batch, train again into the same folder, batch again. The
    second batch must score under the new weights (a trial saw the first weights' numbers kept:
    the key named the folder, not what is in it). In one process, the configuration the run with
    nothing to do read and kept must not be the one the new weights are loaded with (they would
    not fit it, and transformers would initialise the model at random)."""
    import shutil

    src = tmp_path / "data.jsonl"
    items = [{"prompt": "def f(x):", "response": " return x"}, {"prompt": "import os", "response": "\nimport sys"}]
    _lines(src, [json.dumps(it) for it in items])
    ft = tmp_path / "ft"
    shutil.copytree(model_dirs["gpt2"], ft)
    out = tmp_path / "coll"
    args = ["batch", "--dataset", src, "-m", ft, "--out", out]
    assert cli(*args).exit_code == 0
    res = cli(*args)
    assert res.exit_code == 0 and "2 done before, 0 to do" in res.stderr, res.output  # nothing changed
    shutil.rmtree(ft)
    shutil.copytree(model_dirs["llama"], ft)  # "trained again": other weights, the same tokenizer
    res = cli(*args)
    assert res.exit_code == 0 and "0 done before, 2 runs dropped, 2 to do" in res.stderr, res.output
    assert " response tokens · mean loss" in res.stdout
    lm = loaded("llama")
    sheet = json.loads((out / token_losses_name(0, str(ft))).read_text())
    for data, sample in zip(items, sheet["results"], strict=True):
        prompt_ids = lm.tokenizer(data["prompt"])["input_ids"]
        ids = prompt_ids + lm.tokenizer(data["response"], add_special_tokens=False)["input_ids"]
        loss, _ = _forward_losses(lm, ids)
        np.testing.assert_allclose([t["loss"] for t in sample["token_losses"]], loss[len(prompt_ids) - 1 :],
                                   rtol=1e-5, atol=1e-5)  # fmt: skip


def test_prompt_field_reads_json_lines_whatever_the_files_name(cli, model_dirs, tmp_path):
    """A prompts file is JSON Lines by its name (*.jsonl), or when --prompt-field is given: a trial
    named one `p.json` and gave --prompt-field, and every prompt was the whole JSON line, silently.
    Without the option, such a file is read one prompt a line, with a warning saying so."""
    src = tmp_path / "p.json"
    _lines(src, [json.dumps({"q": "def f(x):", "prompt": "no"}), json.dumps({"q": "import os"})])
    args = ["batch", "-m", model_dirs["gpt2"], "--prompts", src, "-n", 1, "--lens-chunk", 0]
    res = cli(*args, "--prompt-field", "q", "--out", tmp_path / "a")
    assert res.exit_code == 0, res.output
    assert [load_run(p).meta.prompt for _, p in load_collection(tmp_path / "a").runs()] == ["def f(x):", "import os"]
    assert "JSON object" not in res.stderr
    res = cli(*args, "--out", tmp_path / "b")
    assert res.exit_code == 0, res.output
    lines = src.read_text().splitlines()
    assert [load_run(p).meta.prompt for _, p in load_collection(tmp_path / "b").runs()] == lines
    [warning] = [x for x in res.stderr.splitlines() if "every line is a JSON object" in x]
    assert "name the file *.jsonl or give --prompt-field" in warning
    assert "· 2 generated tokens ·" in res.stdout  # (a dataset's are "response tokens")


def test_with_force_the_summary_counts_forced_or_generated_tokens(cli, model_dirs, tmp_path):
    """The tables count an answer's --force prefix with what followed it (the README's definition);
    the summary called them all "generated tokens" (a trial: 48 of which 16 were forced)."""
    src = tmp_path / "p.txt"
    _lines(src, PROMPTS[:2])
    res = cli(
        "batch", "-m", model_dirs["gpt2"], "--prompts", src, "-n", 2, "--force", " return x", "--out", tmp_path / "c"
    )
    assert res.exit_code == 0, res.output
    runs = [load_run(p) for _, p in load_collection(tmp_path / "c").runs()]
    kinds = [k for run in runs for k in run.kinds(0)[len(run.prompt) :]]
    assert kinds.count("generated") == 4 and kinds.count("forced") > 0
    assert f"· {len(kinds)} forced or generated tokens ·" in res.stdout, res.stdout


def test_raw_csv_keeps_the_tables_text_as_it_is(cli, model_dirs, tmp_path):
    """Seed 000's CSV is read with pandas for token analysis: --raw-csv writes text starting with
    = + - @ as it is (by default a ' goes before it, so a spreadsheet runs no formula)."""
    src = tmp_path / "p.txt"
    _lines(src, ["=1+2", "@x"])
    args = ["batch", "-m", model_dirs["gpt2"], "--prompts", src, "-n", 2, "--lens-chunk", 0, "--out", tmp_path / "c"]
    assert cli(*args).exit_code == 0
    guarded = {r["full_text"][:3] for r in _read_csv(tmp_path / "c" / "model_analysis_stats.csv")}
    assert guarded == {"'=1", "'@x"}, guarded
    res = cli(*args, "--raw-csv")
    assert res.exit_code == 0 and "2 done before, 0 to do" in res.stderr, res.output  # the tables alone change
    rows = _read_csv(tmp_path / "c" / "model_analysis_stats.csv")
    runs = {it.index: load_run(path) for it, path in load_collection(tmp_path / "c").runs()}
    assert {r["full_text"] for r in rows} == {decode_bytes(run.tokens.text(run.sequence(0))) for run in runs.values()}
    assert {r["full_text"][:2] for r in rows} == {"=1", "@x"}


def test_another_input_file_does_not_silently_replace_a_collection(cli, model_dirs, tmp_path):
    """--out naming a collection made from another file: refused in one line before anything
    changes (its runs stay); --replace rebuilds it; the same file moved elsewhere keeps them."""
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    _lines(first, PROMPTS[:2])
    _lines(second, ["import sys", "x = 1", "y = 2"])
    out = tmp_path / "coll"
    args = ["-m", str(model_dirs["gpt2"]), "-n", 2, "--lens-chunk", 0, "--out", out]
    assert cli("batch", "--prompts", first, *args).exit_code == 0
    manifest, runs = (out / "collection.json").read_bytes(), sorted((out / "runs").iterdir())
    res = cli("batch", "--prompts", second, *args)
    *before, last = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and last.startswith("tokentui: error:"), res.output
    assert all(line.startswith("… ") for line in before)  # only progress (the configuration read first)
    assert f"was made from {first}" in res.stderr and "drop or redo 2 of its 2 runs" in res.stderr
    assert (out / "collection.json").read_bytes() == manifest and sorted((out / "runs").iterdir()) == runs
    moved = tmp_path / "moved.txt"
    first.rename(moved)  # the same prompts from another path: nothing is lost, nothing refused
    res = cli("batch", "--prompts", moved, *args)
    assert res.exit_code == 0 and "2 done before, 0 to do" in res.stderr, res.output
    res = cli("batch", "--prompts", second, *args, "--replace")
    assert res.exit_code == 0 and "0 done before, 2 runs dropped, 3 to do" in res.stderr, res.output
    assert [load_run(p).meta.prompt for _, p in load_collection(out).runs()] == ["import sys", "x = 1", "y = 2"]


def test_without_out_the_same_command_finds_its_collection_again(cli, model_dirs, tmp_path, cache_dir):
    src = tmp_path / "p.txt"
    _lines(src, PROMPTS[:2])
    args = ["batch", "--prompts", src, "-m", model_dirs["gpt2"], "-n", 2, "--lens-chunk", 0]
    first = cli(*args)
    assert first.exit_code == 0, first.output
    folder = first.stdout.splitlines()[0].removeprefix("collection ")
    assert folder.startswith(str(cache_dir / "collections" / "p-"))
    assert len(list(load_collection(folder).runs())) == 2
    again = cli(*args)
    assert "2 done before, 0 to do" in again.stderr and again.stdout.splitlines()[0] == first.stdout.splitlines()[0]
    other = cli(*args[:-2], "--lens-chunk", 1)  # another command: another collection
    assert other.stdout.splitlines()[0] != first.stdout.splitlines()[0]
    # a run of a collection in the cache is found by its id, as any cached run (a trial had to
    # give its file's path to `stats`)
    _, path = next(iter(load_collection(folder).runs()))
    res = cli("stats", path.stem, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["runs"][0]["run_id"] == path.stem, res.output
    assert cli("export", path.stem, "--format", "json").exit_code == 0
    res = cli("stats", "20990101-000000-abcdef")
    assert res.exit_code == 2 and "no such run" in res.stderr and "batch collections" in res.stderr


def test_a_collection_made_with_out_is_found_by_run_id_too(cli, model_dirs, tmp_path, cache_dir):
    """`--out` elsewhere: the cache lists the folder, so its runs are found by id as the cache's own
    collections' are (a trial had to give the run file's path)."""
    src = tmp_path / "p.txt"
    _lines(src, PROMPTS[:2])
    args = ["batch", "--prompts", src, "-m", model_dirs["gpt2"], "-n", 2, "--lens-chunk", 0]
    outs = [tmp_path / "elsewhere" / "one", tmp_path / "two"]
    for out in outs:
        assert cli(*args, "--out", out).exit_code == 0
    assert not (cache_dir / "collections").exists()  # nothing of them in the cache but the list
    for out in outs:
        for _, path in load_collection(out).runs():
            res = cli("stats", path.stem, "--json")
            assert res.exit_code == 0 and json.loads(res.stdout)["runs"][0]["run_id"] == path.stem, res.output
    assert cli(*args, "--out", outs[0]).exit_code == 0  # again: listed once
    assert (cache_dir / "collections-elsewhere.txt").read_text().splitlines() == [str(outs[1]), str(outs[0])]
    shutil.rmtree(outs[0])  # a listed folder that is gone is passed over
    (_, path), (_, other) = list(load_collection(outs[1]).runs())
    assert cli("export", path.stem, "--format", "json").exit_code == 0
    # a listed folder may hold received files: a link, or a file holding another run, is not the run
    stranger = tmp_path / "stranger.tokentui"
    shutil.copy(other, stranger)
    path.unlink()
    path.symlink_to(stranger)
    res = cli("export", path.stem, "--format", "json")
    assert res.exit_code == 2 and "no such run" in res.stderr, res.output
    path.unlink()
    shutil.copy(other, path)
    assert cli("export", path.stem, "--format", "json").exit_code == 2


def test_a_collection_whose_path_holds_a_line_break_says_it_is_not_listed(cli, model_dirs, tmp_path, cache_dir):
    """The cache's list is one path a line: such a folder was left out of it in silence, and its
    run ids, printed by the batch, were then "no such run"."""
    src = tmp_path / "p.txt"
    _lines(src, PROMPTS[:1])
    out = tmp_path / "co\nll"
    res = cli("batch", "--prompts", src, "-m", model_dirs["gpt2"], "-n", 2, "--lens-chunk", 0, "--out", out)
    assert res.exit_code == 0, res.output
    assert "holds a line break, so the run cache cannot list it" in res.stderr
    assert "co␊ll" in res.stderr and "co\nll" not in res.stderr  # (the path shown escaped)
    assert not (cache_dir / "collections-elsewhere.txt").exists()
    [(_, path)] = list(load_collection(out).runs())
    assert cli("export", path, "--format", "json").exit_code == 0  # by its path, as the line says


def test_a_batch_larger_than_a_collection_takes_is_refused_before_it_starts(cli, model_dirs, tmp_path, monkeypatch):
    """A manifest past its size limit could not be read back (resume, stats, export): a batch of
    more runs (items × models) than MAX_ITEMS is refused before any model loads (the limit is set
    low here; it is 500,000)."""
    from tokentui.store import collection

    monkeypatch.setattr(collection, "MAX_ITEMS", 5)
    src = tmp_path / "p.txt"
    _lines(src, PROMPTS[:3])
    args = ["batch", "--prompts", src, "-n", 2, "--lens-chunk", 0, "--out", tmp_path / "c"]
    res = cli(*args, "-m", model_dirs["gpt2"], "-m", model_dirs["llama"])
    assert res.exit_code == 2 and "3 items × 2 models is more runs than one collection takes (5)" in res.stderr
    assert "loading" not in res.stderr and not (tmp_path / "c").exists()
    assert cli(*args, "-m", model_dirs["gpt2"]).exit_code == 0


def test_the_input_named_through_dot_dot_finds_the_same_collection(cli, model_dirs, tmp_path, cache_dir, monkeypatch):
    """The default folder's hash is of the input's absolute path, normalised: `../p.txt` from a
    subfolder is `p.txt` from its parent (it made another collection and redid every item)."""
    _lines(tmp_path / "p.txt", PROMPTS[:2])
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    args = ["-m", model_dirs["gpt2"], "-n", 2, "--lens-chunk", 0]
    first = cli("batch", "--prompts", "p.txt", *args)
    assert first.exit_code == 0, first.output
    monkeypatch.chdir(tmp_path / "sub")
    again = cli("batch", "--prompts", "../p.txt", *args)
    assert again.stdout.splitlines()[0] == first.stdout.splitlines()[0] and "2 done before, 0 to do" in again.stderr
    folder = first.stdout.splitlines()[0].removeprefix("collection ")
    assert load_collection(folder).settings["source"] == str(tmp_path / "p.txt")


def _run_files(runs_dir) -> int:
    if not runs_dir.is_dir():
        return 0
    return sum(p.suffix == ".tokentui" and not p.name.startswith(".") for p in runs_dir.iterdir())


def _stopped_batch(tmp_path, model_dir, n_items: int = 10):
    src = tmp_path / "p.txt"
    _lines(src, [f"{PROMPTS[i % 4]} # {i}" for i in range(n_items)])
    out = tmp_path / "coll"
    args = ["batch", "--prompts", src, "-m", model_dir, "-n", 4, "--lens-chunk", 0, "--out", out]
    return args, out


def _resume_and_check(cli, args, out, n_items: int) -> None:
    """The manifest left by the stopped batch is consistent; running the command again does the
    rest, each item exactly once, and leaves the items finished before untouched."""
    stopped = load_collection(out)
    assert not stopped.complete
    done_before = {it.index: path.read_bytes() for it, path in stopped.runs()}
    assert 1 <= len(done_before) < n_items
    res = cli(*args)
    assert res.exit_code == 0, res.output
    assert f"{len(done_before)} done before, {n_items - len(done_before)} to do" in res.stderr
    coll = load_collection(out)
    assert coll.complete and coll.id == stopped.id
    assert sorted(it.index for it in coll.items) == list(range(1, n_items + 1))
    assert all(it.status == "done" for it in coll.items)
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(path.name for _, path in coll.runs())
    for it, path in coll.runs():
        load_run(path)
        if it.index in done_before:
            assert path.read_bytes() == done_before[it.index]  # not redone


def test_a_batch_killed_mid_way_resumes_with_every_item_done_once(cli, model_dirs, tmp_path):
    n_items = 10
    args, out = _stopped_batch(tmp_path, model_dirs["gpt2"], n_items)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tokentui", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)  # fmt: skip
    end = time.monotonic() + 120
    while _run_files(out / "runs") < 2:  # the first item is in the manifest once the second's file is saved
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < end, "no run file appeared"
        time.sleep(0.002)
    proc.kill()  # SIGKILL: no handler, no cleanup, wherever it was
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    _resume_and_check(cli, args, out, n_items)


def test_the_manifest_is_written_after_the_first_item_then_at_most_once_per_gap(tmp_path, monkeypatch):
    """A manifest rewritten (and synced) after every short item was a tenth of the batch: it is
    written at once the first time, then held back for `MIN_GAP` (the kill above loses only
    what was held back, and redoes it)."""
    from tokentui.cli.batch import _Saver
    from tokentui.store.collection import Collection, CollectionItem

    coll = Collection.new(tmp_path / "coll")
    coll.models = ["m"]
    save = _Saver(coll)
    monkeypatch.setattr(_Saver, "MIN_GAP", 60.0)  # (however slow this machine is now)

    def written() -> list[int]:
        return [it.index for it in load_collection(coll.path).items]

    coll.put(CollectionItem(1, "m", "skipped", None, "too long", "1" * 64))
    save()
    assert written() == [1]
    coll.put(CollectionItem(2, "m", "skipped", None, "too long", "2" * 64))
    save()
    assert written() == [1]
    monkeypatch.setattr(_Saver, "MIN_GAP", 0.0)
    monkeypatch.setattr(_Saver, "SPACING", 0)
    save()
    assert written() == [1, 2]


def test_a_held_manifest_write_is_made_while_the_next_items_run(tmp_path, monkeypatch):
    """Sixteen items of a group finish at once: the first is written, the rest held back by the
    gap. They used to wait for the next item to finish (a whole group later: a kill meanwhile
    redid them); the next items' job events now make the write once its time comes."""
    from tokentui.cli.batch import _Saver
    from tokentui.store.collection import Collection, CollectionItem

    coll = Collection.new(tmp_path / "coll")
    coll.models = ["m"]
    save = _Saver(coll)
    monkeypatch.setattr(_Saver, "MIN_GAP", 60.0)
    for i in (1, 2, 3):
        coll.put(CollectionItem(i, "m", "skipped", None, "too long", str(i) * 64))
        save()
    save.due()  # (the next item's job, before the gap has passed)
    assert [it.index for it in load_collection(coll.path).items] == [1]
    monkeypatch.setattr(_Saver, "MIN_GAP", 0.0)
    monkeypatch.setattr(_Saver, "SPACING", 0)
    save.due()
    assert [it.index for it in load_collection(coll.path).items] == [1, 2, 3]
    written = (coll.path / "collection.json").stat().st_mtime_ns
    save.due()  # (nothing held: nothing written)
    assert (coll.path / "collection.json").stat().st_mtime_ns == written


def _ctrl_c_once(cli, args, ready):
    """The result of `cli(*args)` run in this process, with a real SIGINT sent to it once `ready()`
    (polled from another thread; 60 s at most)."""

    def press_ctrl_c() -> None:
        end = time.monotonic() + 60
        while not ready() and time.monotonic() < end:
            time.sleep(0.002)
        os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=press_ctrl_c)
    watcher.start()
    res = cli(*args)
    watcher.join()
    return res


def test_ctrl_c_stops_after_the_current_item_with_exit_130_and_the_batch_resumes(cli, model_dirs, tmp_path):
    """A real SIGINT to this process (the command runs in it): the handler `batch` installs turns
    it into "stop after this item"."""
    n_items = 10
    args, out = _stopped_batch(tmp_path, model_dirs["gpt2"], n_items)

    res = _ctrl_c_once(cli, args, lambda: bool(_run_files(out / "runs")))
    assert res.exit_code == 130, res.output
    assert "stopping after the items in progress" in res.stderr and "stopped after" in res.stderr.splitlines()[-1]
    assert "Traceback" not in res.stderr
    stopped = load_collection(out)  # every run file saved is in the manifest: the item in progress finished
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(p.name for _, p in stopped.runs())
    assert not (out / "model_analysis_stats.csv").exists()  # the tables wait for the end
    _resume_and_check(cli, args, out, n_items)
    assert (out / "model_analysis_stats.csv").exists()


def test_a_batch_that_redoes_runs_and_is_stopped_leaves_no_tables_of_the_old_runs(cli, model_dirs, tmp_path):
    """A finished collection rerun with another -n and stopped midway kept its old tables, byte for
    byte: their rows named run ids whose files now hold other runs, or none. The tables go when
    a command drops or redoes runs, and come back when a batch ends."""
    n_items = 10
    args, out = _stopped_batch(tmp_path, model_dirs["gpt2"], n_items)
    short = [a if a != 4 else 2 for a in args]  # (-n 2 first)
    assert cli(*short).exit_code == 0 and (out / "model_analysis_stats.csv").exists()
    before = max(p.stat().st_mtime_ns for p in (out / "runs").iterdir())

    def newer(p) -> bool:
        try:
            return p.suffix == ".tokentui" and p.stat().st_mtime_ns > before
        except OSError:  # (removed meanwhile: an old run the command dropped)
            return False

    redo = [*args, "--replace"]  # (other settings: redone only when asked)
    res = _ctrl_c_once(cli, redo, lambda: any(newer(p) for p in (out / "runs").iterdir()))  # (a run of -n 4 saved)
    assert res.exit_code == 130, res.output
    assert not list(out.glob("model_analysis_*.csv")) and not list(out.glob("token_losses-*.json"))
    _resume_and_check(cli, args, out, n_items)
    assert (out / "model_analysis_stats.csv").exists()


def test_a_hostile_manifest_in_out_is_a_one_line_error(cli, model_dirs, tmp_path):
    src = tmp_path / "p.txt"
    _lines(src, PROMPTS[:1])
    out = tmp_path / "coll"
    out.mkdir()
    (out / "collection.json").write_text(json.dumps({"format": "tokentui-collection", "schema": 1, "id": "x",
                                                     "models": [], "settings": {}, "items": [{"index": "\x1b[2J"}]}))  # fmt: skip
    res = cli("batch", "--prompts", src, "-m", model_dirs["gpt2"], "--out", out)
    assert res.exit_code == 2
    *before, last = res.stderr.strip().splitlines()
    assert last.startswith("tokentui: error:") and all(line.startswith("… ") for line in before), res.stderr
    assert "\x1b" not in res.stderr and "collection.json" in res.stderr


def test_a_full_disk_is_one_line_naming_the_collection(run_tokentui, model_dirs, tmp_path):
    """A write refused for size (ulimit -f: "File too large", as a full disk) ended the batch with
    "[Errno 27] File too large", naming nothing: the line says the collection it was writing."""
    import resource

    src = tmp_path / "p.txt"
    _lines(src, PROMPTS[:2])
    out = tmp_path / "coll"
    res = run_tokentui(
        "batch", "--prompts", src, "-m", model_dirs["gpt2"], "-n", 2, "--out", out,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (8 << 10, 8 << 10)),
    )  # fmt: skip
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 2 and last.startswith(f"tokentui: error: writing the collection {out}: "), res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("linked", ["runs", ".lock", "collection.json"])
def test_a_received_collection_whose_files_are_links_is_refused_and_nothing_outside_changes(
    cli, model_dirs, tmp_path, linked
):
    """A trial's received folder had `runs` linking to another folder: batch deleted that folder's
    run files (its id's prefix) and wrote its own there. A link for the runs folder, the lock or
    the manifest is refused, before anything is written."""
    src = tmp_path / "p.txt"
    _lines(src, PROMPTS[:1])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victims = {elsewhere / f"20261126-{i}.tokentui": f"mine {i}" for i in range(3)}
    for path, text in victims.items():
        path.write_text(text)
    (elsewhere / "collection.json").write_text("{}")
    out = tmp_path / "coll"
    out.mkdir()
    manifest = {"format": "tokentui-collection", "schema": 1, "id": "20261126", "complete": True, "models": ["m"],
                "settings": {}, "items": []}  # fmt: skip
    if linked != "collection.json":
        (out / "collection.json").write_text(json.dumps(manifest))
    (out / linked).symlink_to(elsewhere / ("" if linked == "runs" else linked))
    res = cli("batch", "--prompts", src, "-m", model_dirs["gpt2"], "-n", "2", "--out", out)
    assert res.exit_code == 2 and f"its {linked} is a symbolic link" in res.stderr, res.output
    assert {p: p.read_text() for p in victims} == victims and sorted(elsewhere.iterdir()) == sorted(
        [*victims, elsewhere / "collection.json"]
    )


@pytest.mark.parametrize(
    "extra, expect",
    [
        (["--dataset", "{src}", "--prompts", "{src}"], "exactly one of --prompts or --dataset"),
        (["--dataset", "{src}", "-t", "0.7"], "generation options"),
        (["--prompts", "{src}", "--loss-over", "prompt"], "unknown --loss-over"),
        (["--prompts", "{src}", "--out", "{taken}"], "is not empty and holds no collection"),
        (["--prompts", "{missing}"], "no such file"),
        (["--prompts", "{src}", "--response-field", "r"], "--response-field goes with --dataset"),
        (["--prompts", "{src}", "--group", "0"], "--group must be 1…256 (got 0)"),
        (["--dataset", "{src}", "--group", "4"], "--group goes with --prompts"),
    ],
)
def test_bad_options_are_one_line_before_any_model_loads(cli, weightless_model, tmp_path, extra, expect):
    src = tmp_path / "p.jsonl"
    src.write_text('{"prompt": "a", "response": "b"}\n')
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("x")
    fill = {"src": src, "taken": taken, "missing": tmp_path / "missing.txt"}
    res = cli("batch", "-m", weightless_model, *[str(a).format(**fill) for a in extra])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("tokentui: error:") and expect in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert (taken / "mine.txt").exists() and sorted(p.name for p in taken.iterdir()) == ["mine.txt"]


@pytest.mark.parametrize("first", [None, "weightless"])
def test_chat_on_a_model_without_a_chat_template_is_refused_before_any_model_runs(
    cli, weightless_model, tmp_path, cache_dir, first
):
    """--chat and a model without a chat template is an argument error: refused in one line from its
    tokenizer alone, before any model's weights load and before a collection is made — also when
    it is the second model (which used to fail only after the first had done all its items)."""
    src = tmp_path / "p.txt"
    src.write_text("one\ntwo\n")
    models = ["-m", "demo"] if first is None else ["-m", weightless_model, "-m", "demo"]
    res = cli("batch", *models, "--prompts", src, "--chat", "-n", 2, "--out", tmp_path / "out")
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines()[-1] == "tokentui: error: demo has no chat template; leave out --chat"
    assert "loading weights" not in res.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, expect",
    [
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["-k", "700"], "vocabulary"),  # (the models' 600 tokens)
        (["-k", "999999"], "is at most 1,000"),  # (what a run file takes)
        (["--out", "{unwritable}/coll"], "cannot write the collection into"),
    ],
)
def test_argument_errors_make_no_collection(cli, weightless_model, tmp_path, cache_dir, unwritable_dir, extra, expect):
    """A device, a k above the vocabulary or an --out that takes no file are argument errors: refused
    before a collection is made (a trial found collections of failed items and empty tables)."""
    src = tmp_path / "p.txt"
    src.write_text("one\ntwo\n")
    res = cli("batch", "-m", weightless_model, "--prompts", src, "-n", 2,
              *[a.format(unwritable=unwritable_dir) for a in extra])  # fmt: skip
    assert res.exit_code == 2 and expect in res.stderr.strip().splitlines()[-1], res.stderr
    assert "loading weights" not in res.stderr and "collection" not in res.stdout
    assert not (cache_dir / "collections").exists() or not any((cache_dir / "collections").iterdir())


def test_a_line_whose_number_moved_runs_hold_gets_the_same_new_number_under_every_model(tmp_path):
    """Line 1 inserted above two models' runs of lines 1 and 2 (now lines 2 and 3): its new runs
    are numbered past every line, 4, under both models (the second model's was 5: one counter)."""
    from tokentui.cli.batch import _RunNames
    from tokentui.core.dataset import Item, Source
    from tokentui.store.collection import Collection, CollectionItem

    coll = Collection.new(tmp_path / "coll")
    coll.models = ["a", "b"]
    for model in coll.models:
        for line in (2, 3):  # (the runs of old lines 1 and 2, moved)
            coll.put(CollectionItem(line, model, "done", coll.run_file_for(model, line - 1), None, "0" * 64))
    source = Source(tmp_path / "p.txt", "prompts", [Item(i, f"line {i}") for i in (1, 2, 3)])
    names = _RunNames(coll, source)
    assert [names.new(model, 1)[0] for model in ("a", "b")] == [coll.run_id("a", 4), coll.run_id("b", 4)]
    assert names.new("a", 2)[0] == coll.run_id("a", 5)  # (2 held by old line 3's run)


@pytest.mark.parametrize("limit", [None, 0], ids=["held", "read-back"])
def test_tables_from_the_runs_in_memory_are_those_of_the_saved_runs(cli, model_dirs, tmp_path, monkeypatch, limit):
    """A batch writes its tables from the runs it just made, held in memory (bounded: past the
    limit, read back): byte for byte what `write_tables` makes from the saved files alone."""
    from tokentui.cli.batch import _HeldRuns
    from tokentui.store.seed_tables import write_tables

    if limit is not None:
        monkeypatch.setattr(_HeldRuns, "LIMIT", limit)
    src = tmp_path / "data.jsonl"
    src.write_text("".join(json.dumps({"prompt": p, "response": " pass"}) + "\n" for p in PROMPTS[:3]))
    out = tmp_path / "coll"
    models = [str(model_dirs["gpt2"]), str(model_dirs["qwen2"])]
    res = cli("batch", "--dataset", src, "-m", models[0], "-m", models[1], "-k", 4, "--out", out)
    assert res.exit_code == 0, res.output
    files = sorted(p for p in out.iterdir() if p.is_file() and p.name not in ("collection.json", ".lock"))
    assert len(files) == 4  # seed 000's two CSVs, seed 003's JSON per model
    made = {p.name: p.read_bytes() for p in files}
    for p in files:
        p.unlink()
    write_tables(load_collection(out))
    assert {p.name: p.read_bytes() for p in files} == made


def test_on_a_terminal_the_next_model_s_loading_lines_start_below_the_progress_line(model_dirs, tmp_path):
    """On a terminal the progress line is rewritten in place; a trial saw the second model's first
    loading line appended to the first model's last progress line ("… ETA 1:35… loading
    tokenizer of b"). It now starts a line of its own."""
    import re

    from tests.terminal import Terminal, tokentui_command

    src = tmp_path / "p.txt"
    src.write_text("import os\nclass A:\n", encoding="utf-8")
    cmd = [*tokentui_command(), "batch", "--prompts", str(src), "-m", str(model_dirs["gpt2"]),
           "-m", str(model_dirs["llama"]), "-n", "2", "--lens-chunk", "0", "--out", str(tmp_path / "c")]  # fmt: skip
    with Terminal(cmd, env={"HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}) as term:
        assert term.wait_exit(timeout=120) == 0, term.output[-800:]
        raw = term.output.decode(errors="replace")
    second = str(model_dirs["llama"])
    at = raw.index(f" of {second}", raw.index("batch · "))  # (its first line once the first model's items ran)
    at = raw.rindex("…", 0, at)
    before = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", raw[:at])
    assert before.endswith("\n"), before[-200:]  # (not "… 2/4 items · … ETA 0:00" then the line)


def test_only_the_first_problem_lines_are_printed_and_the_manifest_holds_them_all(cli, model_dirs, tmp_path):
    """A prompts file of many bad lines: the first SHOWN_PROBLEMS are said, then how many more and
    where each one is (the manifest), which holds every one of them."""
    from tokentui.cli.output import SHOWN_PROBLEMS

    src, out = tmp_path / "prompts.txt", tmp_path / "coll"
    _lines(src, [PROMPTS[0], *[""] * (SHOWN_PROBLEMS + 5)])
    res = cli("batch", "--prompts", src, "-m", model_dirs["gpt2"], "-n", 1, "--lens-chunk", 0, "--out", out)
    assert res.exit_code == 0, res.output
    said = [line for line in res.stderr.splitlines() if ": skipped: the prompt is empty" in line]
    assert said == [f"tokentui: {src} line {i}: skipped: the prompt is empty" for i in range(2, SHOWN_PROBLEMS + 2)]
    assert f"tokentui: … and 5 more (each one is in {out / 'collection.json'})" in res.stderr
    skipped = [it.index for it in load_collection(out).items if it.status == "skipped"]
    assert skipped == list(range(2, SHOWN_PROBLEMS + 7))


def _one_length(tokenizer, n: int) -> tuple[list[str], str]:
    """`n` prompts of one token length, and one of another."""
    texts = [f"{w} = {v}" for w in ("x", "y", "z", "value", "name", "width", "text") for v in ("1", "[]", "None")]
    by_length: dict[int, list[str]] = {}
    for t in texts:
        by_length.setdefault(len(tokenizer(t)["input_ids"]), []).append(t)
    length, same = max(by_length.items(), key=lambda kv: len(kv[1]))
    assert len(same) >= n, "the test needs more prompts of one length"
    other = next(t for k, ts in by_length.items() if k != length for t in ts)
    return same[:n], other


def test_prompts_of_one_length_share_each_forward_and_each_gets_its_own_greedy_run(
    cli, model_dirs, loaded, tmp_path, monkeypatch
):
    """With --group (16 by default) four prompts of one token length decode in one forward a
    step; each run still holds `model.generate()`'s greedy tokens for its prompt and, to float
    rounding, what `--group 1` (each prompt alone) records. The prompt of another length goes
    alone."""
    from tokentui.engine.hf.backend import HFBackend

    lm, n = loaded("gpt2"), 5
    same, other = _one_length(lm.tokenizer, 4)
    src = tmp_path / "p.txt"
    _lines(src, [same[0], same[1], other, same[2], same[3]])
    rows: list[int] = []
    forward = HFBackend._forward

    def counted(self, ids, *args, **kwargs):
        rows.append(ids.shape[0])
        return forward(self, ids, *args, **kwargs)

    monkeypatch.setattr(HFBackend, "_forward", counted)
    args = ["batch", "--prompts", src, "-m", model_dirs["gpt2"], "-n", n, "--lens-chunk", 2]
    res = cli(*args, "--out", tmp_path / "together")
    assert res.exit_code == 0, res.output
    assert sorted(rows) == [1] * n + [4] * n  # (the group: its prompts' forward, then n − 1 steps)
    rows.clear()
    res = cli(*args, "--out", tmp_path / "alone", "--group", 1)
    assert res.exit_code == 0, res.output
    assert rows == [1] * (5 * n)

    together, alone = (load_collection(tmp_path / d) for d in ("together", "alone"))
    for (a, path_a), (b, path_b) in zip(together.runs(), alone.runs(), strict=True):
        assert a.index == b.index and a.status == b.status == "done"
        run_a, run_b = load_run(path_a), load_run(path_b)
        assert run_a.meta.prompt == run_b.meta.prompt
        assert run_a.sequence(0).tolist() == run_b.sequence(0).tolist() == _greedy(lm, run_a.meta.prompt, n)
        for x, y in ((run_a.prompt, run_b.prompt), (run_a.branches[0].steps, run_b.branches[0].steps)):
            xa, ya = x.arrays(), y.arrays()
            for name in xa:
                t = 2e-5 if xa[name].dtype != np.float16 else float(np.finfo(np.float16).eps)
                np.testing.assert_allclose(xa[name], ya[name], rtol=t, atol=t, equal_nan=True, err_msg=name)


@pytest.mark.parametrize("fails_at", ["prompt", "step"])
def test_a_group_the_model_fails_on_is_done_again_prompt_by_prompt(
    cli, model_dirs, loaded, tmp_path, monkeypatch, fails_at
):
    """A model whose forward fails for several rows — on the prompts' forward, or on a step with
    the KV cache (one that runs out of GPU memory as the cache grows) — still does every item:
    the group's are done again alone, each `model.generate()`'s greedy tokens."""
    from tokentui.engine.errors import EngineError
    from tokentui.engine.hf.backend import HFBackend

    lm, n = loaded("gpt2"), 4
    same, _other = _one_length(lm.tokenizer, 3)
    src = tmp_path / "p.txt"
    _lines(src, same)
    forward = HFBackend._forward

    def one_row_only(self, ids, cache=None, *args, **kwargs):
        if ids.shape[0] > 1 and (cache is not None) == (fails_at == "step"):
            raise EngineError("the model failed on this input: several rows")
        return forward(self, ids, cache, *args, **kwargs)

    monkeypatch.setattr(HFBackend, "_forward", one_row_only)
    res = cli("batch", "--prompts", src, "-m", model_dirs["gpt2"], "-n", n, "--out", tmp_path / "c")
    assert res.exit_code == 0, res.output
    coll = load_collection(tmp_path / "c")
    assert [(it.index, it.status) for it in coll.items] == [(1, "done"), (2, "done"), (3, "done")]
    assert sorted(p.name for p in (tmp_path / "c" / "runs").iterdir()) == sorted(p.name for _, p in coll.runs())
    for _it, path in coll.runs():
        run = load_run(path)
        assert run.sequence(0).tolist() == _greedy(lm, run.meta.prompt, n) and run.branches[0].status == "length"


def test_a_groups_progress_counts_its_tokens_as_parts_of_its_items(tmp_path, monkeypatch):
    """A group's items all finish at its end: the progress line's count stood still while its
    rate fell, then both jumped. The rate and ETA now count the group's generated tokens as parts
    of its items (the count stays whole items); once its items are recorded they count whole."""
    from tokentui.cli.batch import _Saver, _Ticker
    from tokentui.core.step import Step
    from tokentui.engine.events import StepEvent
    from tokentui.store.collection import Collection

    lines: list[str] = []
    counter = {"done": 10.0, "total": 30.0, "seconds": 10.0}  # 1 item/s so far
    clock = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    tick = _Ticker(_Saver(Collection.new(tmp_path / "c")), lambda text: lines.append(text), counter, "m", 8)
    tick.start(4)  # a group of 4 items of up to 8 tokens each
    step = StepEvent("r", 0, Step(5, 1, {}, "generated"))
    clock[0] += 4.0
    for _ in range(15):
        tick(step)
    clock[0] += 0.5  # (a tick acts at most every half second)
    tick(step)  # 16 of its 32 steps: two items' worth
    assert lines[-1] == "batch · m · 10/30 items · 0.83 items/s · ETA 0:21"  # 12 items' worth in 14.5 s
    counter["done"] += 4  # the group ends: its items recorded
    clock[0] += 4.0
    tick(step)
    assert lines[-1] == "batch · m · 14/30 items · 0.76 items/s · ETA 0:21"  # 14 in 18.5 s (none counted twice)


def test_group_1_records_bit_for_bit_what_generate_records(cli, model_dirs, loaded, tmp_path):
    """The README's promise for `--group 1`: each item's run holds exactly the values the generate
    job records for its prompt (prompt and answer, every column, the lens's too), not merely close."""
    from tests.factories import generate_run
    from tokentui.engine.hf.backend import HFBackend

    src = tmp_path / "p.txt"
    _lines(src, PROMPTS[:2])
    res = cli(
        "batch", "--prompts", src, "-m", model_dirs["gpt2"], "-n", 5, "-k", 8, "--group", 1, "--out", tmp_path / "c"
    )
    assert res.exit_code == 0, res.output
    backend = HFBackend(loaded("gpt2"))  # (batch's defaults: the lens every 32 tokens, its precision auto)
    for _item, path in load_collection(tmp_path / "c").runs():
        run = load_run(path)
        ref, _events = generate_run(backend, run.meta.prompt, SamplingParams(max_new_tokens=5), k=8)
        assert run.sequence(0).tolist() == ref.sequence(0).tolist()
        for mine, theirs in ((run.prompt, ref.prompt), (run.branches[0].steps, ref.branches[0].steps)):
            a, b = mine.arrays(), theirs.arrays()
            assert a.keys() == b.keys()
            for name in a:
                assert np.array_equal(a[name], b[name], equal_nan=True), name
