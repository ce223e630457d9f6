"""Engine errors: each carries one line a user can act on (no tracebacks reach the user)."""


class EngineError(Exception):
    """Something the user asked of the model cannot be done."""


class ModelLoadError(EngineError):
    """The model or its tokenizer could not be loaded."""


class DoesNotFit(EngineError):
    """A second model does not fit on the device beside the first (out of GPU memory)."""
