"""For the type checker only: what the explorer's action mixins (generation, navigation, viewing,
files, attribution) use of the app they are mixed into. TokentuiApp provides all of it.

Each mixin subclasses `ExplorerHost` only under TYPE_CHECKING and `object` at run time, so the
app's real MRO is `TokentuiApp, <mixins>, App` and importing a mixin never imports this module:

    if TYPE_CHECKING:
        _Base = ExplorerHost
    else:
        _Base = object

    class GenerationActions(_Base): ...

A method declared here is one that a mixin calls but that the app or another mixin defines; the
bodies never run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import App

if TYPE_CHECKING:
    from pathlib import Path

    from tokentui.core.run import Run
    from tokentui.tui.bridge import EngineBridge
    from tokentui.tui.screens.messages import MessageLog
    from tokentui.tui.state import AppState, Session
    from tokentui.tui.theme import DivergingScale, MetricScale, TokentuiTheme
    from tokentui.tui.widgets.prompt_area import PromptArea
    from tokentui.tui.widgets.token_stream import TokenStream


class ExplorerHost(App[None]):
    """The explorer app as its action mixins see it (see the module's docstring)."""

    # --- state (set in TokentuiApp.__init__) --------------------------------------------------
    session: Session
    engine: EngineBridge | None  # None without a model (a replay)
    run_path: Path | None  # the file the run on screen came from, if any
    save_dir: Path  # the run cache
    themes_: dict[str, TokentuiTheme]
    metric: str  # the metric the tokens are coloured by (core.metrics.METRIC_ORDER)
    decoded: bool  # decoded text rather than tokens
    side_index: int  # the side pane shown on a narrow terminal
    initial_prompt: str  # `--prompt`'s text (the prompt box's first; "" when not given)
    messages: MessageLog  # every notification (the messages screen, N)

    # --- derived (TokentuiApp's properties) ---------------------------------------------------
    @property
    def run_obj(self) -> Run | None:
        raise NotImplementedError

    @property
    def branch_id(self) -> int:
        raise NotImplementedError

    @property
    def state(self) -> AppState:
        raise NotImplementedError

    @property
    def stream(self) -> TokenStream:
        raise NotImplementedError

    @property
    def prompt_box(self) -> PromptArea:
        raise NotImplementedError

    # --- what one part calls of another (TokentuiApp's, ViewActions', FileActions') ----------
    def show_branch(self, branch_id: int, cursor: int | None) -> None:
        raise NotImplementedError

    def refresh_panes(self) -> None:
        raise NotImplementedError

    def update_status(self) -> None:
        raise NotImplementedError

    def update_settings_line(self) -> None:
        raise NotImplementedError

    def update_legend(self) -> None:
        raise NotImplementedError

    def action_save(self, quiet: bool = False) -> None:
        raise NotImplementedError

    def look(self) -> tuple[MetricScale, DivergingScale, bool]:
        raise NotImplementedError

    # --- attribution (AttributionActions') -----------------------------------------------------
    def leave_attribution(self) -> bool:
        raise NotImplementedError

    def refresh_attribution_pane(self) -> None:
        raise NotImplementedError

    def side_panes(self) -> list[str]:
        raise NotImplementedError

    def show_side(self, name: str) -> None:
        raise NotImplementedError
