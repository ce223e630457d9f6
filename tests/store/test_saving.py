"""Saves that race and saves that are killed: every load of the file succeeds, and temporaries of
dead processes are cleaned up (never those of live ones)."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from tests.factories import make_run
from tokentui.store.cache import TEMPORARY_RE, clean_stale_temporaries, list_runs, run_path
from tokentui.store.header import RunFileError
from tokentui.store.runfile import load_run, save_run


def _grow(run, n):
    """Append n more steps to the root branch (copies of its first step, at the right positions)."""
    b = run.branches[0]
    step = b.step(1)
    for _ in range(n):
        b.steps.append(step)  # columns store values; positions follow from the order


def test_threads_saving_growing_runs_to_one_path(tmp_path):
    path = run_path("20260101-000000-abcdef", tmp_path)
    save_run(make_run(), path)
    errors: list[BaseException] = []
    stop = threading.Event()

    def saver():
        run = make_run()  # each on its own copy, like the app and the worker
        try:
            for _ in range(40):
                _grow(run, 7)
                save_run(run, path)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def reader():
        while not stop.is_set():
            try:
                load_run(path).validate()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return

    threads = [threading.Thread(target=saver) for _ in range(3)]
    r = threading.Thread(target=reader)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    r.join()
    assert not errors, errors[0]
    assert load_run(path).total_steps() == 4 + 5 + 3 + 40 * 7
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left


def test_stale_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    dead = _dead_pid()
    stale = [tmp_path / f".a.tokentui.{dead}.tmp", tmp_path / f".a.tokentui.{dead}.140.0badf00d.tmp"]
    live = [tmp_path / f".a.tokentui.{os.getpid()}.1.ab.tmp", tmp_path / f".a.tokentui.{os.getppid()}.1.cd.tmp",
            # a random part of digits alone is not a process: this live save's file stays (its
            # "12345678" was taken for a dead process before)
            tmp_path / f".a.tokentui.{os.getpid()}.140.12345678.tmp"]  # fmt: skip
    other = [tmp_path / ".notes.tmp", tmp_path / "keep.txt"]
    from tokentui.core.files import new_temporary, temporary_name

    assert TEMPORARY_RE.fullmatch(temporary_name(tmp_path / "x.csv").name)["pid"] == str(os.getpid())
    fd, probe = new_temporary(tmp_path / ".tokentui-probe")  # (what a kill mid-probe leaves: cleaned too)
    os.close(fd)
    probe = probe.rename(tmp_path / probe.name.replace(f".{os.getpid()}.", f".{dead}.", 1))
    stale.append(probe)
    for p in stale + live + other:
        p.write_bytes(b"x")
    assert sorted(clean_stale_temporaries(tmp_path)) == sorted(stale)
    for p in stale:
        p.write_bytes(b"x")
    assert list_runs(tmp_path) == []  # list_runs cleans too, and never lists temporaries
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in live + other)


def test_an_export_removes_what_a_killed_export_to_the_same_file_left(tmp_path):
    """An export killed mid-write (SIGKILL: no cleanup runs) left `.out.csv.PID….tmp` in the
    user's folder for good. The next export to that file removes it; another file's temporary,
    a live process's, and the user's own files stay."""
    from tests.factories import make_run
    from tokentui.store.export import write_file

    dead = _dead_pid()
    stale = tmp_path / f".out.csv.{dead}.140.0badf00d.tmp"
    kept = [tmp_path / f".other.csv.{dead}.140.0badf00d.tmp", tmp_path / f".out.csv.{os.getpid()}.1.ab.tmp",
            tmp_path / "notes.txt"]  # fmt: skip
    for p in [stale, *kept]:
        p.write_bytes(b"x")
    write_file(make_run(), "csv", tmp_path / "out.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [*kept, tmp_path / "out.csv"])


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def _saver_child(path, ready_w) -> None:
    """In a forked child: save a growing run again and again until killed."""
    try:
        run = load_run(path)
        os.write(ready_w, b"r")
        while True:
            _grow(run, 50)
            save_run(run, path)
    finally:
        os._exit(1)


def test_kill_minus_nine_during_saves_keeps_an_intact_file(tmp_path):
    rng = random.Random(7)
    path = run_path("20260101-000000-abcdef", tmp_path)
    save_run(make_run(), path)
    seen = load_run(path).total_steps()
    for _ in range(50):
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            _saver_child(path, ready_w)
        os.close(ready_w)
        assert os.read(ready_r, 1) == b"r"
        os.close(ready_r)
        time.sleep(rng.uniform(0, 0.03))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        try:
            steps = load_run(path).total_steps()
        except RunFileError as e:
            raise AssertionError(f"the file was damaged by a kill: {e}") from None
        assert steps >= seen  # the previous version or a newer one, never less
        seen = steps
    assert seen > 12  # some saves completed (the run starts with 12 steps)
    list_runs(tmp_path)  # the next start cleans up
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_run_without_a_branch_is_never_written(tmp_path):
    """No file could load it ("branch list is missing"): ctrl+s pressed before a generation's
    first step wrote one, which a quit at that moment left as the run's only file."""
    from tokentui.core.run import Run

    run = Run(make_run().meta.copy())
    with pytest.raises(RunFileError, match="no branch yet"):
        save_run(run, tmp_path / "r.tokentui")
    assert not list(tmp_path.iterdir())


def _grow_in_another_process(path) -> None:
    """What another tokentui does to the run file `path`: read it, change the run, save it back."""
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from tokentui.store.runfile import load_run, save_run; "
        "p = Path(sys.argv[1]); run = load_run(p); run.meta.prompt = 'grown elsewhere'; save_run(run, p)"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)


def test_a_cache_file_another_process_changed_is_kept_and_this_version_goes_beside_it(tmp_path):
    """A trial had the explorer open on a run while `tokentui tree --run` grew it in another
    terminal: the explorer's next save wrote over the file and the tree's nodes were lost. Now a
    save that finds the file changed since this process read or wrote it leaves it, saves beside
    it under the next free number, says so once, and keeps saving there."""
    from tokentui.store.cache_writes import remember, save_in_cache

    run = make_run(n_branch_steps=(6, 3))
    first = save_in_cache(run, tmp_path)
    assert first.path == tmp_path / f"{run.id}.tokentui" and first.note is None
    assert save_in_cache(run, tmp_path).note is None  # (its own saves: no conflict)
    (tmp_path / f"{run.id}-2.tokentui").write_bytes(b"taken")  # (the next free number is taken)
    _grow_in_another_process(first.path)
    theirs = first.path.read_bytes()
    run.remove_subtree(1)
    moved = save_in_cache(run, tmp_path)
    assert moved.path == tmp_path / f"{run.id}-3.tokentui"
    assert moved.note is not None and f"saved as {run.id}-3" in moved.note and "changed on disk" in moved.note
    assert first.path.read_bytes() == theirs and load_run(first.path).meta.prompt == "grown elsewhere"
    mine = load_run(moved.path)
    assert mine.id == run.id and len(mine.branches) == 1
    again = save_in_cache(run, tmp_path)  # later saves follow it there, without a word
    assert again.path == moved.path and again.note is None and first.path.read_bytes() == theirs
    # a file read, then changed by another process before this one's first save, is kept too
    other = make_run()
    path = save_in_cache(other, tmp_path / "b").path
    remember(path)
    _grow_in_another_process(path)
    assert save_in_cache(other, tmp_path / "b").path.name == f"{other.id}-2.tokentui"
