"""The one job path (generate / continue / fork / score) with its subscribers, the backend's
capabilities, and how a generation ends: at the model's context, or in an error, always saved."""

from __future__ import annotations

import queue
import re
import shutil

import pytest
import torch

from tests.factories import generate_run
from tokentui.core.params import GenerationSettings, RunError, SamplingParams
from tokentui.engine import jobs
from tokentui.engine import worker as w
from tokentui.engine.backend import ModelSpec
from tokentui.engine.capabilities import Capabilities
from tokentui.engine.errors import EngineError
from tokentui.engine.events import Failed, Finished, Progress, Saved, StepEvent
from tokentui.engine.hf.backend import HFBackend
from tokentui.engine.hf.loading import load_model
from tokentui.store.runfile import load_run, save_run


@pytest.fixture(scope="module")
def short_context(tokenizer_dir, tmp_path_factory):
    """A GPT-2 whose learned position table has 24 rows: position 24 does not exist."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=24, n_layer=2, n_embd=32, n_head=2, eos_token_id=0)
    out = tmp_path_factory.mktemp("short")
    GPT2LMHeadModel(cfg).save_pretrained(out)
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, out / f.name)
    return load_model(str(out))


def test_generation_stops_at_the_context_and_says_so_once(short_context, tmp_path):
    s = HFBackend(short_context)
    run, events = generate_run(s, "def f(x):", SamplingParams(max_new_tokens=100), k=4)
    assert run.branches[0].status == "context" and run.length(0) == 24
    notes = [e.message for e in events if isinstance(e, Progress)]
    assert len(notes) == 1 and "context is 24 positions" in notes[0]
    assert isinstance(events[-1], Finished) and events[-1].status == "context"
    assert load_run(save_run(run, tmp_path / "r.tokentui")).branches[0].status == "context"
    # continuing a full branch ends at once, with the same status; a text past the context is refused
    assert list(s.continue_branch(run, 0, SamplingParams()))[-1].status == "context"
    with pytest.raises(EngineError, match="more than the model's context"):
        s.score_ids(list(range(1, 30)), k=4)


def test_a_generation_that_fails_midway_keeps_its_steps_and_is_saved(short_context, tmp_path):
    """The model itself fails at its 4th decode step (a forward hook raising, as an out-of-memory
    error would): the worker reports it, and the run on disk has the steps so far, status error."""
    calls = {"n": 0}

    def fail_on_fifth_forward(module, args, output):
        calls["n"] += 1
        if calls["n"] == 5:  # the prompt's forward, then three decode steps, then this one
            raise RuntimeError("simulated device failure")

    backend = HFBackend(short_context)  # (its checks at opening run forwards of their own: before the hook)
    handle = short_context.model.register_forward_hook(fail_on_fifth_forward)
    q: queue.Queue = queue.Queue()
    wk = w.Worker(q.put, save_dir=tmp_path, backend=backend).start()
    try:
        wk.submit(w.Generate("def f(x):", GenerationSettings(SamplingParams(max_new_tokens=10), k=4)))
        events = []
        while not events or not isinstance(events[-1], Failed):
            events.append(q.get(timeout=60))
    finally:
        handle.remove()
        wk.shutdown()
    fin = next(e for e in events if isinstance(e, Finished))
    assert fin.status == "error" and fin.new_tokens == 4
    assert "simulated device failure" in events[-1].message
    saved = load_run(tmp_path / f"{fin.run_id}.tokentui")
    assert saved.branches[0].status == "error" and len(saved.branches[0].steps) == 4


def test_autosave_is_a_subscriber_that_saves_while_tokens_arrive(loaded, tmp_path):
    s = HFBackend(loaded("gpt2"))
    job = jobs.Generate(s, "import os", GenerationSettings(SamplingParams(max_new_tokens=6), k=4))
    path = tmp_path / "r.tokentui"
    on_disk = []

    def check_file(job, ev):
        if isinstance(ev, StepEvent):  # autosave ran before this subscriber saw the step
            on_disk.append(len(load_run(path).branches[0].steps))

    jobs.drive(job, jobs.Autosave(lambda run: save_run(run, path), seconds=0), check_file)
    assert on_disk == [1, 2, 3, 4, 5, 6]
    assert load_run(path).branches[0].status == "length"


def test_a_periodic_save_that_fails_does_not_end_the_generation_and_a_final_one_says_so(loaded, tmp_path):
    """A full disk (ENOSPC from the writer) during the periodic saves: the generation goes on and
    the final save writes the whole run (a trial's lost all of it at the first failure); when the
    final save fails too, the error says the run was not saved, and where."""
    import errno

    s = HFBackend(loaded("gpt2"))
    path = tmp_path / "r.tokentui"
    full = {"disk": True}

    def save(run):
        if full["disk"]:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".r.tokentui.1.tmp"))
        return save_run(run, path)

    def free_space_before_the_end(job, ev):
        if isinstance(ev, StepEvent) and len(job.run.branches[0].steps) == 5:
            full["disk"] = False  # (the last step's Finished saves)

    job = jobs.Generate(s, "import os", GenerationSettings(SamplingParams(max_new_tokens=6), k=4))
    warned: list[str] = []
    autosave = jobs.Autosave(save, seconds=0, warn=warned.append)
    jobs.drive(job, free_space_before_the_end, autosave)
    saved = load_run(path).branches[0]
    assert saved.status == "length" and len(saved.steps) == 6
    # the periodic saves that failed (steps 1-4) were said once, while the job ran
    assert warned == [f"autosave failed: No space left on device (in {tmp_path}); the run is kept in memory, "
                      "saving is retried"]  # fmt: skip
    full["disk"] = True
    job = jobs.Generate(s, "import os", GenerationSettings(SamplingParams(max_new_tokens=3), k=4))
    with pytest.raises(
        EngineError, match=re.escape(f"the run could not be saved: No space left on device (in {tmp_path})")
    ):
        jobs.drive(job, jobs.Autosave(save, seconds=0))


def test_the_worker_says_a_failing_autosave_while_the_generation_goes_on(loaded, tmp_path):
    """The explorer's worker: a cache folder that cannot be written (here under a file) fails every
    periodic save; the first failure is sent at once (SaveFailed, once), the tokens keep coming, and
    the final save's failure ends the job naming the folder."""
    from tokentui.engine.events import SaveFailed

    (tmp_path / "file").write_text("")
    q: queue.Queue = queue.Queue()
    wk = w.Worker(q.put, save_dir=tmp_path / "file" / "runs", backend=HFBackend(loaded("gpt2")), autosave_seconds=0)
    wk.start()
    try:
        wk.submit(w.Generate("import os", GenerationSettings(SamplingParams(max_new_tokens=5), k=4)))
        events = []
        while not events or not isinstance(events[-1], Failed):
            events.append(q.get(timeout=60))
    finally:
        wk.shutdown()
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("SaveFailed") == 1 and kinds.index("SaveFailed") < kinds.index("Finished")
    assert kinds.count("StepEvent") == 5
    [warning] = [e.message for e in events if isinstance(e, SaveFailed)]
    assert warning.startswith("autosave failed: Not a directory") and str(tmp_path / "file") in warning
    assert events[-1].message.startswith("the run could not be saved: Not a directory")


def test_fork_and_score_jobs_tokenize_text_once_and_refuse_empty_input(loaded):
    s = HFBackend(loaded("gpt2"))
    run, _ = generate_run(s, "import os", SamplingParams(max_new_tokens=4), k=4)
    job = jobs.Fork(s, run, 0, run.length(0) - 1, SamplingParams(max_new_tokens=2), text=" sys")
    list(job)
    want = s.encode_text(" sys")
    assert run.sequence(1)[run.length(0) - 1 :][: len(want)].tolist() == want and run.branches[1].n_forced == len(want)
    with pytest.raises(EngineError, match="at least one token"):
        list(jobs.Fork(s, run, 0, 2, SamplingParams(), text=""))
    with pytest.raises(EngineError, match="the text is empty"):
        list(jobs.Score(s, "  "))
    # a text that is not UTF-8 (typed into the explorer's branch prompt, from a file a caller read
    # with surrogateescape): one line, not the tokenizer's TypeError
    bad = "a\udcffb"
    with pytest.raises(RunError, match="the text holds the byte 0xff at character 2"):
        list(jobs.Fork(s, run, 0, 2, SamplingParams(), text=bad))
    with pytest.raises(RunError, match="the prompt holds the byte 0xff"):
        s.encode_prompt(bad)


def test_capabilities_say_what_is_missing_in_one_line():
    hf = HFBackend.capabilities
    assert all(hf.why_not(f) is None for f in ("generate", "lens", "kv_fork", "gradients", "hooks", "attention"))
    less = hf.without("generate", "m: tokentui cannot generate with it").without("lens", "no logit lens: why")
    assert less.why_not("generate") == "m: tokentui cannot generate with it"  # (each reason kept: not the last)
    assert less.why_not("lens") == "no logit lens: why" and less.why_not("hooks") is None
    remote = Capabilities(full_distribution=False)
    assert remote.why_not("lens", "the server") == "the server does not provide hidden states for the logit lens"
    with pytest.raises(KeyError):
        remote.why_not("telepathy")


def test_a_bad_lens_chunk_is_refused_before_loading(tmp_path):
    with pytest.raises(EngineError, match="lens chunk must be ≥ 0"):
        HFBackend.load(ModelSpec(str(tmp_path / "nothing-here"), lens_chunk=-1))


def test_the_worker_saves_what_it_grows(loaded, model_dirs, tmp_path):
    q: queue.Queue = queue.Queue()
    wk = w.Worker(q.put, save_dir=tmp_path).start()
    try:
        wk.submit(w.Load(ModelSpec(str(model_dirs["llama"]), lens_chunk=0)))
        wk.submit(w.Score("import os\nimport sys\n", k=3))
        events = []
        while not any(isinstance(e, Saved) for e in events):
            events.append(q.get(timeout=60))
            assert not isinstance(events[-1], Failed), events[-1]
    finally:
        wk.shutdown()
    saved = next(e for e in events if isinstance(e, Saved))
    assert load_run(saved.path).branches[0].status == "scored"


def test_resample_samples_the_token_at_a_position_afresh(loaded):
    """A greedy run's token is resampled at temperature 1 with a new seed: new branches fork at
    the position, are sampled (their first step has a sampler probability), and differ."""
    s = HFBackend(loaded("gpt2"))
    run, _ = generate_run(s, "import os", SamplingParams(max_new_tokens=6), k=4)
    pos = run.length(0) - 3
    firsts = set()
    for _ in range(6):
        list(jobs.Resample(s, run, 0, pos, SamplingParams(max_new_tokens=2)))
        b = run.branches[-1]
        first = b.step(0)
        assert b.fork_position == pos and b.n_forced == 0 and first.kind == "generated"
        assert first.sampler_logprob == pytest.approx(first.logprob, abs=1e-5)  # temperature 1, no filter
        firsts.add(first.token_id)
        assert b.sampling["temperature"] == 1.0 and b.sampling["max_new_tokens"] == 2  # what grew it
    assert len(firsts) > 1  # random-init model: its distribution is flat enough to differ
    run.validate()


def test_resampling_where_a_branch_begins_grows_a_sibling_of_it(loaded):
    """`r` on the token where #1 left #0 (where `d` leaves the cursor): the new branch hung from #1
    though it shares none of #1's tokens. It hangs from #0, its events say so, and a mirror of
    the run built from the events (the explorer's) has the same tree."""
    from tokentui.engine.events import BranchStarted, apply_event

    s = HFBackend(loaded("gpt2"))
    run, _ = generate_run(s, "import os", SamplingParams(max_new_tokens=6), k=4)
    pos = run.length(0) - 3
    list(jobs.Fork(s, run, 0, pos, SamplingParams(max_new_tokens=2), token_ids=[7]))
    mirror = run.copy()
    events = list(jobs.Resample(s, run, 1, pos, SamplingParams(max_new_tokens=2)))
    new = run.branches[-1]
    assert new.parent == 0 and new.fork_position == pos and new.id == 2
    assert [e.parent for e in events if isinstance(e, BranchStarted)] == [0]
    assert run.sequence(2)[:pos].tolist() == run.sequence(0)[:pos].tolist()
    for e in events:
        apply_event(mirror, e)
    assert [(b.parent, b.fork_position) for b in mirror.branches] == [(b.parent, b.fork_position) for b in run.branches]
    run.validate()


def test_run_metadata_names_the_model_and_tokenizer_without_local_paths(loaded, model_dirs, tmp_path):
    lm = loaded("qwen2")
    run, _ = generate_run(HFBackend(lm), "import os", SamplingParams(max_new_tokens=2), k=3)
    folder = model_dirs["qwen2"]
    assert run.meta.model == folder.name
    assert run.meta.tokenizer.split()[1].startswith("sha256:")
    saved = (save_run(run, tmp_path / "r.tokentui")).read_bytes()
    assert str(folder).encode() not in saved and str(folder.parent).encode() not in saved


def test_a_run_with_a_path_for_an_id_is_never_saved_outside_the_cache(loaded, tmp_path):
    """The worker grows an adopted run whose id is a path (as a hostile file would carry, had the
    loader let it through): the branch is made, the save is refused in one line, nothing is written
    outside the cache."""
    cache = tmp_path / "cache" / "runs"
    backend = HFBackend(loaded("gpt2"))
    run, _ = generate_run(backend, "def f(x):", SamplingParams(max_new_tokens=3), k=4)
    run.meta.run_id = "../../escaped"
    q: queue.Queue = queue.Queue()
    wk = w.Worker(q.put, save_dir=cache, backend=backend).start()
    try:
        wk.submit(w.Adopt(run))
        wk.submit(w.Fork(0, 5, [1], sampling=SamplingParams(max_new_tokens=2)))
        events = []
        while not events or not isinstance(events[-1], Failed):
            events.append(q.get(timeout=60))
    finally:
        wk.shutdown()
    assert any(isinstance(e, Finished) for e in events)  # the branch itself was grown
    assert "not a valid run id" in events[-1].message and "\n" not in events[-1].message
    assert not list(tmp_path.rglob("*.tokentui"))  # nothing written, inside or out


def test_a_job_refuses_a_run_another_model_made_and_leaves_it_as_it_was(loaded):
    """A trial opened smollm2's run in an explorer on the demo model and pressed c: the failure
    ("index out of range") was saved into the run, as an error branch of 0 tokens."""
    made = HFBackend(loaded("qwen2"), lens_chunk=0)
    run, _ = generate_run(made, "def f(x):", SamplingParams(max_new_tokens=3), k=4)
    before = (len(run.branches), [b.status for b in run.branches], run.total_steps(), len(run.attributions))
    other = HFBackend(loaded("gpt2"), lens_chunk=0)
    params = SamplingParams(max_new_tokens=2)
    from tokentui.core.params import TreeParams

    for job in (
        jobs.Continue(other, run, 0, params),
        jobs.Fork(other, run, 0, len(run.prompt), params, token_ids=[5]),
        jobs.Resample(other, run, 0, len(run.prompt), params),
        jobs.TreeSearch(other, TreeParams(max_nodes=2), run=run),
        jobs.Attribute(other, run, 0, [len(run.prompt)]),
    ):
        with pytest.raises(EngineError, match=r"^the run was made by qwen2\S* and gpt2\S* is loaded: a run grows"):
            list(job)
    assert (len(run.branches), [b.status for b in run.branches], run.total_steps(), len(run.attributions)) == before
    made.check_run(run)  # its own model grows it
    list(jobs.Continue(made, run, 0, params))
    assert run.total_steps() > before[2]


def test_a_run_whose_ids_are_other_text_here_is_refused(loaded):
    """Two model folders of one name (the run keeps a folder's name only): the run's token table
    says which text each id was, and this tokenizer must agree."""
    backend = HFBackend(loaded("gpt2"), lens_chunk=0)
    run, _ = generate_run(backend, "def f(x):", SamplingParams(max_new_tokens=2), k=4)
    backend.check_run(run)
    some = int(run.tokens.ids()[3])
    run.tokens.add(some, b"\x1b[31mnot this")
    with pytest.raises(
        EngineError, match=rf"^the run was made with another tokenizer: id {some} is ␛\[31mnot␠this there"
    ):
        list(jobs.Continue(backend, run, 0, SamplingParams(max_new_tokens=2)))
