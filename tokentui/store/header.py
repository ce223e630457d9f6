"""A run file's header: the JSON description (meta, branch list) in front of the arrays.

Reading it needs only the standard library, not numpy: listing the cache, resolving a run id and
checking a file before the explorer opens stay fast (`tokentui replay` draws its first frame from
this and loads the arrays after).

The header comes from strangers, so it is bounded before it is parsed (size, nesting depth) and
cleaned after (string lengths, lone surrogates): later code — the run picker, JSON export, the
explorer — can then trust that every string is printable UTF-8 of sane length and that no
structure is deep enough to exhaust the stack.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

from tokentui.core.display import sanitize
from tokentui.core.params import MAX_K

SCHEMA_VERSION = 2  # 2: columns declared in the header (any measures); 1: a fixed set
FORMAT = "tokentui-run"
SUFFIX = ".tokentui"
MAX_FILE_BYTES = 8 << 30
MAX_HEADER_BYTES = 16 << 20  # a 1M-character prompt, escaped twice, and ~30k branches fit
MAX_DEPTH = 32  # our headers nest 5 deep; json's C parser would recurse ~1000 deep
MAX_PROMPT_CHARS = 1_000_000  # the prompt and the chat template
MAX_STRING_CHARS = 10_000  # every other string in the header
LONG_STRINGS = frozenset({"prompt", "chat_template"})
MAX_VOCAB = (1 << 24) - 1  # ids are stored in at most 3 bytes
MAX_LAYERS = 4_096
RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_PARENS = bytes.maketrans(b"[]{}", b"()()")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_TEXT_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class RunFileError(Exception):
    """A run file cannot be used; str() is one line naming the file and the problem, safe to print
    (a file name or an array name from a damaged file may hold terminal escapes)."""

    def __init__(self, path: Path | str, problem: str) -> None:
        problem = sanitize(" ".join(str(problem).split())[:300])
        super().__init__(f"{sanitize(str(path))}: {problem}")
        self.path, self.problem = Path(path), problem


def valid_run_id(run_id: object) -> bool:
    """A run id names a file in the cache, so it is a plain file name: letters, digits, '.', '_',
    '-', starting with a letter or digit (no '..', no slash, no hidden file), at most 64 long."""
    return isinstance(run_id, str) and RUN_ID_RE.fullmatch(run_id) is not None


def header_int(path: Path, value: object, what: str, lo: int, hi: int) -> int:
    """An integer field of the header: a JSON integer in lo..hi — not a bool, a float (34.0,
    1e400, Infinity) or a string ("34"). Anything else is a one-line RunFileError."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise RunFileError(path, f"{what} is not an integer")
    if not lo <= value <= hi:
        raise RunFileError(path, f"{what} is outside {lo}..{hi}")
    return value


def check_sizes(path: Path, meta: dict[str, Any]) -> int:
    """The sizes a run's metadata declares (vocabulary, layers, k), each within its bound; returns
    the vocabulary size. Shared by loading and by the cache's listing, which reads headers only:
    a file loading would refuse for them is 'unreadable' in `tokentui runs` too."""
    vocab = header_int(path, meta.get("vocab_size"), "vocabulary size", 1, MAX_VOCAB)
    header_int(path, meta.get("n_layers"), "layer count", 1, MAX_LAYERS)
    header_int(path, meta.get("k"), "k", 1, min(MAX_K, vocab))
    return vocab


def read_bytes(path: Path, limit: int | None = None, follow_links: bool = True) -> bytes:
    """The file's first `limit` bytes (all without one); every fault is a RunFileError. Checked
    as the file opened (core.files.open_to_read); `follow_links` False: a link is refused."""
    import errno

    from tokentui.core.files import NotAFile, open_to_read

    try:
        f, st = open_to_read(path, follow_links)
        with f:
            if st.st_size > MAX_FILE_BYTES:
                raise RunFileError(path, f"too large to be a run ({st.st_size} bytes)")
            data = f.read(limit if limit else st.st_size + 1)
        if not limit and len(data) > st.st_size:
            raise RunFileError(path, "changed while it was read")
        return data
    except FileNotFoundError:
        raise RunFileError(path, "no such file") from None
    except IsADirectoryError:
        raise RunFileError(path, _folder_problem(path)) from None
    except NotAFile:
        raise RunFileError(path, "not a regular file") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL in the name
        if isinstance(e, OSError) and e.errno in (errno.ELOOP, errno.EMLINK) and not follow_links:
            raise RunFileError(path, "is a symbolic link") from None
        raise RunFileError(path, getattr(e, "strerror", None) or str(e)) from None


COLLECTION_HINT = (  # (collection.json: store.collection's MANIFEST, which imports this module)
    "give it as stats --collection DIR or export --collection DIR --format seed001; one of its runs by its id"
)


def _folder_problem(path: Path) -> str:
    """What a folder given as a run file is: a batch collection's gets a hint, as users give one."""
    if (path / "collection.json").is_file():
        return f"is a batch collection's folder, not a run file ({COLLECTION_HINT})"
    return "is a folder, not a run file"


def _looks_like_text(head: bytes) -> bool:
    """Whether a file's first bytes read as UTF-8 text (a BOM, and a character cut at their end,
    allowed) without control characters but tab and line ends — or as text in another encoding:
    no control bytes at all (a Latin-1 file was "header over 16777216 bytes" to a trial)."""
    head = head.removeprefix(b"\xef\xbb\xbf")
    for cut in range(4):  # (the last character may be cut by the 8 bytes)
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return bool(text) and all(ch.isprintable() or ch in "\t\n\r" for ch in text)
    return all(b >= 0x20 and b != 0x7F or b in b"\t\n\r" for b in head)


def _header_too_large(path: Path, head: bytes) -> RunFileError:
    """The error for a file whose first 8 bytes declare an impossible header: most often another
    kind of file, said when it is recognisably JSON (a collection's manifest above all) or text."""
    if head[:1] in (b"{", b"["):
        what = (
            f"a batch collection's manifest ({COLLECTION_HINT})"
            if path.name == "collection.json"
            # (an export, most often: a trial replayed one and was not told what would open)
            else "a JSON text (an export cannot be opened again: the run is its .tokentui file)"
        )
        return RunFileError(path, f"not a tokentui run file: {what}")
    if _looks_like_text(head):  # (`replay /etc/passwd`)
        return RunFileError(path, "not a tokentui run file: a text file")
    return RunFileError(path, f"not a tokentui run file (header over {MAX_HEADER_BYTES} bytes)")


def json_too_deep(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether `raw` (JSON) nests arrays and objects more than `limit` deep, found without parsing
    or recursion: strings are cut out (brackets in them do not count), the brackets left become
    '(' and ')', and `limit` passes each remove every innermost '()' (one level) — a balanced
    structure no deeper than `limit` is then gone. Linear, in C: a hostile balanced header never
    reaches the parser's recursion limit, and a megabytes-deep one costs milliseconds. Unbalanced
    brackets are not JSON: json.loads refuses them (its RecursionError, for a deep unclosed run of
    opens, is caught as "not valid JSON" too)."""
    brackets = _JSON_STRING.sub(b"", raw).translate(_PARENS, _NOT_BRACKETS)
    if brackets.count(b"(") != brackets.count(b")"):
        # unbalanced (a file cut short): not JSON at all, which json.loads says; its unclosed
        # opens would pass for deep levels below (a truncated header was called too deep)
        return False
    for done in range(limit):
        if not brackets:
            return False
        if b"(" * (limit - done + 1) in brackets:  # a straight run of opens: no need to go on
            return True
        brackets = brackets.replace(b"()", b"")
    return bool(brackets)


def loads_bounded(path: Path, raw: bytes | str, what: str) -> Any:
    """json.loads after a depth check; every fault (depth, syntax, huge numbers) is a RunFileError."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if json_too_deep(data):
        raise RunFileError(path, f"{what} nests deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # ValueError: syntax, bad UTF-8, ints over 4300 digits
        raise RunFileError(path, f"{what} is not valid JSON") from None


def clean_strings(path: Path, obj: Any, key: str = "") -> Any:
    """`obj` with every string (keys too) checked for length and its lone surrogates (JSON's
    "\\ud800" escapes, which no UTF-8 writer can encode) replaced by U+FFFD. The prompt and chat
    template may hold MAX_PROMPT_CHARS characters, every other string MAX_STRING_CHARS."""
    if isinstance(obj, str):
        limit = MAX_PROMPT_CHARS if key in LONG_STRINGS else MAX_STRING_CHARS
        if len(obj) > limit:
            name = f"{key!r} " if key else "a string "
            raise RunFileError(path, f"{name}in the header is longer than {limit} characters")
        return _SURROGATE.sub("\ufffd", obj)
    if isinstance(obj, dict):
        return {clean_strings(path, k, "key"): clean_strings(path, v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clean_strings(path, v, key) for v in obj]
    return obj


def parse_schema(path: Path, value: object) -> int:
    """The schema version: safetensors metadata holds it as a decimal string ("2")."""
    if isinstance(value, int) and not isinstance(value, bool):
        schema = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,4}", value):
        schema = int(value)
    else:
        raise RunFileError(path, "run file has no valid schema version")
    if schema > SCHEMA_VERSION:
        raise RunFileError(
            path, f"made by a newer tokentui (schema {schema}, this one reads ≤ {SCHEMA_VERSION}); upgrade tokentui"
        )
    if schema < 1:
        raise RunFileError(path, f"unknown schema version {schema}")
    return schema


def parse_header_json(path: Path, raw: bytes, size: int | None = None) -> tuple[dict[str, Any], int]:
    """The run description from the safetensors header's `__metadata__`, checked for our format,
    bounded and cleaned (see the module's docstring), and the file's schema version. `size`: the
    file's, checked against where the header says its arrays end (a truncated file is found
    without reading them: `tokentui runs` listed one as a healthy run)."""
    if len(raw) < 8:
        raise RunFileError(path, "not a tokentui run file (too short)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER_BYTES:
        raise _header_too_large(path, raw[:8])
    if 8 + n > len(raw):
        raise RunFileError(path, "not a tokentui run file (bad or truncated header)")
    header = loads_bounded(path, raw[8 : 8 + n], "not a tokentui run file: its header")
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RunFileError(path, "not a tokentui run file")
    schema = parse_schema(path, meta.get("schema"))
    if size is not None:
        ends = [v.get("data_offsets") for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
        end = max((e[1] for e in ends if isinstance(e, list) and len(e) == 2 and isinstance(e[1], int)), default=0)
        if 8 + n + end != size:
            raise RunFileError(path, f"damaged run file ({size} bytes where its header says {8 + n + end})")
    if not isinstance(meta.get("run"), str):
        raise RunFileError(path, "run description in the header is not valid JSON")
    text = meta["run"]
    run = loads_bounded(path, text, "run description in the header")
    if not isinstance(run, dict):
        raise RunFileError(path, "run description in the header is not valid JSON")
    return (clean_strings(path, run) if _needs_cleaning(text) else run), schema


def _needs_cleaning(text: str) -> bool:
    """Whether the JSON `text` can hold a lone surrogate or a string longer than MAX_STRING_CHARS
    (a literal's decoded length is at most its length in the text). Cheap, in C: walking a large
    header's every string in Python would take seconds."""
    if _SURROGATE.search(text) or _SURROGATE_ESCAPE.search(text):
        return True
    return max(map(len, _TEXT_STRING.findall(text)), default=0) > MAX_STRING_CHARS + 2


def read_header(path: Path | str) -> dict[str, Any]:
    """Only the JSON description (meta, branch list) — cheap, for listing the cache."""
    path = Path(path)
    head = read_bytes(path, 8)
    if len(head) < 8:
        raise RunFileError(path, "not a tokentui run file (too short)")
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER_BYTES:
        raise _header_too_large(path, head)
    return parse_header_json(path, read_bytes(path, 8 + n), size=path.stat().st_size)[0]
