"""The Textual explorer (see the TUI issue). Talks to the model only through the engine's worker."""
