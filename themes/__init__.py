"""Colour themes (TOML), shipped inside the package as tokentui.themes."""
