"""The epoch loop: one loop for every run, a single one or a sweep.

Each epoch is one call of the engine's jitted, pure epoch over every member; around it, the
divergence guard (guard.py), the evaluations kept per member (records.py) and sent to W&B
(tracker.py), and the checkpoints (checkpointing.py). Evaluation only reads, and the epoch is a
pure function of the state, so a resumed run ends bit for bit where an uninterrupted one does.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import jax
import numpy as np

from deltaprop.io.console import around_progress_bar, is_terminal
from deltaprop.nan_guard import TrainingDiverged, debug_nans_scope, locate_nan
from deltaprop.run import outputs
from deltaprop.run.checkpointing import Checkpoints
from deltaprop.run.engines import Engine
from deltaprop.run.finish import finish
from deltaprop.run.guard import DivergenceGuard
from deltaprop.run.records import RunRecord, evaluation_columns
from deltaprop.run.result import RunResult
from deltaprop.run.setup import RunSetup
from deltaprop.run.tracker import Tracker

log = logging.getLogger(__name__)


def run_epochs(setup: RunSetup, engine: Engine, checkpoints: Checkpoints,
               tracker: Tracker) -> RunResult:
    """Train every member from its start (or its checkpoint) to trainer.epochs; the run."""
    trainer, splits = setup.settings.trainer, setup.splits
    arrays = engine.place_data(setup.arrays)
    initial = engine.place_state(engine.init(setup.members))
    state, record = checkpoints.restore_or(initial, RunRecord.fresh(len(setup.members)))
    tracker.open(record)
    guard = DivergenceGuard(setup, engine, record, checkpoints.last_good)
    with _progress(setup, checkpoints.start_epoch) as (epochs, show):
        if not record.started:  # epoch 0: the initial parameters, before any training
            tracker.log_gradcheck(_member_params(engine, initial)[0])
            results = jax.device_get(engine.evaluate(state.params, arrays))
            show(0, _log(record, tracker, 0, evaluation_columns(results, splits)))
        results = None
        try:
            for epoch in epochs:
                new, losses, finite = _train_epoch(engine, state, arrays, epoch, checkpoints,
                                                   trainer.debug_nans)
                evaluate = epoch % trainer.eval_every == 0 or epoch == trainer.epochs
                results = engine.evaluate(new.params, arrays) if evaluate else None
                losses, finite, results = jax.device_get((losses, finite, results))
                state, diverged = guard(epoch, state, new, losses, finite, results)
                for m in diverged:
                    tracker.diverged(m, epoch)
                if results is not None:
                    show(epoch, _log(record, tracker, epoch,
                                     evaluation_columns(results, splits, losses)))
                checkpoints.save(epoch, state, record)
        except KeyboardInterrupt:  # the state after the last completed epoch is saved
            raise checkpoints.interrupted(state, record) from None
        except TrainingDiverged:  # every member: the evaluations logged so far are kept
            outputs.write_histories(setup.run_dir, [m.history for m in record.members],
                                    setup.members, setup.sweep)
            raise
    checkpoints.close()  # the last checkpoint is on disk before the W&B runs end
    if results is None or not record.active.all():  # frozen members, or nothing trained here
        results = jax.device_get(engine.evaluate(state.params, arrays))
    return finish(setup, record, tracker, results, _member_params(engine, state),
                  _member_params(engine, initial))


def _train_epoch(engine: Engine, state, arrays, epoch: int, checkpoints: Checkpoints,
                 debug_nans: bool):
    """engine.epoch; under trainer.debug_nans a NaN or inf it makes is a TrainingDiverged
    naming the operation (the epoch re-run op by op) and the last good checkpoint."""
    x, y = arrays["x_train"], arrays["y_train"]
    with debug_nans_scope(debug_nans):
        try:
            return engine.epoch(state, x, y)
        except FloatingPointError as error:
            where = locate_nan(engine.epoch_fn, state, x, y)
            raise TrainingDiverged(f"NaN or inf at epoch {epoch} (trainer.debug_nans): "
                                   f"{where or error}; {checkpoints.last_good()}") from error


def _log(record: RunRecord, tracker: Tracker, epoch: int, columns) -> str:
    """One row per member still training, in its record and its W&B run; the progress line."""
    tracker.log(epoch, record.log(epoch, columns))
    active = record.active
    loss, accuracy = np.mean(columns["train/loss"][active]), np.mean(columns["val/acc"][active])
    who = "" if len(active) == 1 else f" (mean of {int(active.sum())} members)"
    return f"train/loss {loss:.4f}  val/acc {accuracy:.3f}{who}"


def _member_params(engine: Engine, state) -> list:
    """Each member's parameters as host arrays, member m at index m."""
    stacked = engine.member_params(jax.device_get(state.params))
    n_members = len(jax.tree.leaves(stacked)[0])
    return [jax.tree.map(lambda leaf, m=m: np.asarray(leaf[m]), stacked)
            for m in range(n_members)]


@contextmanager
def _progress(setup: RunSetup, start: int):
    """(the epochs still to train, show(epoch, line)): a tqdm bar on a terminal
    (trainer.progress), log lines written above it; in a log file, one line per evaluation."""
    from tqdm.auto import tqdm

    trainer, main = setup.settings.trainer, jax.process_index() == 0
    members = len(setup.members)
    bar = tqdm(range(start + 1, trainer.epochs + 1), initial=start, total=trainer.epochs,
               desc="train" if members == 1 else f"sweep ({members} members)", unit="epoch",
               disable=not (trainer.progress and main and is_terminal()), dynamic_ncols=True)

    def show(epoch: int, line: str) -> None:
        if not bar.disable:
            bar.set_postfix_str(line)
        elif trainer.progress and main:
            log.info(f"epoch {epoch}/{trainer.epochs}: {line}")

    try:
        with around_progress_bar(not bar.disable):
            yield _profiled(bar, setup, start), show
    finally:
        bar.close()


def _profiled(epochs, setup: RunSetup, start: int):
    """The epochs, the first trainer.profile_epochs of them traced by the JAX profiler into
    <run dir>/profile (TensorBoard's profile plugin or Perfetto read it)."""
    count = setup.settings.trainer.profile_epochs if jax.process_index() == 0 else 0
    trace_dir, tracing = setup.run_dir / "profile", False
    try:
        for done, epoch in enumerate(epochs):
            if done == 0 and count:
                jax.profiler.start_trace(str(trace_dir))
                tracing = True
            yield epoch
            if done + 1 == count:
                jax.profiler.stop_trace()
                tracing = False
                log.info(f"profile of epochs {start + 1}-{epoch}: {trace_dir} "
                         f"(tensorboard --logdir {trace_dir})")
    finally:
        if tracing:
            jax.profiler.stop_trace()
