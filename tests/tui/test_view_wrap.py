"""How the token stream wraps its lines (`tui/view.BranchView`): before a word when the word fits a
line, so a number split into digit tokens is not cut between its digits; between tokens when a
word is longer than a line; the same layout whether the tokens arrived one at a time or at once."""

from __future__ import annotations

import numpy as np

from tests.factories import make_run
from tokentui.core.step import Step
from tokentui.core.tokens import TokenTable
from tokentui.tui.view import WORD_OPENERS, BranchView

FIRST_ID = 1000


def pieces_run(pieces: list[bytes], grown: int | None = None):
    """A run whose sequence (branch 0) is `pieces`: prompt and first steps from make_run, the rest
    appended; `grown`: only that many tokens in it yet."""
    run = make_run(n_branch_steps=(3, 1))  # 4 prompt tokens, 3 of the root's
    table = {i: b"x" for i in range(run.meta.vocab_size)}
    table.update({FIRST_ID + i: p for i, p in enumerate(pieces)})
    run.tokens = TokenTable(table)
    run.meta.vocab_size = FIRST_ID + len(pieces)
    run.prompt._a["token_id"][:4] = [FIRST_ID + i for i in range(4)]
    run.branches[0].steps._a["token_id"][:3] = [FIRST_ID + 4 + i for i in range(3)]
    for i in range(7, len(pieces) if grown is None else grown):
        append(run, FIRST_ID + i)
    return run


def append(run, token_id: int) -> None:
    run.append_step(0, Step(run.branches[0].end, token_id, {}, "generated"))


def lines_of(view: BranchView) -> list[tuple[int, int]]:
    return [view.line_range(line) for line in range(view.n_lines)]


def check_layout(view: BranchView) -> None:
    """Every line fits (or is one token too wide alone); a break between two tokens of one word only
    where the word, from its first token to the one that went over, is wider than a line (or it
    began the line before); and no line ends early: what starts the next line, to the end of its
    word, would not have fitted at the end of this one."""
    width, texts, widths, newline = view.width, view.texts, view.widths, view.newline

    def opens(i: int) -> bool:
        return i == 0 or bool(newline[i - 1]) or texts[i][:1] in WORD_OPENERS

    lines = lines_of(view)
    for line, (start, end) in enumerate(lines):
        used = view.indent(line) + sum(widths[start:end])
        assert used <= width or end - start == 1, (line, used, texts[start:end])
        if line + 1 >= len(lines) or start == end or newline[end - 1]:
            continue
        nxt = lines[line + 1][0]
        word_end = nxt + 1
        while word_end < len(texts) and not opens(word_end):
            word_end += 1
        assert used + sum(widths[nxt:word_end]) > width, (line, texts[start:end], texts[nxt:word_end])
        if not opens(nxt):
            first = nxt
            while not opens(first):
                first -= 1
            assert first <= start or sum(widths[first : nxt + 1]) > width, (line, texts[first : nxt + 1])


def test_a_number_in_digit_tokens_wraps_whole():
    """At 80×24 '… in 2024' in single-digit tokens was cut between its digits."""
    words = [b" The", b" war", b" ended", b" in", b" 1", b"9", b"4", b"5", b" and", b" the", b" year"]
    pieces = words + [b" 2", b"0", b"2", b"4", b" began", b"."] * 6
    run = pieces_run(pieces)
    digits = {i for i, p in enumerate(pieces) if p.isdigit()}  # (the digits after a number's first)
    for width in range(8, 60):
        view = BranchView(run, 0, "probability", width=width)
        check_layout(view)
        assert not {start for start, _ in lines_of(view)} & digits, width


def test_random_text_wraps_the_same_streamed_or_at_once():
    """Words of random tokens (some wider than the line, line breaks with indentation after them),
    at random widths, in both views: the layout holds its rules, and a view that saw the tokens
    arrive one by one ends with the lines of a view made from the whole run."""
    rng = np.random.default_rng(7)
    syllables = [b"ab", b"c", b"defg", b"1", b"2", b"\xc3\xa9", b"xyzzyplugh"]
    for trial in range(40):
        pieces = []
        for _ in range(int(rng.integers(20, 120))):
            roll = rng.random()
            if roll < 0.35:
                pieces.append(b" " + syllables[int(rng.integers(len(syllables)))])
            elif roll < 0.42:
                pieces.append(b"\n" + b" " * int(rng.integers(0, 6)))
            elif roll < 0.45:
                pieces.append(b"\t" + b"q")
            else:
                pieces.append(syllables[int(rng.integers(len(syllables)))])
        width = int(rng.integers(8, 40))
        decoded = bool(trial % 2)
        whole = BranchView(pieces_run(pieces), 0, "probability", decoded=decoded, width=width)
        check_layout(whole)
        run = pieces_run(pieces, grown=7)
        streamed = BranchView(run, 0, "probability", decoded=decoded, width=width)
        for i in range(7, len(pieces)):
            append(run, FIRST_ID + i)
            if rng.random() < 0.6:
                streamed.sync()
        streamed.sync()
        assert streamed.line_starts == whole.line_starts and streamed.blank == whole.blank, trial
        streamed.set_width(width + 3)  # (a resize lays it all out again)
        again = BranchView(run, 0, "probability", decoded=decoded, width=width + 3)
        assert streamed.line_starts == again.line_starts, trial


def test_the_jumps_of_a_branch_taken_inside_the_prompt_look_at_its_own_tokens():
    """[ ] { } look in the answer: its tokens by kind, not by place — a branch taken inside the
    prompt has generated tokens before the prompt's end, and they count (a review found them
    left out, and the shared prompt tokens counted where the branch ended inside the prompt)."""
    from tests.factories import make_run
    from tokentui.core.columns import nan_step
    from tokentui.core.step import Step
    from tokentui.tui.view import BranchView

    run = make_run(n_branch_steps=(6, 3))
    n_prompt = len(run.prompt)
    assert n_prompt >= 3
    b = run.add_branch(0, 2)
    for i, rank in enumerate((5, 1, 7)):
        st = nan_step(b.end, 11 + i)
        run.append_step(
            b.id, Step(st.position, st.token_id, {**st.values, "rank": rank, "entropy": 1.0 + i}, "generated")
        )
    view = BranchView(run, b.id, "probability")
    kinds = run.kinds(b.id)
    own = [p for p, k in enumerate(kinds) if k != "prompt"]
    assert own == [2, 3, 4]
    assert np.flatnonzero(view.uncertain_mask("rank")).tolist() == [2, 4]
    assert set(np.flatnonzero(view.uncertain_mask("entropy")).tolist()) <= set(own)
