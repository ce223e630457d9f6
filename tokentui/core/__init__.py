"""Records and pure computations on them: numpy and the standard library only (no torch, no textual).

Replay, export and every summary run on this layer alone, so they start fast and work where torch
is not installed.
"""

from tokentui.core.display import display_token
from tokentui.core.run import Branch, Run, RunError, SamplingParams
from tokentui.core.step import Step
from tokentui.core.tokens import TokenTable

__all__ = ["Branch", "Run", "RunError", "SamplingParams", "Step", "TokenTable", "display_token"]
