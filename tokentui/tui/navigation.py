"""The explorer's actions that move between branches and panes: parent / child / sibling branch,
compare with the parent, next side pane."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokentui.tui.state import AppState
from tokentui.tui.widgets.token_text import lone_id

if TYPE_CHECKING:  # the app this is mixed into, for the type checker only (tui/host.py)
    from tokentui.tui.host import ExplorerHost

    _Base = ExplorerHost
else:
    _Base = object


class NavigationActions(_Base):
    """Mixed into TokentuiApp (it provides run_obj, branch_id, stream, show_branch …)."""

    async def action_on_tokens(self, action: str) -> None:
        """A tokens-pane move pressed in a side pane (actions._token_moves): the tokens' cursor
        moves, the focus stays where it is (the panes follow the cursor)."""
        await self.run_action(action, self.stream)

    def action_tree_move(self, where: str) -> None:
        run = self.run_obj
        assert run is not None  # needs RUN
        b = run.branch(self.branch_id)
        target: int | None = None
        if where == "parent":
            target = b.parent
        elif where == "child":
            kids = run.children(b.id)
            target = kids[0].id if kids else None
        else:
            sibs = [x.id for x in run.branches if x.parent == b.parent]
            i = sibs.index(b.id) + (1 if where == "next" else -1)
            target = sibs[i] if 0 <= i < len(sibs) else None
        if target is None:  # (not a bare bell: a terminal over SSH often has none to hear)
            why = {
                "parent": "the root branch has no parent",
                "child": f"branch #{b.id} has no branch growing from it",
                "next": f"branch #{b.id} is the last of its siblings",
                "prev": f"branch #{b.id} is the first of its siblings",
            }
            self.notify(why.get(where, "no branch there"), markup=False)
            return
        keep: int | None = self.stream.cursor if where == "parent" else run.branch(target).fork_position
        if run.branch(target).status == "running" and self.state is not AppState.IDLE:
            keep = None  # the branch tokens stream into: the cursor follows them (as from the tree pane)
        self.show_branch(target, cursor=keep)

    def action_compare(self) -> None:
        run = self.run_obj
        assert run is not None  # needs RUN
        b = run.branch(self.branch_id)
        if b.parent is None:
            self.notify("the root branch has no parent", markup=False)
            return
        pos = b.fork_position
        theirs = run.step(b.parent, pos).token_id if pos < run.length(b.parent) else None
        ours = run.step(b.id, pos).token_id if pos < run.length(b.id) else None
        self.stream.move_to(pos)

        def shown(tid: int | None) -> str:
            return lone_id(run, tid).plain if tid is not None else "∅"

        self.notify(f"branch #{b.id} leaves #{b.parent} at position {pos}: {shown(ours)} instead of {shown(theirs)}",
                    markup=False)  # fmt: skip

    def action_cycle_pane(self) -> None:
        if self.screen.has_class("wide"):  # (a trial's v did nothing to see, and changed the pane shown later)
            if self.query_one("#right").has_class("-attribution"):
                self.notify("at this width the attribution is where the lens pane was (escape brings the lens back)")
            else:
                self.notify("every side pane is on show at this width (v takes them in turn below 110 columns)")
            return
        names = self.side_panes()  # (the attribution pane while one is on show)
        current = next((n for n in names if self.query_one(f"#{n}").has_class("shown")), names[0])
        self.show_side(names[(names.index(current) + 1) % len(names)])
