"""Run files, the run cache and exports. numpy and the standard library only (no torch, no textual)."""

from tokentui.store.runfile import SCHEMA_VERSION, RunFileError, load_run, read_header, save_run

__all__ = ["SCHEMA_VERSION", "RunFileError", "load_run", "read_header", "save_run"]
