"""Keys that arrive together (over SSH, everything typed within one round trip does) reach the
screen they were typed for: the export dialog, its confirmation, the main screen after a dialog
closes. Each burst is sent as a terminal sends it: all keys queued at once, no waiting between."""

from __future__ import annotations

import json

from textual import events

from tests.factories import explorer, make_run, wait_for

CHARS = {"enter": "\r", "escape": "\x1b", "ctrl+u": "\x15"}


def burst(app, *keys: str | events.Paste) -> None:
    """Queue the keys (and pastes) on the app in one go (a pilot's `press` waits for the app
    between keys)."""
    for key in keys:
        names = [key] if isinstance(key, events.Paste) or key in CHARS else list(key)
        for name in names:
            event = (
                name
                if isinstance(name, events.Paste)
                else events.Key({".": "full_stop"}.get(name, name), CHARS.get(name, name))
            )
            event.set_sender(app)
            app._driver.send_message(event)


async def settled(pilot, app) -> None:
    await pilot.pause(0.1)
    await wait_for(pilot, lambda: not getattr(app, "_held", ()), what="the held keys", timeout=10)
    await pilot.pause(0.3)


async def test_keys_typed_ahead_of_a_dialog_reach_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = make_run()
    app = explorer(run=run)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.3)
        default = tmp_path / f"{run.id}.csv"
        # x⏎: the offered name
        burst(app, "x", "enter")
        await settled(pilot, app)
        assert "next_token" in default.read_text().splitlines()[0] and app.screen is app.screen_stack[0]
        # x⏎y: the same name again, replaced
        default.write_text("old")
        burst(app, "x", "enter", "y")
        await settled(pilot, app)
        assert default.read_text() != "old", "the confirmation lost the y"
        assert app.screen is app.screen_stack[0]
        # x, a name typed over the offered one, ⏎
        burst(app, "x", "ctrl+u", "b.jsonl", "enter")
        await settled(pilot, app)
        lines = (tmp_path / "b.jsonl").read_text().splitlines()
        assert json.loads(lines[0])["run_id"] == run.id
        # a seed's format by the name's ending: seed 002's tree JSON
        burst(app, "x", "ctrl+u", "t.tree.json", "enter")
        await settled(pilot, app)
        doc = json.loads((tmp_path / "t.tree.json").read_text())
        assert doc["metadata"]["tokentui"]["run_id"] == run.id and doc["tree"]["children"]
        # a name pasted ahead of the dialog, or after a held key: in its place, in order
        burst(app, "x", "ctrl+u", events.Paste("c.jsonl"), "enter")
        await settled(pilot, app)
        assert (tmp_path / "c.jsonl").exists()
        burst(app, "x", "ctrl+u", "d", events.Paste(".jsonl"), "enter")
        await settled(pilot, app)
        assert (tmp_path / "d.jsonl").exists()
        # x, Esc, then a command for the main screen: the dialog closes, the command works
        metric = app.metric
        burst(app, "x", "escape", "m")
        await settled(pilot, app)
        assert app.screen is app.screen_stack[0] and app.metric != metric
        names = [default.name, "b.jsonl", "t.tree.json", "c.jsonl", "d.jsonl"]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


async def test_a_key_waits_while_a_busy_app_finishes_the_one_before_it(tmp_path, monkeypatch):
    """On a loaded machine one key can take the app over a second (here its Enter's binding takes
    1.5 s): the y typed after it still waits for it, not only a second (it landed in the name
    field, 'a.csvy', before the Enter had submitted it)."""
    import asyncio

    from textual.app import App

    monkeypatch.chdir(tmp_path)
    quick = App._check_bindings

    async def check_bindings_slowly(self, key: str, priority: bool = False) -> bool:
        if key == "enter" and not priority:  # (the binding of an Enter that came back up to the app)
            await asyncio.sleep(1.5)
        return await quick(self, key, priority)

    monkeypatch.setattr(App, "_check_bindings", check_bindings_slowly)
    app = explorer(run=make_run())
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.5)
        (tmp_path / "a.csv").write_text("old")
        burst(app, "x", "ctrl+u", "a.csv", "enter", "y")
        await wait_for(pilot, lambda: (tmp_path / "a.csv").read_text() != "old", what="the replaced file", timeout=20)
        await settled(pilot, app)
        assert app.screen is app.screen_stack[0] and sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]
