"""The Typer application: every command registered in one place, each defined in its group's
module (generate/score, tree, runs, export, explore/replay). A new command group is a new module plus
its lines here."""

from __future__ import annotations

import typer

from tokentui.cli import attribute, batch, compare, explore, export, generate, runs, stats, tree

app = typer.Typer(
    name="tokentui",
    help="Watch, question and branch a causal language model's writing, token by token.",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

app.callback(invoke_without_command=True)(explore.default)
app.command()(generate.generate)
app.command()(generate.score)
app.command()(tree.tree)
app.command()(attribute.attribute)
app.command()(compare.compare)
app.add_typer(runs.runs_app, name="runs")
app.command()(export.export)
app.command()(stats.stats)
app.command()(explore.explore)
app.command()(explore.replay)
app.command()(batch.batch)


def main() -> None:
    app()
