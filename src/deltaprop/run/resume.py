"""What a resumed run must agree on with its checkpoint, and the changes a user may ask for.

Every setting that changes what a run computes is saved in each checkpoint (`run_settings`), with
a hash of the data it trained on. A resume compares them with the config it runs under; any
difference is refused, naming each key with its old and new value, unless the key is listed in
`trainer.resume_changes` (e.g. `trainer.resume_changes=[optimizer.lr]`): then the new value takes
effect from the resumed epoch on and is recorded (progress, W&B config). The shapes of the state
(layer sizes, optimizer, precision, engine, number of members) can never change; checkpoints.py
refuses those. `trainer.epochs` may grow.
"""

from __future__ import annotations

import hashlib
import logging
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from deltaprop.io.checkpoints import (
    CHECKPOINT_DIR,
    CheckpointError,
    CheckpointMismatch,
    CheckpointRef,
    complete_steps,
    find_checkpoints,
    restore_checkpoint,
    set_aside,
)
from deltaprop.io.config import ConfigError
from deltaprop.io.data import Splits

# The settings a resume compares; each may change when named in trainer.resume_changes.
SETTINGS = (
    "seed", "dataset.name", "dataset.n_samples", "dataset.noise", "dataset.path",
    "dataset.label", "dataset.val_fraction", "dataset.test_fraction", "dataset.seed",
    "model.init", "optimizer.lr", "optimizer.momentum", "optimizer.b1", "optimizer.b2",
    "optimizer.weight_decay", "optimizer.schedule", "optimizer.decay_rate",
    "optimizer.warmup_epochs", "trainer.batch_size", "trainer.grad", "trainer.data_parallel",
    "sweep.lr", "loss", "model.activation", "model.init_scale", "sweep.weight_decay",
    "sweep.momentum", "sweep.init_scale",
)
# What a run saved before a setting existed was trained with (its checkpoint lacks the key).
SETTING_DEFAULTS = {"loss": "bce", "model.activation": "sigmoid", "model.init_scale": 1.0,
                    "sweep.weight_decay": [], "sweep.momentum": [], "sweep.init_scale": []}
# Naming one of these accepts other training data (the hash of the data may then differ).
DATA_SETTINGS = tuple(key for key in SETTINGS if key == "seed" or key.startswith("dataset."))

log = logging.getLogger(__name__)


def run_settings(cfg: DictConfig) -> dict[str, Any]:
    """{key: value} of SETTINGS, as JSON-able values."""
    def plain(value):
        if OmegaConf.is_config(value):
            return OmegaConf.to_container(value, enum_to_str=True)
        return value.value if isinstance(value, Enum) else value

    return {key: plain(OmegaConf.select(cfg, key)) for key in SETTINGS}


def data_fingerprint(splits: Splits) -> str:
    """sha256 of every split's standardized features and labels: equal data, equal hash."""
    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        digest.update(np.ascontiguousarray(getattr(splits, name), np.float64).tobytes())
    return digest.hexdigest()


def check_resume_changes(cfg: DictConfig) -> list[str]:
    """trainer.resume_changes, each a known setting; raise ConfigError otherwise."""
    named = list(cfg.trainer.resume_changes)
    unknown = [key for key in named if key not in SETTINGS]
    if unknown:
        raise ConfigError(
            f"trainer.resume_changes={named} names {', '.join(unknown)}, which a resume cannot "
            f"change; it may name: {', '.join(SETTINGS)}"
        )
    return named


def changes_on_resume(
    saved: dict[str, Any], current: dict[str, Any], named: list[str], where: str
) -> list[dict[str, Any]]:
    """The settings that differ between a checkpoint's metadata and this run's, each allowed by
    `named` (trainer.resume_changes): [{"key", "old", "new"}].

    Raises:
      CheckpointMismatch: a difference not named (each key with its old and new value), or
        other data under the same settings.
    """
    old, new = SETTING_DEFAULTS | saved.get("settings", {}), current["settings"]
    changed = [key for key in SETTINGS if old.get(key) != new.get(key)]
    refused = [key for key in changed if key not in named]
    if refused:
        listed = "; ".join(f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in refused)
        raise CheckpointMismatch(
            f"checkpoint {where} was trained with other settings: {listed}. To continue with the "
            f"new values from the resumed epoch on, name them: trainer.resume_changes=[{','.join(refused)}]"
        )
    if saved.get("data") != current["data"] and not set(changed) & set(DATA_SETTINGS):
        raise CheckpointMismatch(
            f"checkpoint {where} was trained on other data under the same settings (has the file "
            f"dataset.path={new.get('dataset.path')!r} changed?); to continue on this data, name "
            "a data setting, e.g. trainer.resume_changes=[dataset.path]"
        )
    _note_schedule_stretch(saved, current)
    return [{"key": key, "old": old.get(key), "new": new.get(key)} for key in changed]


def _note_schedule_stretch(saved: dict[str, Any], current: dict[str, Any]) -> None:
    """trainer.epochs may change on resume; a schedule then spans the new length from here on."""
    schedule, warmup = current["settings"]["optimizer.schedule"], current["settings"][
        "optimizer.warmup_epochs"]
    if saved.get("epochs", current.get("epochs")) != current.get("epochs") and (
            schedule != "constant" or warmup):
        log.info(f"note: trainer.epochs changed from {saved['epochs']} to {current['epochs']}: the "
              f"{schedule} schedule now spans {current['epochs']} epochs, from the resumed one on")


# Settings that live in the restored optimizer state (injected hyperparameters): a change must be
# written into it; every other setting is rebuilt from the config anyway.
IN_OPTIMIZER_STATE = ("optimizer.lr", "sweep.lr", "optimizer.weight_decay", "sweep.weight_decay",
                      "optimizer.momentum", "optimizer.b1", "sweep.momentum")


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


def restore_newest(
    candidates: list[CheckpointRef], like: Any, expected: dict[str, Any], named: list[str],
    own_root: Path,
) -> tuple[CheckpointRef, Any, dict[str, Any], list[dict[str, Any]]]:
    """The newest candidate that restores: (ref, state, progress, changed settings).

    A step that cannot be read is skipped with a one-line note (and, if it is this run's, set
    aside so a new save of that step cannot collide with it); a readable checkpoint of another
    run (CheckpointMismatch, or changed settings) stops the search: every step would say so.

    Raises:
      CheckpointError: no candidate could be restored, or the newest readable one does not match.
    """
    unreadable, reasons = [], []
    for ref in candidates:
        try:
            state, progress, saved = restore_checkpoint(ref, like, expected)
        except CheckpointMismatch:
            raise
        except CheckpointError as error:
            reasons.append(str(error).splitlines()[0][:300])
            log.info(f"note: skipping checkpoint {ref.path}: {reasons[-1]}")
            unreadable.append(ref)
            continue
        changes = changes_on_resume(saved, expected, named, str(ref.path))
        for bad in unreadable:
            if bad.root.resolve() == Path(own_root).resolve():
                set_aside(bad.path, "could not be restored")
        return ref, state, progress, changes
    raise CheckpointError(
        f"none of the {len(candidates)} checkpoints of {candidates[0].root} could be restored "
        f"(nothing was changed); the newest: {reasons[0]}"
    )


def with_changes(state: Any, fresh: Any, changes: list[dict[str, Any]]) -> Any:
    """The restored state with the changed settings that live in it (the learning rates, weight
    decay and momentum: injected hyperparameters) taken from `fresh`, the state this config
    starts."""
    if not any(change["key"] in IN_OPTIMIZER_STATE for change in changes):
        return state
    hyperparams = fresh.opt_state.hyperparams
    return state._replace(opt_state=state.opt_state._replace(hyperparams=hyperparams))
