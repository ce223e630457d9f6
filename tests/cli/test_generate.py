"""`generate` end to end on tiny real models: its JSON records are the JSONL export's, the run is
saved even when the reader goes away, and every argument error comes before the model loads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
import torch

from tests.terminal import tokentui_command
from tokentui.store.cache import list_runs
from tokentui.store.runfile import load_run


def test_generate_json_matches_the_saved_run_and_generate(cli, model_dirs, cache_dir, loaded):
    m = model_dirs["llama"]
    res = cli("generate", "--model", m, "--prompt", "def f(x):", "-n", 7, "-k", 5, "--json", "--lens-chunk", 3,
              "--lens-precision", "bfloat16")  # fmt: skip
    assert res.exit_code == 0, res.output
    records = [json.loads(x) for x in res.stdout.splitlines()]
    lines = [r for r in records if r["kind"] != "prompt"]
    assert len(lines) == 7
    for rec in lines:
        assert {"position", "token_id", "token", "logprob", "prob", "rank", "entropy", "top_k", "layer_entropy"} <= set(
            rec
        )
        assert len(rec["top_k"]) == 5 and len(rec["layer_entropy"]) == 3
        assert all(isinstance(x, float) for x in rec["layer_entropy"])
    [saved] = list_runs(cache_dir)
    run = load_run(saved.path)
    fork = run.branches[0].fork_position
    assert [r["position"] for r in records] == list(range(fork + 7))  # the prompt's positions first
    assert [r["token_id"] for r in lines] == run.sequence(0)[fork:].tolist()
    lm = loaded("llama")
    ids = torch.tensor([lm.tokenizer("def f(x):")["input_ids"]])
    ref = lm.model.generate(ids, max_new_tokens=7, do_sample=False, pad_token_id=0)
    assert run.sequence(0).tolist() == ref[0].tolist()
    assert run.meta.k == 5 and run.meta.sampling["max_new_tokens"] == 7 and run.meta.chat is False
    assert "bfloat16" in run.meta.lens


def test_sampler_options_beside_temperature_0_are_said_to_go_unused(cli, model_dirs):
    """One option: "goes unused" (a trial read "--top-p go unused")."""
    res = cli("generate", "-m", model_dirs["gpt2"], "-p", "x", "-n", 1, "--top-p", 0.5)
    assert res.exit_code == 0 and "decodes greedily: --top-p goes unused" in res.stderr, res.stderr


@pytest.mark.parametrize("lens_chunk", [0, 1, 4])
def test_generate_json_lines_are_the_jsonl_export_of_the_saved_run(cli, model_dirs, cache_dir, lens_chunk):
    res = cli("generate", "-m", model_dirs["gpt2"], "-p", "import os", "-n", 9, "-k", 6, "--json",
              "--lens-chunk", lens_chunk, "--temperature", 0.9, "--seed", 1)  # fmt: skip
    assert res.exit_code == 0, res.output
    live = [json.loads(x) for x in res.stdout.splitlines()]
    [saved] = list_runs(cache_dir)
    exported = cli("export", saved.run_id, "--format", "jsonl")
    assert exported.exit_code == 0, exported.output
    assert live == [json.loads(x) for x in exported.stdout.splitlines()]  # field for field, every position
    assert live[0]["run_id"] == saved.run_id and live[0]["kind"] == "prompt"


def test_generate_json_into_a_closed_pipe_still_saves_the_whole_run(model_dirs, cache_dir):
    """The reader takes one line and closes the pipe (as `| head -1` does); far more than a pipe's
    buffer is still to come, so the command meets the closed pipe and must carry on quietly."""
    cmd = [*tokentui_command(), "generate", "-m", str(model_dirs["gpt2"]), "-p", "def f(x):", "-n", "60", "-k",
           "200", "--json", "--lens-chunk", "1", "--cache-dir", str(cache_dir)]  # fmt: skip
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        rc = proc.wait(timeout=120)
    assert json.loads(first)["position"] == 0
    assert rc == 0 and "error" not in err and "Traceback" not in err, err
    [saved] = list_runs(cache_dir)
    run = load_run(saved.path)
    root = run.branches[0]
    assert root.status == "length" and len(root.steps) == 60  # generated to its end
    # the closing line as without --json (it said neither how the run ended nor its rate)
    assert re.search(rf"run {run.id} \(length, [0-9.]+ tokens/s\) saved to ", err), err


BAD = os.fsdecode(b"a\xffb")  # how Python hands a program the argument $'a\xffb'


@pytest.mark.parametrize(
    "args, expect",
    [
        (["generate", "-p", "  "], "the prompt is empty"),
        (["generate", "-p", ""], "the prompt is empty"),
        (["generate", "-p", "hi", "-k", "700"], "more than the vocabulary (600 tokens)"),
        (["generate", "-p", "hi", "-k", "0"], "k, the alternatives recorded (-k), must be at least 1"),
        (["generate", "-p", "hi", "--max-new-tokens", "0"], "max new tokens must be ≥ 1"),
        (["generate", "-p", "hi", "--lens-chunk", "-1"], "--lens-chunk must be ≥ 0"),
        (["generate", "-p", "hi", "--lens-precision", "int4"], "unknown lens precision"),
        (["generate", "-p", "hi", "--dtype", "float8"], "unknown dtype"),
        (["generate", "-p", "hi", "--device", "tpu"], "unknown device 'tpu'"),
        (["score", "--text", "hi", "--device", "cuda:x"], "unknown device 'cuda:x'"),
        (["generate", "-p", "hi", "--device", "meta"], "tokentui runs models on cpu, cuda, mps or xpu"),
        (["generate", "-p", "hi", "--top-p", "0"], "top-p"),
        (["generate", "-p", "hi", "--temperature", "-1"], "temperature"),
        (["generate", "-p", "hi", "-t", "1", "--top-k", "700"], "top-k 700 is more than the vocabulary (600 tokens)"),
        (["generate", "-p", "hi", "--temperature", "inf"], "temperature must be a finite number ≥ 0 (got inf)"),
        (["score", "--text", ""], "the text is empty"),
        (["score", "--text", " \n "], "the text is empty"),
        (["score", "--text", "hi", "-k", "700"], "more than the vocabulary"),
        (["score", "--text", "hi", "--lens-precision", "fp8"], "unknown lens precision"),
        # a byte that is not UTF-8 (the shell's $'\xff': Python's lone surrogate) or a \uD800 escape,
        # in any text a command tokenizes: one line before the weights load, never the tokenizer's
        # traceback after
        (["generate", "-p", BAD], "the prompt holds the byte 0xff at character 2: not UTF-8 text"),
        (["generate", "-p", "hi", "--stop", BAD], "a stop text holds the byte 0xff"),
        (["generate", "-p", "hi", "--force", BAD], "the forced prefix holds the byte 0xff"),
        (["score", "--text", BAD], "the text holds the byte 0xff"),
        (["score", "--text-escapes", "--text", "a\\uD800b"], "the text holds a lone surrogate \\ud800 at character 2"),
        (["tree", "-p", BAD], "the prompt holds the byte 0xff"),
        (["attribute", "-p", BAD], "the prompt holds the byte 0xff"),
        (["attribute", "-p", "hi", "--alternative", BAD], "--alternative holds the byte 0xff"),
        (["compare", "-m", "demo", "--text", BAD], "the text holds the byte 0xff"),
        (["steer-compare", "-p", BAD, "--steer", "x.toml"], "the prompt holds the byte 0xff"),
    ],
)
def test_argument_errors_come_before_the_weights_load(cli, weightless_model, cache_dir, args, expect):
    """The model folder has no weights: had the command loaded them first, it would report that."""
    res = cli(*args, "-m", weightless_model)
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines()[-1].startswith("tokentui: error:")
    assert expect in res.stderr and "loading weights" not in res.stderr and "could not load" not in res.stderr


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--lens-chunk", "-2"], "--lens-chunk must be ≥ 0"),
        (["--max-new-tokens", "0"], "max new tokens must be ≥ 1"),
        (["-p", BAD], "the prompt holds the byte 0xff"),
    ],
)
def test_explore_refuses_bad_settings_before_the_screen_opens(run_tokentui, weightless_model, args, expect):
    """As a child process with a timeout: a regression would open the explorer and wait for keys."""
    res = run_tokentui("explore", "-m", weightless_model, *args, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 2 and res.stderr.startswith("tokentui: error:") and expect in res.stderr


def test_a_refused_prompt_is_not_printed(cli, cache_dir):
    """--chat on a model without a chat template is refused once its tokenizer is read, before its
    weights: standard output stays empty (it held the prompt, without a newline, before the error)."""
    res = cli("generate", "-m", "demo", "-p", "hi there", "-n", 2, "--chat")  # (no chat template)
    assert res.exit_code == 2 and "has no chat template; leave out --chat" in res.stderr
    assert "loading weights" not in res.stderr  # (refused once the tokenizer is read, before the weights)
    assert res.stdout == "" and not list_runs(cache_dir)


def test_a_text_of_one_token_has_nothing_to_score(cli, cache_dir):
    """A token is scored from the positions before it, so one token has no number: a trial got a
    table of nan and a saved run, with exit 0."""
    from transformers import AutoTokenizer

    from tokentui.engine.assets import DEMO_MODEL_DIR

    assert len(AutoTokenizer.from_pretrained(DEMO_MODEL_DIR)("a")["input_ids"]) == 1
    res = cli("score", "-m", "demo", "--text", "a")
    assert res.exit_code == 2 and "the text is 1 token: nothing to score" in res.stderr, res.output
    assert "nan" not in res.stdout and not list_runs(cache_dir)
    assert cli("score", "-m", "demo", "--text", "a b").exit_code == 0


def test_a_weightless_folder_does_fail_when_its_weights_load(cli, weightless_model, cache_dir):
    res = cli("generate", "-m", weightless_model, "-p", "hi")
    assert res.exit_code == 2 and "loading weights" in res.stderr and "tokentui: error:" in res.stderr


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9", None])
def test_a_hub_id_without_network_fails_fast_in_one_line(run_tokentui, tmp_path, endpoint):
    """HF_HUB_OFFLINE unset, a Hub that cannot be reached (a refused port; or, with None, the real
    Hub on a machine without a network): one error line within seconds, no library log lines."""
    import socket

    if endpoint is None:
        try:
            socket.getaddrinfo("huggingface.co", 443)
            pytest.skip("this machine can resolve huggingface.co")
        except OSError:
            pass
    env = {"HF_HUB_OFFLINE": "", "TRANSFORMERS_OFFLINE": "", "HF_HOME": str(tmp_path / "hf")}
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    t0 = time.monotonic()
    res = run_tokentui("generate", "-m", "nobody-xyz/not-a-model-123", "-p", "hi", env=env)
    elapsed = time.monotonic() - t0
    assert res.returncode == 2
    lines = [x for x in res.stderr.splitlines() if not x.startswith("… ")]  # our own progress lines aside
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("tokentui: error:") and "HF_HUB_OFFLINE=1" in lines[0] and "local" in lines[0]
    assert "Retrying" not in res.stderr and res.stdout == ""
    assert elapsed < 20, elapsed  # was ~30 s of retries


def test_generate_table_shows_the_stream_and_the_run(cli, model_dirs, cache_dir):
    res = cli("generate", "-m", model_dirs["gpt2"], "-p", "import os", "-n", 5, "--temperature", 0.8, "--seed", 3,
              "--chat", "--stop", "zzz", "--force", "x")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "entropy" in res.stdout and "saved to" in res.stdout
    assert res.stdout.startswith("import os\n")  # a chat's answer starts on its own line
    [saved] = list_runs(cache_dir)
    run = load_run(saved.path)
    assert run.meta.chat and run.meta.chat_template and run.meta.sampling["seed"] == 3
    assert run.meta.sampling["stop"] == ["zzz"] and run.branches[0].n_forced >= 1


def test_the_table_shows_each_token_s_spaces_visibly(cli, model_dirs, cache_dir):
    """A token with a leading space and the same word without one must not look alike."""
    res = cli("score", "-m", model_dirs["gpt2"], "--text", "import os\nif os.name == 'x':  pass")
    assert res.exit_code == 0, res.output
    run = load_run(list_runs(cache_dir)[0].path)
    rows = res.stdout.splitlines()[1 : 1 + len(run.prompt)]
    for pos, row in enumerate(rows):
        data = run.tokens.bytes_of(int(run.prompt.col("token_id")[pos]))
        token_cell = row[7:23].rstrip()
        assert " " not in token_cell, row  # a space is shown as ␠
        assert token_cell.count("␠") == min(data.count(b" "), len(token_cell)), (data, row)


def test_a_generation_the_context_cuts_short_says_so_first(cli, tokenizer_dir, tmp_path, cache_dir):
    """-n past the model's context: one line on stderr before the tokens, the run ends at the
    context (status 'context'). The configuration keeps GPT-2's end-of-sequence id 50256, outside
    this vocabulary of 600: the run leaves it out (a file naming it would not load)."""
    import shutil

    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    folder = tmp_path / "short"
    GPT2LMHeadModel(GPT2Config(vocab_size=600, n_positions=24, n_layer=2, n_embd=32, n_head=2)).save_pretrained(folder)
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, folder / f.name)
    res = cli("generate", "-m", folder, "-p", "def f(x):", "-n", 50)
    assert res.exit_code == 0, res.output
    [saved] = list_runs(cache_dir)
    run = load_run(saved.path)
    room = 24 - run.branches[0].fork_position
    assert f"the model's context is 24 positions: this branch stops after {room} more tokens" in res.stderr
    assert run.length(0) == 24 and run.branches[0].status == "context"


@pytest.mark.parametrize("no_color", [False, True])
def test_the_stream_on_a_terminal_shows_each_tokens_certainty_also_without_colour(
    model_dirs, cache_dir, monkeypatch, no_color
):
    """On a terminal each generated token is styled by its uncertainty 1 − p in five levels: 256
    colours, or under NO_COLOR underline / bold / reverse as the explorer draws them (it was
    printed plain, the metric gone)."""
    import re

    from tests.terminal import Terminal

    cmd = [*tokentui_command(), "generate", "-m", str(model_dirs["gpt2"]), "-p", "x = 1", "-n", "6", "-t", "1",
           "--seed", "3", "--lens-chunk", "0", "--cache-dir", str(cache_dir)]  # fmt: skip
    monkeypatch.delenv("NO_COLOR", raising=False)  # (the terminal's environment is this one's plus env)
    env = {"HF_HUB_OFFLINE": "1", **({"NO_COLOR": "1"} if no_color else {})}
    with Terminal(cmd, env=env) as term:
        assert term.wait_exit(timeout=120) == 0, term.output[-500:]
        raw = term.output.decode(errors="replace")
    [summary] = list_runs(cache_dir)
    run = load_run(summary.path)
    steps = [run.step(0, p) for p in range(len(run.prompt), run.length(0))]
    levels = [min(4, int((1.0 - s.prob) * 5)) for s in steps]
    styles = ("", "4", "1", "1;4", "7") if no_color else tuple(f"38;5;{c}" for c in (39, 75, 187, 214, 202))
    used = re.findall(r"\x1b\[([0-9;]+)m", raw.split("x = 1", 1)[1].split("\n", 1)[0])
    assert [u for u in used if u != "0"] == [styles[lv] for lv in levels if styles[lv]]
    assert ("38;5" in raw) is not no_color


def test_a_long_prompts_lens_is_one_progress_line_not_one_per_chunk(cli, model_dirs, cache_dir, monkeypatch):
    """The prompt's lens reports after every chunk of positions: on a pipe, the first report and
    the last (the rest within PROGRESS_SECONDS of them), not a line per chunk."""
    import re

    import tokentui.engine.hf.backend as hb

    monkeypatch.setattr(hb, "PROMPT_LENS_POSITIONS", 4)
    res = cli("generate", "-m", model_dirs["gpt2"], "-p", "def f(x):\n    return [x, x + 1, x * 2, x ** 3]", "-n", 2)
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stderr.splitlines() if "the prompt's logit lens" in ln]
    [n] = {int(m) for m in re.findall(r"of (\d+) positions", res.stderr)}
    assert n > 8 and lines[0] == f"… the prompt's logit lens: 4 of {n} positions"
    assert lines[-1] == f"… the prompt's logit lens: {n} of {n} positions" and len(lines) < n // 4


def test_k_is_at_most_what_a_run_file_takes(cli, cache_dir):
    """A trial's run of k = 1001 (the demo model has 8,192 tokens) was saved, then no command could
    read it ("k is outside 1..1000"). It is refused before anything runs; 1,000 is saved and read."""
    from tokentui.store.cache import list_runs
    from tokentui.store.runfile import load_run

    res = cli("generate", "-m", "demo", "-p", "x", "-n", 1, "-k", 1001)
    assert res.exit_code == 2 and "k, the alternatives recorded (-k), is at most 1,000 (got 1,001)" in res.stderr
    assert not list_runs(cache_dir) and "loading weights" not in res.stderr
    assert cli("generate", "-m", "demo", "-p", "x", "-n", 1, "-k", 1000).exit_code == 0
    [saved] = list_runs(cache_dir)
    assert load_run(saved.path).k == 1000


def test_the_help_gives_the_range_of_alternatives(cli):
    """-k above 1,000 is refused; no option's help said so (a trial read it in the run-file checks)."""
    from tokentui.core.params import MAX_K

    for command in ("generate", "score", "batch", "tree"):
        text = " ".join(cli(command, "--help").stdout.split())
        assert f"How many top alternatives to record per token, 1…{MAX_K}." in text, command
