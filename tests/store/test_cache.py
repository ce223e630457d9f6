"""Run references: a path, an id, or any unique part of an id; ambiguity names the runs."""

from __future__ import annotations

import re

import pytest

from tests.factories import make_run
from tokentui.store.cache import resolve, run_path
from tokentui.store.header import RunFileError
from tokentui.store.runfile import save_run

IDS = ["20260101-120000-a1b2c3", "20260102-120000-d4e5f6", "20260103-120000-a1ffff"]


@pytest.fixture
def cache(tmp_path):
    for i in IDS:
        save_run(make_run(), run_path(i, tmp_path))
    (tmp_path / ".20260104-000000-a1a1a1.tokentui.tmp").write_bytes(b"")  # a save in progress: never a match
    return tmp_path


@pytest.mark.parametrize(
    "ref, want",
    [
        (IDS[1], IDS[1]),  # the whole id
        ("20260102", IDS[1]),  # a prefix
        ("e5f6", IDS[1]),  # a suffix, as the run picker finds
        ("03-12", IDS[2]),  # the middle
        ("A1B2", IDS[0]),  # case ignored
    ],
)
def test_a_unique_part_of_an_id_names_the_run(cache, ref, want):
    assert resolve(ref, cache) == run_path(want, cache)


def test_an_ambiguous_part_names_the_matches_newest_first(cache):
    with pytest.raises(RunFileError) as info:
        resolve("a1", cache)
    msg = str(info.value)
    assert msg == f"a1: ambiguous: 2 runs match: {IDS[2]}, {IDS[0]}"


def test_many_matches_are_cut_after_five(tmp_path):
    ids = [f"2026010{d}-000000-cafe0{d}" for d in range(1, 9)]
    for i in ids:
        save_run(make_run(), run_path(i, tmp_path))
    msg = str(pytest.raises(RunFileError, resolve, "cafe", tmp_path).value)
    assert msg.endswith(f"{', '.join(sorted(ids, reverse=True)[:5])} and 3 more") and "\n" not in msg


def test_paths_and_misses(cache, tmp_path):
    assert resolve(str(run_path(IDS[0], cache)), tmp_path / "elsewhere") == run_path(IDS[0], cache)
    with pytest.raises(RunFileError, match="no such run"):
        resolve("zzz", cache)
    with pytest.raises(RunFileError, match="no run given"):
        resolve("", cache)
    with pytest.raises(RunFileError, match="no such run"):
        resolve("a1", tmp_path / "missing-cache")


def test_a_truncated_or_padded_file_is_listed_as_damaged_from_its_header(tmp_path):
    """`tokentui runs` reads headers only: a file cut short (or grown) after its header is caught
    there, by where the header says the arrays end, instead of listing as a healthy run."""
    from tokentui.store.cache import list_runs
    from tokentui.store.runfile import load_run

    good = save_run(make_run(), tmp_path / "good.tokentui")
    data = good.read_bytes()
    (tmp_path / "cut.tokentui").write_bytes(data[: len(data) - 7])
    (tmp_path / "grown.tokentui").write_bytes(data + b"\0")
    listed = {r.path.name: r for r in list_runs(tmp_path)}
    assert listed["good.tokentui"].error is None
    for name, size in (("cut.tokentui", len(data) - 7), ("grown.tokentui", len(data) + 1)):
        said = f"damaged run file ({size} bytes where its header says {len(data)})"
        assert listed[name].error == said, name
        with pytest.raises(RunFileError, match=re.escape(said)):  # (loading said the container library's words)
            load_run(tmp_path / name)
