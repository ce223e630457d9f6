"""`write_atomically`: all or nothing, and the permissions a user expects of a file it writes."""

from __future__ import annotations

import os

import pytest

from tokentui.core.files import write_atomically


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_file_gets_the_umask_mode_and_a_replaced_one_keeps_its_own(tmp_path, umask_022):
    new = tmp_path / "table.csv"
    write_atomically(new, lambda f: f.write(b"a,b\n"))
    assert new.read_bytes() == b"a,b\n" and new.stat().st_mode & 0o777 == 0o644  # as open() creates it
    private = tmp_path / "mine.json"
    private.write_text("old")
    private.chmod(0o600)
    write_atomically(private, lambda f: f.write(b"new"))
    assert private.read_text() == "new" and private.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.json", "table.csv"]  # no temporary left


@pytest.mark.parametrize("durable", [True, False])
def test_a_failed_fill_leaves_the_old_file_and_no_temporary(tmp_path, durable):
    """Synced to disk or not (a batch's runs), a write is all or nothing."""
    path = tmp_path / "run.tokentui"
    path.write_bytes(b"old")

    def fill(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, fill, durable=durable)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["run.tokentui"]
    write_atomically(path, lambda f: f.write(b"new"), durable=durable)
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["run.tokentui"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs")
@pytest.mark.parametrize("opens_late", [False, True])
def test_a_pipe_that_sends_nothing_for_a_while_is_said_to_be_waited_for(tmp_path, opens_late):
    """`--file fifo` with nobody writing waited for ever, silently: once the pipe has been silent
    for PIPE_NOTICE_SECONDS — no writer yet (`opens_late`), or a writer sending nothing — `waiting`
    is told, once; a pipe whose writer sends at once is not announced. The text is what was sent."""
    import threading
    import time

    from tokentui.core import files

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    told: list[tuple[str, bool]] = []

    def write(delay: float) -> None:
        if opens_late:
            time.sleep(delay)
        with open(fifo, "wb") as w:  # (opens once the reader has)
            if not opens_late:
                time.sleep(delay)
            w.write(b"sent\n")

    for delay in (0.0, files.PIPE_NOTICE_SECONDS + 0.5):
        told.clear()
        writer = threading.Thread(target=write, args=(delay,))
        writer.start()
        f, _st = files.open_to_read(fifo, pipes=True, waiting=lambda *said: told.append(said))
        with f:
            assert f.read() == b"sent\n"
        writer.join()
        assert told == ([(str(fifo), False)] if delay else []), (opens_late, delay)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs")
def test_a_writer_that_sends_and_closes_at_once_is_never_lost(tmp_path):
    """`mkfifo f; cat prompts > f & tokentui batch --prompts f`: the writer's open pairs with the
    reader's first (non-blocking) open, so it may write and close before the reader goes on. The
    reader used to close that descriptor and open the name again, which lost the text and waited
    for ever for another writer (about one try in four on this machine's test run)."""
    import threading

    from tokentui.core import files

    for n in range(30):
        fifo = tmp_path / f"fifo{n}"
        os.mkfifo(fifo)
        text = f"line {n}\n".encode()

        def write(fifo=fifo, text=text) -> None:
            with open(fifo, "wb") as w:  # (opens once the reader has)
                w.write(text)

        got: list[bytes] = []

        def read(fifo=fifo, got=got) -> None:
            f, _st = files.open_to_read(fifo, pipes=True)
            with f:
                got.append(f.read())

        writer, reader = threading.Thread(target=write, daemon=True), threading.Thread(target=read, daemon=True)
        writer.start()
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), f"try {n}: the reader waits for a writer that came and went"
        assert got == [text]
        writer.join(10)
