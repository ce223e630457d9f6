"""Load a causal LM and its tokenizer by Hub id, local folder or "demo", with clear errors.

Honours the user's HF cache and HF_HUB_OFFLINE (read by huggingface_hub at import, so set it in
the environment before starting). `trust_remote_code` stays off unless asked for. Device "auto"
picks CUDA, then MPS, then CPU; dtype "auto" keeps the checkpoint's dtype on a GPU and uses
float32 on the CPU (half precision on a CPU is slow and often unsupported). Library progress bars,
log lines and warnings are silenced: a TUI has no place for tqdm, a CLI error is one line.

Whatever can be refused is refused before the weights load: `check_config` reads only the
configuration and hands its vocabulary size to the caller's check (a front end calls it before
opening the backend); the configuration it read is kept for the `load_model` of the same model
that follows, so a model's configuration is read (and announced) once. Without a network, a Hub
id would be retried with back-off for half a minute: one short connection check to the Hub first
(once per process), and if it fails only the local Hugging Face cache is used.

`model_name` and `tokenizer_id` name the model and the tokenizer in run metadata without the
paths of the machine that made the run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import re
import socket
import sys
import threading
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokentui.engine.assets import DEMO_MODEL_DIR, DEMO_NAME
from tokentui.engine.errors import EngineError, ModelLoadError, NoChatTemplate, no_attention_weights
from tokentui.engine.hf.gguf import SMOLLM2, converted, gguf_file

DTYPES = ("auto", "float32", "float16", "bfloat16")
LENS_PRECISIONS = ("auto", "float32", "bfloat16")  # see arch.LensParts.at_precision


def check_lens_precision(precision: str) -> None:
    """EngineError (one line) for a lens precision other than LENS_PRECISIONS."""
    if precision not in LENS_PRECISIONS:
        raise EngineError(f"unknown lens precision {precision!r} (choose from {', '.join(LENS_PRECISIONS)})")


@dataclass
class LoadedModel:
    spec: str  # what the user asked for
    source: str  # the folder or Hub id actually loaded
    model: object
    tokenizer: object
    revision: str | None
    device: str
    dtype: str
    vocab_size: int
    n_layers: int
    eos_ids: list[int]
    lens: object  # arch.LensParts, or the line saying why this model has no logit lens
    vocab_bytes: list[bytes] = field(repr=False, default_factory=list)
    model_name: str = ""  # as the user named it: "demo", the Hub id or the folder's name (no path)
    tokenizer_id: str = ""  # class name and a hash of the tokenizer files: "PreTrainedTokenizerFast sha256:1a2b…"
    weights_file: str | None = None  # a GGUF model's file: "name.gguf sha256:…" (None: a folder or Hub id)
    notes: tuple[str, ...] = ()  # said while loading, and true while the model is used (ModelInfo.notes)

    @property
    def chat_template(self) -> str | None:
        return _chat_template_of(self.tokenizer)


def _chat_template_of(tokenizer: object) -> str | None:
    """The tokenizer's chat template, None when it has none."""
    t = getattr(tokenizer, "chat_template", None)
    return t if isinstance(t, str) and t else None


def no_chat_template(spec: str) -> NoChatTemplate:
    """The refusal of --chat for a model whose tokenizer has no chat template (one wording, before
    the weights load and when a prompt is encoded)."""
    return NoChatTemplate(f"{spec} has no chat template; leave out --chat")


# what the Hub takes as a model id ("name" or "owner/name"; huggingface_hub's validate_repo_id)
_HUB_ID = re.compile(r"(?:[\w\-.]{1,96}/)?[\w\-.]{1,96}")


def _looks_like_path(spec: str) -> bool:
    """Whether `spec` names a file or folder rather than a Hub id: it says so (./, /, ~), it is
    there, or it cannot be a Hub id (`a/b/c`, `models/../x`, a space: a trial's missing folder
    was told of the network and the Hugging Face cache)."""
    return (
        spec.startswith(("./", "../", "/", "~", ".\\"))
        or spec in (".", "..")
        or Path(spec).expanduser().exists()
        or not _HUB_ID.fullmatch(spec)
        or ".." in spec
        or "--" in spec
    )


def resolve_source(spec: str) -> str:
    """'demo' → the bundled model; 'smollm2', a .gguf file or a folder holding one → that GGUF
    file (converted on load); a path → checked folder; anything else → a Hub id."""
    if not spec or not spec.strip():
        raise ModelLoadError("no model given")
    if spec == DEMO_NAME:
        if not (DEMO_MODEL_DIR / "config.json").exists():
            raise ModelLoadError(f"the bundled demo model is missing from {DEMO_MODEL_DIR} (broken install?)")
        return str(DEMO_MODEL_DIR)
    gguf = gguf_file(spec, _looks_like_path(spec))
    if gguf is not None:
        return str(gguf)
    if _looks_like_path(spec):
        p = Path(spec).expanduser()
        if not p.exists():
            if "," in spec:  # (seed 003 took its models as one comma-separated list)
                raise ModelLoadError(f"no model is named {spec!r}: for several models repeat the option (-m A -m B)")
            raise ModelLoadError(f"no such folder: {spec}")
        if not p.is_dir() or not (p / "config.json").exists():
            raise ModelLoadError(f"{spec} is not a model folder (it has no config.json)")
        return str(p)
    return spec


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".json")


def weights_stamp(spec: str) -> list[tuple[str, int, int]] | None:
    """(name, size, modification time in ns) of each file a local model's weights and
    configuration are read from: a GGUF file, or a folder's files ending in WEIGHT_SUFFIXES
    (weights, configuration, tokenizer.json; sorted), without reading them. It changes when a
    fine-tune is saved again into the same folder, which is what a batch's item keys must notice.
    None for a Hub id (a cached revision does not change under the same id offline) and for a
    spec that does not resolve (loading says why)."""
    try:
        source = Path(resolve_source(spec))
    except ModelLoadError:
        return None
    if source.is_file():
        files = [source]
    elif source.is_dir():
        files = sorted(f for f in source.iterdir() if f.suffix in WEIGHT_SUFFIXES and f.is_file())
    else:
        return None
    out = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        out.append((f.name, st.st_size, st.st_mtime_ns))
    return out


def model_name(spec: str, source: str) -> str:
    """The model as the user named it, with no path in it: "demo", "smollm2", the Hub id, or the
    folder's (a GGUF model: the file's) name. A symbolic link keeps its own name (a user's
    `my-finetune` linking to a checkpoint folder is recorded as my-finetune); a path ending in `.`
    or `..` is named after the folder it means."""
    if spec in (DEMO_NAME, SMOLLM2) or source == spec and not _looks_like_path(spec):
        return spec
    path = Path(source).expanduser()
    return path.name if path.name not in ("", ".", "..") else path.resolve().name


# The files a tokenizer is read from (whichever of them a model folder has).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
    "chat_template.json",
)


# Keys `save_pretrained` writes into tokenizer_config.json that say how the tokenizer was loaded
# (the same files loaded with HF_HUB_OFFLINE=1 or without it were saved with local_files_only
# true or false), not what it is: a tokenizer's id leaves them out.
LOAD_TIME_KEYS = frozenset({"local_files_only", "is_local", "_commit_hash", "cache_dir", "force_download"})


def _hashed_content(name: str, data: bytes) -> bytes:
    """What a tokenizer file contributes to its id: the bytes as they are, except
    tokenizer_config.json, whose keys and values count (as sorted JSON), less LOAD_TIME_KEYS —
    whether a library version wrote them at all, or how it spaced the file, changes nothing."""
    if name != "tokenizer_config.json":
        return data
    try:
        config = json.loads(data)
    except (ValueError, RecursionError):
        return data
    if not isinstance(config, dict):
        return data
    kept = {k: v for k, v in config.items() if k not in LOAD_TIME_KEYS}
    return json.dumps(kept, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def tokenizer_id(tokenizer: object, folder: Path | None) -> str:
    """The tokenizer's class name and the first 12 hex digits of a SHA-256 over its files (names
    and contents, less how it was loaded: LOAD_TIME_KEYS), e.g. "PreTrainedTokenizerFast
    sha256:1a2b3c4d5e6f": the same tokenizer gives the same id on any machine. Without a folder
    (nothing on disk to read) the serialized fast tokenizer is hashed instead."""
    h = hashlib.sha256()
    files = [folder / n for n in TOKENIZER_FILES if folder is not None and (folder / n).is_file()]
    for f in files:
        h.update(f.name.encode() + b"\0" + _hashed_content(f.name, f.read_bytes()) + b"\0")
    if not files:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        h.update(backend.to_str().encode() if backend is not None else type(tokenizer).__name__.encode())
    return f"{type(tokenizer).__name__} sha256:{h.hexdigest()[:12]}"


def _hub_folder(repo_id: str, revision: str | None) -> Path | None:
    """The local snapshot folder a Hub model was loaded from (None when it cannot be found)."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    return Path(hit).parent if isinstance(hit, str) else None


@functools.lru_cache(maxsize=1)
def hub_unreachable(timeout: float = 2.0) -> str | None:
    """The Hub's host when a TCP connection to it (or to the HTTPS proxy the environment names)
    cannot be made within `timeout` seconds, else None. Name lookup is included in the timeout
    (it runs in a thread), so a machine without a network answers within `timeout`."""
    from huggingface_hub import constants

    host = urllib.parse.urlsplit(constants.ENDPOINT).hostname or "huggingface.co"
    port = urllib.parse.urlsplit(constants.ENDPOINT).port or 443
    target = (host, port)
    proxy = urllib.request.getproxies().get("https")
    if proxy and not urllib.request.proxy_bypass(host):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        target = (parts.hostname or host, parts.port or 80)
    ok: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection(target, timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=connect, daemon=True, name="tokentui-hub-check")
    t.start()
    t.join(timeout)
    return None if ok else host


def pick_device(device: str) -> str:
    """`device` ('auto': CUDA, else MPS, else the CPU), refused here (before the weights are
    read) when torch does not know it or this machine does not have it."""
    import torch

    if device != "auto":
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError):
            raise ModelLoadError(f"unknown device {device!r} (auto, cpu, cuda, cuda:1, mps …)") from None
        xpu = getattr(torch, "xpu", None)
        if dev.type not in ("cpu", "cuda", "mps", "xpu") or (dev.type == "xpu" and not (xpu and xpu.is_available())):
            raise ModelLoadError(
                f"--device {device}: tokentui runs models on cpu, cuda, mps or xpu (that this machine has)"
            )
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ModelLoadError(f"--device {device}: this machine has no CUDA device torch can use")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelLoadError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ModelLoadError(f"--device {device}: this machine has no MPS device")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from huggingface_hub.utils import disable_progress_bars
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # "Retrying in 8s" and friends
    disable_progress_bars()


# The files a tokenizer's vocabulary can be read from: a folder with none of them has no tokenizer.
TOKENIZER_VOCAB_FILES = (
    "tokenizer.json",
    "vocab.json",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def _weights_name(folder: str, pattern: str, default: str) -> str:
    """The name of the folder's one weights file matching `pattern`, else `default`."""
    p = Path(folder).expanduser()
    found = sorted(f.name for f in p.glob(pattern)) if p.is_dir() else []
    return found[0] if len(found) == 1 else default


def _explain_weights(source: str, path: str, err: BaseException) -> str | None:
    """One line for a weights file that cannot be read safely (None if `err` is not about one)."""
    from safetensors import SafetensorError

    if isinstance(err, SafetensorError):
        name = _weights_name(path, "*.safetensors", "a .safetensors weights file")
        return f"could not load {source}: the weights file {name} is damaged or truncated"
    if re.search(r"no file named .* found in directory", str(err)):
        return (
            f"could not load {source}: its folder holds no weights file (model.safetensors, or a sharded model's "
            "files and their index .json, or pytorch_model.bin)"
        )
    if isinstance(err, pickle.UnpicklingError) or "weights only load failed" in str(err).lower():
        name = _weights_name(path, "*.bin", "a .bin weights file")
        return (
            f"could not load {source}: the weights file {name} is not a plain tensor file (its pickle asks to run "
            "code or build objects) and was not loaded"
        )
    return None


def _explain(source: str, err: BaseException, unreachable: str | None = None, hub: bool = True) -> str:
    """One line for a failed read. `hub`: the model was asked of the Hub (not a local folder), so
    being offline can be why (a local folder read offline fails for its own reasons)."""
    text = " ".join(str(err).split())
    low = text.lower()
    if "config" in low and "not a valid json file" in low:
        return f"config.json of {source} is not valid JSON"
    unknown = re.search(r"has model type `([^`]*)` but transformers does not recognize", text, re.IGNORECASE)
    if unknown:
        return (
            f"{source} has model_type {unknown.group(1)!r}, which this transformers "
            "does not know (a newer transformers may, or the config.json is wrong)"
        )
    if "trust_remote_code" in low or "custom code" in low:
        return f"{source} needs custom code from its repository; rerun with --trust-remote-code if you trust it"
    if "backend tokenizer" in low or "sentencepiece" in low:
        return (
            f"could not load the tokenizer of {source} (it has no tokenizer.json; a slow tokenizer needs sentencepiece)"
        )
    if "unrecognized configuration class" in low or "automodelforcausallm" in low:
        return f"{source} is not a causal language model"
    if not hub:
        return f"could not load {source}: {text[:300]}"
    # (a Hub id's "org/name" is also a relative path: `models/mine` with `models/` here and no
    # `mine` in it was told only of the Hub)
    here = f" (and {source} is no folder here)" if _folder_above(source) else ""
    if unreachable is not None:
        return (
            f"could not load {source}: no network ({unreachable} cannot be reached) and it is not in the local "
            f"Hugging Face cache{here}; give a local model folder (./path) or set HF_HUB_OFFLINE=1 to use the "
            "cache only"
        )
    if _hub_offline() or "offline" in low or "couldn't connect" in low or "connection" in low:
        return (
            f"could not load {source}: not in the local Hugging Face cache and offline (HF_HUB_OFFLINE=1 or no "
            f"network){here}; give a local model folder (./path) instead"
        )
    if (
        "is not a local folder and is not a valid model identifier" in low
        or "repository not found" in low
        or "404" in low
    ):
        return f"unknown model {source}: not a local folder and not a model on the Hub"
    return f"could not load {source}: {text[:300]}"


def _folder_above(spec: str) -> bool:
    """Whether `spec`, read as a relative path, names something in a folder that is here."""
    try:
        above = Path(spec).parent
        return str(above) != "." and above.is_dir()
    except (OSError, ValueError):
        return False


def _hub_offline() -> bool:
    from huggingface_hub import is_offline_mode

    return is_offline_mode()


def config_vocab_size(config: object) -> int | None:
    """The vocabulary size a configuration declares (a multimodal one: its text model's)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    v = getattr(text, "vocab_size", None)
    return int(v) if isinstance(v, int) and v > 0 else None


class _TokenizerFilesError(Exception):
    """Tokenizer files the tokenizers library could not make a tokenizer of (`_Source.tokenizer`)."""


class _Source:
    """Where a model is read from and with which `from_pretrained` options (the cache only when
    the Hub cannot be reached); `read` turns the libraries' exceptions into one-line errors."""

    def __init__(self, spec: str, trust_remote_code: bool, revision: str | None, say: Callable[[str], None]) -> None:
        self.spec, self.say = spec, say
        self.path = resolve_source(spec)
        self.kw: dict[str, object] = {"trust_remote_code": trust_remote_code}
        if revision:
            self.kw["revision"] = revision
        self.is_hub = spec not in (DEMO_NAME, SMOLLM2) and self.path == spec and not _looks_like_path(spec)
        self.unreachable: str | None = None
        self.weights_file: str | None = None
        if "transformers" not in sys.modules:
            say("importing torch and transformers")
        import transformers  # noqa: F401 - imported here, after the progress line that says so

        _quiet_libraries()
        if self.path.lower().endswith(".gguf"):
            self.name = Path(self.path).name
            folder, self.weights_file = converted(Path(self.path), say)
            self.path = str(folder)
        else:
            self.name = ""
        if self.is_hub and not _hub_offline():
            say("checking the network")
            self.unreachable = hub_unreachable()
            if self.unreachable is not None:
                self.kw["local_files_only"] = True  # the cache only: no retries against a missing network

    def read(self, what: str, load: Callable[..., object], **extra: object):
        self.say(what)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return load(self.path, **self.kw, **extra)
        except (OSError, ValueError, KeyError, ImportError, RuntimeError, TypeError, pickle.UnpicklingError) as e:
            msg = _explain_weights(self.spec, self.path, e) or _explain(self.spec, e, self.unreachable, self.is_hub)
            raise ModelLoadError(msg) from None
        except Exception as e:  # safetensors' SafetensorError derives from Exception only
            from huggingface_hub.errors import StrictDataclassError

            if isinstance(e, StrictDataclassError):  # a configuration value of the wrong type ("2" for 2)
                raise ModelLoadError(
                    f"{self.spec}: its config.json is not valid: {' '.join(str(e).split())[:300]}"
                ) from None
            weights = _explain_weights(self.spec, self.path, e)
            if weights is None:
                raise
            raise ModelLoadError(weights) from None

    def tokenizer(self):
        """The tokenizer. Files it cannot be made from are one line naming them, not a crash: the
        tokenizers library raises a bare Exception for a tokenizer.json that parses but names a
        token its vocabulary lacks (a trial's hand-edited file ended a whole batch), and a
        tokenizer.json that is not JSON was "could not load M: Expecting value…", naming no file.
        Other failures (a missing package, the network) are `read`'s to explain."""
        from transformers import AutoTokenizer

        def load(path: str, **kw: object):
            try:
                return AutoTokenizer.from_pretrained(path, **kw)
            except json.JSONDecodeError as e:
                raise _TokenizerFilesError(str(e)) from None
            except Exception as e:
                if type(e) is Exception:  # (the tokenizers library's own: nothing more specific)
                    raise _TokenizerFilesError(str(e)) from None
                raise

        try:
            return self.read(f"loading tokenizer of {self.spec}", load)
        except _TokenizerFilesError as e:
            detail = " ".join(str(e).split())[:300] or "unreadable"
            raise ModelLoadError(f"the tokenizer files of {self.spec} could not be read: {detail}") from None

    def check_tokenizer_files(self) -> None:
        """A local folder with no tokenizer vocabulary would load an empty tokenizer: refuse it."""
        if self.is_hub:
            return
        folder = Path(self.path).expanduser()
        if not any((folder / n).is_file() for n in TOKENIZER_VOCAB_FILES):
            raise ModelLoadError(
                f"{self.spec} has no tokenizer files (tokenizer.json or tokenizer_config.json "
                "with vocab.json/merges.txt or a SentencePiece model); copy them from the model it was made from"
            )

    @property
    def key(self) -> tuple[str, tuple[tuple[str, object], ...]]:
        """What the configuration read depends on: where, the options it is read with and, for a
        local folder, its config.json's size and modification time. A kept configuration whose
        file changed since (a fine-tune saved again into the folder after a `batch` that had
        nothing to do kept it) is not the one to build the model from: loaded with it, the new
        weights would not fit, and transformers would initialise the model at random."""
        try:
            st = (Path(self.path) / "config.json").stat()
            stamp: object = (st.st_size, st.st_mtime_ns)
        except OSError:  # a Hub id (or no such file: reading it says so)
            stamp = None
        return self.path, (*sorted(self.kw.items()), ("config.json", stamp))

    def config(self, keep: bool = False):
        """The model's configuration: the one `check_config` kept for this model (then read no more),
        else read now. `keep`: keep it for the next call (check_config's, which `load_model` follows)."""
        from transformers import AutoConfig

        config = _CHECKED.get(self.key) if keep else _CHECKED.pop(self.key, None)
        if config is None:
            # first of all: it refuses remote code before anything else is read
            config = self.read(f"reading the configuration of {self.spec}", AutoConfig.from_pretrained)
            if keep:
                _CHECKED[self.key] = config
        return config


# configurations `check_config` read and passed, each taken by the `load_model` of the same model
# that follows (so the file is read, and the progress line says so, once per model)
_CHECKED: dict[tuple[str, tuple[tuple[str, object], ...]], object] = {}


def check_config(
    spec: str,
    check: Callable[[int | None], None],
    trust_remote_code: bool = False,
    revision: str | None = None,
    progress: Callable[[str], None] | None = None,
    attention: bool = False,
) -> None:
    """Read only `spec`'s configuration and call `check` with its vocabulary size (None if it
    declares none): what depends on the vocabulary is refused before any weights are read; with
    `attention` (attention entropy asked for), so is a model class without attention weights.
    Whatever `check` raises is the caller's to report. A configuration that passes is kept for the
    `load_model` that follows (see `_CHECKED`); a refused one is not."""
    src = _Source(spec, trust_remote_code, revision, progress or (lambda _m: None))
    try:
        config = src.config(keep=True)
        check_causal(spec, config)
        check(config_vocab_size(config))
        if attention:
            _check_attention_weights(config)
    except BaseException:
        _CHECKED.pop(src.key, None)
        raise


def check_causal(spec: str, config: object) -> None:
    """Refuse an encoder-decoder model (T5, BART, Marian … saved for generation from a source
    text) from its configuration, before its weights are read: T5 was refused only once its
    weights had loaded, as "not a causal language model", and BART's encoder-decoder folder as
    damaged weights (transformers maps it to its decoder alone). A decoder saved alone
    (`BartForCausalLM`, whose configuration still says encoder-decoder) is read as a causal model."""
    if not getattr(config, "is_encoder_decoder", False):
        return
    names = getattr(config, "architectures", None) or []
    if any(isinstance(n, str) and n.endswith("ForCausalLM") for n in names):
        return
    kind = next((n for n in names if isinstance(n, str)), type(config).__name__)
    raise ModelLoadError(
        f"{spec} is an encoder-decoder model ({kind}): tokentui reads causal (decoder-only) language models"
    )


def _check_attention_weights(config: object) -> None:
    """Refuse attention entropy for the class the configuration maps to when that class does not
    declare its attention weights (as the loaded model would, after its weights were read). A class
    transformers does not map (remote code) is left to the load."""
    from transformers import AutoModelForCausalLM

    mapping: Any = AutoModelForCausalLM._model_mapping  # (typed for configurations, not any object)
    try:
        cls = mapping[type(config)]
    except (KeyError, ValueError, AttributeError):
        return
    if isinstance(cls, type) and not (getattr(cls, "_can_record_outputs", None) or {}).get("attentions"):
        raise no_attention_weights(cls.__name__)


def check_chat_template(
    spec: str,
    trust_remote_code: bool = False,
    revision: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Read only `spec`'s tokenizer and refuse --chat (NoChatTemplate) when it has no chat template:
    for a command that loads several models one after the other, before the first of them runs."""
    src = _Source(spec, trust_remote_code, revision, progress or (lambda _m: None))
    src.check_tokenizer_files()
    if not _chat_template_of(src.tokenizer()):
        _CHECKED.pop(src.key, None)  # (no load follows: the configuration check_config kept goes)
        raise no_chat_template(spec)


def load_model(
    spec: str,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    revision: str | None = None,
    progress: Callable[[str], None] | None = None,
    chat: bool = False,
) -> LoadedModel:
    """Load `spec` ("demo", a folder or a Hub id) with its tokenizer; every failure is a ModelLoadError.
    `chat`: the caller wraps prompts in the chat template, so a tokenizer without one is refused
    before the weights are read."""
    say = progress or (lambda _m: None)
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    src = _Source(spec, trust_remote_code, revision, say)
    import torch
    from transformers import AutoModelForCausalLM

    from tokentui.engine.hf.arch import layer_count, lens_parts
    from tokentui.engine.hf.generation_config import unapplied_message
    from tokentui.engine.hf.token_bytes import vocab_bytes
    from tokentui.engine.hf.weights_check import check_layers, check_loading_info

    dev = pick_device(device)
    if dtype == "auto":
        torch_dtype = "auto" if dev != "cpu" else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    config = src.config()
    check_causal(spec, config)
    src.check_tokenizer_files()
    tok = src.tokenizer()
    if chat and not _chat_template_of(tok):
        raise no_chat_template(spec)
    if not src.is_hub:
        check_layers(spec, config, Path(src.path))
    model, info = src.read(
        f"loading weights of {spec}",
        AutoModelForCausalLM.from_pretrained,
        config=config,
        dtype=torch_dtype,
        output_loading_info=True,
        ignore_mismatched_sizes=True,  # (said by check_loading_info, naming the tensor)
    )
    check_loading_info(spec, info)
    try:
        model.to(dev)
    except (RuntimeError, AssertionError) as e:
        raise ModelLoadError(f"could not move {spec} to {dev}: {' '.join(str(e).split())[:200]}") from None
    model.eval()
    head = model.get_output_embeddings()
    if head is None or not isinstance(getattr(head, "weight", None), torch.Tensor):  # (a remote-code head)
        raise ModelLoadError(f"{spec}: tokentui cannot find its output embedding (the head giving the logits)")
    parts = lens_parts(model)  # (finds the final norm and the unembedding: instant, not worth a progress line)
    if isinstance(parts, str):
        say(parts)
    unapplied = unapplied_message(model_name(spec, src.name or src.path), model.generation_config)
    notes: tuple[str, ...] = () if unapplied is None else (unapplied,)
    for note in notes:
        say(note)
    if layer_count(model) < 1:  # (a config.json's n_layer of −1: the run's arrays could not be made)
        raise ModelLoadError(f"{spec}: its configuration gives it no layers ({layer_count(model)}); not a usable model")
    vocab = int(head.weight.shape[0])
    if len(tok) > vocab:  # (a text with those tokens is refused as it is encoded: HFBackend.encode_*)
        notes += (f"its tokenizer has {len(tok):,} tokens, more than its {vocab:,} embeddings: a text holding "
                  "the others is refused (is the tokenizer this model's?)",)  # fmt: skip
        say(notes[-1])
    eos = model.generation_config.eos_token_id if model.generation_config else None
    if eos is None:
        eos = tok.eos_token_id
    # (an id outside the vocabulary — a configuration's default, not the model's — is never
    # generated; a run file naming it would not load)
    eos_ids = [int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None and 0 <= int(e) < vocab]
    param = next(model.parameters())
    rev = getattr(model.config, "_commit_hash", None)
    folder = _hub_folder(src.path, rev if isinstance(rev, str) else None) if src.is_hub else Path(src.path)
    return LoadedModel(
        spec=spec,
        source=src.path,
        model=model,
        tokenizer=tok,
        revision=rev if isinstance(rev, str) else None,
        device=str(param.device),
        dtype=str(param.dtype).removeprefix("torch."),
        vocab_size=vocab,
        n_layers=layer_count(model),
        eos_ids=eos_ids,
        lens=parts,
        vocab_bytes=vocab_bytes(tok, vocab),
        model_name=model_name(spec, src.name or src.path),
        tokenizer_id=tokenizer_id(tok, folder),
        weights_file=src.weights_file,
        notes=notes,
    )
