"""The collection manifest: written atomically, read back as written, and refused in one line
whenever a stranger's manifest is malformed or hostile."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.factories import make_run
from tokentui.store import collection as C
from tokentui.store.collection import Collection, CollectionError, CollectionItem, item_key, load_collection, locked
from tokentui.store.runfile import save_run

KEY = "ab" * 32


def _collection(tmp_path) -> Collection:
    coll = Collection.new(tmp_path / "c")
    coll.models = ["m/one", "two"]
    coll.settings = {"mode": "dataset", "k": 5}
    run = make_run()
    run.meta.run_id = coll.run_id("two", 7)
    path = save_run(run, coll.run_file_for("two", 7))
    coll.put(CollectionItem(7, "two", "done", path, None, KEY))
    coll.put(CollectionItem(3, "two", "skipped", None, "no 'response' field", KEY))
    coll.put(CollectionItem(9, "m/one", "failed", None, "the model failed", KEY))
    coll.save()
    return coll


def test_a_saved_collection_loads_as_it_was_written(tmp_path):
    coll = _collection(tmp_path)
    back = load_collection(coll.path)
    assert back == coll
    assert [(it.model, it.index) for it in back.items] == [("m/one", 9), ("two", 3), ("two", 7)]  # by model, then item
    [(item, path)] = back.runs()
    assert item.index == 7 and path.is_absolute() and path.parent == coll.path / "runs" and path.exists()
    assert load_collection(coll.manifest) == coll  # the manifest's own path works too
    doc = json.loads(coll.manifest.read_text())
    assert doc["format"] == "tokentui-collection" and doc["schema"] == 1
    assert doc["items"][2]["run_file"] == f"runs/{coll.run_id('two', 7)}.tokentui"  # relative: the folder can move
    assert [p.name for p in coll.path.iterdir() if p.name.endswith(".tmp")] == []


def test_run_ids_are_stable_plain_names_per_model_and_item(tmp_path):
    coll = Collection.new(tmp_path)
    a = coll.run_id("m", 1)
    assert a == coll.run_id("m", 1) and a != coll.run_id("m", 2) and a != coll.run_id("other", 1)
    assert len(coll.run_id("x" * 5000, 10**12)) <= 64


def test_the_key_changes_with_the_model_the_settings_and_the_text():
    base = item_key({"model": "a"}, {"k": 5}, {"prompt": "p"})
    assert base == item_key({"model": "a"}, {"k": 5}, {"prompt": "p"})
    others = [
        item_key({"model": "b"}, {"k": 5}, {"prompt": "p"}),
        item_key({"model": "a"}, {"k": 6}, {"prompt": "p"}),
        item_key({"model": "a"}, {"k": 5}, {"prompt": "p "}),
        item_key({"model": "a"}, {"k": 5}, {"prompt": "p", "response": ""}),
    ]
    assert len({base, *others}) == 5


def test_unlisted_run_files_and_dead_temporaries_are_removed_and_nothing_else(tmp_path):
    coll = _collection(tmp_path)
    stale = coll.run_file_for("two", 8)
    stale.write_bytes(b"old")
    dead = coll.runs_dir / f".{stale.name}.999999999.1.ab.tmp"
    dead.write_bytes(b"half")
    # a manifest save killed mid-write leaves its temporary beside the manifest (a trial's stayed
    # through two resumes): named as every save's, and removed too
    half_manifest = coll.path / f".collection.json.999999999.1.{'0' * 8}.tmp"
    half_manifest.write_bytes(b"{")
    mine = coll.runs_dir / "notes.txt"
    mine.write_text("kept")
    removed = coll.remove_unlisted_runs()
    assert sorted(removed) == sorted([stale, dead, half_manifest])
    assert mine.exists() and coll.run_file_for("two", 7).exists()


def test_a_second_writer_is_refused(tmp_path):
    with locked(tmp_path):
        with pytest.raises(CollectionError, match="another tokentui batch"):
            with locked(tmp_path):
                pass
    with locked(tmp_path):  # free again
        pass


def _mutate(doc, change):
    change(doc)
    return json.dumps(doc)


def _set(path, value):
    def change(doc):
        target = doc
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = value

    return change


HOSTILE = {
    "not json": lambda doc: "{not json",
    "deep": lambda doc: '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
    "a list": lambda doc: "[]",
    "another format": lambda doc: _mutate(doc, _set(["format"], "tokentui-run")),
    "newer schema": lambda doc: _mutate(doc, _set(["schema"], 2)),
    "schema as text": lambda doc: _mutate(doc, _set(["schema"], "1")),
    "bad id": lambda doc: _mutate(doc, _set(["id"], "../x")),
    "models not a list": lambda doc: _mutate(doc, _set(["models"], "m")),
    "a model twice": lambda doc: _mutate(doc, _set(["models"], ["two", "two"])),
    "settings not an object": lambda doc: _mutate(doc, _set(["settings"], [])),
    "items not a list": lambda doc: _mutate(doc, _set(["items"], {})),
    "item not an object": lambda doc: _mutate(doc, _set(["items", 0], 3)),
    "index a bool": lambda doc: _mutate(doc, _set(["items", 0, "index"], True)),
    "index a float": lambda doc: _mutate(doc, _set(["items", 0, "index"], 3.0)),
    "index negative": lambda doc: _mutate(doc, _set(["items", 0, "index"], -1)),
    "index huge": lambda doc: (
        '{"format": "tokentui-collection", "schema": 1, "id": "x", "models": ["m"], '
        '"settings": {}, "items": [{"index": 1' + "0" * 5000 + ', "model": "m"}]}'
    ),
    "unknown status": lambda doc: _mutate(doc, _set(["items", 0, "status"], "pending")),
    "model not listed": lambda doc: _mutate(doc, _set(["items", 0, "model"], "three")),
    "key not hex": lambda doc: _mutate(doc, _set(["items", 0, "key"], "z" * 64)),
    "no key": lambda doc: _mutate(doc, lambda d: d["items"][0].pop("key")),
    "run file outside": lambda doc: _mutate(doc, _set(["items", 2, "run_file"], "runs/../../etc/passwd.tokentui")),
    "run file absolute": lambda doc: _mutate(doc, _set(["items", 2, "run_file"], "/tmp/x.tokentui")),
    "run file elsewhere": lambda doc: _mutate(doc, _set(["items", 2, "run_file"], "other/x.tokentui")),
    "done without run file": lambda doc: _mutate(doc, _set(["items", 2, "run_file"], None)),
    "skipped with run file": lambda doc: _mutate(doc, _set(["items", 1, "run_file"], "runs/x.tokentui")),
    "a long error": lambda doc: _mutate(doc, _set(["items", 1, "error"], "e" * 20_000)),
    "an item twice": lambda doc: _mutate(doc, lambda d: d["items"].append(d["items"][0])),
    "a run file twice": lambda doc: _mutate(doc, lambda d: d["items"].append({**d["items"][2], "index": 99})),
    "complete not a bool": lambda doc: _mutate(doc, _set(["complete"], "yes")),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_malformed_or_hostile_manifest_is_one_line_error(tmp_path, case):
    coll = _collection(tmp_path)
    doc = json.loads(coll.manifest.read_text())
    coll.manifest.write_text(HOSTILE[case](doc))
    with pytest.raises(CollectionError) as e:
        load_collection(coll.path)
    assert isinstance(e.value, ValueError)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 600 and str(coll.path) in msg


def test_errors_never_carry_terminal_escapes(tmp_path):
    d = tmp_path / "evil\x1b]2;x\x07"
    d.mkdir()
    (d / "collection.json").write_text(json.dumps({"format": "tokentui-collection", "schema": "\x1b[2J"}))
    with pytest.raises(CollectionError) as e:
        load_collection(d)
    assert "\x1b" not in str(e.value) and "\x07" not in str(e.value)


def test_a_missing_or_oversized_manifest_is_refused(tmp_path, monkeypatch):
    with pytest.raises(CollectionError, match="not a tokentui collection"):
        load_collection(tmp_path)
    coll = _collection(tmp_path)
    monkeypatch.setattr(C, "MAX_MANIFEST_BYTES", os.path.getsize(coll.manifest) - 1)
    with pytest.raises(CollectionError, match="too large"):
        load_collection(coll.path)


def test_a_received_collection_is_read_from_its_own_files_only(tmp_path):
    """A received folder is untrusted as a whole: a run file replaced by a link (to anything on
    the machine) or by another run, and a manifest that is a link, are refused (a trial's stats
    counted a run from outside the folder as an item, and probed /etc/passwd through one)."""
    coll = _collection(tmp_path)
    [(_, path)] = coll.runs()
    assert C.load_item_run(path).id == path.stem
    stranger = make_run()
    stranger.meta.run_id = "sample-chat"
    elsewhere = save_run(stranger, tmp_path / "sample-chat.tokentui")
    path.unlink()
    path.symlink_to(elsewhere)
    with pytest.raises(C.RunFileError, match="symbolic link"):
        C.load_item_run(path)
    path.unlink()
    path.write_bytes(elsewhere.read_bytes())  # another run under the item's name
    with pytest.raises(C.RunFileError, match="holds run sample-chat, not the one its name says"):
        C.load_item_run(path)
    real = tmp_path / "elsewhere-runs"
    shutil.move(coll.runs_dir, real)
    own = make_run()
    own.meta.run_id = path.stem
    save_run(own, real / path.name)  # the item's own name and id, but outside the folder
    coll.runs_dir.symlink_to(real)  # (the runs folder itself a link)
    with pytest.raises(C.RunFileError, match="symbolic link"):
        C.load_item_run(path)
    (tmp_path / "elsewhere.json").write_bytes(coll.manifest.read_bytes())
    coll.manifest.unlink()
    coll.manifest.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(CollectionError, match="symbolic link"):
        load_collection(coll.path)


def test_a_run_file_swapped_for_a_link_right_after_the_check_is_refused(tmp_path, monkeypatch):
    """The link check and the read are one: a file replaced by a link between them (the swap made
    here the moment the check has looked) is refused, not followed to a run with the item's id."""
    coll = _collection(tmp_path)
    [(_, path)] = coll.runs()
    own = make_run()
    own.meta.run_id = path.stem
    (tmp_path / "outside").mkdir()
    elsewhere = save_run(own, tmp_path / "outside" / path.name)
    real_lstat = os.lstat

    def lstat_then_swap(p, *args, **kwargs):
        st = real_lstat(p, *args, **kwargs)
        if str(p) == str(path) and not path.is_symlink():
            path.unlink()
            path.symlink_to(elsewhere)
        return st

    monkeypatch.setattr(os, "lstat", lstat_then_swap)
    with pytest.raises(C.RunFileError, match="symbolic link"):
        C.load_item_run(path)
    assert path.is_symlink()  # (the swap happened)
