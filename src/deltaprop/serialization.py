"""Parameters on disk as safetensors: plain arrays and a JSON header, nothing executable.

Layout: tensors "layer_{l}/W" and "layer_{l}/b" for l = 2..L, metadata {"sizes": "[...]"}.
A file that is not safetensors (a pickle, say) is refused, never unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from deltaprop.network import Params, layer_sizes


class UnsafeFileError(ValueError):
    """A parameter file that is not in a format we load without executing anything."""


def save_params(params: Params, path: Path) -> Path:
    from safetensors.numpy import save_file

    path = Path(path)
    tensors = {}
    for index, layer in enumerate(params):
        for leaf in ("W", "b"):
            tensors[f"layer_{index + 2}/{leaf}"] = np.ascontiguousarray(
                np.asarray(jax.device_get(layer[leaf]))
            )
    save_file(tensors, str(path), metadata={"sizes": json.dumps(list(layer_sizes(params)))})
    return path


def load_params(path: Path) -> Params:
    """Read parameters saved by `save_params`; raise UnsafeFileError for anything else."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UnsafeFileError(
            f"{path} is not a safetensors file ({error}); refusing to load it "
            "(pickles and other executable formats are never loaded)"
        ) from None
    n_layers = len(tensors) // 2
    try:
        return [
            {"W": tensors[f"layer_{l}/W"], "b": tensors[f"layer_{l}/b"]}
            for l in range(2, n_layers + 2)
        ]
    except KeyError as missing:
        raise UnsafeFileError(f"{path}: missing tensor {missing}; not a deltaprop file") from None
