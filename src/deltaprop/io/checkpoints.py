"""Checkpoints with orbax: the whole training state, saved atomically, restored exactly.

One checkpoint is one orbax step directory `<run_dir>/checkpoints/<epoch>/` with three items:
    state     every member's params, optimizer state, PRNG key data; the epoch
              (StandardSave: TensorStore/OCDBT)
    progress  per member: metrics history, best validation loss, W&B run id, divergence (JSON)
    meta      layer sizes, dataset, feature names, optimizer, precision, the members (seeds,
              learning rates) and the engine (JSON), checked on resume

orbax writes each step into `<epoch>.orbax-checkpoint-tmp-*` and renames it when complete, so a
kill during a save leaves the earlier steps loadable; only steps orbax reports as finalized are
restored, and nothing is deleted but orbax's own temporaries (through orbax) and the steps its
retention drops. A step that cannot be restored is renamed aside, never deleted. Nothing here unpickles: the arrays are TensorStore, the rest
JSON. The data order needs no state of its own: each epoch's shuffle is split off the restored
PRNG key. orbax is imported on first use, so a run that fails its input checks exits quickly.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from deltaprop.errors import InputError
from deltaprop.io.files import looks_like_pickle
from deltaprop.training import TrainState

if TYPE_CHECKING:
    import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"
COMMIT_MARKER = "commit_success.txt"  # orbax writes it last, before the atomic rename
TMP_MARKER = ".orbax-checkpoint-tmp"
FORMAT = "deltaprop-checkpoint/2"  # 2: a population of members
_ITEMS = ("state", "progress", "meta")

log = logging.getLogger(__name__)


class CheckpointError(InputError):
    """A checkpoint that cannot be used: missing, incomplete, unsafe, or from another setup."""


class CheckpointMismatch(CheckpointError):
    """A readable checkpoint of another run: other shapes or settings (every step of that run
    would say the same, so no older step is tried)."""


@dataclass(frozen=True)
class CheckpointRef:
    """One complete checkpoint: the orbax root directory and the step (= epochs completed)."""

    root: Path
    step: int

    @property
    def path(self) -> Path:
        return self.root / str(self.step)


def run_metadata(
    sizes: Sequence[int],
    dataset: str,
    feature_names: Sequence[str],
    optimizer: str,
    precision: str,
    seeds: Sequence[int],
    learning_rates: Sequence[float],
    engine: str,
    **settings: Any,
) -> dict[str, Any]:
    """What a checkpoint must agree on with the run that restores it: the shapes of its state
    (checked here), and any further `settings` (checked by the caller)."""
    return {
        "format": FORMAT,
        "sizes": [int(size) for size in sizes],
        "dataset": str(dataset),
        "n_features": len(feature_names),
        "feature_names": list(feature_names),
        "optimizer": str(optimizer),
        "precision": str(precision),
        "engine": str(engine),
        "n_members": len(seeds),
        "seeds": [int(seed) for seed in seeds],
        "learning_rates": [float(lr) for lr in learning_rates],
        **settings,
    }


@contextlib.contextmanager
def quiet_orbax_logs(level: int = logging.WARNING):
    """orbax logs every save at INFO through absl; Hydra shows INFO. Scope a higher level."""
    logger = logging.getLogger("absl")
    previous = logger.level
    logger.setLevel(max(level, previous))
    try:
        yield
    finally:
        logger.setLevel(previous)


# ---------------------------------------------------------------- finding checkpoints


def is_complete(step_dir: Path) -> bool:
    """A step orbax reports as finalized (not one of its temporaries), with every item written."""
    from orbax.checkpoint import utils

    step_dir = Path(step_dir)
    return (
        step_dir.is_dir()
        and step_dir.name.isdigit()
        and utils.is_checkpoint_finalized(step_dir)
        and all((step_dir / item).is_dir() for item in _ITEMS)
    )


def complete_steps(root: Path) -> list[int]:
    """Sorted steps under `root` that were completely written (tmp and partial dirs ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(int(child.name) for child in root.iterdir() if is_complete(child))


def _unsafe_files(directory: Path) -> list[str]:
    return sorted(
        child.name for child in directory.iterdir() if child.is_file() and looks_like_pickle(child)
    )


def find_checkpoints(path: Path) -> list[CheckpointRef]:
    """Resolve trainer.resume=PATH: one step directory, or every complete step of a run
    directory or its `checkpoints/` directory, newest first.

    Raises:
      CheckpointError: PATH is missing, a file (a pickle, say: never loaded), an unfinished
        step, or holds no complete orbax checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"trainer.resume={str(path)!r}: no such file or directory")
    if path.is_file():
        kind = "a pickle-like file" if looks_like_pickle(path) else "a file"
        raise CheckpointError(
            f"trainer.resume={str(path)!r} is {kind}, not an orbax checkpoint directory; "
            "refusing to load it (pickles are never loaded)"
        )
    if TMP_MARKER in path.name:
        raise CheckpointError(
            f"trainer.resume={str(path)!r} is a checkpoint that was never finished (a save was "
            "interrupted); point at the run directory to use the latest complete one"
        )
    if path.name.isdigit() and any((path / item).exists() for item in _ITEMS):
        if not is_complete(path):
            raise CheckpointError(f"trainer.resume={str(path)!r} is an incomplete checkpoint")
        return [CheckpointRef(path.parent, int(path.name))]
    for root in (path / CHECKPOINT_DIR, path):
        steps = complete_steps(root)
        if steps:
            return [CheckpointRef(root, step) for step in reversed(steps)]
    unsafe = _unsafe_files(path) + (
        _unsafe_files(path / CHECKPOINT_DIR) if (path / CHECKPOINT_DIR).is_dir() else []
    )
    hint = (
        f" (found {', '.join(unsafe)}: pickle-like files are never loaded)" if unsafe else ""
    )
    raise CheckpointError(
        f"trainer.resume={str(path)!r} holds no complete orbax checkpoint{hint}; expected a run "
        f"directory with {CHECKPOINT_DIR}/, a {CHECKPOINT_DIR}/ directory, or one step directory"
    )


def set_aside(step_dir: Path, why: str) -> Path:
    """Rename a step directory that cannot be used to `<step>.unusable[-k]` (never deleted), so
    that a new save of that step does not collide with it."""
    step_dir = Path(step_dir)
    target, k = step_dir.with_name(f"{step_dir.name}.unusable"), 1
    while target.exists():
        target, k = step_dir.with_name(f"{step_dir.name}.unusable-{k}"), k + 1
    step_dir.rename(target)
    log.info(f"note: checkpoint {step_dir} {why}; kept as {target}")
    return target


# ---------------------------------------------------------------- writing


def open_manager(root: Path, keep: int) -> ocp.CheckpointManager:
    """An orbax CheckpointManager for this run's checkpoints, keeping the newest `keep` steps.

    orbax itself removes its unfinished temporaries (cleanup_tmp_directories); a step directory
    it would count although it is incomplete is set aside (renamed, not deleted) so it never
    collides with a new save.
    """
    import orbax.checkpoint as ocp

    root = Path(root)
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and child.name.isdigit() and not is_complete(child):
                set_aside(child, "is incomplete")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, cleanup_tmp_directories=True
    )
    return ocp.CheckpointManager(root.absolute(), options=options)


def _state_tree(state: TrainState) -> dict[str, Any]:
    # Typed PRNG keys are not arrays orbax can store: keep their raw uint32 data.
    return {
        "params": state.params,
        "opt_state": state.opt_state,
        "key": jax.random.key_data(state.key),
        "epoch": state.epoch,
    }


def save_checkpoint(
    manager: ocp.CheckpointManager,
    state: TrainState,
    epoch: int,
    progress: dict[str, Any],
    metadata: dict[str, Any],
) -> None:
    """Start an (asynchronous) save of step = `epoch`, the epochs completed.

    `progress` is any JSON-able record of the run so far; its non-finite floats are stored as the
    strings "float:nan", "float:inf", "float:-inf" (strict JSON, and restored exactly).
    Call `manager.wait_until_finished()` before relying on it (the next save waits by itself).
    """
    import orbax.checkpoint as ocp

    manager.save(
        epoch,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(_state_tree(state)),
            progress=ocp.args.JsonSave(_encode_floats(progress)),
            meta=ocp.args.JsonSave({**metadata, "key_impl": str(jax.random.key_impl(state.key))}),
        ),
    )


# Compared in this order, so the message names the root cause (other data before other sizes).
_CHECKED = (
    ("format", "checkpoint format"),
    ("dataset", "dataset"),
    ("n_features", "input features"),
    ("feature_names", "feature columns"),
    ("sizes", "layer sizes"),
    ("optimizer", "optimizer"),
    ("precision", "precision"),
    ("engine", "engine"),
    ("n_members", "members"),
)


def check_compatible(found: dict[str, Any], expected: dict[str, Any], where: Path) -> None:
    """Raise CheckpointError naming the first field where the checkpoint and this run differ."""
    for key, label in _CHECKED:
        theirs, ours = found.get(key), expected.get(key)
        if theirs == ours:
            continue
        if key == "n_features":
            detail = (
                f"its model expects {theirs} input features (sizes[0]), "
                f"but the data have {ours}"
            )
        else:
            detail = f"it has {label} {theirs!r}, but this run has {ours!r}"
        raise CheckpointMismatch(f"checkpoint {where} does not match this run: {detail}")


def _restore(ref: CheckpointRef, **items: Any) -> Any:
    """Restore some items of one step with a plain orbax Checkpointer (no pickle handler)."""
    import orbax.checkpoint as ocp

    checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
    try:
        return checkpointer.restore(ref.path.absolute(), args=ocp.args.Composite(**items))
    except Exception as error:  # orbax raises many types for a corrupt or foreign directory
        raise CheckpointError(f"cannot read checkpoint {ref.path}: {error}") from error
    finally:
        checkpointer.close()


def read_metadata(ref: CheckpointRef) -> dict[str, Any]:
    """The `meta` item of one checkpoint (JSON only: nothing is unpickled)."""
    import orbax.checkpoint as ocp

    return dict(_restore(ref, meta=ocp.args.JsonRestore()).meta)


def read_progress(ref: CheckpointRef) -> dict[str, Any]:
    """The `progress` item of one checkpoint, non-finite floats restored (JSON only)."""
    import orbax.checkpoint as ocp

    return _decode_floats(dict(_restore(ref, progress=ocp.args.JsonRestore()).progress))


def restore_checkpoint(
    ref: CheckpointRef, like: TrainState, expected: dict[str, Any]
) -> tuple[TrainState, dict[str, Any], dict[str, Any]]:
    """Restore one checkpoint into the structure, dtypes and shardings of `like`.

    The metadata are compared with `expected` (run_metadata of this run) before any array is read.

    Returns:
      (state, progress, metadata): progress is the JSON record given to `save_checkpoint`.

    Raises:
      CheckpointError: mismatched architecture/dataset/optimizer/precision/members/engine, or
        unreadable.
    """
    import orbax.checkpoint as ocp

    metadata = read_metadata(ref)
    check_compatible(metadata, expected, ref.path)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _state_tree(like))
    restored = _restore(
        ref, state=ocp.args.StandardRestore(target), progress=ocp.args.JsonRestore()
    )
    tree = restored.state
    key = jax.random.wrap_key_data(tree["key"], impl=metadata.get("key_impl", "threefry2x32"))
    state = TrainState(tree["params"], tree["opt_state"], key, tree["epoch"])
    epoch = int(np.max(np.asarray(state.epoch)))
    if epoch != ref.step:
        raise CheckpointError(f"checkpoint {ref.path} holds epoch {epoch}, not {ref.step}")
    return state, _decode_floats(dict(restored.progress)), metadata


_NON_FINITE = {"float:nan": math.nan, "float:inf": math.inf, "float:-inf": -math.inf}


def _encode_floats(value: Any) -> Any:
    """Non-finite floats as "float:nan" / "float:inf" / "float:-inf", recursively (JSON has no
    such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "float:nan" if math.isnan(value) else f"float:{'inf' if value > 0 else '-inf'}"
    if isinstance(value, dict):
        return {key: _encode_floats(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_floats(item) for item in value]
    return value


def _decode_floats(value: Any) -> Any:
    """The inverse of _encode_floats."""
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, dict):
        return {key: _decode_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_floats(item) for item in value]
    return value
