"""The one table of the explorer's actions: key, action, short name, description, group, where the
key works and when the action is enabled. The key bindings (of the app and of each pane), the help
screen and the command palette are all generated from it, so a key is listed once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from textual.binding import Binding, BindingType

from tokentui.tui.state import Needs

# Where a key works: the app (everywhere but an input), or only in one focused pane.
APP, STREAM, ALTERNATIVES, TREE, MATRIX = "app", "tokens", "alternatives", "tree", "matrix"
LAYERS = "layers"  # the layers pane (widgets/layers.py: it scrolls)
STATS = "stats"  # the Stats screen (screens/stats.py)
GROUPS = ("generate", "move", "branch", "tree", "attribute", "view", "files", "app")


@dataclass(frozen=True)
class ActionSpec:
    keys: str  # Textual key names, comma-separated ("ctrl+r,f5")
    action: str  # the action to run; "{n}" is replaced by each key's digit ("branch_alt({n})")
    name: str  # short: the footer label and the palette title
    description: str  # the help screen's and the palette's line
    group: str  # the help screen's section
    scope: str = APP
    needs: Needs = Needs.NOTHING  # when it is enabled (the app explains why not when pressed)
    footer: bool = False  # shown in the footer (the essentials: they must fit 80 columns)
    palette: bool = True  # offered in the command palette (app actions only)
    priority: bool = False  # works even while typing in an input
    shown_keys: str = ""  # how the help screen writes the keys, when not derived from `keys`
    textual: bool = False  # bound by Textual itself (tab, ctrl+p): listed, not bound again
    generates: bool = False  # grows text token by token: refused for a model that cannot generate


ACTIONS: tuple[ActionSpec, ...] = (
    # generate
    ActionSpec("ctrl+r,f5", "generate", "generate", "new run from the prompt (asks first when the run has branches)",
               "generate", needs=Needs.MODEL, footer=True, generates=True),
    ActionSpec("c", "continue_branch", "continue", "generate more on the current branch", "generate",
               needs=Needs.RUN_AND_MODEL, footer=True, generates=True),
    ActionSpec("escape", "cancel", "cancel", "stop generating or attributing after the current token (the partial "
               "branch, the rows done are kept; a branch first gets the lens of its last tokens), or model B's "
               "comparison after its branch; else leave the attribution view; in the prompt: back to the tokens (a "
               "second escape then stops a generation)",
               "generate"),
    ActionSpec("s", "settings", "settings", "the session's settings: temperature, top-k, top-p, seed, max tokens, "
               "k, forced prefix, chat", "generate", needs=Needs.SESSION_MODEL, footer=True),
    ActionSpec("i", "focus_prompt", "prompt", "edit the prompt", "generate"),  # the prompt box's title says so
    ActionSpec("V", "toggle_steering", "steer on/off", "steering (explore --steer SPEC.toml) on / off for the next "
               "generation and branches; a branch continues as it was grown", "generate"),
    ActionSpec("B", "load_compare", "compare model", "load a second model B beside this one (one tokenizer): "
               "everything generated, branched or scored from then on is compared under both (m: KL, ( ): jumps)",
               "generate", needs=Needs.MODEL),
    ActionSpec("C", "compare_steering", "compare steered", "the prompt generated standard (branch 0) and steered "
               "(branch 1) as a new run; the cursor goes where they part", "generate", needs=Needs.MODEL,
               generates=True),
    # move (the tokens pane)
    ActionSpec("left,h", "cursor(-1)", "prev token", "previous token (with a side pane focused too, as the word "
               "moves and [ ] { } ( ): the tokens' cursor moves, the focus stays)", "move", STREAM, shown_keys="← h"),
    ActionSpec("right,l", "cursor(1)", "next token", "next token", "move", STREAM, shown_keys="→ l"),
    ActionSpec("ctrl+left,b", "word(-1)", "prev word", "previous word", "move", STREAM, shown_keys="ctrl+← b"),
    ActionSpec("ctrl+right,w", "word(1)", "next word", "next word", "move", STREAM, shown_keys="ctrl+→ w"),
    ActionSpec("up,k", "line(-1)", "line up", "line up", "move", STREAM, shown_keys="↑ k"),
    ActionSpec("down,j", "line(1)", "line down", "line down", "move", STREAM, shown_keys="↓ j"),
    ActionSpec("pageup", "page(-1)", "page up", "page up", "move", STREAM, shown_keys="PgUp"),
    ActionSpec("pagedown", "page(1)", "page down", "page down", "move", STREAM, shown_keys="PgDn"),
    ActionSpec("home,g", "edge(-1)", "first", "first token", "move", STREAM, shown_keys="home g"),
    ActionSpec("end,G", "edge(1)", "last", "last token", "move", STREAM, shown_keys="end G"),
    ActionSpec("left_square_bracket", "uncertain(-1, 'rank')", "prev rank>1",
               "previous token the model did not rank first", "move", STREAM, shown_keys="["),
    ActionSpec("right_square_bracket", "uncertain(1, 'rank')", "next rank>1",
               "next token the model did not rank first", "move", STREAM, shown_keys="]"),
    ActionSpec("left_curly_bracket", "uncertain(-1, 'entropy')", "prev unsure",
               "previous high-entropy token (top 10%)", "move", STREAM, shown_keys="{"),
    ActionSpec("right_curly_bracket", "uncertain(1, 'entropy')", "next unsure",
               "next high-entropy token (top 10%)", "move", STREAM, shown_keys="}"),
    ActionSpec("left_parenthesis", "uncertain(-1, 'kl')", "prev KL", "previous position where two compared "
               "models differ most (top 10% of KL(A‖B); runs of tokentui compare or with B)", "move", STREAM, shown_keys="("),
    ActionSpec("right_parenthesis", "uncertain(1, 'kl')", "next KL", "next position where two compared models "
               "differ most (top 10% of KL(A‖B))", "move", STREAM, shown_keys=")"),
    # branch
    ActionSpec("1,2,3,4,5,6,7,8,9", "branch_alt({n})", "branch #n", "branch here with alternative n", "branch",
               needs=Needs.RUN_AND_MODEL, palette=False, shown_keys="1 … 9", generates=True),
    ActionSpec("r", "resample", "resample", "new branch here sampled afresh with a new seed, this token and every "
               "one after it: the session's sampler, or temperature 1 (its top-k, top-p) when it is greedy — the "
               "whole branch, not greedy after the first token", "branch", needs=Needs.RUN_AND_MODEL,
               generates=True),
    ActionSpec("t", "branch_text", "branch: text", "branch here with typed text", "branch",
               needs=Needs.RUN_AND_MODEL, generates=True),
    ActionSpec("up,k", "select(-1)", "prev alternative", "previous alternative", "branch", ALTERNATIVES,
               shown_keys="↑ k"),
    ActionSpec("down,j", "select(1)", "next alternative", "next alternative", "branch", ALTERNATIVES,
               shown_keys="↓ j"),
    ActionSpec("enter", "choose", "branch on it", "branch on the selected alternative", "branch", ALTERNATIVES),
    ActionSpec("K", "tree_move('parent')", "parent", "show the parent branch", "branch", needs=Needs.RUN),
    ActionSpec("J", "tree_move('child')", "child", "show the first child branch", "branch", needs=Needs.RUN),
    ActionSpec("H", "tree_move('prev')", "prev sibling", "show the previous sibling branch", "branch",
               needs=Needs.RUN),
    ActionSpec("L", "tree_move('next')", "next sibling", "show the next sibling branch", "branch", needs=Needs.RUN),
    ActionSpec("d", "compare", "diff parent", "compare with the parent: jump to where they diverge", "branch",
               needs=Needs.RUN),
    ActionSpec("up,k", "cursor_up", "branch above", "highlight the branch above (it shows its path)", "branch", TREE,
               shown_keys="↑ k"),
    ActionSpec("down,j", "cursor_down", "branch below", "highlight the branch below (it shows its path)", "branch",
               TREE, shown_keys="↓ j"),
    ActionSpec("enter", "select_cursor", "show branch", "show the highlighted branch", "branch", TREE),
    ActionSpec("space", "fold", "fold", "collapse / expand the highlighted branch's subtree", "branch", TREE),
    ActionSpec("delete", "delete_branch", "delete", "delete a branch and everything grown from it (asks first; "
               "the tree pane's highlighted one, else the one on show)", "branch", needs=Needs.RUN),
    # tree search
    ActionSpec("e", "grow_tree", "tree", "grow a tree after the token under the cursor (no run yet: from the "
               "prompt) with seed 002's threshold search; a form sets its parameters, escape stops it", "tree",
               needs=Needs.MODEL, footer=True, generates=True),
    ActionSpec("P", "finished_path('most')", "best path", "show the most probable finished path (end of sequence "
               "or the search's max depth) of the tree", "tree", needs=Needs.RUN),
    ActionSpec("U", "finished_path('least')", "worst path", "show the least probable finished path", "tree",
               needs=Needs.RUN),
    # attribute (tui/attribution.py)
    ActionSpec("a", "attribute", "attribute", "which earlier tokens made this one: attribute the token under the "
               "cursor to every position before it (the method M picks; a stored result shows at once); a again "
               "on it, or escape: back to the metric", "attribute", needs=Needs.RUN),
    ActionSpec("M", "cycle_attribution_method", "attr. method", "next attribution method: gradient norm, saliency, "
               "input × gradient, integrated gradients, attention (last layer, all layers); the attribution on show "
               "follows", "attribute"),
    ActionSpec("A", "matrix", "matrix", "association matrix: each output token up to the cursor (the last 256 at "
               "most) against its inputs, as a heat map; escape cancels, keeping the rows done", "attribute",
               needs=Needs.RUN),
    ActionSpec("a", "contrast", "contrast", "attribute the token under the cursor against the selected alternative "
               "(why this and not that)", "attribute", ALTERNATIVES),
    ActionSpec("left,h", "move(0, -1)", "prev input", "previous input position", "attribute", MATRIX,
               shown_keys="← h"),
    ActionSpec("right,l", "move(0, 1)", "next input", "next input position", "attribute", MATRIX, shown_keys="→ l"),
    ActionSpec("up,k", "move(-1, 0)", "prev output", "previous output token", "attribute", MATRIX, shown_keys="↑ k"),
    ActionSpec("down,j", "move(1, 0)", "next output", "next output token", "attribute", MATRIX, shown_keys="↓ j"),
    ActionSpec("pageup", "page(-1)", "page up", "page up", "attribute", MATRIX, shown_keys="PgUp"),
    ActionSpec("pagedown", "page(1)", "page down", "page down", "attribute", MATRIX, shown_keys="PgDn"),
    ActionSpec("home,g", "edge(-1)", "row start", "first input of the row", "attribute", MATRIX, shown_keys="home g"),
    ActionSpec("end,G", "edge(1)", "row end", "last input of the row (the one before the output)", "attribute",
               MATRIX, shown_keys="end G"),
    ActionSpec("t", "top", "top input", "the row's largest contributor", "attribute", MATRIX),
    ActionSpec("escape", "escape", "cancel / close", "cancel the computation (the rows done are kept); then close",
               "attribute", MATRIX),
    ActionSpec("q", "close", "close", "close the matrix (a computation still running is cancelled)", "attribute",
               MATRIX),
    # view
    ActionSpec("m", "cycle_metric", "metric", "next metric: probability, entropy, rank, surprisal (a compared "
               "run: also KL(A‖B) and Δ log p)", "view",
               footer=True),
    ActionSpec("T", "cycle_theme", "theme", "next theme", "view"),
    ActionSpec("D", "toggle_decoded", "decoded", "tokens ↔ decoded text (split characters joined, real line breaks)",
               "view"),
    ActionSpec("S", "stats", "stats", "run statistics of the branch on show (w in it: of the whole run): entropy and "
               "p(chosen), perplexity, entropy deciles, by relative position, extreme tokens, GLTR ranks", "view",
               needs=Needs.RUN),
    ActionSpec("w", "toggle_scope", "branch/run", "statistics of the branch ↔ of the whole run", "view", STATS),
    ActionSpec("p", "toggle_prompt", "prompt", "count the prompt's scored positions too (or not)", "view", STATS),
    ActionSpec("escape,S,q", "close", "close", "close the statistics", "view", STATS),
    ActionSpec("up,down,pageup,pagedown,home,end", "scroll", "scroll", "scroll the statistics (home, end: to the "
               "top, the bottom)", "view", STATS, textual=True, shown_keys="↑↓ PgUp PgDn"),
    # the layer views (tui/layers_view.py)
    ActionSpec("Y", "cycle_layer_measure", "layer measure", "next per-layer measure in the layers pane and the layer "
               "map: entropy, perplexity, margin, KL to uniform, KL to the final layer, rank, surprisal, attention "
               "entropy (those the run has)", "view", needs=Needs.RUN),
    ActionSpec("Z", "layer_map", "layer map", "layer × position heat map of the per-layer measure on show, its cursor "
               "the tokens' (arrows move it; t: the least sure cell; Y: next measure; escape, q or Z close)", "view", needs=Needs.RUN),
    ActionSpec("up,k", "scroll_up", "scroll up", "scroll the layers up", "view", LAYERS, shown_keys="↑ k"),
    ActionSpec("down,j", "scroll_down", "scroll down", "scroll the layers down (the top tokens per layer and the "
               "metric strip are below the bars)", "view", LAYERS, shown_keys="↓ j"),
    ActionSpec("pageup", "page_up", "page up", "page up", "view", LAYERS, shown_keys="PgUp"),
    ActionSpec("pagedown", "page_down", "page down", "page down", "view", LAYERS, shown_keys="PgDn"),
    ActionSpec("home,g", "scroll_home", "top", "the top of the pane", "view", LAYERS, shown_keys="home g"),
    ActionSpec("end,G", "scroll_end", "bottom", "the bottom of the pane", "view", LAYERS, shown_keys="end G"),
    ActionSpec("v", "cycle_pane", "side pane", "next side pane (narrow terminals show one at a time)", "view"),
    ActionSpec("tab", "focus_next", "next pane", "next pane: tokens, alternatives, layers, tree (a narrow terminal: "
               "the side pane on show)", "view", palette=False, textual=True, shown_keys="tab shift+tab"),
    # files
    ActionSpec("ctrl+s", "save", "save", "save the run now, into the run cache (runs also autosave there)", "files", needs=Needs.RUN),
    ActionSpec("o", "open_run", "open", "open a run from the cache (not while a job runs)", "files", footer=True),
    ActionSpec("x", "export", "export", "export the run: the name's ending picks the format ({endings})", "files",
               needs=Needs.RUN),
    ActionSpec("X", "screenshot", "screenshot", "save an SVG screenshot into the current folder", "files"),
    # app
    ActionSpec("question_mark,f1", "help", "help", "every key", "app", footer=True, shown_keys="? F1"),
    ActionSpec("N", "messages", "messages", "the session's messages whole, newest last, and the status bar's text "
               "(a toast goes after seconds; a narrow status bar cuts a long note)", "app"),
    ActionSpec("ctrl+p", "command_palette", "commands", "command palette", "app", palette=False, textual=True),
    ActionSpec("q,ctrl+q", "quit", "quit", "quit (q: not while typing in an input); while generating: once the job has stopped and the run is "
               "saved (again: at once)", "app", footer=True,
               shown_keys="q ctrl+q"),
)  # fmt: skip

_KEY_NAMES = {
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "left_curly_bracket": "{",
    "right_curly_bracket": "}",
    "question_mark": "?",
}


def for_model(spec: ActionSpec) -> bool:
    """Whether `spec` needs a model to do anything (a replay without one only says so)."""
    return spec.needs in (Needs.MODEL, Needs.RUN_AND_MODEL, Needs.SESSION_MODEL)


def bindings(scope: str = APP, model: bool = True) -> list[BindingType]:
    """The key bindings of `scope`, generated from the table (a pane's BINDINGS, or the app's).
    `model=False`: for an explorer without a model (`tokentui replay RUN`), whose footer does not
    offer the keys that need one (they are still bound: pressed, they say why they do nothing)."""
    out: list[BindingType] = []
    for spec in ACTIONS:
        if spec.scope != scope or spec.textual:
            continue
        if "{n}" in spec.action:  # one binding per digit key
            for key in spec.keys.split(","):
                out.append(Binding(key, spec.action.replace("{n}", key), spec.name, show=False))
            continue
        keys = spec.keys
        if spec.action == "help":  # F1 opens help even from an input
            out.append(Binding("f1", "help", spec.name, show=False, priority=True))
            keys = "question_mark"
        elif spec.action == "quit":  # ctrl+q quits even from an input (as Textual's own binding)
            out.append(Binding("ctrl+q", "quit", spec.name, show=False, priority=True))
            keys = "q"
        show = spec.footer and (model or not for_model(spec))
        out.append(Binding(keys, spec.action, spec.name, show=show, priority=spec.priority))
    if scope in SIDE_PANES:
        out += _token_moves(scope)
    return out


SIDE_PANES = (ALTERNATIVES, LAYERS, TREE)


def _token_moves(scope: str) -> list[BindingType]:
    """The tokens pane's moves that a side pane leaves free (← → h l, words, [ ] { } ( )), bound
    there to move the tokens' cursor: a trial tabbed into the layers pane, pressed l for the next
    token's layers, and nothing happened. Up, down and the pane's own keys stay the pane's."""
    taken = {k for spec in ACTIONS if spec.scope in (scope, APP) for k in spec.keys.split(",")}
    return [
        Binding(spec.keys, f"app.on_tokens({spec.action!r})", spec.name, show=False)
        for spec in ACTIONS
        if spec.scope == STREAM and not taken & set(spec.keys.split(",")) and spec.action.startswith(_MOVES)
    ]


_MOVES = ("cursor(", "word(", "uncertain(")


def description(spec: ActionSpec) -> str:
    """`spec`'s line for the help screen and the palette: `{endings}` is the export formats'
    endings, from store.export (imported when help is asked for: numpy is not loaded at start)."""
    if "{endings}" not in spec.description:
        return spec.description
    from tokentui.tui.files import export_extensions

    return spec.description.replace("{endings}", export_extensions())


def shown_keys(spec: ActionSpec) -> str:
    return spec.shown_keys or " ".join(_KEY_NAMES.get(k, k) for k in spec.keys.split(","))


def help_sections() -> list[tuple[str, list[tuple[str, str]]]]:
    """(title, [(keys, description)]) for the help screen: each group, its pane-only keys in a
    section of their own ("move · tokens pane")."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for group in GROUPS:
        for spec in ACTIONS:
            if spec.group == group:
                title = group if spec.scope == APP else f"{group} · {spec.scope} pane"
                sections.setdefault(title, []).append((shown_keys(spec), description(spec)))
    return list(sections.items())


def palette_entries() -> Iterator[ActionSpec]:
    """The app's actions offered in the command palette, each once."""
    seen = set()
    for spec in ACTIONS:
        if spec.scope == APP and spec.palette and spec.action not in seen:
            seen.add(spec.action)
            yield spec


# The app actions that still work while another screen is up (the association matrix and the layer
# map fill the terminal; help, forms and pickers are pop-ups), besides Textual's own (tab, the
# palette) and those a screen lets through (its APP_ACTIONS): the others would change the explorer
# underneath, unseen — a metric, a branch, a generation started behind the heat map.
OVER_SCREENS = frozenset({"help", "quit", "screenshot", "save", "cycle_theme"})


def works_over(action: str, screen: object) -> bool:
    """Whether the app action `action` works while `screen` (not the explorer's) is up."""
    spec = spec_of(action)
    name = action.split("(", 1)[0]
    return spec is None or spec.textual or name in OVER_SCREENS or name in getattr(screen, "APP_ACTIONS", ())


def spec_of(action: str) -> ActionSpec | None:
    """The app action named `action` (without its arguments), if the table has it."""
    name = action.split("(", 1)[0]
    for spec in ACTIONS:
        if spec.scope == APP and spec.action.split("(", 1)[0] == name:
            return spec
    return None
