"""How headless commands show a run on a terminal: the coloured token stream and the per-token
table. Token text is untrusted: it passes through `core.display` before it is printed."""

from __future__ import annotations

import os
import sys

from tokentui.core.display import lone_token

# Uncertainty (1 - p) → 256-colour code, from calm blue to hot orange (colour-blind safe order).
_SCALE = (39, 75, 187, 214, 202)


# NO_COLOR: the five levels as attributes, the explorer's styles in its order (plain → underline →
# bold → bold underline → reverse), so the metric still shows
_ATTRS = ("", "4", "1", "1;4", "7")  # (the explorer's NO_COLOR buckets: tui/theme.py)


def use_color() -> str | None:
    """How the token stream shows each token's certainty on this stdout: "color" (256 colours),
    "attrs" (NO_COLOR set: attributes only), None (not a terminal: plain text)."""
    if not sys.stdout.isatty():
        return None
    return "attrs" if os.environ.get("NO_COLOR") else "color"


def paint(text: str, prob: float, mode: str | None) -> str:
    """`text` styled by its uncertainty 1 − `prob` in `mode` (see use_color); NaN: plain."""
    if mode is None or prob != prob:
        return text
    level = min(4, int((1.0 - prob) * 5))
    if mode == "attrs":
        return f"\x1b[{_ATTRS[level]}m{text}\x1b[0m" if _ATTRS[level] else text
    return f"\x1b[38;5;{_SCALE[level]}m{text}\x1b[0m"


def table(run, branch_id: int, start: int) -> str:
    """Positions `start`… of a branch: token, prob, logprob, rank, entropy and the top three
    alternatives; the header says so when the run holds more (`-k 8` printed three with no word)."""
    k_show = min(3, run.k)
    alts_head = "top alternatives" if run.k <= k_show else f"top {k_show} of {run.k} alternatives (all: --json)"
    lines = [f"{'pos':>5}  {'token':<16} {'prob':>7} {'logprob':>8} {'rank':>6} {'entropy':>7}  {alts_head}"]
    for pos in range(start, run.length(branch_id)):
        st = run.step(branch_id, pos)
        alts = "  ".join(
            f"{lone_token(run.tokens.bytes_of(int(i)))[:12]} {float(lp):.2f}"
            for i, lp in zip(st.topk_ids[:k_show], st.topk_logprobs[:k_show])
            if i >= 0
        )
        tok = lone_token(run.tokens.bytes_of(st.token_id))[:16]
        if st.logprob == st.logprob:  # (NaN: nothing predicted it — the first token)
            lines.append(
                f"{pos:>5}  {tok:<16} {st.prob:>7.4f} {st.logprob:>8.3f} {st.rank:>6} {st.entropy:>7.3f}  {alts}"
            )
        else:  # (the first token: nothing predicted it; "nan nan - nan" read as a fault)
            lines.append(f"{pos:>5}  {tok:<16} {'—':>7} {'—':>8} {'—':>6} {'—':>7}  (first token: no prediction)")
    return "\n".join(lines)


CHAIN = 6  # nodes per line of a chain (a node with one child continues its parent's line)


def tree_lines(run, trie) -> list[str]:
    """A text rendering of a token tree (`core.tree.Trie`): the root's text, then one line per
    stretch of a path, indented by how many branchings lie above it. Each node shows its token (on
    its own: whitespace visible, escapes shown), its p and, at the end of a line, the cumulative p;
    ✓ marks a finished path. A node with one child continues on its parent's line (seed trees are
    long chains), at most CHAIN nodes per line."""
    from tokentui.core import tree
    from tokentui.core.display import sanitize
    from tokentui.store.export import root_text

    cumulative = trie.cumulative()
    head = sanitize(root_text(run, trie), visible_whitespace=True)  # (its spaces as they are: code's indents)
    # a long root shows its end: where the tree goes on (a chat template, a forced prefix)
    lines = [f"▸ {'…' + head[-99:] if len(head) > 100 else head}  ({trie.size} nodes)"]
    stack = [(c, 1) for c in reversed(trie.root.children)]
    while stack:
        node, level = stack.pop()
        parts, n = [], 0
        while True:
            parts.append(f"{lone_token(run.tokens.bytes_of(node.token_id))[:24]} {node.prob:.3f}")
            n += 1
            if len(node.children) != 1:
                break
            if n % CHAIN == 0:
                lines.append("  " * level + " · ".join(parts) + " ·")
                parts = []
            node = node.children[0]
        mark = "  ✓" if tree.is_finished(run, node) else ""
        lines.append("  " * level + " · ".join(parts) + f"   cum {cumulative[node]:.4g}{mark}")
        stack.extend((c, level + 1) for c in reversed(node.children))
    return lines
