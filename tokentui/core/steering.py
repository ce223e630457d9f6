"""Steering specs: which vector to add to the residual stream, at which layers, how strongly.

A spec is a small TOML file a user writes (or receives: it is untrusted input, like the vector
file it names):

    vector = "honest.safetensors"   # relative to the spec file's folder; .safetensors or .npy
    layers = [4, 6]                 # 1…L: layer l is the output of block l (the lens's numbering)
    weights = [1.0, 0.5]            # one per layer (default: 1 each)
    position_weights = [0, 0, 1]    # optional: a weight per absolute position (seed 001's token
                                    # weights); past the list's end its last weight continues
    scale = 4.0                     # a global factor (default 1)

At the output of block l (l in `layers`), position t of the sequence gets
scale × weights[l] × position_weight(t) × vector added to its hidden state, before block l+1
(or, for l = L, the final norm) reads it. Seed 001's "control vector" meant the same but never
reached the layers; here the engine's forward hooks apply it (`engine/hf/steering.py`).

Every fault in a spec or a vector file is a `SteeringError`: one line naming the file and the
field. Vectors are read without pickle (`np.load(..., allow_pickle=False)`, safetensors) and
without torch. A run records the spec as `record()` (the vector's file name and SHA-256, never its
folder), so a replay can say what was steered. Numpy and the standard library only.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tomllib

from tokentui.core.dataset import text_lines
from tokentui.core.display import counted, sanitize
from tokentui.core.files import write_atomically
from tokentui.core.params import RunError

if TYPE_CHECKING:
    from tokentui.core.run import Run

SPEC_KEYS = ("vector", "layers", "weights", "position_weights", "scale")
VECTOR_SUFFIXES = (".safetensors", ".npy")
MAX_SPEC_BYTES = 1 << 20  # a spec is a few lines; a megabyte holds 10,000 position weights easily
MAX_VECTOR_BYTES = 64 << 20
MAX_DIM = 1 << 17  # hidden sizes are at most a few tens of thousands
MAX_LAYERS = 4_096  # as run files (store/runfile.py)
MAX_POSITION_WEIGHTS = 10_000
MAX_ABS = 1e6  # a weight or scale beyond this is a typo, and would overflow float16 models
RECORD_VERSION = 1
CONTRAST_POSITIONS = ("mean", "last")  # how `steer-vector` reduces a prompt's positions (engine/hf/steering.py)


class SteeringError(RunError):
    """A steering spec or vector cannot be used; str() is one line naming the file and the field."""


def _say(where: str, problem: str) -> SteeringError:
    return SteeringError(sanitize(" ".join(f"{where}: {problem}".split()))[:400])


def _number(value: object) -> float | None:
    """A finite JSON/TOML number (not a bool) within ±MAX_ABS, as a float; None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) and abs(v) <= MAX_ABS else None


def _numbers(where: str, name: str, value: object, limit: int) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise _say(where, f"'{name}' must be a non-empty list of numbers")
    if len(value) > limit:
        raise _say(where, f"'{name}' has {len(value)} entries (at most {limit})")
    out = []
    for i, x in enumerate(value):
        v = _number(x)
        if v is None:
            # (position_weights' entries are numbered as the positions they weigh, from 0)
            entry = f"at position {i}" if name == "position_weights" else f"entry {i + 1}"
            raise _say(where, f"'{name}' {entry} is not a finite number within ±{MAX_ABS:g} (got {_toml(x)})")
        out.append(v)
    return tuple(out)


def _layers(where: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise _say(where, "'layers' must be a non-empty list of layer numbers (1 = the output of the first block)")
    if len(value) > MAX_LAYERS:
        raise _say(where, f"'layers' has {len(value)} entries (at most {MAX_LAYERS})")
    for x in value:
        # (the model is not known yet: its own range is checked when it is; "1…4096" read as the model's)
        if isinstance(x, bool) or not isinstance(x, int) or x < 1:
            raise _say(
                where, f"'layers' entry {_toml(x)} is not a layer number (whole numbers from 1: the first block)"
            )
        if x > MAX_LAYERS:
            raise _say(where, f"'layers' entry {x} is past any model's layers (tokentui takes at most {MAX_LAYERS})")
    if len(set(value)) != len(value):
        raise _say(where, "'layers' names a layer twice")
    return tuple(value)


@dataclass(frozen=True, eq=False)
class SteeringSpec:
    """A checked spec with its vector loaded. `vector_name` is the vector file's name (never its
    folder: records travel with shared runs), `vector_sha256` the hex SHA-256 of its bytes."""

    vector: np.ndarray = field(repr=False)  # float32 [d]
    layers: tuple[int, ...]
    weights: tuple[float, ...]
    scale: float = 1.0
    position_weights: tuple[float, ...] | None = None
    vector_name: str = "vector"
    vector_sha256: str = ""
    spec_name: str = ""

    def __post_init__(self) -> None:
        where = self.spec_name or "steering spec"
        v = np.asarray(self.vector)
        if v.ndim != 1 or not 1 <= v.size <= MAX_DIM or v.dtype.kind != "f":
            raise _say(where, f"the vector must be one row of 1…{MAX_DIM} floats (got shape {v.shape}, {v.dtype})")
        _check_values(where, v)
        object.__setattr__(self, "vector", np.ascontiguousarray(v, dtype=np.float32))
        _layers(where, list(self.layers))
        _numbers(where, "weights", list(self.weights), MAX_LAYERS)
        if len(self.weights) != len(self.layers):
            raise _say(
                where,
                f"'weights' has {counted(len(self.weights), 'entry', 'entries')} for "
                f"{counted(len(self.layers), 'layer')} (one per layer)",
            )
        if _number(self.scale) is None:
            raise _say(where, f"'scale' must be a finite number within ±{MAX_ABS:g}")
        if self.position_weights is not None:
            _numbers(where, "position_weights", list(self.position_weights), MAX_POSITION_WEIGHTS)
        if not self.vector_sha256:
            sha = hashlib.sha256(self.vector.tobytes()).hexdigest()
            object.__setattr__(self, "vector_sha256", sha)

    @classmethod
    def of(
        cls,
        vector: np.ndarray | Sequence[float],
        layers: Sequence[int],
        weights: Sequence[float] | None = None,
        scale: float = 1.0,
        position_weights: Sequence[float] | None = None,
        name: str = "vector",
    ) -> SteeringSpec:
        """A spec made in code (tests, the API): weights default to 1 per layer; the hash is the
        SHA-256 of the float32 vector's bytes."""
        w = tuple(float(x) for x in weights) if weights is not None else tuple(1.0 for _ in layers)
        pw = None if position_weights is None else tuple(float(x) for x in position_weights)
        arr = np.asarray(vector)
        return cls(arr, tuple(int(x) for x in layers), w, float(scale), pw, name)

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])

    def coefficient(self, layer: int) -> float:
        """scale × the layer's weight (0 for a layer the spec does not steer)."""
        for x, w in zip(self.layers, self.weights):
            if x == layer:
                return self.scale * w
        return 0.0

    def position_weight(self, positions: np.ndarray) -> np.ndarray:
        """float32 weights of absolute positions (1 everywhere without a list; past the list's
        end, its last weight)."""
        p = np.asarray(positions, dtype=np.int64)
        if self.position_weights is None:
            return np.ones(p.shape, dtype=np.float32)
        table = np.asarray(self.position_weights, dtype=np.float32)
        return table[np.clip(p, 0, len(table) - 1)]

    def check_model(self, n_layers: int, hidden_size: int | None) -> None:
        """Refuse a layer the model lacks or a vector of another size (one line)."""
        where = self.spec_name or "steering spec"
        bad = [x for x in self.layers if not 1 <= x <= n_layers]
        if bad:
            raise _say(where, f"layer {bad[0]} does not exist: the model has layers 1…{n_layers}")
        if hidden_size is not None and self.dim != hidden_size:
            raise _say(
                where,
                f"the vector {self.vector_name} has {counted(self.dim, 'value')}; the model's hidden size is {hidden_size}",
            )

    def record(self) -> dict[str, Any]:
        """What a run stores about this steering (JSON-ready; no vector values, no path)."""
        return {
            "version": RECORD_VERSION,
            "spec": self.spec_name,
            "vector": self.vector_name,
            "sha256": self.vector_sha256,
            "dim": self.dim,
            "norm": float(np.linalg.norm(self.vector.astype(np.float64))),
            "layers": list(self.layers),
            "weights": list(self.weights),
            "scale": self.scale,
            "position_weights": None if self.position_weights is None else list(self.position_weights),
        }

    @property
    def key(self) -> str:
        """Identity of the steering's effect (vector hash, layers, weights, scale, position
        weights): KV caches computed under one key are never reused under another."""
        return record_key(self.record())


def record_key(record: dict[str, Any] | None) -> str:
    """`SteeringSpec.key` of a stored record ('' for no steering)."""
    if record is None:
        return ""
    parts = [record.get(k) for k in ("sha256", "layers", "weights", "scale", "position_weights")]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def same_steering(record: dict[str, Any] | None, spec: SteeringSpec | None) -> bool:
    """Whether `spec` steers as the stored `record` says (both None: both unsteered)."""
    return record_key(record) == ("" if spec is None else spec.key)


def check_record(d: object) -> dict[str, Any] | None:
    """A steering record read from a run file (untrusted): RunError (one line) when malformed.
    Numbers are checked as strictly as a spec's; texts were bounded with the rest of the header."""
    if d is None:
        return None
    where = "steering record"
    if not isinstance(d, dict):
        raise _say(where, "is not an object")
    version = d.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _say(where, "has no valid version")
    if version > RECORD_VERSION:
        raise _say(where, f"has version {version} (this tokentui reads ≤ {RECORD_VERSION}); upgrade tokentui")
    for key in ("spec", "vector", "sha256"):
        if not isinstance(d.get(key), str):
            raise _say(where, f"'{key}' is not text")
    for key in ("spec", "vector"):  # file names, never folders (what tokentui writes)
        name = d[key]
        if "/" in name or name in (".", "..") or (key == "vector" and not name):  # ('\\' is a POSIX name's)
            raise _say(where, f"'{key}' is not a file name")
    if not re.fullmatch(r"[0-9a-f]{64}", d["sha256"]):
        raise _say(where, "'sha256' is not a hex SHA-256")
    dim = d.get("dim")
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
        raise _say(where, f"'dim' is not a size 1…{MAX_DIM}")
    norm = d.get("norm")
    if isinstance(norm, bool) or not isinstance(norm, (int, float)) or not math.isfinite(norm) or norm < 0:
        raise _say(where, "'norm' is not a finite number ≥ 0")
    layers = _layers(where, d.get("layers"))
    weights = _numbers(where, "weights", d.get("weights"), MAX_LAYERS)
    if len(weights) != len(layers):
        raise _say(where, "'weights' and 'layers' differ in length")
    if _number(d.get("scale")) is None:
        raise _say(where, "'scale' is not a finite number")
    pw = d.get("position_weights")
    if pw is not None:
        _numbers(where, "position_weights", pw, MAX_POSITION_WEIGHTS)
    return dict(d)


def describe(record: dict[str, Any] | None) -> str:
    """One line for people: what a branch or run was steered with ('not steered' for None). Safe
    to print (texts are sanitised)."""
    if record is None:
        return "not steered"
    at = ", ".join(f"{x} (×{w:g})" for x, w in zip(record["layers"], record["weights"]))
    text = (
        f"steered: {sanitize(str(record['vector']))} (sha256 {sanitize(str(record['sha256']))[:12]}, "
        f"‖v‖ {float(record['norm']):.4g}) × {float(record['scale']):g} at layer{'s' if len(record['layers']) > 1 else ''} {at}"
    )
    pw = record.get("position_weights")
    if pw:
        text += (
            f"; position weights {', '.join(f'{x:g}' for x in pw[:6])}{', …' if len(pw) > 6 else ''} (then {pw[-1]:g})"
        )
    return text


def steering_at(run: Run, branch_id: int, position: int) -> dict[str, Any] | None:
    """The steering record the token at `position` of the branch was made with: the record of the
    branch that holds that position (the branch or an ancestor); None when made unsteered. What
    runs the model again unsteered (attribution, a tree search) says so beside its numbers."""
    for b in run.ancestry(branch_id):
        if position >= b.fork_position:
            return b.steering
    return None


def short(record: dict[str, Any] | None) -> str:
    """A few words for a settings line: 'steered v.npy ×4 @2,3' ('' for None). Sanitised."""
    if record is None:
        return ""
    layers = ",".join(str(x) for x in record["layers"][:8]) + ("…" if len(record["layers"]) > 8 else "")
    return f"steered {sanitize(str(record['vector']))[:30]} ×{float(record['scale']):g} @{layers}"


# --- reading files -----------------------------------------------------------------------------


def _read_regular(path: Path, limit: int, what: str) -> bytes:
    """A regular file's bytes (at most `limit`); a FIFO, device, folder or missing file is a
    SteeringError (reading /dev/zero or a FIFO would never end)."""
    try:
        st = path.stat()
        if path.is_dir():
            raise _say(str(path), f"is a folder, not a {what}")
        if not path.is_file():
            raise _say(str(path), f"is not a regular file (a {what} must be one)")
        if st.st_size > limit:
            raise _say(str(path), f"is {st.st_size} bytes; a {what} is at most {limit}")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except SteeringError:
        raise
    except FileNotFoundError:
        raise _say(str(path), "no such file") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL in the name
        raise _say(str(path), getattr(e, "strerror", None) or str(e)) from None
    if len(data) > limit:
        raise _say(str(path), f"is larger than {limit} bytes")
    return data


def _pick_tensor(where: str, tensors: dict[str, np.ndarray]) -> np.ndarray:
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    if "vector" in tensors:
        return tensors["vector"]
    names = ", ".join(sorted(tensors)[:5]) or "none"
    raise _say(where, f"holds {len(tensors)} tensors ({names}); name the steering vector 'vector'")


def _with_bfloat16(data: bytes) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file that holds bfloat16 ones, which safetensors' numpy reader
    refuses (numpy has no bfloat16; a vector taken from a bf16 model's states is often saved so):
    bfloat16 is float32's upper 16 bits, so it widens to float32 exactly. A malformed file raises
    (ValueError, KeyError …), which load_vector reports as unreadable."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    body = memoryview(data)[8 + n :]
    kinds = {"BF16": "<u2", "F16": "<f2", "F32": "<f4", "F64": "<f8"}
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    out = {}
    for name, info in tensors.items():
        if info["dtype"] not in kinds:  # (a step counter beside the vector: not ours to read)
            if name == "vector" or len(tensors) == 1:
                raise ValueError(f"tensor {name!r} holds {str(info['dtype'])[:10]}, not floats")
            continue
        start, end = info["data_offsets"]
        if not 0 <= start <= end <= len(body):
            raise ValueError(f"tensor {name!r} lies outside the file ({start}…{end})")
        arr = np.frombuffer(body[start:end], dtype=kinds[info["dtype"]])
        if info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr.reshape(info["shape"])
    return out


def load_vector(path: Path | str) -> tuple[np.ndarray, str]:
    """(float32 [d] vector, hex SHA-256 of the file) from a `.safetensors` file (its only tensor,
    or the one named 'vector') or a `.npy` file (never unpickled). A [1, d] array is taken as
    [d]. Any fault is a SteeringError."""
    path = Path(path)
    where = str(path)
    suffix = path.suffix.lower()
    if suffix not in VECTOR_SUFFIXES:
        raise _say(where, f"a steering vector is a {' or '.join(VECTOR_SUFFIXES)} file")
    data = _read_regular(path, MAX_VECTOR_BYTES, "vector file")
    sha = hashlib.sha256(data).hexdigest()
    try:
        if suffix == ".npy":
            arr = np.load(io.BytesIO(data), allow_pickle=False)
            if not isinstance(arr, np.ndarray):
                raise _say(where, "is not a single numpy array")
        else:
            from safetensors.numpy import load

            try:
                tensors = dict(load(data))
            except Exception as e:
                if "BF16" not in str(e):
                    raise
                tensors = _with_bfloat16(data)
            arr = _pick_tensor(where, tensors)
    except SteeringError:
        raise
    except ValueError as e:
        if "pickle" in str(e):
            raise _say(
                where, "holds Python objects (a pickle), which tokentui never loads; save a float array"
            ) from None
        raise _say(
            where, f"is not a readable {suffix} file ({str(e).splitlines()[0][:120] if str(e) else 'damaged'})"
        ) from None
    except Exception as e:  # noqa: BLE001 - the file libraries' own errors (truncation, bf16 without torch …)
        first = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise _say(where, f"is not a readable {suffix} file ({first})") from None
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or arr.dtype.kind != "f" or not 1 <= arr.size <= MAX_DIM:
        raise _say(where, f"must hold one vector of floats (got shape {tuple(arr.shape)}, dtype {arr.dtype})")
    _check_values(where, arr)
    return np.ascontiguousarray(arr, dtype=np.float32), sha


def _check_values(where: str, v: np.ndarray) -> None:
    """A vector's values finite and within ±MAX_ABS: a finite 3e38 passed, overflowed the model's
    norm and every steered position came out the uniform distribution, with no error."""
    if not np.isfinite(v).all():
        raise _say(where, "the vector holds a NaN or an infinity")
    largest = float(np.abs(v).max())
    if largest > MAX_ABS:
        raise _say(
            where,
            f"the vector holds a value beyond ±{MAX_ABS:g} (|v| up to {largest:.3g}): no steering vector is that large",
        )


def _toml(x: object) -> str:
    """A spec's value as TOML writes it (`true`, not Python's `True`; also inside arrays), cut to
    40 characters."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, list):
        return f"[{', '.join(_toml(v) for v in x[:10])}{', …' if len(x) > 10 else ''}]"[:40]
    return repr(x)[:40]


def parse_spec(text: str, where: str = "steering spec") -> dict[str, Any]:
    """The spec's fields from TOML text, checked (vector still a path). SteeringError on any fault."""
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _say(where, f"is not valid TOML ({str(e).splitlines()[0]})") from None
    except RecursionError:  # (arrays nested thousands deep: the parser recurses)
        raise _say(where, "is nested too deeply to be a steering spec") from None
    unknown = sorted(set(d) - set(SPEC_KEYS))
    if unknown:
        raise _say(where, f"unknown field '{unknown[0]}' (a spec has {', '.join(SPEC_KEYS)})")
    vector = d.get("vector")
    if vector is None:  # (an empty spec was told "'vector' must be the path …", as if one were given)
        raise _say(where, "'vector' is missing: the path of a .safetensors or .npy file")
    if not isinstance(vector, str) or not vector.strip():
        raise _say(where, "'vector' must be the path of a .safetensors or .npy file")
    layers = _layers(where, d.get("layers"))
    weights = _numbers(where, "weights", d["weights"], MAX_LAYERS) if "weights" in d else (1.0,) * len(layers)
    if len(weights) != len(layers):
        raise _say(
            where,
            f"'weights' has {counted(len(weights), 'entry', 'entries')} for {counted(len(layers), 'layer')} "
            "(one per layer)",
        )
    scale = _number(d.get("scale", 1.0))
    if scale is None:
        raise _say(where, f"'scale' must be a finite number within ±{MAX_ABS:g}")
    pw = d.get("position_weights")
    position_weights = None if pw is None else _numbers(where, "position_weights", pw, MAX_POSITION_WEIGHTS)
    return {
        "vector": vector,
        "layers": layers,
        "weights": weights,
        "scale": scale,
        "position_weights": position_weights,
    }


def load_spec(path: Path | str) -> SteeringSpec:
    """A steering spec file and its vector (relative paths from the spec's folder), checked; not
    yet against a model (`SteeringSpec.check_model`). SteeringError on any fault."""
    path = Path(path)
    if path.suffix.lower() in (*VECTOR_SUFFIXES, ".pt", ".pth", ".bin", ".gguf"):
        # (seed 001 takes the vector itself: `--control-vector v.pt`)
        raise _say(
            str(path),
            "is a vector file, not a steering spec: --steer takes a TOML file naming the vector, e.g. "
            f'vector = "{path.name}", layers = [N], scale = 1.0 (one per line; see Steering in the README)',
        )
    raw = _read_regular(path, MAX_SPEC_BYTES, "steering spec")
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")  # (a BOM: Notepad's UTF-8)
    except UnicodeDecodeError:
        raise _say(str(path), "is not UTF-8 text (a steering spec is a TOML file)") from None
    fields = parse_spec(text, str(path))
    try:
        vpath = Path(fields["vector"]).expanduser()
    except RuntimeError:  # (`~name/…` of no user here, or no home: "a bug in tokentui" — read as written)
        vpath = Path(fields["vector"])
    if not vpath.is_absolute():
        vpath = path.parent / vpath
    try:
        vector, sha = load_vector(vpath)
    except SteeringError as e:  # (which spec and field named it: "nope.safetensors: no such file" did not say)
        raise _say(f"{path}: vector", str(e)) from None
    return SteeringSpec(
        vector,
        fields["layers"],
        fields["weights"],
        fields["scale"],
        fields["position_weights"],
        vector_name=vpath.name,
        vector_sha256=sha,
        spec_name=path.name,
    )


def save_vector(path: Path | str, vector: np.ndarray, metadata: dict[str, str] | None = None) -> str:
    """Write a float32 vector as a `.safetensors` file (tensor 'vector'), atomically; returns the
    file's SHA-256 (what a spec naming it will record). The bytes are laid out here, metadata
    sorted: safetensors' own writer orders the metadata differently in every process, so the same
    vector got another hash each time (a spec records the hash: it would look like another vector).
    The format: the header's length (u64, little-endian), the JSON header padded with spaces to a
    multiple of 8, the data."""
    path = Path(path)
    v = np.ascontiguousarray(vector, dtype="<f4")
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    header["vector"] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [0, v.nbytes]}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    data = struct.pack("<Q", len(text)) + text + v.tobytes()
    write_atomically(path, lambda f: f.write(data))
    return hashlib.sha256(data).hexdigest()


MAX_PROMPT_FILE_BYTES = 16 << 20
MAX_PROMPTS = 100_000


def read_prompts(path: Path | str) -> list[str]:
    """The prompts of a contrast set: one per line of a UTF-8 text file (blank lines skipped; a
    line is taken as it is, without its line break). Lines break as in `batch`'s prompt files
    (`core.dataset.text_lines`: not at the other breaks str.splitlines knows, since a prompt may
    hold U+2028 or a form feed; a BOM is no part of the first). SteeringError when there are none."""
    path = Path(path)
    raw = _read_regular(path, MAX_PROMPT_FILE_BYTES, "prompt file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _say(str(path), "is not UTF-8 text") from None
    prompts = [line for line in text_lines(text) if line.strip()]
    if not prompts:
        raise _say(str(path), "holds no prompt (one prompt per line)")
    if len(prompts) > MAX_PROMPTS:
        raise _say(str(path), f"holds {len(prompts)} prompts (at most {MAX_PROMPTS})")
    return prompts
