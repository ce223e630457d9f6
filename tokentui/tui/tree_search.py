"""The explorer's tree actions: grow a tree with seed 002's threshold search from the token under
the cursor (or from the prompt), jump to the most / least probable finished path, and delete a
branch with everything grown from it.

A search's nodes are one-step branches (core/tree.py), so the tree pane shows them as it shows any
branch and grows while they arrive; progress is the status bar's note, escape stops the search
and keeps what was grown. Finished paths and their probabilities come from the run's token trie,
so a hand-grown tree works the same way (finished: an end-of-sequence token).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokentui.core.display import counted
from tokentui.tui.state import AppState

if TYPE_CHECKING:  # the app this is mixed into, for the type checker only (tui/host.py)
    from tokentui.core.params import TreeParams
    from tokentui.tui.host import ExplorerHost

    _Base = ExplorerHost
else:
    _Base = object


class TreeActions(_Base):
    """Mixed into TokentuiApp (it provides run_obj, branch_id, stream, engine, session …)."""

    def action_grow_tree(self) -> None:
        from tokentui.tui.screens.tree_form import TreeForm

        run = self.run_obj
        if run is None:
            prompt = self.prompt_box.prompt
            if not prompt.strip():
                self.notify("the prompt is empty: i edits it", severity="warning", markup=False)
                return
            where = "from the end of the prompt (a new run)"
            start: tuple[int, int | None] | None = None
        else:
            why = self.session.not_ours()
            if why is not None:
                self.notify(why, severity="warning", markup=False)
                return
            prompt = ""
            position = min(self.stream.cursor + 1, run.length(self.branch_id))
            start = (self.branch_id, position)
            where = f"on branch #{self.branch_id}, after position {position - 1} (children take position {position})"

        def done(params: TreeParams | None) -> None:
            engine = self.engine
            if params is None or engine is None:
                return
            self.session.tree_params = params
            self.session.begin("tree search: starting")
            if start is None:
                self.session.guided_tree = bool(self.session.settings.forced)  # (jobs.TreeSearch forces it first)
                engine.tree(params, self.session.settings, prompt, 0, None)
            else:
                engine.tree(params, self.session.settings, None, start[0], start[1])
            self.update_status()

        self.push_screen(TreeForm(self.session.tree_params, where), done)

    def action_finished_path(self, which: str) -> None:
        """Show the most ('most') or least probable finished path, the cursor on its last token:
        of the latest tree search's own tree when the run has one, its cumulative p from the
        search's root as the tree pane's Σ counts it; else of the run's whole tree (branches that
        ended in an end-of-sequence token), from the tree's default root. Paths from two roots
        are never ranked together: their p cover different stretches of text."""
        from tokentui.core.tree import build_trie, finished_paths, own_branches, searches

        run = self.run_obj
        assert run is not None  # needs RUN
        found = searches(run)
        if found:
            s = found[-1]
            trie = build_trie(run, s["root_branch"], s["root_position"], own_branches(s))
            where = " of the tree search" if len(found) == 1 else " of the latest tree search"
        else:
            trie, where = build_trie(run), ""
        done = [(n, p) for n, p in finished_paths(run, trie) if n.ends and p == p]  # (most probable first)
        if not done:
            self.notify(f"no finished path{where or ' in this run'} (an end-of-sequence token, or a search's max depth)",
                        markup=False)  # fmt: skip
            return
        node, p = done[0] if which == "most" else done[-1]
        branch = node.ends[-1]
        self.show_branch(branch, cursor=node.position)
        self.notify(f"{which} probable of {counted(len(done), 'finished path')}{where}: branch #{branch}, "
                    f"cumulative p = {p:.3g}", markup=False)  # fmt: skip

    def action_delete_branch(self) -> None:
        from tokentui.tui.screens.confirm import Confirm
        from tokentui.tui.widgets.branch_tree import BranchTree

        run = self.run_obj
        assert run is not None  # needs RUN
        if self.state is AppState.GENERATING:
            self.notify("not while generating (escape stops it)", severity="warning", markup=False)
            return
        tree = self.query_one(BranchTree)
        target = self.branch_id
        if self.focused is tree and tree.cursor_node is not None and tree.cursor_node.data is not None:
            target = tree.cursor_node.data
        if run.branch(target).parent is None:
            self.notify("the root branch cannot be deleted (start a new run instead)", markup=False)
            return
        from tokentui.core.tree import drawn_subtree

        doomed = drawn_subtree(run, target)  # (as the pane draws it: the siblings beside it stay)
        more = f" and the {len(doomed) - 1} branches grown from it" if len(doomed) > 1 else ""
        steps = sum(len(run.branches[b].steps) for b in doomed)

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete_subtree(target)

        self.push_screen(Confirm(f"Delete branch #{target}{more}?",
                                 f"{counted(steps, 'token')} go; the run file is saved without them."), answered)  # fmt: skip

    def _delete_subtree(self, target: int) -> None:
        from tokentui.core.tree import keep_siblings, remap_branches

        run = self.run_obj
        assert run is not None
        parent = run.branch(target).parent
        shown = self.branch_id
        fork = run.branch(target).fork_position
        keep_siblings(run, target)
        mapping = run.remove_subtree(target)
        remap_branches(run, mapping)
        if shown in mapping:
            self.show_branch(mapping[shown], cursor=self.stream.cursor)
        else:  # the branch on show went: its parent, at the fork
            assert parent is not None
            self.show_branch(mapping[parent], cursor=fork)
        if self.engine is not None:
            self.engine.adopt(run)  # the worker grows a copy of the run as it is now
        self.action_save(quiet=True)
        self.notify(f"deleted branch #{target} ({len(run.branches)} branches left)", markup=False)
