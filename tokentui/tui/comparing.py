"""The explorer's live comparison with a second model: `B` asks for model B (named as --model
names one) and loads it beside the generating model, as `explore --compare B` does at start. From
then on the engine compares every branch it grows under both models (engine/jobs.py `Compare`),
and the comparison's colouring (m), jumps (( and )) and pane lines work while exploring
(core/metrics.py, tui/widgets/alternatives.py). The engine is reached only through the bridge."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokentui.tui.state import AppState

if TYPE_CHECKING:  # the app this is mixed into, for the type checker only (tui/host.py)
    from tokentui.tui.host import ExplorerHost

    _Base = ExplorerHost
else:
    _Base = object


class CompareActions(_Base):
    """Mixed into TokentuiApp."""

    def action_load_compare(self) -> None:
        from tokentui.tui.screens.text_prompt import TextPrompt

        current = self.session.model_b or ""

        def done(text: str | None) -> None:
            if text is not None and text.strip():
                self.load_model_b(text.strip())

        title = "model B to compare with (Hub id, folder, .gguf, smollm2, demo; same tokenizer)"
        self.push_screen(TextPrompt(title, current, placeholder="model B"), done)

    def load_model_b(self, model: str) -> None:
        """Ask the engine to load `model` as model B (the status bar says so until it is ready;
        a failure is one line and leaves the explorer as it was)."""
        engine = self.engine
        if engine is None:
            return
        s = self.session
        s.model_b, s.loading_b = model, True
        if s.state is AppState.IDLE:
            s.state = AppState.LOADING
        s.note = f"loading {model} to compare with …"
        engine.load_pair(model)
        self.update_status()
