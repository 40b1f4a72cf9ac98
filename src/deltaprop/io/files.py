"""Files of a run directory: parameters as safetensors, metrics as strict JSON, JSON lines and CSV.

Every file is written atomically (`write_bytes_atomic`): a temporary file in the same directory,
written, fsynced, then renamed over the target, so a full disk, a kill or a read-only mount
leaves the previous file or the new one, never a partial one. Files get mode 0o666 less the
user's umask, as open() gives them (0644 under umask 022, 0600 under 077). A write that fails
raises OutputError (an InputError: exit 2) naming the path and the cause, in one line.

JSON here is strict (RFC 8259): a NaN or infinite metric (an undefined AUC, say) is written as
null, never as the `NaN`/`Infinity` tokens other JSON readers reject.

Parameter layout: tensors "layer_{l}/W" (n_{l−1}, n_l) and "layer_{l}/b" (n_l,) for l = 2..L, all
of one floating dtype (float16, bfloat16, float32 or float64), metadata {"sizes": "[n_1, ...,
n_L]", "digest": "\"sha256:<hex>\""} and, from a training run, what predicting on new data takes
(each value JSON text: safetensors metadata is str → str): "feature_names" ["x1", "x2"],
"label_names" ["label"], "standardizer" {"mean": [...], "std": [...]}
(io.data.preprocessing_metadata). The digest (`params_digest`: sha256 over every tensor's name,
dtype, shape and bytes, in layer order) is verified on load, and only finite values are loaded.
A file that is not safetensors (a pickle, say) is refused, never unpickled: torch.load's own docs
warn never to unpickle data from an untrusted source.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import logging
import math
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from deltaprop.errors import InputError, OutputError
from deltaprop.network import Params, layer_sizes

__all__ = [
    "OutputError", "UnsafeFileError", "ensure_writable_directory", "load_params",
    "load_params_and_metadata", "looks_like_pickle", "params_digest", "save_params",
    "strict_json_value", "to_json", "write_bytes_atomic", "write_csv", "write_json",
    "write_jsonl", "write_text_atomic",
]

log = logging.getLogger(__name__)

# Suffixes of formats that are (or may be) pickles: torch, joblib, numpy with allow_pickle.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib", ".npy", ".npz")
_TENSOR_NAME = re.compile(r"layer_(\d+)/(W|b)")
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")  # what a parameter file may hold
RESERVED_METADATA = ("sizes", "digest")  # read off the params themselves
DIGEST_PREFIX = "sha256:"
# A hint beside the system's words where they do not say what to do.
_OUTPUT_HINTS = {
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "a directory of that name is in the way",
    errno.EEXIST: "a file of that name is in the way",
    errno.ENOENT: "its directory does not exist",
}


class UnsafeFileError(InputError):
    """A parameter file that is not in a format we load without executing anything, or not one
    we load faithfully (damaged, not floating point, not finite)."""


# ---------------------------------------------------------------- atomic writes


def output_error(path: Path, error: OSError, action: str = "write") -> OutputError:
    """One line: 'cannot write <path>: No space left on device (ENOSPC); ...'."""
    cause = error.strerror or str(error) or type(error).__name__
    code = errno.errorcode.get(error.errno or 0)
    hint = _OUTPUT_HINTS.get(error.errno or 0)
    detail = f"{cause} ({code}{': ' + hint if hint else ''})" if code else cause
    kept = "nothing there was changed" if action == "write" else "nothing was created"
    return OutputError(f"cannot {action} {path}: {detail}; {kept}")


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write `data` to `path` so that `path` holds its previous content or all of `data`, never
    a part: a temporary file beside it (mode 0o666 less the umask, as open() creates files) is
    written and fsynced, then renamed over `path` (os.replace: atomic on POSIX), and the
    directory fsynced so the rename survives a crash.

    Raises:
      OutputError: an OSError on the way (disk full, read-only file system, no permission, a
        directory in the way, a parent that is a file), naming `path` and the cause; the
        temporary is removed and `path` is as it was.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name[:200]}.{secrets.token_hex(4)}.tmp")
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        descriptor = os.open(temporary, flags, 0o666)  # the kernel applies the umask
    except OSError as error:
        raise output_error(path, error) from None
    try:
        try:
            _write_all(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException as error:  # a full disk, or Ctrl-C: no temporary left behind
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise output_error(path, error) from None
        raise
    _sync_directory(path.parent)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """`text` as UTF-8, atomically (see write_bytes_atomic)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]


def _sync_directory(directory: Path) -> None:
    """fsync a directory (its entries: a rename); file systems that cannot are let be."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def ensure_writable_directory(directory: Path) -> Path:
    """Create `directory` (and its parents) if needed, and check that a file can be created in
    it (a temporary, removed at once): what a run checks before any work.

    Raises:
      OutputError: naming the path and the cause (a file in the way, under a file, read-only,
        no permission, disk full).
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise output_error(directory, error, "create") from None
    write_bytes_atomic(directory / ".deltaprop-write-check", b"ok")
    with contextlib.suppress(OSError):
        os.unlink(directory / ".deltaprop-write-check")
    return directory


# ---------------------------------------------------------------- parameters


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


def _tensor_order(name: str) -> tuple:
    """layer_2/W, layer_2/b, layer_3/W, ..., by layer number (not "layer_10" < "layer_2");
    names of other writers after them, sorted."""
    match = _TENSOR_NAME.fullmatch(name)
    return (0, int(match.group(1)), match.group(2)) if match else (1, 0, name)


def params_digest(tensors: Mapping[str, np.ndarray]) -> str:
    """'sha256:<hex>' over every tensor in layer order: a line of JSON [name, dtype, shape,
    byte count], then its bytes (C order), so no two different sets of tensors hash alike."""
    digest = hashlib.sha256()
    for name in sorted(tensors, key=_tensor_order):
        array = np.ascontiguousarray(tensors[name])
        header = [name, array.dtype.name, list(array.shape), array.nbytes]
        digest.update(json.dumps(header).encode() + b"\n")
        digest.update(array.tobytes())
    return DIGEST_PREFIX + digest.hexdigest()


def save_params(params: Params, path: Path, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write params (list of {"W": (n_in, n_out), "b": (n_out,)}) as one safetensors file,
    atomically, with their sizes and digest (see the module docstring).

    Args:
      metadata: more metadata entries (not "sizes" or "digest", which are the params' own),
        each value written as JSON text; `load_params_and_metadata` decodes them.

    Raises:
      OutputError: the file cannot be written (the previous one, if any, is left as it was).
    """
    from safetensors.numpy import save

    metadata = dict(metadata or {})
    reserved = [key for key in RESERVED_METADATA if key in metadata]
    if reserved:
        raise ValueError(f"metadata key {reserved[0]!r} is reserved: it is read off the params")

    tensors = {}
    for index, layer in enumerate(params):
        for leaf in ("W", "b"):
            tensors[f"layer_{index + 2}/{leaf}"] = np.ascontiguousarray(
                np.asarray(jax.device_get(layer[leaf]))
            )
    text = {key: json.dumps(value, allow_nan=False) for key, value in metadata.items()}
    own = {"sizes": json.dumps(list(layer_sizes(params))),
           "digest": json.dumps(params_digest(tensors))}
    return write_bytes_atomic(Path(path), save(tensors, metadata={**own, **text}))


def load_params(path: Path) -> Params:
    """Read parameters saved by `save_params` as numpy arrays.

    Raises:
      FileNotFoundError: no such file.
      UnsafeFileError: not safetensors (pickles are refused, never unpickled), or not a
        deltaprop parameter file loaded faithfully: missing layers, shapes that do not chain,
        tensors that are not floating point, a digest that does not match, values that are
        not finite.
    """
    return load_params_and_metadata(path)[0]


def load_params_and_metadata(path: Path) -> tuple[Params, dict[str, Any]]:
    """(params, metadata) of a file saved by `save_params`: the metadata's values decoded from
    JSON (a value that is not JSON, from another writer, stays the string it is); the digest,
    once verified, is not among them. A file without a digest (saved before deltaprop wrote
    one) is loaded with a one-line note.

    Raises:
      FileNotFoundError, UnsafeFileError: as `load_params`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such parameter file")
    tensors, metadata = _read_safetensors(path)
    params = _params_from_tensors(tensors, metadata, path)
    if "digest" not in metadata:
        log.info(f"note: {path} carries no digest of its tensors (saved before deltaprop wrote "
                 "one): loaded unverified")
    return params, {key: value for key, value in metadata.items() if key != "digest"}


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
    except (SafetensorError, ValueError, KeyError, TypeError) as error:
        kind = "looks like a pickle" if looks_like_pickle(path) else "is not a safetensors file"
        raise UnsafeFileError(
            f"{path} {kind} ({error}); refusing to load it: parameters are read from "
            "safetensors only, pickles are never unpickled"
        ) from None
    except OSError as error:
        raise UnsafeFileError(f"{path} cannot be read: {error.strerror or error}") from None
    return tensors, _decoded(metadata)


def _decoded(metadata: dict[str, str]) -> dict[str, Any]:
    decoded = {}
    for key, text in metadata.items():
        try:
            decoded[key] = json.loads(text)
        except ValueError:
            decoded[key] = text
    return decoded


def _params_from_tensors(
    tensors: dict[str, np.ndarray], metadata: dict[str, Any], path: Path
) -> Params:
    """The layers, after checking names, the digest, dtypes, shapes, sizes and finiteness."""
    unknown = sorted(name for name in tensors if not _TENSOR_NAME.fullmatch(name))
    if unknown or not tensors:
        raise UnsafeFileError(
            f"{path}: not a deltaprop parameter file (unexpected tensors: {unknown or 'none'})"
        )
    _check_digest(tensors, metadata.get("digest"), path)
    _check_dtypes(tensors, path)
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
    if "sizes" in metadata and metadata["sizes"] != list(layer_sizes(params)):
        raise UnsafeFileError(
            f"{path}: metadata sizes {metadata['sizes']} disagree with the tensors' "
            f"{list(layer_sizes(params))}"
        )
    _check_finite(params, path)
    return params


def _check_digest(tensors: dict[str, np.ndarray], saved: Any, path: Path) -> None:
    if saved is None:
        return
    if not (isinstance(saved, str) and saved.startswith(DIGEST_PREFIX)):
        raise UnsafeFileError(f"{path}: its digest {str(saved)[:80]!r} is not "
                              f"'{DIGEST_PREFIX}<hex>'; refusing to load it")
    if params_digest(tensors) != saved:
        raise UnsafeFileError(
            f"{path}: its tensors do not match the sha256 digest saved with them (the file "
            "was changed or damaged after it was written); refusing to load it"
        )


def _check_dtypes(tensors: dict[str, np.ndarray], path: Path) -> None:
    """Floating point only, one dtype for all (as save_params writes them)."""
    for name in sorted(tensors, key=_tensor_order):
        if tensors[name].dtype.name not in FLOAT_DTYPES:
            raise UnsafeFileError(
                f"{path}: {_layer_leaf(name)} has dtype {tensors[name].dtype.name}; parameters "
                f"must be floating point ({', '.join(FLOAT_DTYPES)})"
            )
    dtypes = sorted({array.dtype.name for array in tensors.values()})
    if len(dtypes) > 1:
        raise UnsafeFileError(f"{path}: its tensors mix dtypes ({', '.join(dtypes)}); the "
                              "parameters of one network share one dtype")


def _check_finite(params: Params, path: Path) -> None:
    """Refuse NaN and ±inf, naming every layer and leaf that holds them."""
    bad = []
    for number, layer in enumerate(params, start=2):
        for leaf in ("W", "b"):
            values = np.asarray(layer[leaf], np.float64)
            count = int(np.count_nonzero(~np.isfinite(values)))
            if count:
                bad.append(f"layer {number} {leaf} ({count} of {values.size})")
    if bad:
        raise UnsafeFileError(
            f"{path}: non-finite parameters (NaN or ±inf) in {', '.join(bad)}: a diverged "
            "model cannot be applied; refusing to load it"
        )


def _layer_leaf(name: str) -> str:
    """'layer_3/W' -> 'layer 3 W'."""
    match = _TENSOR_NAME.fullmatch(name)
    return f"layer {match.group(1)} {match.group(2)}" if match else repr(name)


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
    """Strict JSON (indented), atomically; OutputError when it cannot be written."""
    return write_text_atomic(path, to_json(value, indent=2))


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """One strict-JSON object per line, atomically."""
    return write_text_atomic(path, "".join(to_json(row) + "\n" for row in rows))


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    """A header of `columns`, then one line per row (a missing or non-finite value: empty),
    atomically."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="")
    writer.writeheader()
    writer.writerows(
        {key: ("" if value is None else value) for key, value in strict_json_value(row).items()}
        for row in rows
    )
    return write_text_atomic(path, buffer.getvalue())
