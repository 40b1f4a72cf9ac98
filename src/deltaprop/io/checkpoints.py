"""Checkpoints with orbax: the whole training state, saved atomically, restored exactly.

One checkpoint is one orbax step directory `<run_dir>/checkpoints/<epoch>/` with three items:
    state     every member's params, optimizer state, PRNG key data; the epoch
              (StandardSave: TensorStore/OCDBT)
    progress  per member: metrics history, best validation loss, W&B run id, divergence (JSON)
    meta      layer sizes, dataset, feature names, optimizer, precision, the members (seed and
              hyperparameters of each), the engine, every setting of the run and the hash of
              its data (JSON), compared on resume; and the digest of `state` and `progress`

A step verifies itself: `meta` holds the sha256 of every state array (name, dtype, shape, bytes)
and of the progress record, written in the same orbax commit; a restore reads the stored arrays'
dtypes and shapes first (they must equal the run's: nothing is ever cast), then recomputes the
digest. A step that fails is `CheckpointCorrupt`: the caller sets it aside and tries an older one.

orbax writes each step into `<epoch>.orbax-checkpoint-tmp-*` and renames it when complete, so a
kill during a save leaves the earlier steps loadable; only steps orbax reports as finalized are
restored, and nothing is deleted but orbax's own temporaries (through orbax) and the steps its
retention drops. A step that cannot be used is renamed aside, never deleted. Nothing here
unpickles: the arrays are TensorStore, the rest JSON. The data order needs no state of its own:
each epoch's shuffle is split off the restored PRNG key. orbax is imported on first use, so a
run that fails its input checks exits quickly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import signal
import threading
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
FORMAT = "deltaprop-checkpoint/3"  # 2: a population of members; 3: verified by a digest
_ITEMS = ("state", "progress", "meta")

log = logging.getLogger(__name__)


class CheckpointError(InputError):
    """A checkpoint that cannot be used: missing, incomplete, unsafe, or from another setup."""


class CheckpointMismatch(CheckpointError):
    """A readable checkpoint of another run: other shapes or settings (every step of that run
    would say the same, so no older step is tried)."""


class CheckpointCorrupt(CheckpointError):
    """A step that fails its own verification: unreadable, its arrays of other dtypes or shapes
    than its metadata says, or other bytes than its digest (set aside; an older step is tried)."""


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
    members: Sequence[dict[str, Any]],
    engine: str,
    **settings: Any,
) -> dict[str, Any]:
    """What a checkpoint must agree on with the run that restores it: the shapes of its state
    and its members (checked here), and any further `settings` (checked by the caller).

    Args:
      members: each member's identity, {"index", "seed", "lr", ...} (population.Member).
    """
    return {
        "format": FORMAT,
        "sizes": [int(size) for size in sizes],
        "dataset": str(dataset),
        "n_features": len(feature_names),
        "feature_names": list(feature_names),
        "optimizer": str(optimizer),
        "precision": str(precision),
        "engine": str(engine),
        "n_members": len(members),
        "members": [dict(member) for member in members],
        **settings,
    }


@contextlib.contextmanager
def interrupts_deferred():
    """Ctrl-C during the body is raised when it ends: a KeyboardInterrupt inside orbax's save
    would leave its writer threads waiting forever (the process could not exit)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def quiet_orbax_logs(level: int = logging.WARNING):
    """orbax logs every save at INFO through absl, and a failed read leaves asyncio reporting
    "Task exception was never retrieved"; Hydra shows both. Scope a higher level for the two."""
    loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
    previous = [logger.level for logger in loggers]
    for logger, old, least in zip(loggers, previous, (level, logging.CRITICAL)):
        logger.setLevel(max(least, old))  # asyncio here: only orbax's own tasks
    try:
        yield
    finally:
        for logger, old in zip(loggers, previous):
            logger.setLevel(old)


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


def set_aside(step_dir: Path, why: str, suffix: str = "unusable") -> Path:
    """Rename a step directory that must not be restored to `<step>.<suffix>[-k]` (never
    deleted), so that a new save of that step does not collide with it; one line says so."""
    step_dir = Path(step_dir)
    target, k = step_dir.with_name(f"{step_dir.name}.{suffix}"), 1
    while target.exists():
        target, k = step_dir.with_name(f"{step_dir.name}.{suffix}-{k}"), k + 1
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


def _leaf_name(path: tuple) -> str:
    """A state leaf's name as orbax stores it: 'params.0.W', 'opt_state.0.mu.1.b', ..."""
    parts = []
    for key in path:
        for attribute in ("key", "idx", "name"):  # DictKey, SequenceKey, GetAttrKey
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
    return ".".join(parts)


def _named_leaves(tree: Any) -> dict[str, Any]:
    return {_leaf_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def state_digest(tree: dict[str, Any], progress: dict[str, Any]) -> str:
    """sha256 over every state array (its name, dtype, shape and bytes, in name order) and the
    progress record's JSON: equal state and record, equal digest."""
    digest = hashlib.sha256()
    for name, leaf in sorted(_named_leaves(tree).items()):
        array = np.ascontiguousarray(jax.device_get(leaf))
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    digest.update(json.dumps(progress, sort_keys=True, allow_nan=False).encode())
    return digest.hexdigest()


def save_checkpoint(
    manager: ocp.CheckpointManager,
    state: TrainState,
    epoch: int,
    progress: dict[str, Any],
    metadata: dict[str, Any],
) -> None:
    """Start an (asynchronous) save of step = `epoch`, the epochs completed, with its digest.

    `progress` is any JSON-able record of the run so far; its non-finite floats are stored as the
    strings "float:nan", "float:inf", "float:-inf" (strict JSON, and restored exactly).
    Call `manager.wait_until_finished()` before relying on it (the next save waits by itself).

    Raises:
      CheckpointError: orbax declined to save the step (it would otherwise be skipped silently).
    """
    import orbax.checkpoint as ocp

    tree, progress = _state_tree(state), _encode_floats(progress)
    meta = {**metadata, "key_impl": str(jax.random.key_impl(state.key)),
            "digest": state_digest(tree, progress)}
    with interrupts_deferred():
        saved = manager.save(
            epoch,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree),
                progress=ocp.args.JsonSave(progress),
                meta=ocp.args.JsonSave(meta),
            ),
        )
    if not saved:
        raise CheckpointError(f"checkpoint step {epoch} was not saved in {manager.directory} "
                              "(a step of that number is already there)")


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
    ("members", "members (their indices in the grid, seeds and init scales)"),
)


def check_compatible(found: dict[str, Any], expected: dict[str, Any], where: Path) -> None:
    """Raise CheckpointMismatch naming the first field where the checkpoint and this run differ."""
    for key, label in _CHECKED:
        theirs, ours = found.get(key), expected.get(key)
        if key == "members":  # who they are; their lr, weight decay, momentum: run/resume.py
            theirs, ours = _who(theirs), _who(ours)
        if theirs == ours:
            continue
        if key == "n_features":
            detail = (
                f"its model expects {theirs} input features (sizes[0]), "
                f"but the data have {ours}"
            )
        elif key == "format":
            detail = (f"it was written as {theirs!r}, this deltaprop reads {ours!r} (older "
                      "checkpoints carry no digest to verify; resume them with the deltaprop "
                      "that wrote them)")
        elif key == "members":
            detail = _first_member_difference(theirs or [], ours or [])
        else:
            detail = f"it has {label} {theirs!r}, but this run has {ours!r}"
        raise CheckpointMismatch(f"checkpoint {where} does not match this run: {detail}")


def _who(members: list[dict] | None) -> list[dict]:
    return [{key: member.get(key) for key in ("index", "seed", "init_scale")}
            for member in members or []]


def _first_member_difference(theirs: list[dict], ours: list[dict]) -> str:
    for position, (saved, run) in enumerate(zip(theirs, ours)):
        if saved != run:
            return f"its member {position} is {saved}, this run's is {run}"
    return f"it has {len(theirs)} members, this run has {len(ours)}"


def _restore(ref: CheckpointRef, **items: Any) -> Any:
    """Restore some items of one step with a plain orbax Checkpointer (no pickle handler)."""
    import orbax.checkpoint as ocp

    checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler(*items))
    try:
        with quiet_orbax_logs(logging.ERROR):  # "item found but not restored": the others
            return checkpointer.restore(ref.path.absolute(), args=ocp.args.Composite(**items))
    except Exception as error:  # orbax raises many types for a corrupt or foreign directory
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointCorrupt(f"cannot read checkpoint {ref.path}: {message}") from error
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


def _check_stored_arrays(ref: CheckpointRef, like: dict[str, Any]) -> None:
    """Every stored array has the name, dtype and shape of the run's: nothing is cast.

    Raises:
      CheckpointCorrupt: naming the first array that differs (or is missing, or extra).
    """
    import orbax.checkpoint as ocp

    try:
        with quiet_orbax_logs(logging.ERROR):
            stored = ocp.StandardCheckpointHandler().metadata(ref.path.absolute() / "state")
        stored = {meta.name: meta for meta in jax.tree.leaves(
            stored.tree, is_leaf=lambda leaf: hasattr(leaf, "dtype"))}
    except Exception as error:  # orbax raises many types for a corrupt or foreign directory
        raise CheckpointCorrupt(f"cannot read checkpoint {ref.path}: {error}") from error
    expected = {name: (np.dtype(leaf.dtype), tuple(leaf.shape))
                for name, leaf in _named_leaves(like).items()}
    for name in sorted(set(expected) | set(stored)):
        found = stored.get(name)
        found = None if found is None else (np.dtype(found.dtype), tuple(found.shape))
        if found != expected.get(name):
            def shown(entry):
                return "no such array" if entry is None else f"{entry[0]} {entry[1]}"
            raise CheckpointCorrupt(
                f"checkpoint {ref.path} holds {name} as {shown(found)}, but this run's state "
                f"has {shown(expected.get(name))} (arrays are never cast)")


def restore_checkpoint(
    ref: CheckpointRef, like: TrainState, expected: dict[str, Any]
) -> tuple[TrainState, dict[str, Any], dict[str, Any]]:
    """Restore one checkpoint into the structure, dtypes and shardings of `like`, verified.

    The metadata are compared with `expected` (run_metadata of this run) and the stored arrays'
    dtypes and shapes with `like`'s before any array is read; then the digest is recomputed.

    Returns:
      (state, progress, metadata): progress is the JSON record given to `save_checkpoint`.

    Raises:
      CheckpointMismatch: another run's checkpoint (architecture, dataset, optimizer,
        precision, members, engine).
      CheckpointCorrupt: unreadable, arrays unlike the run's, or bytes unlike its digest.
    """
    import orbax.checkpoint as ocp

    metadata = read_metadata(ref)
    check_compatible(metadata, expected, ref.path)
    like_tree = _state_tree(like)
    _check_stored_arrays(ref, like_tree)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_tree)
    restored = _restore(
        ref, state=ocp.args.StandardRestore(target), progress=ocp.args.JsonRestore()
    )
    tree, progress = restored.state, dict(restored.progress)
    if state_digest(tree, progress) != metadata.get("digest"):
        raise CheckpointCorrupt(f"checkpoint {ref.path} fails verification: its arrays or "
                                "progress record differ from the digest saved with them")
    key = jax.random.wrap_key_data(tree["key"], impl=metadata.get("key_impl", "threefry2x32"))
    state = TrainState(tree["params"], tree["opt_state"], key, tree["epoch"])
    epoch = int(np.max(np.asarray(state.epoch)))
    if epoch != ref.step:
        raise CheckpointCorrupt(f"checkpoint {ref.path} holds epoch {epoch}, not {ref.step}")
    return state, _decode_floats(progress), metadata


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
