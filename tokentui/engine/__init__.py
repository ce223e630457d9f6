"""The model side: loading, instrumented decoding, scoring, logit lens, branching, the worker.

Importing this package is cheap; torch and transformers are imported by the modules that need
them (`loading`, `session`, …), so `tokentui.engine.events` and `tokentui.engine.worker` can be
imported by the TUI without pulling torch in on the replay path.
"""
