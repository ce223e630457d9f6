"""An unhandled exception inside the explorer: the process ends with a non-zero code and one line
on the terminal naming a log file that holds the traceback (no traceback on the user's screen)."""

from __future__ import annotations

import sys
import textwrap

from tests.factories import make_run
from tests.terminal import Terminal
from tokentui.store.runfile import save_run

# Fault injection: the alternatives pane raises once the cursor leaves the first positions (as a
# bug in a pane would); the process is `tokentui replay RUN` through the real launcher.
FAULTY_REPLAY = textwrap.dedent("""
    import sys
    from tokentui.tui.widgets.alternatives import AlternativesPane
    shown = AlternativesPane.show
    def show(self, run, branch_id, pos):
        if pos is not None and pos <= 30:
            raise ValueError("injected fault \\x1b]2;title\\x07")
        return shown(self, run, branch_id, pos)
    AlternativesPane.show = show
    sys.argv = ["tokentui", "replay", sys.argv[1]]
    from tokentui.launch import main
    main()
""")


def test_a_crash_in_the_explorer_exits_non_zero_with_one_line_and_a_log(tmp_path):
    path = save_run(make_run(n_branch_steps=(30, 12)), tmp_path / "r.tokentui")
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-c", FAULTY_REPLAY, str(path)]
    with Terminal(cmd, size=(100, 30), env={"TOKENTUI_CACHE_DIR": str(cache)}) as term:
        term.wait_for(b"branch #0/2")
        for _ in range(3):
            term.press(b"h")  # the cursor moves left: the pane raises
        rc = term.wait_exit()
        screen_text = term.text
    assert rc == 1, screen_text[-800:]
    assert b"Traceback" not in term.output and b"injected fault" in screen_text
    [log] = list((cache / "logs").glob("crash-*.log"))
    squashed = "".join(screen_text.decode(errors="replace").split())  # the line may wrap at 100 columns
    assert squashed.count("tokentui:error:") == 1 and "".join(str(log).split()) in squashed
    assert b"\x1b]2;title" not in term.output  # the error's text is sanitised too
    assert "Traceback" in log.read_text() and "injected fault" in log.read_text()
