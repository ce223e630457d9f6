"""Steering specs and vector files (untrusted input: one-line errors naming the field), the record a
run keeps (it survives a save and a load; old files still load; a forged one is refused), and the
comparison of a branch with its parent against the run's own columns."""

from __future__ import annotations

import hashlib
import math
import os
import pickle

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.factories import L, make_run, rewrite_header, with_run_desc
from tokentui.core.params import RunError
from tokentui.core.steer_compare import compare, compared_measures, paired_scores, steered_branch
from tokentui.core.steering import (
    SteeringError,
    SteeringSpec,
    check_record,
    describe,
    load_spec,
    load_vector,
    read_prompts,
    same_steering,
    save_vector,
)
from tokentui.store.header import RunFileError
from tokentui.store.runfile import load_run, save_run

D = 8


def write_spec(folder, body: str, name: str = "spec.toml"):
    p = folder / name
    p.write_text(body, encoding="utf-8")
    return p


@pytest.fixture
def vec_files(tmp_path):
    v = np.arange(D, dtype=np.float32) - 3.5
    np.save(tmp_path / "v.npy", v)
    save_file({"vector": v}, str(tmp_path / "v.safetensors"))
    return v


@pytest.mark.parametrize("name", ["v.npy", "v.safetensors"])
def test_a_spec_loads_its_vector_relative_to_its_folder(tmp_path, vec_files, monkeypatch, name):
    sub = tmp_path / "specs"
    sub.mkdir()
    (sub / name).write_bytes((tmp_path / name).read_bytes())
    spec_path = write_spec(
        sub, f'vector = "{name}"\nlayers = [2, 1]\nweights = [0.5, 2]\nposition_weights = [0, 1, 3]\nscale = -4\n'
    )
    monkeypatch.chdir(tmp_path)  # not the spec's folder
    spec = load_spec(spec_path)
    np.testing.assert_array_equal(spec.vector, vec_files)
    assert spec.vector.dtype == np.float32
    assert spec.layers == (2, 1) and spec.weights == (0.5, 2.0) and spec.scale == -4.0
    assert spec.vector_sha256 == hashlib.sha256((sub / name).read_bytes()).hexdigest()
    assert spec.vector_name == name and spec.spec_name == "spec.toml"
    assert spec.coefficient(2) == -2.0 and spec.coefficient(1) == -8.0 and spec.coefficient(3) == 0.0
    # past the list's end its last weight continues
    np.testing.assert_array_equal(spec.position_weight(np.arange(6)), [0, 1, 3, 3, 3, 3])
    rec = spec.record()
    assert rec["norm"] == pytest.approx(float(np.linalg.norm(vec_files.astype(np.float64))))
    assert rec["position_weights"] == [0.0, 1.0, 3.0] and "specs" not in rec["vector"]
    assert check_record(rec) == rec and same_steering(rec, spec) and not same_steering(None, spec)
    line = describe(rec)
    assert name in line and "layers 2 (×0.5), 1 (×2)" in line and "\n" not in line


def test_defaults_weights_one_scale_one_every_position_one(tmp_path, vec_files):
    spec = load_spec(write_spec(tmp_path, 'vector = "v.npy"\nlayers = [3]\n'))
    assert spec.weights == (1.0,) and spec.scale == 1.0 and spec.position_weights is None
    np.testing.assert_array_equal(spec.position_weight(np.arange(4)), np.ones(4))


def _pickled_npy(path):
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)


def _two_tensors(path):
    save_file({"a": np.zeros(D, np.float32), "b": np.ones(D, np.float32)}, str(path))


@pytest.mark.parametrize(
    "body, files, expect",
    [
        ('vector = "v.npy"\nlayers = [1\n', {}, "not valid TOML"),
        ('vector = "v.npy"\nlayers = [1]\nx = ' + "[" * 5000 + "]" * 5000 + "\n", {}, "nested too deeply"),
        ('vector = "v.npy"\nlayers = [1]\nlayer = [2]\n', {}, "unknown field 'layer'"),
        ("layers = [1]\n", {}, "'vector'"),
        ('vector = "v.npy"\n', {}, "'layers'"),
        ('vector = "v.npy"\nlayers = [0]\n', {}, "'layers' entry 0 is not a layer number (whole numbers from 1"),
        ('vector = "v.npy"\nlayers = [5000]\n', {}, "'layers' entry 5000 is past any model's layers"),
        ('vector = "v.npy"\nlayers = [true]\n', {}, "'layers' entry true is"),  # (TOML's true, not Python's)
        ("", {}, "'vector' is missing"),  # (an empty file was told "'vector' must be the path …")
        ('vector = "v.npy"\nlayers = [1.5]\n', {}, "'layers' entry 1.5"),
        ('vector = "v.npy"\nlayers = [1, 1]\n', {}, "names a layer twice"),
        ('vector = "v.npy"\nlayers = [1, 2]\nweights = [1]\n', {}, "'weights' has 1 entry for 2 layers"),
        ('vector = "v.npy"\nlayers = [1]\nweights = [1, 2]\n', {}, "'weights' has 2 entries for 1 layer (one"),
        ('vector = "v.npy"\nlayers = [1]\nweights = ["1"]\n', {}, "'weights' entry 1"),
        ('vector = "v.npy"\nlayers = [1]\nscale = inf\n', {}, "'scale'"),
        ('vector = "v.npy"\nlayers = [1]\nscale = nan\n', {}, "'scale'"),
        ('vector = "v.npy"\nlayers = [1]\nposition_weights = []\n', {}, "'position_weights'"),
        (
            'vector = "v.npy"\nlayers = [1]\nposition_weights = [1, nan]\n',
            {},
            "'position_weights' at position 1",
        ),
        ('vector = "missing.npy"\nlayers = [1]\n', {}, "no such file"),
        ('vector = "p.npy"\nlayers = [1]\n', {"p.npy": _pickled_npy}, "pickle"),
        ('vector = "v.pt"\nlayers = [1]\n', {"v.pt": lambda p: p.write_bytes(b"x")}, ".safetensors or .npy"),
        ('vector = "two.safetensors"\nlayers = [1]\n', {"two.safetensors": _two_tensors}, "name the steering"),
        (
            'vector = "bad.safetensors"\nlayers = [1]\n',
            {"bad.safetensors": lambda p: p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")},
            "not a readable .safetensors",
        ),
        (
            'vector = "m.npy"\nlayers = [1]\n',
            {"m.npy": lambda p: np.save(p, np.ones((2, D), np.float32))},
            "one vector of floats",
        ),
        (
            'vector = "n.npy"\nlayers = [1]\n',
            {"n.npy": lambda p: np.save(p, np.array([1.0, np.nan], np.float32))},
            "NaN",
        ),
        (  # (finite, and every steered position came out the uniform distribution without an error)
            'vector = "h.npy"\nlayers = [1]\n',
            {"h.npy": lambda p: np.save(p, np.array([1.0, 3e38], np.float32))},
            "a value beyond ±1e+06 (|v| up to 3e+38)",
        ),
        (
            'vector = "i.npy"\nlayers = [1]\n',
            {"i.npy": lambda p: np.save(p, np.arange(4))},
            "one vector of floats",
        ),
        ('vector = "dir.npy"\nlayers = [1]\n', {"dir.npy": lambda p: p.mkdir()}, "folder"),
        ('vector = "v.npy"\nlayers = [1]\n"\\u001b]52;c;x\\u0007" = 1\n', {}, "unknown field '␛]52"),
    ],
)
def test_bad_specs_and_vectors_are_one_line_naming_the_field(tmp_path, vec_files, body, files, expect):
    for name, make in files.items():
        make(tmp_path / name)
    with pytest.raises(SteeringError) as e:
        load_spec(write_spec(tmp_path, body))
    msg = str(e.value)
    assert expect in msg and "\n" not in msg and "\x1b" not in msg and "\x07" not in msg
    assert isinstance(e.value, RunError)  # every front end turns these into its one-line error
    if (
        files or "missing" in body
    ):  # the vector's fault: the spec and its field say whose (a trial read "nope.npy: no such file")
        assert msg.startswith(f"{tmp_path / 'spec.toml'}: vector: {tmp_path}/"), msg


class Boom:
    """Unpickling this makes a folder: proof that a pickle ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_the_pickle_in_a_npy_file_is_never_run(tmp_path):
    ran = tmp_path / "ran"
    np.save(tmp_path / "p.npy", np.array([Boom(str(ran))], dtype=object), allow_pickle=True)
    pickle.loads(pickle.dumps(Boom(str(tmp_path / "probe"))))  # (the payload does run when unpickled)
    assert (tmp_path / "probe").is_dir()
    with pytest.raises(SteeringError, match="pickle"):
        load_vector(tmp_path / "p.npy")
    assert not ran.exists()


def test_a_fifo_or_device_is_refused_without_reading_it(tmp_path):
    fifo = tmp_path / "v.npy"
    os.mkfifo(fifo)
    with pytest.raises(SteeringError, match="not a regular file"):
        load_vector(fifo)  # (reading a FIFO with no writer would block forever)
    with pytest.raises(SteeringError, match="not a regular file"):
        load_spec("/dev/zero")


def test_a_one_row_matrix_is_a_vector_and_a_safetensors_vector_named_vector_is_picked(tmp_path):
    np.save(tmp_path / "r.npy", np.ones((1, D), np.float16))
    v, _ = load_vector(tmp_path / "r.npy")
    assert v.shape == (D,) and v.dtype == np.float32
    save_file({"vector": np.full(D, 2, np.float32), "other": np.zeros(3, np.float32)}, str(tmp_path / "t.safetensors"))
    v, _ = load_vector(tmp_path / "t.safetensors")
    np.testing.assert_array_equal(v, np.full(D, 2))


def test_a_bfloat16_vector_widens_to_float32_exactly_beside_other_tensors(tmp_path):
    """A vector taken from a bf16 model's states is often saved as bf16, which safetensors' numpy
    reader refuses: tokentui reads it (bf16 is float32's upper half, so widening is exact)."""
    import torch
    from safetensors.torch import save_file as save_torch

    t = torch.randn(D, generator=torch.Generator().manual_seed(3)) * 7
    save_torch({"vector": t.bfloat16(), "other": torch.zeros(2, dtype=torch.float16)}, str(tmp_path / "b.safetensors"))
    v, sha = load_vector(tmp_path / "b.safetensors")
    assert v.dtype == np.float32
    np.testing.assert_array_equal(v, t.bfloat16().float().numpy())
    assert sha == hashlib.sha256((tmp_path / "b.safetensors").read_bytes()).hexdigest()
    save_torch({"vector": t.bfloat16()}, str(tmp_path / "one.safetensors"))
    np.testing.assert_array_equal(load_vector(tmp_path / "one.safetensors")[0], t.bfloat16().float().numpy())
    # beside a tensor of another type (a step counter) the vector is read; a damaged file is one line
    save_torch({"vector": t.bfloat16(), "step": torch.tensor([3])}, str(tmp_path / "s.safetensors"))
    np.testing.assert_array_equal(load_vector(tmp_path / "s.safetensors")[0], t.bfloat16().float().numpy())
    save_torch({"vector": torch.arange(D), "x": t.bfloat16()}, str(tmp_path / "i.safetensors"))
    with pytest.raises(SteeringError, match="tensor 'vector' holds I64, not floats"):
        load_vector(tmp_path / "i.safetensors")
    data = (tmp_path / "one.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 4])
    with pytest.raises(SteeringError, match="not a readable .safetensors file"):
        load_vector(tmp_path / "cut.safetensors")


@pytest.mark.parametrize("name", ["v.safetensors", "v.npy", "control.pt"])
def test_a_vector_file_given_as_the_spec_says_what_a_spec_is(tmp_path, vec_files, name):
    """Seed 001 takes the vector itself (`--control-vector v.pt`); --steer takes a TOML spec."""
    (tmp_path / "control.pt").write_bytes(b"\x80\x02}q\x00.")  # (a pickle: never read)
    with pytest.raises(SteeringError) as e:
        load_spec(tmp_path / name)
    assert "is a vector file, not a steering spec" in str(e.value) and f'vector = "{name}"' in str(e.value)


def test_a_spec_saved_with_a_bom_loads(tmp_path, vec_files):
    p = tmp_path / "bom.toml"
    p.write_bytes('\ufeffvector = "v.npy"\nlayers = [2]\n'.encode())
    spec = load_spec(p)
    assert spec.layers == (2,)
    np.testing.assert_array_equal(spec.vector, vec_files)


def test_check_model_names_the_missing_layer_and_the_sizes():
    spec = SteeringSpec.of(np.ones(D), [1, 5], name="v.npy")
    with pytest.raises(SteeringError, match="layer 5 does not exist: the model has layers 1…4"):
        spec.check_model(4, D)
    with pytest.raises(SteeringError, match=f"has {D} values; the model's hidden size is 16"):
        SteeringSpec.of(np.ones(D), [1]).check_model(4, 16)
    spec.check_model(5, D)


def test_prompt_files(tmp_path):
    p = tmp_path / "p.txt"
    p.write_text("one\n\n  \ntwo \\n three\n", encoding="utf-8")
    assert read_prompts(p) == ["one", "two \\n three"]
    # a line ends at LF, CR LF or a lone CR (an old Mac file), not at the other breaks
    # str.splitlines knows: a prompt may hold U+2028 or a form feed
    p.write_bytes("\ufeffone\rtwo\r\nthree\u2028still three\x0cand\n".encode())  # (and a BOM, as batch)
    assert read_prompts(p) == ["one", "two", "three\u2028still three\x0cand"]
    p.write_text("\n \n")
    with pytest.raises(SteeringError, match="no prompt"):
        read_prompts(p)
    p.write_bytes(b"\xff\xfe")
    with pytest.raises(SteeringError, match="UTF-8"):
        read_prompts(p)
    with pytest.raises(SteeringError) as e:
        read_prompts(tmp_path)
    assert str(e.value) == f"{tmp_path}: is a folder, not a prompt file"  # (the name once)


def steered_run():
    """make_run's root and child (forking the root at position 6), the child steered."""
    run = make_run(n_branch_steps=(5, 3))
    spec = SteeringSpec.of(np.ones(D), [2], [0.5], 3.0, name="v.npy")
    run.branches[1].steering = spec.record()
    return run, spec


def test_the_steering_record_survives_save_and_load_and_old_files_still_load(tmp_path):
    run, spec = steered_run()
    run.meta.steering = spec.record()
    back = load_run(save_run(run, tmp_path / "r.tokentui"))
    assert back.meta.steering == spec.record() == back.branches[1].steering
    assert back.branches[0].steering is None and back.copy().branches[1].steering == spec.record()
    plain = make_run()
    back = load_run(save_run(plain, tmp_path / "p.tokentui"))
    assert back.meta.steering is None and all(b.steering is None for b in back.branches)
    assert "steering" not in back.branches[0].to_dict()  # files and JSON of unsteered runs are as before
    for old in ("tests/fixtures/schema1/generate.tokentui", "tests/fixtures/demo_runs/generate.tokentui"):
        assert load_run(old).meta.steering is None


@pytest.mark.parametrize(
    "forge, expect",
    [
        (lambda d: d["meta"].__setitem__("steering", "x"), "steering"),
        (lambda d: d["meta"]["steering"].__setitem__("layers", [1, "2"]), "'layers' entry '2'"),
        (lambda d: d["meta"]["steering"].__setitem__("scale", 1e400), "'scale'"),
        (lambda d: d["meta"]["steering"].__setitem__("version", 99), "upgrade tokentui"),
        (lambda d: d["branches"][1]["steering"].__setitem__("weights", []), "branch 1's steering"),
        (lambda d: d["branches"][1]["steering"].__setitem__("dim", True), "'dim'"),
        # file names, never folders, and a real digest (a trial's forged ../../etc/passwd loaded)
        (lambda d: d["meta"]["steering"].__setitem__("vector", "../../etc/passwd"), "'vector' is not a file name"),
        (lambda d: d["meta"]["steering"].__setitem__("spec", "/home/me/s.toml"), "'spec' is not a file name"),
        (lambda d: d["meta"]["steering"].__setitem__("vector", ".."), "'vector' is not a file name"),
        (lambda d: d["meta"]["steering"].__setitem__("sha256", "abc"), "'sha256' is not a hex SHA-256"),
    ],
)
def test_a_forged_steering_record_is_refused_in_one_line(tmp_path, forge, expect):
    run, spec = steered_run()
    run.meta.steering = spec.record()
    path = save_run(run, tmp_path / "r.tokentui")
    path.write_bytes(rewrite_header(path.read_bytes(), with_run_desc(forge)))
    with pytest.raises(RunFileError) as e:
        load_run(path)
    assert expect in str(e.value) and "\n" not in str(e.value)


def test_comparison_of_a_branch_with_its_parent_is_the_columns_difference():
    run, spec = steered_run()
    assert steered_branch(run) == 1
    c = compare(run, 1)
    b = run.branches[1]
    positions = list(range(b.fork_position, min(run.length(0), run.length(1))))
    assert c.positions.tolist() == positions and (c.standard, c.steered) == (0, 1)
    assert c.steered_steering == spec.record() and c.standard_steering is None
    # the compared measures: the layout's numeric one-per-token and one-per-layer columns, and the
    # per-layer ones derived from the lens entropy (seed 001 compared its perplexities and KL too)
    assert c.names == [m.name for m in compared_measures(run.layout)]
    assert set(c.names) == {"logprob", "entropy", "rank", "sampler_logprob", "layer_entropy", "layer_perplexity",
                            "layer_kl_uniform"}  # fmt: skip

    def value(branch: int, p: int, name: str) -> np.ndarray:
        h = np.asarray(run.step(branch, p).get("layer_entropy"), dtype=np.float64)
        if name == "layer_perplexity":
            return np.exp(h)
        if name == "layer_kl_uniform":
            return np.log(run.meta.vocab_size) - h
        return np.asarray(run.step(branch, p).get(name), dtype=np.float64)

    for name in c.names:
        for i, p in enumerate(positions):
            a, s = value(0, p, name), value(1, p, name)
            np.testing.assert_array_equal(c.standard_values[name][i], a)
            np.testing.assert_array_equal(c.difference(name)[i], s - a)
            with np.errstate(all="ignore"):
                want = np.where((a != 0) & np.isfinite(a), 100 * (s - a) / np.abs(a), np.nan)
            np.testing.assert_array_equal(c.percent_change(name)[i], want)
    assert c.standard_values["layer_entropy"].shape == (len(positions), L)
    differ = [p for p in positions if run.sequence(0)[p] != run.sequence(1)[p]]
    assert c.divergence == (differ[0] if differ else None)
    assert c.rows("entropy").keys() == {"standard", "control", "difference", "percent_change"}


def test_percent_change_signs_and_zeros():
    run, _ = steered_run()
    c = compare(run, 1)
    c.standard_values["logprob"][:] = [-2.0, 0.0, -1.0]
    c.steered_values["logprob"][:] = [-1.0, -1.0, -1.0]
    got = c.percent_change("logprob")
    assert got[0] == 50.0 and math.isnan(got[1]) and got[2] == 0.0


def test_comparison_refusals_are_one_line():
    run, _ = steered_run()
    with pytest.raises(RunError, match="root"):
        compare(run, 0)
    with pytest.raises(RunError, match="itself"):
        compare(run, 1, against=1)
    plain = make_run()
    with pytest.raises(RunError, match="no steered branch"):
        steered_branch(plain)


def test_paired_scores_puts_two_scorings_side_by_side():
    a = make_run()
    a.branches = []  # a scoring: everything is prompt, the root branch is empty
    a.add_branch(None, len(a.prompt)).status = "scored"
    b = a.copy()
    spec = SteeringSpec.of(np.ones(D), [1])
    b.meta.steering = spec.record()
    b.prompt = b.prompt.copy()
    lp = b.prompt.arrays()
    lp["logprob"][1:] -= 0.25
    from tokentui.core.columns import Columns

    b.prompt = Columns.from_arrays(b.layout, lp)
    run = paired_scores(a, b)
    assert [(x.parent, x.fork_position, x.n_forced, x.status) for x in run.branches] == [
        (None, 1, 3, "scored"),
        (0, 1, 3, "scored"),
    ]
    assert run.branches[1].steering == spec.record() and run.meta.steering is None
    c = compare(run, 1)
    np.testing.assert_allclose(c.difference("logprob"), -0.25, atol=1e-6)
    assert c.divergence is None and run.sequence(1).tolist() == a.sequence(0).tolist()


def test_a_saved_vector_is_the_same_bytes_every_time_and_reads_back_with_safetensors(tmp_path):
    """The same vector and metadata give the same file, so the same hash (a spec records it):
    safetensors' own writer ordered the metadata differently in each call."""
    from safetensors import safe_open

    v = np.linspace(-1, 1, D, dtype=np.float32)
    meta = {f"key{i}": f"value {i}" for i in range(12)}
    hashes = {save_vector(tmp_path / f"v{i}.safetensors", v, dict(reversed(meta.items()) if i % 2 else meta.items()))
              for i in range(4)}  # fmt: skip
    assert len(hashes) == 1 and len({(tmp_path / f"v{i}.safetensors").read_bytes() for i in range(4)}) == 1
    assert hashes == {hashlib.sha256((tmp_path / "v0.safetensors").read_bytes()).hexdigest()}
    with safe_open(str(tmp_path / "v0.safetensors"), framework="numpy") as f:
        assert f.metadata() == meta and list(f.keys()) == ["vector"]
        np.testing.assert_array_equal(f.get_tensor("vector"), v)
    assert load_vector(tmp_path / "v0.safetensors")[0].tolist() == v.tolist()
