"""`tokentui replay RUN` as a user runs it: the installed command on a pseudo-terminal (Textual's
real driver), its header-first start, and its errors."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import textwrap

from tests.factories import make_run, rewrite_header, with_run_desc
from tests.terminal import Terminal, tokentui_command
from tokentui.store.runfile import encode_run, save_run

TOKENS_TITLE = "━ tokens ━".encode()  # the (focused) stream's border title once the run is laid out


def test_replay_command_shows_the_header_then_the_run_and_quits(tmp_path):
    run = make_run(n_branch_steps=(30, 12))
    path = save_run(run, tmp_path / "r.tokentui")
    with Terminal([*tokentui_command(), "replay", str(path)], size=(100, 30)) as term:
        t = term.wait_for(b"reading r.tokentui", TOKENS_TITLE, b"branch #0/2")
        assert t[b"reading r.tokentui"] <= t[TOKENS_TITLE]  # the first frame came before the arrays
        assert b"run 20260101-000000-abcdef" in term.text
        # the run file's prompt holds ESC [31m: shown as a visible escape, never sent raw
        assert "hi ✓ ␛[31m".encode() in term.text and "hi ✓ \x1b[31m".encode() not in term.output
        term.press(b"m")  # the metric key works: the legend names the next metric
        term.wait_for(b"entropy [nats]")
        term.press(b"q")
        assert term.wait_exit() == 0


def test_replay_command_with_damaged_arrays_closes_with_a_one_line_error(tmp_path):
    raw = (save_run(make_run(), tmp_path / "ok.tokentui")).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    bad = tmp_path / "bad.tokentui"
    bad.write_bytes(raw[: 8 + n + 40])  # the header is fine, the arrays are cut short
    with Terminal([*tokentui_command(), "replay", str(bad)], size=(100, 30)) as term:
        assert term.wait_exit() == 2
        assert b"tokentui: error:" in term.text and b"damaged run file" in term.text


def test_replay_command_errors_before_the_screen_opens(tmp_path):
    (tmp_path / "junk.tokentui").write_bytes(b"not a run")
    no_meta = rewrite_header(encode_run(make_run()), with_run_desc(lambda d: d.pop("meta")))
    (tmp_path / "no-meta.tokentui").write_bytes(no_meta)
    env = {"TOKENTUI_CACHE_DIR": str(tmp_path / "cache")}
    cases = {
        ("replay", "nosuch"): "no such run",
        ("replay", str(tmp_path / "junk.tokentui")): "not a tokentui run file",
        ("replay", str(tmp_path / "no-meta.tokentui")): "malformed header",
        ("replay", "-m", "x", "nosuch"): "no such run",  # the Typer path
    }
    for args, problem in cases.items():
        res = subprocess.run(
            [*tokentui_command(), *args], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
        )
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.startswith("tokentui: error: ") and len(res.stderr.strip().splitlines()) == 1
        assert problem in res.stderr, (args, res.stderr)


def test_the_first_frame_of_a_replay_needs_neither_numpy_nor_typer(tmp_path):
    """Also: the launcher's start without the cyclic collector ends once the run is on screen."""
    path = save_run(make_run(), tmp_path / "r.tokentui")
    code = textwrap.dedent(f"""
        import gc
        gc.disable()  # as tokentui.launch does for `tokentui replay RUN`
        import asyncio, sys
        from pathlib import Path
        from tokentui.tui.start import explorer
        app = explorer(run_path=Path({str(path)!r}))
        seen = {{}}
        app.call_after_refresh(lambda: seen.setdefault("first", [m for m in ("numpy", "typer") if m in sys.modules]))
        async def main():
            async with app.run_test(size=(100, 30)) as pilot:
                for _ in range(100):
                    await pilot.pause(0.02)
                    if app.stream.view is not None:
                        break
                print("first frame:", seen["first"], "laid out:", len(app.stream.view), "numpy" in sys.modules, gc.isenabled())
        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "first frame: [] laid out: 9 True True"


def test_no_color_sends_no_colour_codes_at_all(tmp_path):
    """NO_COLOR: no foreground/background colour in any SGR sequence (Textual's own NO_COLOR
    handling turned colours into 256-colour greys), and the metric still shows as text styles."""
    path = save_run(make_run(n_branch_steps=(30, 12)), tmp_path / "r.tokentui")
    with Terminal([*tokentui_command(), "replay", str(path)], size=(100, 30), env={"NO_COLOR": "1"}) as term:
        term.wait_for(TOKENS_TITLE, b"underline")
        term.press(b"h")  # the tokens have the focus: h moves left
        term.wait_for(b"pos 32")
        term.press(b"q")
        assert term.wait_exit() == 0
        sgr = re.findall(rb"\x1b\[([0-9;:]*)m", term.output)
        coloured = set()
        for params in sgr:
            codes = params.replace(b":", b";").split(b";")
            i = 0
            while i < len(codes):
                c = int(codes[i] or 0)
                if c in (38, 48, 58):  # extended colour: 5;n or 2;r;g;b
                    coloured.add(params)
                    break
                if 30 <= c <= 37 or 40 <= c <= 47 or 90 <= c <= 97 or 100 <= c <= 107:
                    coloured.add(params)
                    break
                i += 1
        assert not coloured, sorted(coloured)[:5]
        assert any(b"4" in p.split(b";") for p in sgr) and any(b"7" in p.split(b";") for p in sgr)  # underline, reverse
