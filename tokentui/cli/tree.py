"""`tree`: seed 002's threshold tree search, headless. Grows a tree from a prompt (a new run) or
from a position of a saved run's branch, shows progress on standard error, saves the run and
prints the tree (text, or seed 002's tree JSON with `--json`).

Everything that can be refused without the model is refused first: the search's parameters,
--alternatives, the prompt, the run, its branch and the position. Ctrl-C stops the search between
two nodes; the tree grown so far is saved (exit code 130)."""

from __future__ import annotations

from typing import Annotated

import typer

from tokentui.cli.options import (
    CacheOpt,
    ChatOpt,
    DeviceOpt,
    DtypeOpt,
    KOpt,
    LensPrecisionOpt,
    RemoteOpt,
    tree_options,
)
from tokentui.cli.output import (
    Output,
    ProgressLine,
    autosave,
    ctrl_c_sets,
    fail,
    interrupted,
    load_ref,
    printing_saved,
    save_to_cache,
    usable_cache,
    user_errors,
)
from tokentui.core.display import counted, sanitize
from tokentui.core.params import GenerationSettings, RunError, TreeParams, check_text


@tree_options
def tree(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Hub id, local model folder, a .gguf file, 'smollm2' or 'demo' (default: demo; with --run, its model).",
        ),
    ] = None,
    prompt: Annotated[
        str | None, typer.Option("--prompt", "-p", help="Grow a tree from this prompt (a new run).")
    ] = None,
    run_ref: Annotated[
        str | None, typer.Option("--run", help="… or in this saved run (id, unique part of one, or path).")
    ] = None,
    branch: Annotated[
        int | None, typer.Option("--branch", "-b", help="With --run: the branch to grow from (0).")
    ] = None,
    position: Annotated[
        int | None, typer.Option("--position", help="With --run: grow from this position of the branch (its end).")
    ] = None,
    force: Annotated[
        str,
        typer.Option(
            "--force",
            help="With --prompt: guided generation (seed 002), the answer starts with this text and the tree "
            "grows from its end.",
        ),
    ] = "",
    params: TreeParams | None = None,  # the search's options (see options.TREE_OPTIONS)
    alternatives: KOpt = 20,
    chat: ChatOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tree as seed 002's tree JSON instead.")] = False,
    lens_chunk: Annotated[
        int, typer.Option("--lens-chunk", help="0 turns the logit lens off (any other value: every node).")
    ] = 1,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    trust_remote_code: RemoteOpt = False,
    lens_precision: LensPrecisionOpt = "auto",
    cache_dir: CacheOpt = None,
) -> None:
    """Grow a token tree with seed 002's threshold search; save the run and print the tree."""
    assert params is not None  # @tree_options passes it
    try:
        from tokentui.engine.backend import ModelSpec

        params.check()
        settings = GenerationSettings(k=alternatives, chat=chat, forced=force)
        settings.check()
        run = None
        if (prompt is None) == (run_ref is None):
            fail("give either --prompt or --run")
        if prompt is not None:
            if branch is not None or position is not None:
                fail("--branch and --position go with --run")
        elif force:
            fail("--force goes with --prompt (a saved run grows from a --position of its branch)")
        elif chat:  # (it changed nothing: a run's positions are its text as it was made, template or not)
            fail("--chat goes with --prompt (a saved run grows from its own text, with its template if it had one)")
        if prompt is not None:
            if not prompt.strip():
                fail("the prompt is empty")
            check_text(prompt, "the prompt")
        else:
            assert run_ref is not None
            run = load_ref(run_ref, cache_dir, grow=True)
            length = run.length(run.branch(branch or 0).id)
            if position is not None and not 1 <= position <= length:
                raise RunError(f"position {position} is out of range 1..{length} of branch {branch or 0}")
        name = model or (run.meta.model if run is not None else "demo")
        spec = ModelSpec(name, device, dtype, trust_remote_code, max(0, lens_chunk), lens_precision)
        if lens_chunk < 0:
            fail(f"--lens-chunk must be ≥ 0 (got {lens_chunk}; 0 turns the lens off)")
        from tokentui.cli.generate import open_for_run

        usable_cache(cache_dir)
        backend = open_for_run(spec, settings, run, model is not None)
        tree_job(backend, params, prompt, settings, run, branch or 0, position, cache_dir, as_json)
    except user_errors() as e:
        fail(str(e))
    except KeyboardInterrupt:  # before the search started (loading): nothing to save
        interrupted("interrupted before the tree was started: nothing saved")


def tree_job(
    backend, params: TreeParams, prompt, settings, run, branch: int, position, cache_dir, as_json: bool
) -> None:
    """Drive a TreeSearch job: progress on standard error, autosaves, then the saved run's id and
    the tree on standard output: the search's subtree, from its root, of the branches it made."""
    from tokentui.cli.render import tree_lines
    from tokentui.core import tree as ctree
    from tokentui.engine import jobs
    from tokentui.engine.events import Progress, TreeProgress
    from tokentui.store.export import tree_json_lines

    out = Output()
    job = jobs.TreeSearch(backend, params, prompt, settings, run, branch, position)
    line = ProgressLine()
    last: list[TreeProgress] = []

    def show(_job: jobs.Job, ev) -> None:
        if isinstance(ev, TreeProgress):
            last.append(ev)
            del last[:-1]
            line(
                f"… tree: {ev.nodes} nodes, {ev.open} open, {ev.completed} completed, threshold {ev.threshold:.3f}",
                final=ev.stopped != "running",
            )
        elif isinstance(ev, Progress) and ev.fraction is not None:  # the prompt's lens, before the search
            line(f"… {sanitize(ev.message)}", final=ev.fraction >= 1.0)
        elif isinstance(ev, Progress):
            line.close()
            typer.echo(f"… {sanitize(ev.message)}", err=True)

    try:
        with ctrl_c_sets(job.cancel):
            jobs.drive(job, autosave(cache_dir), show)
    except KeyboardInterrupt:  # only where Ctrl-C could not be redirected (not the main thread)
        job.cancel.set()
    grown = job.run
    if grown is not None and grown.branches and not ctree.searches(grown):  # stopped in the forced text
        save_to_cache(grown, cache_dir)  # (as the autosave did: said, not denied)
        interrupted(f"interrupted before the tree was started: run {grown.id} is saved with the forced text so far")
    if grown is None or not ctree.searches(grown) or not grown.branches:
        interrupted("interrupted before the tree was started: nothing saved")
    search = ctree.searches(grown)[-1]
    if search["stopped"] == "running":  # stopped by an exception mid-search: say so in the file
        index = len(ctree.searches(grown)) - 1
        ctree.end_search(grown, index, "cancelled", search["nodes"], search["completed"])
        ctree.claim_the_rest(grown, index)
        search = ctree.searches(grown)[-1]
    path = save_to_cache(grown, cache_dir)
    trie = ctree.build_trie(grown, search["root_branch"], search["root_position"], ctree.own_branches(search))
    with printing_saved(f"run {sanitize(grown.id)} is saved to {sanitize(str(path))}"):
        if as_json:
            for piece in tree_json_lines(grown, trie):
                out.write(piece)
        else:
            for text in tree_lines(grown, trie):
                out.line(text)
        out.flush()
    why = search["stopped"] if search["stopped"] != "running" else "cancelled"
    typer.echo(
        f"run {sanitize(grown.id)} ({search['nodes']} nodes, {search['completed']} completed paths, stopped: {why}) "
        f"saved to {sanitize(str(path))}",
        err=as_json,
    )
    if job.cancel.is_set():  # (as every command stopped by Ctrl-C ends: its own line)
        interrupted(f"interrupted: the tree of {counted(search['nodes'], 'node')} grown so far is saved")
