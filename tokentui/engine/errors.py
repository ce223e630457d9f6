"""Engine errors: each carries one line a user can act on (no tracebacks reach the user)."""


class EngineError(Exception):
    """Something the user asked of the model cannot be done."""


class ModelLoadError(EngineError):
    """The model or its tokenizer could not be loaded."""


class NoChatTemplate(ModelLoadError):
    """--chat for a model whose tokenizer has no chat template: an argument error (a command with
    several models refuses it before any runs), where other load errors are the model's own."""


class DoesNotFit(EngineError):
    """A second model does not fit on the device beside the first (out of GPU memory)."""


def no_attention_weights(model_class: str) -> EngineError:
    """Attention entropy asked of a model class that does not declare where its attention weights
    are (Bloom, Falcon): said from its configuration before the load, and by the loaded model."""
    return EngineError(
        f"attention entropy cannot be recorded: {model_class} does not say where its attention weights are "
        "(leave --attention-entropy off)"
    )


# What running a model needs beyond what a replay, an export or statistics need (a laptop may have
# only the latter installed: the run files open without them)
MODEL_PACKAGES = ("torch", "transformers", "accelerate", "tokenizers", "safetensors", "gguf")


def missing_package(e: BaseException) -> ModelLoadError | None:
    """A ModuleNotFoundError for one of MODEL_PACKAGES as the one line a user can act on (None for
    any other exception: a missing module of ours or of another package is a bug to report)."""
    from importlib.util import find_spec

    root = (getattr(e, "name", None) or "").split(".")[0]
    if not isinstance(e, ModuleNotFoundError) or root not in MODEL_PACKAGES:
        return None
    absent = [p for p in MODEL_PACKAGES if p == root or find_spec(p) is None]  # all of them, in one line
    names = " ".join(absent)
    return ModelLoadError(
        f"running a model needs {', '.join(absent)}, not installed here (pip install {names}; for a GPU, "
        "torch's build for your CUDA first); replay, export, stats and runs need none of them"
    )


def torch_installed() -> bool:
    """Whether a model could run here at all (a laptop that only replays has no torch): advice to
    load one comes after advice to install torch."""
    from importlib.util import find_spec

    return find_spec("torch") is not None
