"""The `tokentui` command line (Typer): one module per command group, shared options in
`options`, output and errors in `output`. Importing it loads Typer but never torch,
transformers or textual: `runs`, `export` and `--help` start fast and work without them."""

from tokentui.cli.app import app, main
from tokentui.cli.explore import DEMO_PROMPT
from tokentui.cli.output import load_ref

__all__ = ["DEMO_PROMPT", "app", "load_ref", "main"]
