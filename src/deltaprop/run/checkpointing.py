"""A run's checkpoints: restore the newest verified one (or start fresh), save on a cadence,
save once more on Ctrl-C, and say what is left to go back to.

    checkpoints = Checkpoints(setup)                     # finds what trainer.resume names
    state, record = checkpoints.restore_or(fresh, RunRecord.fresh(M))
    checkpoints.save(epoch, state, record)               # every trainer.checkpoint_every epochs
    checkpoints.close()

Resume is exact: the state and every member's record come back, and the epoch is a pure
function of them (run/resume.py says what a resume compares; io/checkpoints.py how a step
verifies itself).
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import numpy as np

from deltaprop.errors import RunInterrupted
from deltaprop.io import checkpoints
from deltaprop.io.checkpoints import CheckpointCorrupt, CheckpointError, CheckpointRef
from deltaprop.io.rundir import check_run_dir
from deltaprop.run import resume
from deltaprop.run.records import RunRecord
from deltaprop.run.setup import RunSetup
from deltaprop.training import TrainState

log = logging.getLogger(__name__)


class Checkpoints:
    """The checkpoints of one run directory (`<run_dir>/checkpoints/<epoch>/`)."""

    def __init__(self, setup: RunSetup):
        """Finds the checkpoints trainer.resume names and refuses another run's before any
        work (CheckpointError)."""
        self.setup, self.trainer = setup, setup.settings.trainer
        self.root = setup.run_dir / checkpoints.CHECKPOINT_DIR
        self.metadata = setup.checkpoint_metadata()
        self.candidates = resume.resume_candidates(self.trainer.resume, setup.run_dir)
        resume.check_newest(self.candidates, self.metadata, self.trainer.resume_changes)
        self.manager = None
        self.source: CheckpointRef | None = None  # the checkpoint resumed from
        self.start_epoch = 0

    def restore_or(self, fresh: TrainState, record: RunRecord) -> tuple[TrainState, RunRecord]:
        """The newest verified checkpoint trainer.resume names, else (`fresh`, `record`).
        Refuses a directory with an earlier run's outputs unless resuming them."""
        is_main = jax.process_index() == 0
        here = bool(self.candidates) and self.candidates[0].root.resolve() == self.root.resolve()
        if is_main:
            check_run_dir(self.setup.run_dir, resuming=here,
                          exists=self.setup.settings.run_dir_exists)
        state = fresh
        if self.candidates:
            state, record = self._resume(fresh)
        if self.trainer.checkpoint_every:
            self._check_directory_free()
            self.manager = checkpoints.open_manager(self.root, self.trainer.keep_checkpoints)
        return state, record

    def _resume(self, fresh: TrainState) -> tuple[TrainState, RunRecord]:
        self.source, state, progress, changes = resume.restore_newest(
            self.candidates, fresh, self.metadata, self.trainer.resume_changes, self.root)
        try:
            record = RunRecord.from_json(progress, len(self.setup.members))
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointCorrupt(f"checkpoint {self.source.path} is inconsistent: "
                                    f"{error}") from None
        self.start_epoch = int(np.max(np.asarray(state.epoch)))
        self._check_resumable(record)
        log.info(f"resuming from {self.source.path} (epoch {self.start_epoch} of "
                 f"{self.trainer.epochs})")
        if changes:
            listed = "; ".join(f"{c['key']} {c['old']!r} -> {c['new']!r}" for c in changes)
            log.info(f"resuming with changed settings from epoch {self.start_epoch}: {listed}")
            record.resume_changes += [{"epoch": self.start_epoch, **c} for c in changes]
        return resume.with_changes(state, fresh, changes), record

    def _check_resumable(self, record: RunRecord) -> None:
        epochs, path = self.trainer.epochs, self.source.path
        if self.start_epoch > epochs:
            raise CheckpointError(f"checkpoint {path} is at epoch {self.start_epoch}, past "
                                  f"trainer.epochs={epochs}")
        if self.start_epoch == epochs and record.last_evaluated_epoch() < epochs:
            raise CheckpointError(
                f"checkpoint {path} is at the last epoch ({epochs}) but was saved before that "
                "epoch was evaluated (its run had more epochs); resume it with a larger "
                "trainer.epochs")

    def _check_directory_free(self) -> None:
        """Refuse to mix a new run's checkpoints with an earlier run's in the same directory."""
        existing = checkpoints.complete_steps(self.root)
        if not existing or (self.source and self.source.root.resolve() == self.root.resolve()):
            return
        raise CheckpointError(
            f"{self.root} already holds checkpoints (epochs {existing[0]}..{existing[-1]}) of an "
            "earlier run; continue it with trainer.resume=auto, or choose another run_dir / "
            "hydra.run.dir")

    def due(self, epoch: int) -> bool:
        every = self.trainer.checkpoint_every
        return self.manager is not None and (epoch % every == 0 or epoch == self.trainer.epochs)

    def save(self, epoch: int, state: TrainState, record: RunRecord) -> None:
        """Save step `epoch` if it is due (asynchronously: the next save waits for it)."""
        if self.due(epoch):
            checkpoints.save_checkpoint(self.manager, state, epoch, record.to_json(),
                                        self.metadata)

    def interrupted(self, state: TrainState, record: RunRecord) -> RunInterrupted:
        """Ctrl-C: checkpoint the last completed epoch (if checkpointing is on); the error."""
        epoch = int(np.max(np.asarray(state.epoch)))
        saved = "checkpointing is off (trainer.checkpoint_every=0): nothing to resume from"
        if self.manager is not None:
            if self.manager.latest_step() != epoch:
                checkpoints.save_checkpoint(self.manager, state, epoch, record.to_json(),
                                            self.metadata)
            self.manager.wait_until_finished()
            saved = (f"checkpoint {self.manager.directory}/{epoch} saved; continue with "
                     "trainer.resume=auto and the same run_dir")
        return RunInterrupted(f"interrupted after epoch {epoch} of {self.trainer.epochs}; {saved}")

    def last_good(self) -> str:
        """What a diverged run can go back to, in words."""
        if self.manager is None:
            return "no checkpoint to go back to (trainer.checkpoint_every=0)"
        self.manager.wait_until_finished()
        step = self.manager.latest_step()
        if step is None:
            return "no checkpoint was saved before it"
        return f"last good checkpoint: {Path(self.manager.directory) / str(step)} (epoch {step})"

    def close(self) -> None:
        """Let a save in flight complete (a diverged state is never handed to one), then close."""
        manager, self.manager = self.manager, None
        if manager is not None:
            try:
                manager.wait_until_finished()
            finally:
                manager.close()
