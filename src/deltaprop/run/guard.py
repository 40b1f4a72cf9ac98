"""The divergence guard: a member whose loss or parameters stop being finite is put back to its
state after the previous epoch and marked diverged; the others train on, bit for bit as they
would alone. When none is left (always, for a single run) the run stops with TrainingDiverged.

    state, newly = guard(epoch, previous, new, epoch_losses, finite, results)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from deltaprop.nan_guard import Divergence, TrainingDiverged, diverged_error, divergence_message
from deltaprop.run.engines import Engine
from deltaprop.run.records import RunRecord
from deltaprop.run.setup import RunSetup
from deltaprop.training import TrainState

log = logging.getLogger(__name__)


class DivergenceGuard:
    """Freezes diverged members; `last_checkpoint()` says what is left to go back to."""

    def __init__(self, setup: RunSetup, engine: Engine, record: RunRecord,
                 last_checkpoint: Callable[[], str]):
        self.setup, self.engine, self.record = setup, engine, record
        self.last_checkpoint = last_checkpoint

    def __call__(self, epoch: int, previous: TrainState, new: TrainState,
                 epoch_losses: np.ndarray, finite: np.ndarray,
                 results: dict[str, Any] | None) -> tuple[TrainState, list[int]]:
        """(the state to go on from, the members that diverged this epoch): `new`, with every
        member that is not finite any more (step losses or parameters, or its evaluated
        train/val loss) kept at its `previous` state.

        Raises:
          TrainingDiverged: no member is left.
        """
        trained = np.array(finite, bool)  # step losses and parameters
        evaluated = np.ones_like(trained)
        if results is not None:
            for split in ("train", "val"):
                evaluated &= np.isfinite(results[split]["loss"])
        newly = list(np.flatnonzero(self.record.active & ~(trained & evaluated)))
        for m in newly:
            self._mark(epoch, m, new, epoch_losses, trained[m], results)
        active = self.record.active
        if not active.any():
            raise self._all_diverged()
        if not active.all():
            new = self.engine.keep(jnp.asarray(active), new, previous)
        return new, newly

    def _mark(self, epoch, m, new, epoch_losses, trained, results) -> None:
        member_params = [{name: np.asarray(leaf)[m] for name, leaf in layer.items()}
                         for layer in self.engine.member_params(jax.device_get(new.params))]
        losses, name = epoch_losses[m: m + 1], "loss"
        if trained:  # the step losses and parameters were finite: the evaluation overflowed
            name = next(f"{split}/loss" for split in ("train", "val")
                        if not np.isfinite(results[split]["loss"][m]))
            losses = np.array([results[name.split("/")[0]]["loss"][m]])
        message = divergence_message(epoch, losses, member_params, self.setup.arrays["x_train"],
                                     loss_name=name, activation=self.setup.model.activation)
        self.record.members[m].divergence = Divergence(epoch, message)
        if len(self.record.members) > 1 and jax.process_index() == 0:
            log.info(f"member {m} ({self.setup.members[m].name}) diverged: {message}; frozen "
                     f"at its state after epoch {epoch - 1}, the others train on")

    def _all_diverged(self) -> TrainingDiverged:
        divergences = [member.divergence for member in self.record.members]
        if len(divergences) == 1:
            message = divergences[0].message
        else:
            epochs = ", ".join(str(d.epoch) for d in divergences)
            message = (f"every member diverged (at epochs {epochs}); member 0: "
                       f"{divergences[0].message}")
        return diverged_error(message, self.last_checkpoint(),
                              self.setup.settings.trainer.debug_nans)
