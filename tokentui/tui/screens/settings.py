"""The session's generation settings (one GenerationSettings): sampler, length, k, forced prefix,
chat template. One compact row per field so all of them fit 80×24; the box scrolls if a terminal
is shorter still (screens/form.py: Enter applies, Esc cancels, a bad value is named)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from tokentui.core.params import GenerationSettings, RunError, SamplingParams
from tokentui.tui.screens.form import FormScreen

FIELDS = (
    ("temperature", "temperature (0 = greedy)"),
    ("top_k", "top-k (0 = off)"),
    ("top_p", "top-p (1 = off)"),
    ("seed", "seed (empty = random)"),
    ("max_new_tokens", "max new tokens"),
    ("k", "alternatives recorded (k)"),
    ("forced", "forced prefix (answer starts so)"),
    ("chat", "chat template (yes/no)"),
)


def field_values(s: GenerationSettings) -> dict[str, str]:
    p = s.sampling
    return {
        "temperature": f"{p.temperature:g}",
        "top_k": str(p.top_k),
        "top_p": f"{p.top_p:g}",
        "seed": "" if p.seed is None else str(p.seed),
        "max_new_tokens": str(p.max_new_tokens),
        "k": str(s.k),
        "forced": s.forced,
        "chat": "yes" if s.chat else "no",
    }


_Number = TypeVar("_Number", int, float)


YES, NO = ("yes", "y", "true", "1", "on"), ("no", "n", "false", "0", "off", "")


def parse_fields(raw: dict[str, str], old: GenerationSettings) -> GenerationSettings:
    """The fields' text → settings; RunError names the first bad field. What the form does not
    show (the stop texts, the lens's top tokens, attention entropy) is kept from `old`."""
    label = dict(FIELDS)

    def number(key: str, kind: Callable[[str], _Number]) -> _Number:
        try:
            return kind(raw[key].strip())
        except ValueError:
            raise RunError(f"not a number: {label[key]}") from None

    seed = raw["seed"].strip()
    sampling = SamplingParams(
        number("temperature", float),
        number("top_k", int),
        number("top_p", float),
        number("seed", int) if seed else None,
        number("max_new_tokens", int),
        list(old.sampling.stop),
    )
    answer = raw["chat"].strip().lower()
    if answer not in YES + NO:
        raise RunError(f"{label['chat']}: yes or no (got {answer[:20]!r})")
    chat = answer in YES
    return replace(old, sampling=sampling, k=number("k", int), chat=chat, forced=raw["forced"])


class SettingsScreen(FormScreen[GenerationSettings]):
    FIELDS = FIELDS
    TITLE_LINE = "session settings (the next generation) — Enter applies, Esc cancels"
    BOX_ID = "settings-box"

    def __init__(self, settings: GenerationSettings, vocab_size: int | None = None, no_chat: str | None = None) -> None:
        """`no_chat`: the loaded model's name when its tokenizer has no chat template (chat on is
        refused here: it failed at the next generation, advising the CLI's --chat)."""
        super().__init__(field_values(settings))
        self.settings, self.vocab_size, self.no_chat = settings.copy(), vocab_size, no_chat

    def parse(self, raw: dict[str, str]) -> GenerationSettings:
        new = parse_fields(raw, self.settings)
        new.check(self.vocab_size)
        if new.chat and self.no_chat is not None:
            raise RunError(f"chat: {self.no_chat} has no chat template (answer no)")
        return new
