"""Files of a run directory: parameters as safetensors, metrics as strict JSON, JSON lines and CSV.

JSON here is strict (RFC 8259): a NaN or infinite metric (an undefined AUC, say) is written as
null, never as the `NaN`/`Infinity` tokens other JSON readers reject.

Parameter layout: tensors "layer_{l}/W" (n_{l−1}, n_l) and "layer_{l}/b" (n_l,) for l = 2..L, metadata
{"sizes": "[n_1, ..., n_L]"} and, from a training run, what predicting on new data takes (each value
JSON text: safetensors metadata is str → str): "feature_names" ["x1", "x2"], "label_names"
["label"], "standardizer" {"mean": [...], "std": [...]} (io.data.preprocessing_metadata). A file that is not safetensors (a pickle, say) is refused, never
unpickled: torch.load's own docs warn never to unpickle data from an untrusted source.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from deltaprop.errors import InputError
from deltaprop.network import Params, layer_sizes

# Suffixes of formats that are (or may be) pickles: torch, joblib, numpy with allow_pickle.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib", ".npy", ".npz")
_TENSOR_NAME = re.compile(r"layer_(\d+)/(W|b)")


class UnsafeFileError(InputError):
    """A parameter file that is not in a format we load without executing anything."""


def looks_like_pickle(path: Path) -> bool:
    """A pickle suffix, or the pickle protocol ≥ 2 opcode PROTO (0x80) as the first byte."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as file:
            return file.read(1) == b"\x80"
    except OSError:
        return False


def save_params(params: Params, path: Path, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write params (list of {"W": (n_in, n_out), "b": (n_out,)}) as one safetensors file.

    Args:
      metadata: more metadata entries (not "sizes", which is the params' own), each value
        written as JSON text; `load_params_and_metadata` decodes them.
    """
    from safetensors.numpy import save_file

    metadata = dict(metadata or {})
    if "sizes" in metadata:
        raise ValueError("metadata key 'sizes' is reserved: it is read off the params")

    path = Path(path)
    tensors = {}
    for index, layer in enumerate(params):
        for leaf in ("W", "b"):
            tensors[f"layer_{index + 2}/{leaf}"] = np.ascontiguousarray(
                np.asarray(jax.device_get(layer[leaf]))
            )
    text = {key: json.dumps(value, allow_nan=False) for key, value in metadata.items()}
    save_file(tensors, str(path),
              metadata={"sizes": json.dumps(list(layer_sizes(params))), **text})
    return path


def load_params(path: Path) -> Params:
    """Read parameters saved by `save_params` as numpy arrays.

    Raises:
      FileNotFoundError: no such file.
      UnsafeFileError: not safetensors (pickles are refused, never unpickled), or not a
        consistent deltaprop parameter file (missing layers, shapes that do not chain).
    """
    return load_params_and_metadata(path)[0]


def load_params_and_metadata(path: Path) -> tuple[Params, dict[str, Any]]:
    """(params, metadata) of a file saved by `save_params`: the metadata's values decoded from
    JSON (a value that is not JSON, from another writer, stays the string it is).

    Raises:
      FileNotFoundError, UnsafeFileError: as `load_params`.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such parameter file")
    try:
        with safe_open(str(path), framework="numpy") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        kind = "looks like a pickle" if looks_like_pickle(path) else "is not a safetensors file"
        raise UnsafeFileError(
            f"{path} {kind} ({error}); refusing to load it: parameters are read from "
            "safetensors only, pickles are never unpickled"
        ) from None
    return _params_from_tensors(tensors, metadata, path), _decoded(metadata)


def _decoded(metadata: dict[str, str]) -> dict[str, Any]:
    decoded = {}
    for key, text in metadata.items():
        try:
            decoded[key] = json.loads(text)
        except ValueError:
            decoded[key] = text
    return decoded


def _params_from_tensors(
    tensors: dict[str, np.ndarray], metadata: dict[str, str], path: Path
) -> Params:
    unknown = sorted(name for name in tensors if not _TENSOR_NAME.fullmatch(name))
    if unknown or not tensors:
        raise UnsafeFileError(
            f"{path}: not a deltaprop parameter file (unexpected tensors: {unknown or 'none'})"
        )
    n_layers = max(int(_TENSOR_NAME.fullmatch(name).group(1)) for name in tensors) - 1
    params: Params = []
    for number in range(2, n_layers + 2):  # textbook layer numbers l = 2..L
        try:
            weights, biases = tensors[f"layer_{number}/W"], tensors[f"layer_{number}/b"]
        except KeyError as missing:
            raise UnsafeFileError(f"{path}: missing tensor {missing}") from None
        chains = (
            weights.ndim == 2
            and biases.shape == (weights.shape[1],)
            and (not params or params[-1]["W"].shape[1] == weights.shape[0])
        )
        if not chains:
            raise UnsafeFileError(
                f"{path}: layer {number} has W {weights.shape} and b {biases.shape}, which do "
                "not chain (W_l must be (n_(l-1), n_l) and b_l (n_l,))"
            )
        params.append({"W": weights, "b": biases})
    if "sizes" in metadata and json.loads(metadata["sizes"]) != list(layer_sizes(params)):
        raise UnsafeFileError(
            f"{path}: metadata sizes {metadata['sizes']} disagree with the tensors' "
            f"{list(layer_sizes(params))}"
        )
    return params


# ---------------------------------------------------------------- metrics


def strict_json_value(value: Any) -> Any:
    """`value` with every non-finite float (NaN, ±inf) replaced by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json_value(item) for item in value]
    return value


def to_json(value: Any, indent: int | None = None) -> str:
    """Strict JSON text of `value` (non-finite floats as null)."""
    return json.dumps(strict_json_value(value), indent=indent, allow_nan=False)


def write_json(path: Path, value: Any) -> Path:
    path = Path(path)
    path.write_text(to_json(value, indent=2))
    return path


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """One strict-JSON object per line."""
    path = Path(path)
    with open(path, "w") as file:
        file.writelines(to_json(row) + "\n" for row in rows)
    return path


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    """A header of `columns`, then one line per row (a missing or non-finite value: empty)."""
    path = Path(path)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns), restval="")
        writer.writeheader()
        writer.writerows(
            {key: ("" if value is None else value) for key, value in strict_json_value(row).items()}
            for row in rows
        )
    return path
