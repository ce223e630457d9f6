"""`score`: the text as given, with escapes on request, or from standard input."""

from __future__ import annotations

import json

import pytest

from tokentui.store.cache import list_runs
from tokentui.store.runfile import load_run


def _scored_text(cache_dir) -> str:
    [saved] = list_runs(cache_dir)
    return load_run(saved.path).meta.prompt


def test_text_is_literal_unless_escapes_are_asked_for(cli, model_dirs, cache_dir):
    m = model_dirs["gpt2"]
    assert cli("score", "-m", m, "--text", r"a\nb").exit_code == 0
    assert _scored_text(cache_dir) == "a\\nb"
    for r in list_runs(cache_dir):
        r.path.unlink()
    res = cli("score", "-m", m, "--text", r"x = 1\n\ty = '\\'\x41\u00e9", "--text-escapes")
    assert res.exit_code == 0, res.output
    assert _scored_text(cache_dir) == "x = 1\n\ty = '\\'Aé"


@pytest.mark.parametrize("how", [["--text", "-"], ["--file", "-"]])
def test_standard_input_gives_a_multiline_text(run_tokentui, model_dirs, cache_dir, how):
    text = "def f(x):\n    return x\n"
    res = run_tokentui("score", "-m", model_dirs["gpt2"], *how, "--json", input=text)
    assert res.returncode == 0, res.stderr
    records = [json.loads(x) for x in res.stdout.splitlines()]
    assert "".join(r["token"] for r in records) == text
    assert _scored_text(cache_dir) == text


def test_a_file_is_scored_byte_for_byte_as_standard_input_is(run_tokentui, model_dirs, cache_dir, tmp_path):
    """`--file F` read the file with Python's newline translation: CR LF and a lone CR became LF,
    so a Windows file's tokens, loss and perplexity differed from `--file -` < F (an analyst's).
    The file's text is now taken exactly."""
    text = "a,\r\nb\rc\n"
    f = tmp_path / "crlf.txt"
    f.write_bytes(text.encode())
    scored = []
    for how, given in ((["--file", f], None), (["--file", "-"], text)):
        res = run_tokentui("score", "-m", model_dirs["gpt2"], *how, "--json", input=given)
        assert res.returncode == 0, res.stderr
        scored.append("".join(json.loads(x)["token"] for x in res.stdout.splitlines()))
    assert scored == [text, text]


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--text", r"a\qb", "--text-escapes"], "unknown escape \\q in --text (known escapes:"),
        (["--text", "a\\", "--text-escapes"], "--text ends in a lone \\ (known escapes:"),
        (["--text", r"bad \xZZ", "--text-escapes"], "\\x in --text takes two hexadecimal digits (known escapes:"),
        (["--text", r"bad \u12", "--text-escapes"], "\\u in --text takes four hexadecimal digits"),
        (["--file", "/nonexistent/t.txt"], "/nonexistent/t.txt: no such file"),
        (["--file", "{folder}"], "is a folder, not a file"),
        (["--file", "{file}", "--text-escapes"], "applies to --text only"),
        (["--text", "a", "--file", "{file}"], "exactly one"),
        ([], "exactly one"),
    ],
)
def test_text_errors_are_one_line(cli, weightless_model, cache_dir, tmp_path, args, expect):
    f = tmp_path / "t.txt"
    f.write_text("x")
    res = cli("score", "-m", weightless_model, *[a.format(file=f, folder=tmp_path) for a in args])
    assert res.exit_code == 2 and res.stderr.startswith("tokentui: error:") and expect in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_score_json_records_are_the_jsonl_export(cli, model_dirs, cache_dir):
    res = cli("score", "-m", model_dirs["qwen2"], "--text", "x = 1\ny = 2\n", "-k", 4, "--json")
    assert res.exit_code == 0, res.output
    [saved] = list_runs(cache_dir)
    exported = cli("export", saved.run_id, "--format", "jsonl").stdout
    assert [json.loads(x) for x in res.stdout.splitlines()] == [json.loads(x) for x in exported.splitlines()]


def test_lens_chunk_0_scores_without_the_lens(cli, model_dirs, cache_dir):
    """As for generate and explore: --lens-chunk 0 turns the logit lens off (the run records only
    the last layer's entropy, the model's own, and says the lens was off); the default records
    every layer; a negative value is refused."""
    runs = {}
    for chunk in (0, 32):
        res = cli("score", "-m", model_dirs["gpt2"], "--text", "x = 1", "--lens-chunk", chunk)
        assert res.exit_code == 0, res.output
        runs[chunk] = load_run(next(r for r in list_runs(cache_dir) if r.run_id in res.output).path)
    off, on = runs[0], runs[32]
    assert off.meta.lens == "off" and on.meta.lens != "off"
    assert [n for n in off.layout.names if n.startswith("layer_")] == ["layer_entropy"]
    assert {"layer_rank", "layer_kl_final"} <= set(on.layout.names)
    res = cli("score", "-m", model_dirs["gpt2"], "--text", "x = 1", "--lens-chunk", -1)
    assert res.exit_code == 2 and "--lens-chunk must be ≥ 0" in res.stderr


def test_attention_entropy_of_a_model_class_without_attention_weights_is_refused_before_loading(
    cli, tokenizer_dir, tmp_path, cache_dir
):
    """Bloom's class does not declare its attention weights: --attention-entropy is refused from the
    configuration, before the weights are read (a trial's refusal came after the load)."""
    from tests.conftest import build_model_dir

    bloom = build_model_dir("bloom", tokenizer_dir, tmp_path / "bloom")
    res = cli("score", "-m", bloom, "--text", "def f(x): return x", "--attention-entropy")
    assert res.exit_code == 2 and "loading weights" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        "tokentui: error: attention entropy cannot be recorded: BloomForCausalLM does not say where its "
        "attention weights are (leave --attention-entropy off)"
    )
    assert cli("score", "-m", bloom, "--text", "def f(x): return x").exit_code == 0  # without it: scored


def test_a_long_texts_logit_lens_shows_progress(cli, model_dirs, cache_dir):
    """The lens of a long text takes minutes on a CPU: `score` says how far it is (a trial waited
    95 s without a line), first and last chunk at least, counted in the text's positions."""
    import pathlib
    import re

    text = pathlib.Path(__file__).read_text(encoding="utf-8")[:600]
    res = cli("score", "-m", model_dirs["gpt2"], "--text", text, "--json")
    assert res.exit_code == 0, res.output
    scored = len([line for line in res.stdout.splitlines() if line.strip()])  # one record a position
    counts = [tuple(map(int, m)) for m in re.findall(r"logit lens: (\d+) of (\d+) positions", res.stderr)]
    assert len(counts) >= 2 and counts[0][0] < counts[-1][0] == counts[-1][1] == scored - 1, res.stderr


def test_a_device_or_a_huge_file_is_refused_in_one_line(cli, weightless_model, tmp_path, monkeypatch):
    """`--file /dev/zero` was read until memory ran out (a crash log, or the kernel's kill); a
    file over the text limit is refused without being read whole."""
    from tokentui.cli import text_input

    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * 2048)
    monkeypatch.setattr(text_input, "MAX_TEXT_BYTES", 1024)
    for path, expect in (("/dev/zero", "not a regular file or a pipe"), (big, "longer than")):
        res = cli("score", "-m", weightless_model, "--file", path)
        assert res.exit_code == 2 and expect in res.stderr and "Traceback" not in res.output, res.output


@pytest.mark.parametrize("late", [0.5, 1.6])
def test_a_named_pipe_whose_writer_comes_later_is_waited_for(cli, model_dirs, cache_dir, tmp_path, late):
    """`--file FIFO` (or `<(cmd)`): the text its writer sends, however late it opens the pipe —
    not an empty text because nobody was writing yet; a writer later than a second is said to be
    waited for (a command on a pipe nobody writes to looked hung)."""
    import os
    import threading
    import time

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    text = "def f(x):\n    return x\n"

    def write_late() -> None:
        time.sleep(late)
        with open(fifo, "w", encoding="utf-8") as f:
            f.write(text)

    writer = threading.Thread(target=write_late)
    writer.start()
    res = cli("score", "-m", model_dirs["gpt2"], "--file", fifo)
    writer.join()
    assert res.exit_code == 0, res.output
    assert _scored_text(cache_dir) == text
    assert ("waiting for" in res.stderr and "a pipe that has sent nothing yet" in res.stderr) == (late > 1), res.stderr


def test_the_table_s_first_row_says_the_first_token_has_no_prediction(cli, model_dirs, cache_dir):
    """The first token of a scored text has no distribution that predicted it: its row said
    "nan nan - nan", read as a fault; the other rows are the run's numbers."""
    res = cli("score", "-m", model_dirs["gpt2"], "--text", "x = 1\ny = 2\n", "-k", 3)
    assert res.exit_code == 0, res.output
    rows = res.stdout.splitlines()
    header = next(i for i, line in enumerate(rows) if line.split()[:2] == ["pos", "token"])
    first, second = rows[header + 1], rows[header + 2]
    assert "first token: no prediction" in first and "nan" not in res.stdout
    [saved] = list_runs(cache_dir)
    st = load_run(saved.path).step(0, 1)
    assert second.split()[0] == "1" and f"{st.logprob:.3f}" in second and f" {st.rank} " in second


@pytest.mark.parametrize("k", [3, 8])
def test_the_table_s_header_says_when_it_shows_fewer_alternatives_than_recorded(cli, model_dirs, cache_dir, k):
    """The table prints three alternatives a row: with `-k 8` it said "top alternatives" and
    showed three, as though the run held no more; it says how many it holds and where they are."""
    res = cli("score", "-m", model_dirs["gpt2"], "--text", "x = 1\ny = 2\n", "-k", k)
    assert res.exit_code == 0, res.output
    header = next(line for line in res.stdout.splitlines() if line.split()[:2] == ["pos", "token"])
    assert header.endswith("top alternatives" if k == 3 else f"top 3 of {k} alternatives (all: --json)")
    [saved] = list_runs(cache_dir)
    assert load_run(saved.path).k == k
