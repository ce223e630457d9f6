"""`compare`: two models, token by token, on the same token ids (issue 13; seed 003 done right).

The command checks what it can before any weights load (two models, k, the devices and dtypes,
the text or the saved run — a run's branch of one token —, k against both configurations), loads
model A, refuses a text that A's tokenizer makes one token before B loads, loads B
(`engine/hf/compare.load_pair`: one tokenizer required), compares, saves each comparison as a run
(mode "compare": model A's columns plus model B's and the divergences, `RunMeta.model_b`) and
prints a table and the per-text numbers, or with `--json` one object per scored position and a
summary object. `compare_items` is the one path from a list of texts to saved, printed runs: a
dataset's items go through it as one text does, each named by its line in the file, and the
dataset's overall numbers (seed 003's one number per dataset) follow the last."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokentui.cli.options import (
    CacheOpt,
    DeviceOpt,
    DtypeOpt,
    FileOpt,
    KOpt,
    PromptFieldOpt,
    RemoteOpt,
    ResponseFieldOpt,
    TextEscapesOpt,
    TextOpt,
)
from tokentui.cli.output import (
    Output,
    ProblemLines,
    ProgressLine,
    StopThenInterrupt,
    ctrl_c_not_lost,
    ctrl_c_sets,
    fail,
    interrupted,
    load_ref,
    printing_saved,
    progress,
    save_to_cache,
    usable_cache,
    user_errors,
    waiting_for_pipe,
)
from tokentui.core.display import counted, lone_token, sanitize
from tokentui.core.params import GenerationSettings

if TYPE_CHECKING:
    from tokentui.core.run import Run
    from tokentui.engine.hf.compare import Item, ModelPair

ModelsOpt = Annotated[
    list[str],
    typer.Option(
        "--model",
        "-m",
        metavar="<str>",  # (typer's default shows the Python type, <list[str]>)
        help="Give it twice: model A, then model B (Hub id, local folder, .gguf file, 'smollm2' or 'demo'). "
        "They must share one tokenizer.",
    ),
]


def compare(
    models: ModelsOpt,
    text: TextOpt = None,
    file: FileOpt = None,
    text_escapes: TextEscapesOpt = False,
    run_ref: Annotated[
        str | None,
        typer.Option("--run", help="Compare on the token ids of this saved run (id, unique part of one, or path)."),
    ] = None,
    branch: Annotated[
        int | None, typer.Option("--branch", "-b", help="With --run: the branch whose tokens to use (default 0).")
    ] = None,
    dataset: Annotated[
        Path | None,
        typer.Option(
            "--dataset",
            help="Compare on every item of this JSON Lines file: its prompt, then its response (the per-text "
            "numbers count the response's tokens, as seed 003 does). Bad lines are reported and skipped.",
        ),
    ] = None,
    prompt_field: PromptFieldOpt = "prompt",
    response_field: ResponseFieldOpt = "response",
    alternatives: KOpt = 20,
    chat: Annotated[
        bool,
        typer.Option(
            "--chat",
            help="Wrap the text in the tokenizer's chat template as the user's turn, the assistant's opened "
            "after it (--dataset: the prompt so, then the response as the assistant's answer).",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per scored position, then a summary object, instead.")
    ] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    trust_remote_code: RemoteOpt = False,
    cache_dir: CacheOpt = None,
) -> None:
    """Teacher-force one text under two models: log-prob and rank of each token under both, the
    exact KL both ways and Jensen–Shannon per position; mean loss, perplexity and mean KL per text."""
    try:
        from tokentui.core.display import decode_bytes
        from tokentui.engine.backend import ModelSpec, check_settings, check_spec

        if len(models) != 2:
            fail(f"give --model twice: model A, then model B (got {len(models)})")
        settings = GenerationSettings(k=alternatives)
        settings.check()
        specs = [ModelSpec(m, device, dtype, trust_remote_code, lens_chunk=0) for m in models]
        for spec in specs:
            check_spec(spec)
        source = None
        problems = ProblemLines()  # (a dataset's lines skipped, reading it and then tokenizing)
        given = sum(x is not None for x in (run_ref, dataset, text if text is not None else file))
        if given == 0:
            fail("give what to compare: one of --text, --file, --run or --dataset")
        if given > 1:
            fail("give only one of --text/--file, --run and --dataset")
        if branch is not None and run_ref is None:
            fail("--branch goes with --run")
        if dataset is None and (prompt_field, response_field) != ("prompt", "response"):
            fail("--prompt-field and --response-field go with --dataset")
        if dataset is not None:
            if text_escapes:
                fail("--text-escapes goes with --text or --file")
            rows = _dataset_rows(dataset, prompt_field, response_field, problems)
        elif run_ref is not None:
            if text_escapes:
                fail("--text-escapes goes with --text or --file")
            if chat:
                fail("--chat goes with --text or --file (a saved run's ids already hold any template)")
            source = load_ref(run_ref, cache_dir)
            branch = branch or 0
            ids = source.sequence(branch).tolist()
            if len(ids) < 2:
                fail(f"branch {branch} of run {sanitize(source.id)} is one token: there is no position to compare")
        else:
            from tokentui.cli.text_input import read_text

            value = read_text(text, file, text_escapes)
        for spec in specs:
            check_settings(spec, settings, progress)
        alone = None if dataset is not None or source is not None else (lambda p: p.check_item(p.item(value, chat)))
        usable_cache(cache_dir)
        pair = open_pair(specs[0], specs[1], alone, chat)
        lines: list[int] | None = None
        if dataset is not None:
            lines, items = _dataset_items(pair, rows, chat, dataset, problems)
        elif source is not None:
            items = [pair.item_from_ids(ids, decode_bytes(source.text(branch)), source.tokens.bytes_of)]
        else:
            items = [pair.item(value, chat)]
        compare_items(pair, items, alternatives, cache_dir, as_json, lines)
    except user_errors() as e:
        fail(str(e))
    except KeyboardInterrupt:
        interrupted("interrupted: nothing saved")


def _dataset_rows(
    path: Path, prompt_field: str, response_field: str, problems: ProblemLines
) -> list[tuple[int, str, str]]:
    """(line number, prompt, response) of the dataset's usable lines; every other line is
    reported once to `problems` (`core/dataset.py` reads the untrusted file)."""
    from tokentui.core.dataset import field_hint, read_dataset

    src = read_dataset(path, prompt_field, response_field, waiting=waiting_for_pipe)
    for problem in src.problems:
        problems(f"{path} line {problem.index}: skipped: {problem.why}")
    if not src.items:
        problems.close("lines skipped")
        fail(f"{sanitize(str(path))}: no usable items{sanitize(field_hint(src))}")
    return [(it.index, it.prompt, it.response or "") for it in src.items]


def _dataset_items(
    pair: ModelPair, rows: list[tuple[int, str, str]], chat: bool, path: Path, problems: ProblemLines
) -> tuple[list[int], list[Item]]:
    """Each row as an Item (prompt, then response), with its line number; a row that cannot be
    compared (no response tokens, a tokenization the two models do not share, longer than a
    context) is reported to `problems` and skipped, the others go on. Then the count of those
    not shown: compare keeps no manifest to list them in."""
    from tokentui.engine.errors import EngineError

    lines, items = [], []
    for index, prompt, response in rows:
        try:
            item = pair.item(prompt, chat, response)
            pair.check_item(item)
        except EngineError as e:
            problems(f"{path} line {index}: skipped: {e}")
            continue
        lines.append(index)
        items.append(item)
    problems.close("lines skipped")
    if not items:
        fail(f"{sanitize(str(path))}: no item could be compared")
    return lines, items


def open_pair(spec_a, spec_b, check_a: Callable[[ModelPair], None] | None = None, chat: bool = False) -> ModelPair:
    """Both models, loaded (progress on standard error); one tokenizer checked. `check_a`: what
    model A alone can refuse (the text's tokens), checked before B loads; `chat`: a model without
    a chat template is refused before its weights load."""
    from tokentui.engine.hf.compare import load_pair

    with ctrl_c_not_lost():
        return load_pair(spec_a, spec_b, progress, check_a=check_a, chat=chat)


def compare_items(
    pair: ModelPair,
    items: list[Item],
    k: int,
    cache_dir: Path | None,
    as_json: bool,
    lines: list[int] | None = None,
) -> list[Run]:
    """Compare every item, save each comparison run as it is made, then print them in order:
    `comparison_lines` (JSON) or a table and the per-text numbers. Progress on standard error.
    `lines`: a dataset's line numbers, one per item — each text then names its line (the runs do
    not record it, so the output is what ties a text back to the file), and the dataset's overall
    numbers follow the last text. Ctrl-C stops after the texts under way (twice: at once); the
    texts finished are printed as above, their numbers over them alone, and the command exits 130
    saying how many were saved."""
    out = Output()
    line = ProgressLine()
    names = f"{sanitize(pair.a.info.name)} and {sanitize(pair.spec_b.model if pair.b is None else pair.b.info.name)}"
    tokens = sum(len(it.ids) for it in items)
    what = f"{len(items)} texts ({tokens} tokens)" if len(items) > 1 else f"{tokens} tokens"
    line(f"… comparing {what} under {names}", final=len(items) == 1)
    saved: dict[str, Path] = {}
    finished: dict[int, Run] = {}
    cancel = StopThenInterrupt("tokentui: stopping after the texts under way (Ctrl-C again: now)")

    def done(i: int, run: Run) -> None:
        finished[i] = run  # (counted below only once its file is saved)
        saved[run.id] = save_to_cache(run, cache_dir)
        if len(items) > 1:
            line(f"… compared {len(saved)}/{len(items)} texts", final=len(saved) == len(items))

    try:
        with ctrl_c_sets(cancel):
            pair.compare(items, k, cancel, on_done=done)
    except KeyboardInterrupt:  # the second Ctrl-C: the texts finished and saved are kept
        _saved_when_cut(finished, saved, cache_dir)
    line.close()
    order = sorted(i for i, run in finished.items() if run.id in saved)
    runs = [finished[i] for i in order]
    numbers: list[int | None] = [None] * len(runs) if lines is None else [lines[i] for i in order]
    with printing_saved(
        f"{len(runs)} of {counted(len(items), 'text')} compared, each saved as a run (tokentui runs lists them)"
    ):
        _print(out, runs, numbers, saved, as_json, dataset=lines is not None)
    if len(runs) < len(items) or cancel.is_set():  # (stopped after the last text under way: still 130)
        interrupted(
            f"interrupted: {len(runs)} of {counted(len(items), 'text')} compared, each saved as a run"
            if runs
            else "interrupted: nothing saved"
        )
    return runs


def _saved_when_cut(finished: dict[int, Run], saved: dict[str, Path], cache_dir: Path | None) -> None:
    """A second Ctrl-C may land inside a save: a run whose file is in the cache, whole, counts as
    saved (the write is atomic: a file there is the run's)."""
    from tokentui.cli.output import runs_dir
    from tokentui.store.cache import run_path

    for run in finished.values():
        path = run_path(run.id, runs_dir(cache_dir))
        if run.id not in saved and path.is_file():
            saved[run.id] = path


def _print(
    out: Output, runs: list[Run], numbers: list[int | None], saved: dict[str, Path], as_json: bool, dataset: bool
) -> None:
    from tokentui.store.export import comparison_lines, comparison_summary, json_text

    for run, number in zip(runs, numbers, strict=True):
        if as_json:
            texts = list(comparison_lines(run))
            if number is not None:  # the dataset's line, beside the run id
                summary = comparison_summary(run)
                texts[-1] = json_text({"run_id": summary.pop("run_id"), "summary": True, "line": number, **summary})
            for text in texts:
                out.line(text)
        else:
            if number is not None:
                out.line(f"dataset line {number} · prompt: {_start(run.meta.prompt)}")
            out.line(table(run))
            out.line("")
            out.line(summary_text(run, number))
        where = f"run {sanitize(run.id)} saved to {sanitize(str(saved[run.id]))}"
        if as_json:
            typer.echo(where, err=True)
        else:
            out.line(where)
    if dataset and runs:
        overall = dataset_summary(runs)
        if as_json:
            out.line(json_text(overall))
        else:
            out.line("")
            out.line(overall_text(overall))
    out.flush()


def _start(text: str, width: int = 40) -> str:
    """The start of a text on one line: escaped, whitespace visible, cut with … past `width`."""
    from tokentui.core.display import lone_text

    shown = lone_text(text)
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def dataset_summary(runs: list[Run]) -> dict[str, Any]:
    """The object `compare --dataset --json` prints after the last text: `"summary": true,
    "dataset": true`, the models, and `core/comparison.overall_summary`'s numbers over every
    item's response tokens."""
    from tokentui.core.comparison import overall_summary

    meta = runs[0].meta
    return {
        "summary": True,
        "dataset": True,
        "model_a": meta.model,
        "model_b": (meta.model_b or {}).get("model"),
        **overall_summary(runs),
    }


def _top(run: Run, ids, logprobs) -> str:
    import math

    for i, lp in zip(ids, logprobs):
        if i >= 0:
            return f"{lone_token(run.tokens.bytes_of(int(i)))[:10]} {math.exp(float(lp)):.2f}"
    return ""


def table(run: Run) -> str:
    """Every scored position of a comparison run: the token, each model's log-prob and rank,
    Δ = logprob_b − logprob_a, KL both ways, JS, and each model's most likely token with its p.
    A dataset item's rows cover its prompt too: a rule marks where the response (what counts)
    starts."""
    from tokentui.core.comparison import first_counted

    head = (
        f"{'pos':>5}  {'token':<14} {'logp A':>8} {'logp B':>8} {'Δ B−A':>7} {'rank A':>6} {'rank B':>6} "
        f"{'KL(A‖B)':>8} {'KL(B‖A)':>8} {'JS':>7}  {'top A':<15} top B"
    )
    lines = [head]
    start = first_counted(run)
    response = len(run.branch(0).steps) > 0  # (a dataset item's, forced after its prompt: from position 1 on too)
    for pos in range(1, run.length(0)):
        if pos == start and response:
            lines.append(f"{'':>5}  ── the response from position {start} (only its tokens count) ──")
        st = run.step(0, pos)
        lp_a, lp_b = st.logprob, float(st.get("logprob_b"))
        lines.append(
            f"{pos:>5}  {lone_token(run.tokens.bytes_of(st.token_id))[:14]:<14} {lp_a:>8.3f} {lp_b:>8.3f} "
            f"{lp_b - lp_a:>+7.3f} {st.rank:>6} {int(st.get('rank_b', 0)):>6} {float(st.get('kl_ab')):>8.4f} "
            f"{float(st.get('kl_ba')):>8.4f} {float(st.get('js')):>7.4f}  "
            f"{_top(run, st.topk_ids, st.topk_logprobs):<15} {_top(run, st.get('topk_ids_b'), st.get('topk_logprobs_b'))}"
        )
    return "\n".join(lines)


def summary_text(run: Run, line: int | None = None) -> str:
    """The per-text numbers (`core/comparison.summarize`), with the models named (and a dataset
    item's line)."""
    from tokentui.core.comparison import run_summary

    s = run_summary(run)
    a, b = sanitize(run.meta.model), sanitize(str((run.meta.model_b or {}).get("model", "?")))
    what = counted(s["tokens"], "scored token")
    if len(run.branch(0).steps) > 0:  # a dataset item's response (it may start at position 1)
        first, last = s["first_position"], s["first_position"] + s["tokens"] - 1
        what += f" (the response, position {first})" if first == last else f" (the response, positions {first}–{last})"
    if line is not None:
        what += f" · dataset line {line}"
    return "\n".join([f"{what} · A = {a} · B = {b}", *_numbers_text(s, "the text's own tokens")])


def overall_text(s: dict[str, Any]) -> str:
    """`dataset_summary`'s numbers as text, after the last item's."""
    a, b = sanitize(str(s["model_a"])), sanitize(str(s["model_b"]))
    head = (
        f"the whole dataset: {counted(s['texts'], 'text')} · {counted(s['tokens'], 'response token')}, each weighing "
        "the same · "
        f"A = {a} · B = {b}"
    )
    seed = (
        f"seed 003's dataset number (calculate_KL.py: the mean over the texts of each text's mean, texts weighing "
        f"the same; it prints the absolute value): {s['item_mean_kl_estimate']:.4f} nats"
    )
    return "\n".join([head, *_numbers_text(s, "all the responses' tokens"), seed])


def _cell(x: float, digits: int) -> str:
    """A number in a column 12 wide, always a space before it (a perplexity of 66120190.411 filled
    its column and ran into the next: 66120190.41166120190.411)."""
    text = f"{x:.{digits}f}"
    return f" {text if len(text) <= 11 else f'{x:.5g}':>11}"


def _numbers_text(s: dict[str, Any], over: str) -> list[str]:
    return [
        f"{'':<18}{'A':>12}{'B':>12}",
        f"{'mean loss (nats)':<18}{_cell(s['mean_loss_a'], 4)}{_cell(s['mean_loss_b'], 4)}",
        f"{'perplexity':<18}{_cell(s['perplexity_a'], 3)}{_cell(s['perplexity_b'], 3)}",
        f"mean KL(A‖B) {s['mean_kl_ab']:.4f} nats · mean KL(B‖A) {s['mean_kl_ba']:.4f} nats · "
        f"mean JS {s['mean_js']:.4f} nats",
        f'seed 003\'s "KL" (mean of log p_A − log p_B over {over}): '
        f"{s['sample_kl_estimate']:.4f} nats; the exact mean KL(A‖B) is {s['mean_kl_ab']:.4f} "
        f"(the estimate is off by {s['sample_kl_error']:+.4f})",
    ]
