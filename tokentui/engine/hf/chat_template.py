"""A model's chat template, rendered with a time limit.

The template comes with the model: Jinja that transformers runs in a sandbox, so it cannot touch
files or run code, but it can still loop for hours (`range` nested in `range`), and a thread that
renders it cannot be stopped from outside — the explorer's job, and Ctrl-C in a command, would wait
on it for good. Jinja compiles a template to Python, so a trace function on the rendering thread
sees each line it runs and stops it once the time is up.
"""

from __future__ import annotations

import sys
import time
from types import FrameType
from typing import Any

from tokentui.engine.errors import EngineError

RENDER_SECONDS = 5.0  # a real template renders one message in milliseconds


class _TooSlow(BaseException):
    """Raised inside the template's frames by the trace function (never escapes `render_chat`); not
    an Exception, so no `except Exception` on the way out turns it into another error."""


def _render(tokenizer: Any, prompt: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )


def render_chat(tokenizer: Any, prompt: str) -> str:
    """The prompt as the user's one message in the model's chat template, ready for the assistant's
    answer; EngineError when the template fails or runs longer than RENDER_SECONDS."""
    seconds = RENDER_SECONDS
    deadline = time.monotonic() + seconds
    lines = 0

    def line(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal lines
        lines += 1
        if lines % 256 == 0 and time.monotonic() > deadline:
            raise _TooSlow
        return line

    def call(frame: FrameType, event: str, arg: object) -> Any:
        return line

    previous = sys.gettrace()  # (a debugger's or coverage tool's pauses in this thread while it renders)
    sys.settrace(call)
    try:
        text = _render(tokenizer, prompt)
    except _TooSlow:
        raise EngineError(
            f"the model's chat template did not finish in {seconds:g} s on this prompt; try without --chat"
        ) from None
    except Exception as e:  # noqa: BLE001 - raise_exception(), a sandbox refusal, an overflow …
        why = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        raise EngineError(f"the model's chat template failed on this prompt ({why}); try without --chat") from None
    finally:
        sys.settrace(previous)
    if not isinstance(text, str):
        raise EngineError(f"the model's chat template gave {type(text).__name__}, not text; try without --chat")
    return text
