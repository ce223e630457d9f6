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
