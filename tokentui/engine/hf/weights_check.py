"""Does a model folder's config.json fit its weights? Checked around `from_pretrained`.

transformers builds the model its configuration describes, fills what the checkpoint holds and
initialises the rest at random, saying so only in a log line (which tokentui keeps quiet). A
damaged checkpoint, or a config.json from another model, then loads without a word and writes
noise; a configuration of a billion layers builds modules for minutes while memory grows. For a
local folder with safetensors weights the block count is compared before they are read, from the
index or header (a few KB); for every model, the tensors it found no weights for, after.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

from tokentui.engine.errors import ModelLoadError
from tokentui.engine.hf.arch import config_layers

# a block's index in a tensor's name: transformer.h.3., model.layers.3., rwkv.blocks.3., …
_BLOCK = re.compile(r"\.(?:h|layers|layer|blocks|block)\.(\d+)\.")
_MAX_HEADER = 100 * 2**20  # the safetensors format's own limit on a header
_MAX_INDEX = 64 * 2**20


def _tensor_names(folder: Path) -> list[str]:
    """The tensor names of the weights `from_pretrained` reads from the folder — the shard index's,
    else model.safetensors' header (not any other *.safetensors: an adapter's covers some layers) —
    read from the index or the header only; [] when there are none or they cannot be read (loading
    says why). Regular files only: a FIFO in their place would block for good."""
    from tokentui.core.files import open_to_read

    try:
        index = folder / "model.safetensors.index.json"
        if index.exists():
            f, st = open_to_read(index)
            with f:
                if st.st_size > _MAX_INDEX:
                    return []
                weight_map = json.loads(f.read()).get("weight_map")
            return [str(k) for k in weight_map] if isinstance(weight_map, dict) else []
        f, _ = open_to_read(folder / "model.safetensors")
        with f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > _MAX_HEADER:
                return []
            header = json.loads(f.read(size))
        return [str(k) for k in header if k != "__metadata__"] if isinstance(header, dict) else []
    except (OSError, ValueError, struct.error, AttributeError, RecursionError):  # (a hostile index or header)
        return []


def blocks_in_weights(folder: Path) -> int | None:
    """How many blocks the folder's weights hold (the largest block index + 1), or None when its
    tensor names do not tell."""
    found = [int(m.group(1)) for name in _tensor_names(folder) if (m := _BLOCK.search(name))]
    return max(found) + 1 if found else None


def check_layers(spec: str, config: Any, folder: Path) -> None:
    """Refuse a configuration with more blocks than the folder's weights hold, before the model is
    built (its extra blocks would be random, or, by the billion, never finish building)."""
    wanted, held = config_layers(config), blocks_in_weights(folder)
    if wanted is not None and held is not None and wanted > held:
        raise ModelLoadError(
            f"{spec}: its config.json gives it {wanted:,} layers, but its weights hold {held:,}: "
            "a config.json from another model, or damaged weights"
        )


def check_loading_info(spec: str, info: dict[str, Any]) -> None:
    """Refuse a model some of whose tensors the checkpoint lacked, or held in another shape
    (transformers initialised them at random: loaded with `ignore_mismatched_sizes`, so that the
    tensor is named here — its own error pointed to a report that its quieted log never showed)."""
    mismatched = sorted((str(k), tuple(a), tuple(b)) for k, a, b in info.get("mismatched_keys") or ())
    if mismatched:
        name, held, wanted = mismatched[0]
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        raise ModelLoadError(
            f"{spec}: its weights do not fit its config.json: {name} is {list(held)} in the weights, "
            f"{list(wanted)} by the config{more}"
        )
    missing = sorted(str(k) for k in info.get("missing_keys") or ())
    if missing:
        shown = ", ".join(missing[:3]) + (", …" if len(missing) > 3 else "")
        raise ModelLoadError(
            f"{spec}: its weights lack {len(missing)} of the model's tensors ({shown}): damaged weights, "
            "or a config.json from another model (loaded, they would be random)"
        )
