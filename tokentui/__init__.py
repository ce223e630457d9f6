"""tokentui: watch, question and branch a causal language model's writing, token by token."""

__version__ = "0.1.0"
