"""Where the bundled demo model lives (no torch import: the CLI checks it cheaply)."""

from pathlib import Path

DEMO_NAME = "demo"
DEMO_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "demo-model"
