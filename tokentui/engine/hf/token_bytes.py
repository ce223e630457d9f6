"""The exact bytes of every token id, whatever the tokenizer's scheme.

Decoding tokens one by one with `tokenizer.decode` loses bytes: half of a UTF-8 character becomes
U+FFFD, and SentencePiece drops leading spaces. Here: byte-level BPE (GPT-2, Llama-3, Qwen) maps
each character back through the GPT-2 byte table; SentencePiece (Llama-2, Gemma) turns `▁` into a
space and `<0xNN>` into that byte; special tokens are their text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable

from tokentui.core.display import lone_token, sanitize

_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _gpt2_unicode_to_byte() -> dict[str, int]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _decoder_types(tokenizer) -> set[str]:
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is None:
        return set()
    try:
        dec = json.loads(backend.to_str()).get("decoder") or {}
    except Exception:  # noqa: BLE001 - an exotic backend: fall back to the SentencePiece rules
        return set()
    found = {dec.get("type", "")}
    for sub in dec.get("decoders", []) or []:
        found.add(sub.get("type", ""))
    return found


def vocab_bytes(tokenizer, size: int) -> list[bytes]:
    """Bytes of ids 0..size-1 (ids the tokenizer does not know get `<id N>` as text)."""
    n_tok = len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(min(size, n_tok))))
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    try:
        special |= {str(t) for t in tokenizer.get_added_vocab()}
    except Exception:  # noqa: BLE001
        pass
    byte_level = "ByteLevel" in _decoder_types(tokenizer)
    table = _gpt2_unicode_to_byte() if byte_level else {}
    out: list[bytes] = []
    for piece in pieces:
        if piece is None:
            out.append(b"")
        elif piece in special:
            out.append(piece.encode("utf-8"))
        elif byte_level:
            try:
                out.append(bytes(table[c] for c in piece))
            except KeyError:
                out.append(piece.encode("utf-8"))
        else:
            m = _BYTE_TOKEN.match(piece)
            out.append(bytes([int(m.group(1), 16)]) if m else piece.replace("▁", " ").encode("utf-8"))
    out += [f"<id {i}>".encode() for i in range(len(out), size)]
    return out


def another_tokenizer(ids: Iterable[int], text_of: Callable[[int], bytes], vocab: list[bytes], name: str) -> str | None:
    """Why ids a run holds, whose text there is `text_of(id)`, were made with another tokenizer than
    the one whose bytes are `vocab` (`name`'s), or None when every id is the same text here: for a
    run compared (`compare --run`) or grown under a model other than by name."""
    for t in sorted(set(ids)):
        if not 0 <= t < len(vocab) or text_of(t) != vocab[t]:
            here = lone_token(vocab[t])[:40] if 0 <= t < len(vocab) else "no token"
            return (
                f"the run was made with another tokenizer: id {t} is {lone_token(text_of(t))[:40]} there "
                f"and {here} under {sanitize(name)}"
            )
    return None
