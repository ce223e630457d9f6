"""What the explorer is doing and what it shows, changed only by applying engine events on the UI
thread: the application state as an enum, the session (the run under view, the session's
generation settings, what the status bar says), and the one place engine events are handled.

Kept free of widgets so that each event's effect can be read (and tested) in one place; the app
turns the returned `Update` into screen updates. The run on screen is the session's own, grown from
the events' data (engine.events.apply_event); the worker's run is never read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from tokentui.core.display import counted, sanitize
from tokentui.core.params import DEFAULT_ATTRIBUTION, IG_STEPS, GenerationSettings, TreeParams

if TYPE_CHECKING:  # numpy stays out of a replay's first frame
    from tokentui.core.run import Run
    from tokentui.core.steering import SteeringSpec
    from tokentui.engine.capabilities import Capabilities
    from tokentui.engine.events import Attributed, AttributionProgress, Event
    from tokentui.tui.heat import Shown


class AppState(Enum):
    """What the explorer is doing; the status bar shows the value."""

    REPLAY = "replay"  # a saved run, no model
    LOADING = "loading"  # the model is loading
    IDLE = "idle"  # a model is ready
    GENERATING = "generating"
    ATTRIBUTING = "attributing"  # an attribution job runs (escape cancels, keeping the rows done)
    NO_MODEL = "no model"  # the model failed to load


class Needs(Enum):
    """What an action needs before it can run (the action table's 'when enabled' column)."""

    NOTHING = "nothing"
    RUN = "run"  # a run on screen
    MODEL = "model"  # a loaded model that is not busy
    RUN_AND_MODEL = "run and model"
    SESSION_MODEL = "a session with a model"  # loading or busy will do (settings for what comes next)


@dataclass(frozen=True)
class AttributionJob:
    """An attribution the explorer asked the engine for: one token (`token`: shown in the stream)
    or the association matrix of a range (`matrix`: shown on the matrix screen)."""

    kind: str  # "token" | "matrix"
    branch: int
    positions: list[int]
    method: str
    alternative: int | None = None


@dataclass
class Update:
    """What an applied event changed, for the app to redraw."""

    show_branch: int | None = None  # a new branch started: show it
    tokens: bool = False  # the branch under view grew or got layer values
    tree: bool = False  # a search added nodes (the tree pane grows)
    finished: bool = False  # a job ended: redraw the tree and panes
    loaded: bool = False  # the model is ready
    error: tuple[str, str] | None = None  # (title, message) to tell the user
    notice: str = ""  # a result worth a notification (a tree search's end)
    notice_seconds: float | None = None  # how long it stays (None: Textual's default)
    attribution_progress: AttributionProgress | None = None  # an attribution job got on
    attributed: tuple[Attributed, AttributionJob] | None = None  # it ended: its result and what was asked
    attribution_failed: AttributionJob | None = None  # it failed (the error says why)
    compared: bool = False  # a steering comparison ended with both branches: show what changed


@dataclass
class Session:
    """The explorer's state. Only the UI thread changes it, by calling `apply`."""

    state: AppState
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    run: Run | None = None
    branch_id: int = 0
    model: str | None = None  # the model as the user named it
    model_info: str = ""
    note: str = ""  # the latest progress / result, shown in the status bar
    job_note: str = ""  # what the job running now does (`begin`'s note)
    tokens_per_second: float = 0.0  # the last job's, once it finished
    live_steps: int = 0  # tokens the job running now has made (its first at live_since)
    live_since: float = 0.0
    vocab_size: int | None = None  # the loaded model's, to check k against
    chat_template: bool = True  # the loaded model's tokenizer has one (chat on is refused otherwise)
    n_layers: int | None = None  # the loaded model's (with its name and vocabulary: may it grow the run?)
    capabilities: Capabilities | None = None  # the loaded model source's (None: no model yet)
    tree_params: TreeParams = field(default_factory=TreeParams)  # the tree search form's last values
    tree_search: bool = False  # a tree search is growing the run
    guided_tree: bool = False  # a tree search on a new prompt first forces the settings' prefix (its root)
    # attribution: the method `a` / `A` use, the job running, the attribution on show
    attribution_method: str = DEFAULT_ATTRIBUTION
    attribution_steps: int = IG_STEPS  # integrated gradients' path steps
    attribution_job: AttributionJob | None = None
    attribution: Shown | None = None
    # steering (`explore --steer`): the spec, whether the next generation uses it, a comparison running
    steering: SteeringSpec | None = None
    steer_on: bool = False
    comparing: bool = False
    # a second model compared live (`explore --compare B`, or B): as named, loading, loaded (its name)
    model_b: str | None = None
    loading_b: bool = False
    model_b_loaded: str = ""
    comparing_b: bool = False  # the engine compares branches under model B: busy until Compared
    model_a: str = ""  # the loaded model's name (the status bar says "A vs B")

    def model_parts(self) -> tuple[str, str]:
        """`model_info` as (the model's name — "A vs B" when comparing —, its details: device,
        dtype, layers); the status bar drops the details first."""
        name, _, details = self.model_info.partition(" · ")
        return name, details

    def begin(self, note: str) -> None:
        """A job that grows the run starts: the status bar says what runs, no longer what the
        last job ended with (its note stayed while a branch was continued). While model B still
        compares, the engine takes the job after it: said, so a wait is not taken for a hang."""
        self.state = AppState.GENERATING
        self.tokens_per_second = 0.0  # (the last job's rate stood through this one: a trial read it as live)
        self.live_steps = 0
        self.job_note = note  # (what runs, said again once the job is under way: without the wait)
        waits = f" (once the comparison with {self.model_b_loaded} is done)" if self.comparing_b else ""
        self.note = note + waits

    @property
    def live_rate(self) -> float:
        """Tokens per second of the generation running now, from its first token on (0 before
        it has run half a second: the bar showed no rate until the job ended)."""
        seconds = time.monotonic() - self.live_since
        if self.state is not AppState.GENERATING or self.live_steps < 2 or seconds < 0.5:
            return 0.0
        return (self.live_steps - 1) / seconds

    @property
    def status_label(self) -> str:
        """The status bar's first word: the state, or "comparing" while model B compares."""
        if self.comparing_b and self.state is AppState.IDLE:
            return "comparing"
        return self.state.value

    def active_steering(self) -> SteeringSpec | None:
        """The spec new runs and branches are steered by (None: steering off, or no spec)."""
        return self.steering if self.steer_on else None

    @classmethod
    def start(cls, model: str | None, settings: GenerationSettings, run: Run | None = None) -> Session:
        if model is None:
            return cls(AppState.REPLAY, settings, run, model_info="no model (replay)")
        return cls(AppState.LOADING, settings, run, model=model, model_info=f"{model} · loading")

    def lens_unavailable(self) -> str | None:
        """Why the layer view of the run on screen has no lens values, or None when it has them."""
        if self.run is not None and self.run.meta.mode == "compare":
            return "a comparison records no lens: each model's one forward gives its last layer only"
        if self.run is not None and self.run.meta.lens == "off":
            return "the lens was off for this run (--lens-chunk 0)"
        if self.run is not None and self.run.meta.lens.startswith("off ("):  # off, and why (the model had none)
            return self.run.meta.lens[len("off (") :].removesuffix(")")
        if self.capabilities is not None:  # a model is loaded: what it cannot lens, new branches lack
            return self.capabilities.why_not("lens", self.model or "this model source")
        return None

    def why_not(self, needs: Needs, generates: bool = False) -> str | None:
        """Why an action that needs `needs` cannot run now, or None when it can. `generates`: the
        action grows text token by token, which a model tokentui cannot decode does not do (said
        first: "no run yet: … generate (ctrl+r)" sent the user to a key refused next)."""
        if generates and self.capabilities is not None and not self.capabilities.generate:
            return self.capabilities.why_not("generate", self.model or "this model source")
        if needs in (Needs.RUN, Needs.RUN_AND_MODEL) and self.run is None:
            return "no run yet: type a prompt (i) and generate (ctrl+r)"
        if needs is Needs.SESSION_MODEL and self.state in (AppState.REPLAY, AppState.NO_MODEL):
            return {
                AppState.REPLAY: f"replay: no model is loaded, so nothing would use the settings ({_load_advice()})",
                AppState.NO_MODEL: "the model failed to load, so nothing would use the settings",
            }[self.state]
        if needs in (Needs.MODEL, Needs.RUN_AND_MODEL):
            reason = {
                AppState.REPLAY: f"replay: no model is loaded ({_load_advice()})",
                AppState.LOADING: "the model is still loading",
                AppState.NO_MODEL: "the model failed to load",
                AppState.GENERATING: "already generating (escape cancels; from the prompt, escape twice)",
                AppState.ATTRIBUTING: "attributing (escape cancels, keeping the rows done)",
            }.get(self.state)
            if reason:
                return reason
        if needs is Needs.RUN_AND_MODEL:
            return self.not_ours()
        return None

    def not_ours(self) -> str | None:
        """Why the loaded model must not grow the run on show (another model made it: opened with
        `o` or `replay RUN --model M`), or None (no model loaded: nothing grows it anyway)."""
        if self.run is None or self.vocab_size is None or self.n_layers is None:
            return None
        return self.run.meta.not_grown_by(self.model_a, self.vocab_size, self.n_layers)

    # --- engine events ------------------------------------------------------------------------
    def apply(self, ev: Event) -> Update:
        """Apply one engine event: the session's own run grows from the events' data (it is
        never the worker's run), and the state, status and what to redraw follow."""
        from tokentui.engine.events import (
            Attributed,
            AttributionProgress,
            BranchStarted,
            Compared,
            CompareValues,
            Comparing,
            Failed,
            Finished,
            LensEvent,
            Loaded,
            PairLoaded,
            PairReleased,
            Progress,
            RunStarted,
            Saved,
            SaveFailed,
            StepEvent,
            TreeProgress,
            TreeStarted,
            Widened,
            apply_event,
        )

        up = Update()
        ours = self.run is not None and getattr(ev, "run_id", None) == self.run.id
        self.run = apply_event(self.run, ev)
        if isinstance(ev, Progress):  # (a long prompt's lens reports before the run starts)
            cancels = self.state is AppState.GENERATING and ev.fraction is not None
            self.note = f"{ev.message} · escape cancels" if cancels else ev.message
        elif isinstance(ev, Loaded):
            self.state = AppState.IDLE
            self.vocab_size = ev.vocab_size
            self.chat_template = ev.chat_template
            self.n_layers = ev.n_layers
            self.capabilities = ev.capabilities
            self.note = f"loaded in {ev.seconds:.1f}s"
            self.model_info = f"{ev.model} · {ev.device} · {ev.dtype} · {ev.n_layers} layers"
            self.model_a = ev.model
            up.loaded = True
            cannot = ev.capabilities.why_not("generate", ev.model)
            unchatted = None
            if self.settings.chat and not ev.chat_template:
                # (`explore --chat` on such a model opened with chat on, and the first generation
                # failed; the CLI refuses before loading, the explorer turns it off and says so)
                self.settings = self.settings.copy()
                self.settings.chat = False
                unchatted = f"{ev.model} has no chat template: chat is off (s: settings)"
            notes = tuple(n for n in (*ev.notes, cannot, unchatted, self.not_ours()) if n is not None)
            # what stays true while it is used: said once, not only flashed; one line each (notify
            # keeps the breaks between them)
            up.notice = "\n".join(sanitize(n) for n in notes)
            up.notice_seconds = 20.0  # (read while the first prompt is typed: a few seconds passed unseen)
            if self.loading_b:  # `explore --compare B`: ready once B is loaded too
                self.state, up.loaded = AppState.LOADING, False
                self.note = f"{self.note} · loading {self.model_b} to compare with …"
        elif isinstance(ev, PairLoaded):
            self.loading_b, self.model_b_loaded = False, ev.model
            if self.state is AppState.LOADING:
                self.state = AppState.IDLE
            self.model_info = f"{self.model_a} vs {ev.model} · {self.model_parts()[1]}"
            self.note = f"comparing with {ev.model} (loaded in {ev.seconds:.1f}s)"
            up.loaded = True
        elif isinstance(ev, PairReleased):  # (the Failed that follows says why the new B did not load)
            self.model_b = None
            self.model_b_loaded = ""
            details = self.model_parts()[1]
            self.model_info = f"{self.model_a} · {details}" if details else self.model_a
        elif isinstance(ev, (Widened, CompareValues)):
            up.tokens = ours
        elif isinstance(ev, Comparing):
            self.comparing_b = True
            if ours and self.state is AppState.IDLE:
                # (model B is named at the bar's start, "A vs B": at 80 columns the note's own
                # "comparing with B:" left no room for the branch)
                self.note = f"comparing branch #{ev.branch} ({ev.done + 1} of {ev.total}) · escape stops it"
        elif isinstance(ev, Compared):
            self.comparing_b = False
            if ours:
                n = len(ev.branches)
                # (model B is named beside A at the bar's start: the result first, or 80 columns
                # cut it off)
                what = (
                    "comparison cancelled"
                    if ev.cancelled
                    else f"compared {counted(ev.positions, 'position')} of {counted(n, 'branch', 'branches')}"
                )
                if ev.branches or ev.cancelled:  # (none: every branch was compared already — a
                    # delete's or an open's check said "compared 0 positions of 0 branches")
                    self.note = f"{what} in {ev.seconds:.1f}s"
                up.finished = True
        elif isinstance(ev, Failed) and ev.command in ("LoadPair", "Compare"):
            self.comparing_b = False  # (the worker runs one command at a time: no comparison goes on)
            kept = f"still comparing with {self.model_b_loaded}" if self.model_b_loaded else ""
            if ev.command == "LoadPair":  # the explorer goes on as it was (with its earlier B, if any)
                self.note = f"model B not loaded: {ev.message}"  # (not the load's last progress line)
                if kept:
                    self.note += f" · {kept}"
                self.loading_b = False
                self.model_b = self.model_b_loaded or None
                if self.state is AppState.LOADING:
                    self.state = AppState.IDLE
                    up.loaded = True
            said = f" ({kept})" if ev.command == "LoadPair" and kept else ""
            up.error = ("comparison failed" if ev.command == "Compare" else "model B failed to load", ev.message + said)
        elif isinstance(ev, RunStarted):
            self.branch_id = 0
            if self.state is AppState.GENERATING:
                self.note = self.job_note  # (what runs, again, after the prompt's progress)
        elif isinstance(ev, BranchStarted) and ours:
            if not self.tree_search or ev.parent is None:  # a search's nodes do not pull the view along
                self.branch_id = ev.branch_id
                up.show_branch = ev.branch_id
        elif isinstance(ev, TreeStarted):
            self.tree_search = True
            self.note = "tree search: started"
        elif isinstance(ev, TreeProgress):
            up.tree = True  # the tree pane grows (with a next frame)
            if ev.stopped == "running":
                self.note = f"tree: {ev.nodes} nodes · {ev.open} open · {ev.completed} done · T={ev.threshold:.3f}"
            else:
                self.state = AppState.IDLE
                self.tree_search = False
                hint = " (P: most probable)" if ev.completed else ""
                self.note = f"tree search {ev.stopped}: {counted(ev.nodes, 'node')}, {counted(ev.completed, 'finished path')}{hint}"
                up.finished = True
                up.notice = self.note
        elif isinstance(ev, AttributionProgress):
            up.attribution_progress = ev
            self.note = f"attributing: {ev.done}/{ev.total} tokens · {ev.fraction:.0%} · escape cancels"
        elif isinstance(ev, Attributed):
            job, self.attribution_job = self.attribution_job, None
            if self.state is AppState.ATTRIBUTING:
                self.state = AppState.IDLE
            rows = len(ev.record.positions) if ev.record is not None else 0
            if ev.cancelled:
                total = len(job.positions) if job is not None else rows
                self.note = f"attribution cancelled: {rows} of {counted(total, 'token')} kept"
            else:
                self.note = f"attributed {counted(rows, 'token')} in {ev.seconds:.1f}s"
            if job is not None:
                up.attributed = (ev, job)
        elif isinstance(ev, (StepEvent, LensEvent)):
            up.tokens = ours and ev.branch_id == self.branch_id
            if ours and isinstance(ev, StepEvent) and self.state is AppState.GENERATING:
                if not self.live_steps:
                    self.live_since = time.monotonic()
                self.live_steps += 1
        elif isinstance(ev, Finished):
            self.tokens_per_second = ev.tokens_per_second
            self.note = f"{ev.status}: {counted(ev.new_tokens, 'new token')}"
            up.finished = True
            if self.comparing and ev.branch_id == 0 and ev.status not in ("cancelled", "error"):
                self.note = f"standard: {counted(ev.new_tokens, 'token')} · now steered …"  # the steered branch follows
            elif self.guided_tree and ev.status == "length":  # the forced prefix is the root: the search follows
                self.guided_tree = False
                self.note = "forced prefix done · tree search starting"
            else:
                self.guided_tree = False
                self.state = AppState.IDLE
                up.compared = self.comparing and ev.branch_id == 1 and ev.status != "error"
                self.comparing = False
        elif isinstance(ev, Saved):
            if ours and self.run is not None:  # the worker saved its run as it stood after the events applied so far
                self.run.mark_saved()
            if ev.note is not None:  # (another process changed the run's file: this one went beside it)
                up.notice, up.notice_seconds = ev.note, 20
            # the note (what the run's end said: a search's summary) stays; the status bar's
            # saved/unsaved part says the rest (a "· saved" note too showed "saved" twice)
        elif isinstance(ev, SaveFailed):  # (the job goes on; the status bar says "unsaved")
            up.error = ("autosave failed", ev.message)
        elif isinstance(ev, Failed):
            self.comparing_b = False  # (a comparison that failed outside its own handling ends too)
            if self.state is AppState.LOADING:
                self.state = AppState.NO_MODEL
                self.model_info = f"{self.model} · failed to load"
                self.note = "the model failed to load: o opens a saved run"  # (not the load's last progress line)
            elif self.state in (AppState.GENERATING, AppState.ATTRIBUTING):
                if self.state is AppState.ATTRIBUTING:
                    up.attribution_failed, self.attribution_job = self.attribution_job, None
                self.state = AppState.IDLE
                self.tree_search = self.guided_tree = False
                self.comparing = False
                # the job's own note ("generating … · escape cancels") would stay on an idle app
                self.note = f"{ev.command} failed: {' '.join(ev.message.split())}"
            up.error = (f"{ev.command} failed", ev.message)
        return up


def _load_advice() -> str:
    """How a replay gets a model: --model, or first torch where it is missing (telling a laptop
    without torch to start with --model led to one more error)."""
    from tokentui.engine.errors import torch_installed

    if torch_installed():
        return "start with tokentui replay RUN --model M to grow branches"
    return "running one needs torch, not installed here"
