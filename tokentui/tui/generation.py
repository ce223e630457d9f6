"""The explorer's actions that ask the engine for tokens: generate, continue, branch (on an
alternative, on typed text, resampled), cancel, and the session's settings. Each runs only when
the action table's `needs` are met (TokentuiApp.run_action checks), so none re-checks them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokentui.tui.state import AppState

if TYPE_CHECKING:  # the app this is mixed into, for the type checker only (tui/host.py)
    from tokentui.core.params import GenerationSettings
    from tokentui.tui.host import ExplorerHost

    _Base = ExplorerHost
else:
    _Base = object


class GenerationActions(_Base):
    """Mixed into TokentuiApp (it provides session, engine, stream, prompt_box, notify …)."""

    def action_generate(self) -> None:
        prompt = self.prompt_box.prompt
        if not prompt.strip():
            self._say_the_prompt_is_empty()
            return
        run = self.run_obj
        if run is None or len(run.branches) <= 1:
            self._start_run(prompt)
            return
        from tokentui.tui.screens.confirm import Confirm

        question = f"Start a new run? Run {run.id} and its {len(run.branches)} branches leave the screen."
        detail = f"It stays in the run cache: o opens it again (or: tokentui replay {run.id})."

        def answered(yes: bool | None) -> None:
            if yes:
                self._start_run(prompt)

        self.push_screen(Confirm(question, detail), answered)

    def _say_the_prompt_is_empty(self) -> None:
        typing = self.focused is self.prompt_box  # (then "i edits it" pointed at where the user already was)
        self.notify(f"the prompt is empty: {'type one' if typing else 'i edits it'}", severity="warning", markup=False)

    def _start_run(self, prompt: str) -> None:
        engine = self.engine
        assert engine is not None  # needs MODEL: a loaded model has an engine
        from tokentui.store.cache import run_path

        old = self.run_obj
        if old is not None and (old.dirty or not run_path(old.id, self.save_dir).exists()):
            self.action_save(quiet=True)  # (a run opened from elsewhere, too: it is in the cache, as said below)
        self.session.begin("generating a new run from the prompt … · escape cancels")
        engine.generate(prompt, self.session.settings, self.session.active_steering())
        self.stream.focus()
        if old is not None and len(old.branches) > 1:
            self.notify(f"run {old.id} is in the cache: o opens it again", markup=False)
        self.update_status()

    def action_cancel(self) -> None:
        if self.focused is not None and self.focused.id == "prompt":
            # (first: the next prompt is typed while one generates, and escape leaving the box
            # stopped that generation — a second escape stops it)
            self.stream.focus()
        elif self.state in (AppState.GENERATING, AppState.ATTRIBUTING) and self.engine is not None:
            self.engine.cancel()
            self.session.note = "cancelling"
            self.update_status()
        elif self.session.attribution is None and self.session.comparing_b and self.engine is not None:
            # (model B compares on its own after every job: escape stops it only when it has
            # nothing else to do here; the branches compared so far stay)
            self.engine.cancel()
            self.session.note = "cancelling the comparison"
            self.update_status()
        else:
            self.leave_attribution()  # back to the metric's colours, if an attribution is on show

    def action_continue_branch(self) -> None:
        engine = self.engine
        assert engine is not None  # needs RUN_AND_MODEL
        run = self.run_obj
        if run is not None and run.branch(self.branch_id).status == "eos":  # (what follows is the model's noise)
            self.notify(f"branch #{self.branch_id} ended with an end-of-sequence token: nothing to continue "
                        "(branch at it to take another token)", markup=False)  # fmt: skip
            return
        # (the job would add 0 tokens: only the model that made the run grows it, `Session.not_ours`)
        if run is not None and run.branch(self.branch_id).status == "context":
            self.notify(f"branch #{self.branch_id} fills the model's context: nothing more fits", markup=False)
            return
        self.session.begin(f"continuing branch #{self.branch_id} … · escape cancels")
        # a branch continues as it was grown: steered with its own spec, or not at all
        engine.continue_branch(self.branch_id, self.session.settings.sampling.copy(), self.session.steering)
        self.stream.follow = True
        self.update_status()

    def _forks_here(self) -> bool:
        """Whether a branch can start at the cursor; says why not (the number keys and `t` on the
        first token did nothing and said nothing, where `r` said why)."""
        if self.stream.cursor < 1:
            self.notify("the first token has no alternatives to branch on", markup=False)
            return False
        return True

    def _fork_at_cursor(self, token_ids: list[int] | None, text: str = "", resample: bool = False) -> None:
        engine = self.engine
        assert engine is not None  # every caller needs RUN_AND_MODEL
        pos = self.stream.cursor
        if not self._forks_here():
            return
        params = self.session.settings.sampling.copy()
        what = "resampling" if resample else "branching at"
        self.session.begin(f"{what} position {pos} of branch #{self.branch_id} … · escape cancels")
        steering = self.session.active_steering()
        if resample:
            engine.resample(self.branch_id, pos, params, steering)
        else:
            engine.branch(self.branch_id, pos, token_ids, text, params, steering)
        self.update_status()

    def action_branch_alt(self, n: int) -> None:
        run, pos = self.run_obj, self.stream.cursor
        assert run is not None  # needs RUN_AND_MODEL
        if not self._forks_here() or pos >= run.length(self.branch_id):
            return
        step = run.step(self.branch_id, pos)
        ids = step.topk_ids
        if n > len(ids) or ids[n - 1] < 0:
            self.notify(f"there is no alternative #{n}", markup=False)
            return
        if int(ids[n - 1]) == step.token_id:  # the same token again would only copy this branch
            self.notify(
                f"alternative #{n} is the token already here: r resamples from this position instead",
                markup=False,
            )
            return
        token = int(ids[n - 1])
        taken = run.branch_taking(self.branch_id, pos, token)
        if taken is not None:  # (a trial grew the same greedy branch twice)
            self.show_branch(taken, cursor=pos)
            self.notify(
                f"branch #{taken} already takes {run.tokens.display(token)} here: shown instead "
                "(r samples this position anew; t takes a text)",
                markup=False,
            )
            return
        self._fork_at_cursor([token])

    def action_resample(self) -> None:
        """A new branch at the cursor, sampled afresh with a new seed (engine.jobs.Resample): the
        session's sampler, or at temperature 1 (the session's top-k, top-p) when it is greedy —
        for the token at the cursor and for every token after it, not only the first."""
        self._fork_at_cursor(None, resample=True)

    def action_branch_text(self) -> None:
        from tokentui.tui.screens.text_prompt import TextPrompt

        if not self._forks_here():
            return

        def done(text: str | None) -> None:
            if text:
                self._fork_at_cursor(None, text)

        self.push_screen(TextPrompt(f"branch at position {self.stream.cursor}: take this text, then continue"), done)

    def action_settings(self) -> None:
        from tokentui.tui.screens.settings import SettingsScreen

        def done(new: GenerationSettings | None) -> None:
            if new is not None:
                self.session.settings = new
                self.update_settings_line()
                if self.run_obj is not None:  # (the line shows the branch on show's: say what was set)
                    from tokentui.tui.widgets.settings_line import describe

                    self.notify(f"next runs and branches: {describe(new)}", markup=False)

        no_chat = None if self.session.chat_template else self.session.model_a
        self.push_screen(SettingsScreen(self.session.settings, self.session.vocab_size, no_chat), done)

    def action_focus_prompt(self) -> None:
        """`i`: into the prompt box, at the end of the prompt (typing goes on from there)."""
        box = self.prompt_box
        box.focus()
        box.move_cursor(box.document.end)

    # --- steering (`explore --steer SPEC.toml`) ------------------------------------------------
    def _no_steering(self) -> bool:
        if self.session.steering is None:
            self.notify("no steering spec: start with tokentui explore --steer SPEC.toml", markup=False)
            return True
        return False

    def action_toggle_steering(self) -> None:
        """Steering on / off for the next generation and branches (continuing a branch always
        follows how it was grown)."""
        if self._no_steering():
            return
        from tokentui.core.steering import describe

        s = self.session
        s.steer_on = not s.steer_on
        assert s.steering is not None
        self.notify(describe(s.steering.record()) if s.steer_on else "steering off", markup=False)
        self.update_status()
        self.update_settings_line()

    def action_compare_steering(self) -> None:
        """The prompt generated standard (branch 0) and steered (branch 1) as a new run; at its
        end the steered branch is shown with the cursor where the two part."""
        if self._no_steering():
            return
        prompt = self.prompt_box.prompt
        if not prompt.strip():
            self._say_the_prompt_is_empty()
            return
        engine, steering = self.engine, self.session.steering
        assert engine is not None and steering is not None  # needs MODEL
        old = self.run_obj
        if old is not None and old.dirty:
            self.action_save(quiet=True)
        self.session.begin("generating standard, then steered … · escape cancels")
        self.session.comparing = True
        engine.steer_compare(prompt, self.session.settings, steering)
        self.stream.focus()
        self.update_status()

    def show_comparison(self) -> None:
        """After a comparison: the steered branch, the cursor at the divergence point, and one
        line saying where the two part and how the mean entropy moved."""
        from tokentui.core.display import lone_token
        from tokentui.core.params import RunError
        from tokentui.core.steer_compare import compare

        run = self.run_obj
        if run is None or len(run.branches) < 2:
            return
        try:
            c = compare(run, 1)
        except RunError as e:
            self.notify(str(e), markup=False)
            return
        self.show_branch(1, cursor=c.divergence if c.divergence is not None else int(c.positions[0]))
        if c.divergence is None:
            where = f"the same {len(c)} tokens"
        else:
            i = c.divergence - int(c.positions[0])
            a, b = (lone_token(run.tokens.bytes_of(int(x[i]))) for x in (c.standard_ids, c.steered_ids))
            where = f"steered parts from standard at position {c.divergence}: {b} instead of {a}"
        delta = c.difference("entropy") if "entropy" in c.names else None
        if delta is not None and len(delta):
            import numpy as np

            where += f" · mean Δ entropy {float(np.nanmean(delta)):+.3f} nats (d: jump to the fork, K: standard)"
        self.notify(where, markup=False, timeout=6)
