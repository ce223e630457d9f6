"""The explorer's actions on the layer views (issue 14): `Y` switches the per-layer measure the
layers pane (and the layer map, when open) shows, `Z` opens the layer × position map of it on a
screen of its own (screens/layer_map.py) or closes it; `refresh_layer_map` keeps an open map on
the stream's branch, cursor and values. The measure on show lives on the layers pane."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokentui.tui.widgets.layers import LayersPane

if TYPE_CHECKING:  # the app this is mixed into, for the type checker only (tui/host.py)
    from tokentui.tui.host import ExplorerHost

    _Base = ExplorerHost
else:
    _Base = object


class LayersViewActions(_Base):
    """Mixed into TokentuiApp (it provides run_obj, branch_id, stream, look …)."""

    def action_cycle_layer_measure(self) -> None:
        from tokentui.tui import layer_data
        from tokentui.tui.screens.layer_map import LayerMapScreen

        run = self.run_obj
        assert run is not None  # needs RUN
        pane = self.query_one(LayersPane)
        names = run.layout.names
        if len(layer_data.available(names)) <= 1:
            self.notify(
                "this run has only the lens entropy per layer (recorded before the other measures, or without the "
                "lens): " + ", ".join(layer_data.INFO[m].label for m in layer_data.missing(names)) + " missing",
                markup=False,
            )
        pane.measure = layer_data.next_measure(names, pane.measure)
        self.show_side("layers")  # a narrow terminal: the pane that changed
        pane.redraw()
        if isinstance(self.screen, LayerMapScreen):
            self.screen.set_measure(pane.measure)

    def action_layer_map(self) -> None:
        from tokentui.tui.screens.layer_map import LayerMapScreen

        if isinstance(self.screen, LayerMapScreen):
            self.screen.dismiss()
            return
        run = self.run_obj
        assert run is not None  # needs RUN
        if not len(self.stream.view or ()):
            self.notify("no tokens on this branch yet", markup=False)
            return
        measure = self.query_one(LayersPane).measure
        self.push_screen(
            LayerMapScreen(run, self.branch_id, measure, self.stream.cursor, self.look(), self.stream.move_to)
        )

    def refresh_layer_map(self) -> None:
        """An open layer map follows the stream (called with the other panes' refresh)."""
        from tokentui.tui.screens.layer_map import LayerMapScreen

        for screen in self.screen_stack:
            if isinstance(screen, LayerMapScreen) and self.run_obj is not None:
                screen.follow(self.run_obj, self.branch_id, self.stream.cursor)
