"""What a resumed run must agree on with its checkpoint, and the changes a user may ask for.

Every checkpoint holds every setting of its run (`settings.flat` of TrainSettings: every key,
present and future) and the hash of its data. A resume compares them all with the run's own,
except the keys in NOT_COMPARED, which provably cannot change what is computed (where outputs
and logs go, how often to evaluate or checkpoint, the resume keys themselves). A difference is
refused before any work, each key named with its old and new value, unless the key is named in
`trainer.resume_changes` and is one the run can honour exactly from the resumed epoch on
(CAN_CHANGE: the optimizer's values, the cost, the activation, the data, the length); a key
that can never change is refused naming why (NEVER_CHANGE: the member set, the block, the batch
layout, the state's shapes). A key added to the schema later is compared, and refused, by
default. `trainer.epochs` may change freely with a constant schedule (the first epochs of a
longer run are the same); with another schedule it spans the run, so it must be named.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from deltaprop.errors import ConfigError
from deltaprop.io.checkpoints import (
    CHECKPOINT_DIR,
    CheckpointCorrupt,
    CheckpointError,
    CheckpointMismatch,
    CheckpointRef,
    check_compatible,
    complete_steps,
    find_checkpoints,
    read_metadata,
    restore_checkpoint,
    set_aside,
)
from deltaprop.io.data import Splits
from deltaprop.settings import TrainSettings, flat

log = logging.getLogger(__name__)

# Keys that cannot change what a run computes: never compared.
NOT_COMPARED_GROUPS = ("logger.",)  # where metrics are sent, not what they are
NOT_COMPARED = frozenset({
    "trainer.progress", "trainer.eval_every", "trainer.profile_epochs", "trainer.debug_nans",
    "trainer.checkpoint_every", "trainer.keep_checkpoints", "trainer.resume",
    "trainer.resume_changes", "run_dir", "run_dir_exists", "print_config", "experiment_name",
    "objective",  # chooses the best grid point among the final metrics; trains nothing
})
# Keys a resume can honour exactly from the resumed epoch on, when named.
CAN_CHANGE = frozenset({
    "optimizer.lr", "optimizer.weight_decay", "optimizer.momentum", "optimizer.b1",
    "optimizer.b2", "optimizer.schedule", "optimizer.decay_rate", "optimizer.warmup_epochs",
    "trainer.epochs", "trainer.grad", "loss", "model.activation",
    "dataset.name", "dataset.n_samples", "dataset.noise", "dataset.path", "dataset.label",
    "dataset.val_fraction", "dataset.test_fraction", "dataset.seed",
})
# Why the others can never change on resume (any key not listed: the last reason).
NEVER_CHANGE = {
    "seed": "the member set (each member's seed)",
    "trainer.num_seeds": "the member set",
    "sweep.lr": "the member set", "sweep.weight_decay": "the member set",
    "sweep.momentum": "the member set", "sweep.init_scale": "the member set",
    "sweep.block": "the block (which members of the grid this run trains)",
    "trainer.batch_size": "the batch layout", "trainer.limit_batches": "the batch layout",
    "trainer.overfit_batches": "the batch layout", "trainer.data_parallel": "the batch layout",
    "trainer.distributed": "the batch layout",
    "model.hidden": "the state's shapes", "trainer.precision": "the state's dtypes",
    "optimizer.name": "the optimizer state's structure", "sweep.engine": "the state's layout",
    "sweep.member_chunk": "the compiled program (members would round differently)",
    "sweep.shard_members": "the members' placement on the devices",
    "model.init": "the initialization, which a resume does not redo",
    "model.init_scale": "the initialization, which a resume does not redo",
}
NOT_HONOURABLE = "a change a resumed run cannot honour exactly"
DATA_KEYS = frozenset(key for key in CAN_CHANGE if key.startswith("dataset."))
# Settings that live in the restored optimizer state (injected hyperparameters): a change must be
# written into it; every other setting is rebuilt from the config anyway.
IN_OPTIMIZER_STATE = frozenset({"optimizer.lr", "optimizer.weight_decay", "optimizer.momentum",
                                "optimizer.b1"})


def compared(key: str) -> bool:
    return key not in NOT_COMPARED and not key.startswith(NOT_COMPARED_GROUPS)


def data_fingerprint(splits: Splits) -> str:
    """sha256 of every split's standardized features and labels: equal data, equal hash."""
    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        digest.update(np.ascontiguousarray(getattr(splits, name), np.float64).tobytes())
    return digest.hexdigest()


def why_not(key: str) -> str:
    return NEVER_CHANGE.get(key, NOT_HONOURABLE)


def check_resume_changes(settings: TrainSettings) -> tuple[str, ...]:
    """trainer.resume_changes, each a key a resume can honour; ConfigError naming why not."""
    named, keys = settings.trainer.resume_changes, flat(settings)
    for key in named:
        if key not in keys:
            raise ConfigError(f"trainer.resume_changes names {key}, which is not a config key")
        if not compared(key):
            raise ConfigError(f"trainer.resume_changes names {key}, which a resume never "
                              "compares: it may change without being named")
        if key not in CAN_CHANGE:
            raise ConfigError(f"trainer.resume_changes names {key}, which cannot change on "
                              f"resume: it changes {why_not(key)}")
    return named


def changes_on_resume(
    saved: dict[str, Any], current: dict[str, Any], named: tuple[str, ...], where: str
) -> list[dict[str, Any]]:
    """The settings that differ between a checkpoint's metadata and this run's, each allowed by
    `named` (trainer.resume_changes): [{"key", "old", "new"}].

    Raises:
      CheckpointMismatch: one line naming every refused key with its old and new value and
        what to do, or other data under the same settings.
    """
    defaults = flat(TrainSettings())  # a key the checkpoint predates: it ran with the default
    old, new = defaults | saved.get("settings", {}), current["settings"]
    changed = [key for key in new if compared(key) and old.get(key) != new[key]]
    if "trainer.epochs" in changed and _epochs_may_grow(new):
        changed.remove("trainer.epochs")
    refused = [key for key in changed if key not in named]
    if refused:
        listed = "; ".join(f"{key} {old.get(key)!r} -> {new[key]!r}" for key in refused)
        never = [key for key in refused if key not in CAN_CHANGE]
        hint = (f"{never[0]} cannot change on resume (it changes {why_not(never[0])})" if never
                else "to continue with the new values from the resumed epoch on, name them: "
                     f"trainer.resume_changes=[{','.join(refused)}]")
        raise CheckpointMismatch(
            f"checkpoint {where} was trained with other settings: {listed}; {hint}")
    if saved.get("data") != current["data"] and not set(changed) & DATA_KEYS:
        raise CheckpointMismatch(
            f"checkpoint {where} was trained on other data under the same settings (has the file "
            f"dataset.path={new.get('dataset.path')!r} changed?); to continue on this data, name "
            "a data setting, e.g. trainer.resume_changes=[dataset.path]"
        )
    return [{"key": key, "old": old.get(key), "new": new[key]} for key in changed]


def _epochs_may_grow(settings: dict[str, Any]) -> bool:
    """A constant schedule without warmup does not depend on the run's length."""
    return settings["optimizer.schedule"] == "constant" and not settings["optimizer.warmup_epochs"]


def resume_candidates(resume: str | None, run_dir: Path) -> list[CheckpointRef]:
    """The checkpoints trainer.resume names, newest first (auto: this run directory's)."""
    if not resume:
        return []
    if resume == "auto":
        root = Path(run_dir) / CHECKPOINT_DIR
        refs = [CheckpointRef(root, step) for step in reversed(complete_steps(root))]
        if not refs:
            log.info(f"note: trainer.resume=auto: no complete checkpoint in {root}; starting fresh")
        return refs
    return find_checkpoints(Path(resume))


def check_newest(candidates: list[CheckpointRef], expected: dict[str, Any],
                 named: tuple[str, ...]) -> None:
    """Refuse, before any work, a checkpoint of another run: the newest candidate whose
    metadata can be read is compared with this run (its shapes, members and settings).

    Raises:
      CheckpointMismatch: as `changes_on_resume` and io.checkpoints.check_compatible.
    """
    for ref in candidates:
        try:
            saved = read_metadata(ref)
        except CheckpointCorrupt:
            continue  # restore_newest says so and tries the next
        check_compatible(saved, expected, ref.path)
        changes_on_resume(saved, expected, named, str(ref.path))
        return


def restore_newest(
    candidates: list[CheckpointRef], like: Any, expected: dict[str, Any],
    named: tuple[str, ...], own_root: Path,
) -> tuple[CheckpointRef, Any, dict[str, Any], list[dict[str, Any]]]:
    """The newest candidate that restores and verifies: (ref, state, progress, changes).

    A step that fails verification is skipped with one line (and, if it is this run's, set
    aside, so a new save of that step cannot collide with it); a readable checkpoint of another
    run (CheckpointMismatch, or changed settings) stops the search: every step would say so.
    Resuming this run from an older step sets its newer steps aside first: no stale step can
    be restored later, and no save of this run is skipped.

    Raises:
      CheckpointError: no candidate could be restored, or the newest readable one does not match.
    """
    corrupt, reasons = [], []
    for ref in candidates:
        try:
            state, progress, saved = restore_checkpoint(ref, like, expected)
        except CheckpointCorrupt as error:
            reasons.append(str(error).splitlines()[0][:300])
            log.info(f"note: skipping checkpoint {ref.path}: {reasons[-1]}")
            corrupt.append(ref)
            continue
        changes = changes_on_resume(saved, expected, named, str(ref.path))
        mine = ref.root.resolve() == Path(own_root).resolve()
        for bad in corrupt:
            if mine:
                set_aside(bad.path, "failed verification")
        if mine:
            _set_aside_newer(ref)
        return ref, state, progress, changes
    raise CheckpointError(
        f"none of the {len(candidates)} checkpoints of {candidates[0].root} could be restored "
        f"(nothing was changed); the newest: {reasons[0]}"
    )


def _set_aside_newer(source: CheckpointRef) -> None:
    newer = [step for step in complete_steps(source.root) if step > source.step]
    if newer:
        log.info(f"note: resuming from epoch {source.step}, so the newer checkpoints "
                 f"{', '.join(map(str, newer))} of {source.root} are set aside (never deleted)")
    for step in newer:
        set_aside(source.root / str(step), f"is newer than the resumed epoch {source.step}",
                  suffix="superseded")


def with_changes(state: Any, fresh: Any, changes: list[dict[str, Any]]) -> Any:
    """The restored state with the changed settings that live in it (the learning rates, weight
    decay and momentum: injected hyperparameters) taken from `fresh`, the state this config
    starts."""
    if not any(change["key"] in IN_OPTIMIZER_STATE for change in changes):
        return state
    hyperparams = fresh.opt_state.hyperparams
    return state._replace(opt_state=state.opt_state._replace(hyperparams=hyperparams))
