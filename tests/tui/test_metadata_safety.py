"""Run metadata is untrusted: every payload (ESC/OSC/CSI, BEL, NUL, DEL, C1, bidi, markup) in a
run's id, date, model, prompt, tokenizer and sampler reaches no widget raw — status bar, settings
line, tree, run picker, confirmations, notifications — and `tokentui runs` prints none of it."""

from __future__ import annotations

import pytest

from tests.factories import HOSTILE_TEXTS as PAYLOADS
from tests.factories import RAW_CONTROLS as RAW
from tests.factories import explorer, make_run, open_picker
from tokentui.store.runfile import save_run


def hostile_meta_run(payload: str, run_id: str | None = None):
    run = make_run()
    m = run.meta
    if run_id is not None:
        m.run_id = run_id
    m.created = f"2026-0{payload}1-01T00:00:00"  # inside what the picker shows (characters 5-16)
    m.model = f"model{payload}"
    m.prompt = f"prompt{payload}"
    m.tokenizer = f"tok{payload}"
    return run


def screen_text(app) -> str:
    """The plain text of every widget on the current screen (and the app's toasts)."""
    out = []
    for w in [*app.screen.query("*"), *app.query("Toast")]:
        if w.region.area:
            out.extend(s.text for s in w.render_lines(w.region.reset_offset))
    return "\n".join(out)


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_metadata_payloads_reach_no_widget_raw(tmp_path, payload):
    run = hostile_meta_run(payload, run_id=f"20260101-000000-{payload}")
    run.branches[1].sampling = {"temperature": 0.7, "top_k": 0, "top_p": 0.9, "seed": 5}
    saved = hostile_meta_run(payload)
    save_run(saved, tmp_path / f"{saved.id}.tokentui")
    app = explorer(run=run, cache_dir=tmp_path)
    seen = []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        for branch in (0, 1):
            app.show_branch(branch, cursor=None)
            await pilot.pause()
            seen.append(screen_text(app))
        app.notify(f"could not save {run.id}: {payload}", title=payload, severity="error")
        await pilot.pause()
        seen.append(screen_text(app))
        await open_picker(pilot, app)  # the run picker lists the saved hostile run
        seen.append(screen_text(app))
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("ctrl+r")  # a new run asks first: the question names the run id
        await pilot.pause(0.2)
        seen.append(screen_text(app))
        assert app.is_running  # [@click=app.quit] did not quit, [/] did not crash
    text = "\n".join(seen)
    assert not [ch for ch in RAW if ch in text], payload
    assert "model" in text and "tok" in text or "model" in text
