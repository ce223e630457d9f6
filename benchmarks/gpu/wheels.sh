#!/usr/bin/env bash
# Fetch, here (where pip reaches the package index), the wheels that the device machine lacks for
# check.sh, into .whl/ at the repository's root (.gitignore names it). The device's image has torch,
# Triton, numpy, huggingface_hub, tokenizers and safetensors but not textual, plotext,
# platformdirs or gguf, and an older transformers and typer: these travel as wheels, pinned to the
# versions of the environment that runs this script (the one the CPU figures were measured with).
#
#     . .venv/bin/activate && bash benchmarks/gpu/wheels.sh    # then see check.sh for the device command
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .whl && mkdir .whl
names=(transformers typer pydantic pydantic-core annotated-types typing-inspection rich textual
       mdit-py-plugins linkify-it-py plotext platformdirs gguf)
pins=$(python3 - "${names[@]}" <<'PY'
import sys
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in sys.argv[1:]))
PY
)
# the device's Python is 3.12 (KINDS.md); binary wheels (pydantic-core) must be built for it
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl $pins
ls .whl
du -sh .whl
