"""The epoch loop and the recorder: one loop for every run, a single one or a sweep.

    state = record.restore_or(engine.init())
    if record.fresh: record.log(0, None, engine.evaluate(state.params))   # epoch 0: at init
    for epoch in record.epochs():
        new, losses, finite = engine.epoch(state, x, y)      # jitted, pure, every member
        results = engine.evaluate(new.params) if record.evaluate_now(epoch) else None
        state = record.guard(epoch, state, new, losses, finite, results)
        if results: record.log(epoch, losses, results)
        record.checkpoint(epoch, state)
    record.finish(state)

The Recorder is the one place that keeps each member's history, logs it to the member's W&B run,
checkpoints the whole population, and guards against NaN: a member whose loss or parameters
stop being finite is put back to its state after the previous epoch (`engine.keep`) and marked
diverged, the others train on unchanged; when none is left (always, for a single run) the run
stops with TrainingDiverged. Resume restores the state and every member's record, so a resumed
run ends bit for bit where an uninterrupted one does: the epoch is pure and evaluation only reads.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from deltaprop.errors import EXIT_INTERRUPTED, RunInterrupted
from deltaprop.gradient_check import gradcheck
from deltaprop.io import checkpoints, tracking
from deltaprop.io.console import around_progress_bar, is_terminal
from deltaprop.io.rundir import check_run_dir
from deltaprop.io.tracking import NullLogger, make_logger
from deltaprop.metrics import IDENTITY, aggregate, member_rows, metric_keys, split_metrics
from deltaprop.nan_guard import (
    Divergence,
    TrainingDiverged,
    diverged_error,
    divergence_message,
    locate_nan,
)
from deltaprop.run import outputs, resume
from deltaprop.run.engines import Engine
from deltaprop.run.setup import (
    GRADCHECK_MAX_PARAMS,
    RunSetup,
    gradcheck_batch,
    grid_of,
    hydra_job_identity,
    jax_environment,
    member_config,
    sweep_group,
)
from deltaprop.training import TrainState

log = logging.getLogger(__name__)


@dataclass
class MemberRecord:
    """What the recorder keeps of one member (and saves in every checkpoint)."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_val_loss: float = math.inf
    run_id: str | None = None  # its W&B run, continued on resume
    divergence: Divergence | None = None

    def to_json(self) -> dict[str, Any]:
        divergence = self.divergence and vars(self.divergence)
        return {"history": self.history, "best_val_loss": self.best_val_loss,
                "run_id": self.run_id, "divergence": divergence}

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> MemberRecord:
        divergence = saved["divergence"] and Divergence(**saved["divergence"])
        return cls(saved["history"], saved["best_val_loss"], saved["run_id"], divergence)


def run_epochs(record: Recorder, engine: Engine, state: TrainState) -> TrainState:
    """Train from the recorder's start epoch to the last, recording as configured.

    Raises:
      RunInterrupted: Ctrl-C; the state after the last completed epoch is checkpointed first
        (when checkpointing is on).
    """
    arrays = record.setup.arrays
    epoch = record.start_epoch
    try:
        with record.progress() as epochs:
            if record.fresh:  # epoch 0: the initial parameters, evaluated before any training
                record.log(0, None, jax.device_get(engine.evaluate(state.params, arrays)))
            for epoch in epochs:
                state = _one_epoch(record, engine, state, epoch, arrays)
    except KeyboardInterrupt:
        raise record.interrupted(state) from None
    return state


def _one_epoch(record: Recorder, engine: Engine, state: TrainState, epoch: int, arrays):
    with record.profiled(epoch):
        new_state, epoch_losses, finite = record.train_epoch(epoch, state)
        results = engine.evaluate(new_state.params, arrays) if record.evaluate_now(epoch) \
            else None
        epoch_losses, finite, results = jax.device_get((epoch_losses, finite, results))
    state = record.guard(epoch, state, new_state, epoch_losses, finite, results)
    if results is not None:
        record.log(epoch, epoch_losses, results)
    record.checkpoint(epoch, state)
    return state


class Recorder:
    """History, W&B runs, checkpoints, the NaN guard and the outputs of every member of a run."""

    def __init__(self, cfg: DictConfig, setup: RunSetup, engine: Engine):
        self.cfg, self.setup, self.engine = cfg, setup, engine
        self.trainer = cfg.trainer
        self.records = [MemberRecord() for _ in setup.members]
        self.group: str | None = None  # a sweep's W&B group, kept across resumes
        self.summary_run_id: str | None = None
        self.loggers: list[NullLogger] = []
        self.summary_logger = NullLogger()
        self.manager = None
        self.start_epoch = 0
        self.source: checkpoints.CheckpointRef | None = None  # the checkpoint resumed from
        self.resume_changes: list[dict[str, Any]] = []  # settings changed on a resume
        self.is_main = jax.process_index() == 0  # several hosts: only process 0 writes
        self.bar = None
        self.last_evaluation: tuple[int, dict[str, Any]] | None = None  # (epoch, results)

    # ------------------------------------------------------------ start and resume

    def __enter__(self):
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        try:
            if self.manager is not None:  # a save in flight completes; a diverged state was
                self.manager.wait_until_finished()  # never handed to it
        finally:
            if self.manager is not None:
                self.manager.close()
            if self.bar is not None:
                self.bar.close()
            code = EXIT_INTERRUPTED if error_type and issubclass(error_type, KeyboardInterrupt) \
                else 1
            for logger in [*self.loggers, self.summary_logger]:  # still open: the run failed
                logger.finish(code)

    def restore_or(self, state: TrainState) -> TrainState:
        """The newest restorable checkpoint trainer.resume names, else `state`; then open the
        W&B runs. Refuses a directory with an earlier run's outputs unless resuming them."""
        run_dir, root = self.setup.run_dir, self.setup.run_dir / checkpoints.CHECKPOINT_DIR
        candidates = resume.resume_candidates(self.trainer.resume, run_dir)
        if self.is_main:
            here = bool(candidates) and candidates[0].root.resolve() == root.resolve()
            check_run_dir(run_dir, resuming=here, exists=self.cfg.run_dir_exists)
        if candidates:
            state = self._resume(candidates, state, root)
        if self.trainer.checkpoint_every:
            _check_checkpoint_dir_free(root, self.source)
            self.manager = checkpoints.open_manager(root, self.trainer.keep_checkpoints)
        self._open_loggers()
        if self.source is None:
            self._log_gradcheck(state)
        return state

    def _resume(self, candidates, fresh: TrainState, root: Path) -> TrainState:
        named = list(self.trainer.resume_changes)
        self.source, state, progress, changes = resume.restore_newest(
            candidates, fresh, self.setup.metadata, named, root
        )
        self._load(progress)
        self.start_epoch = int(np.max(np.asarray(state.epoch)))
        self._check_resumable(self.source)
        log.info(f"resuming from {self.source.path} (epoch {self.start_epoch} of "
              f"{self.trainer.epochs})")
        if changes:
            listed = "; ".join(f"{c['key']} {c['old']!r} -> {c['new']!r}" for c in changes)
            log.info(f"resuming with changed settings from epoch {self.start_epoch}: {listed}")
            self.resume_changes += [{"epoch": self.start_epoch, **c} for c in changes]
        return resume.with_changes(state, fresh, changes)

    def _check_resumable(self, source: checkpoints.CheckpointRef) -> None:
        epochs = self.trainer.epochs
        if self.start_epoch > epochs:
            raise checkpoints.CheckpointError(
                f"checkpoint {source.path} is at epoch {self.start_epoch}, past "
                f"trainer.epochs={epochs}"
            )
        evaluated = [rows[-1]["epoch"] for rows in (r.history for r in self.records) if rows]
        if self.start_epoch == epochs and max(evaluated, default=0) < epochs:
            raise checkpoints.CheckpointError(
                f"checkpoint {source.path} is at the last epoch ({epochs}) but was saved before "
                "that epoch was evaluated (its run had more epochs); resume it with a larger "
                "trainer.epochs"
            )

    def _progress(self) -> dict[str, Any]:
        return {"members": [record.to_json() for record in self.records],
                "group": self.group, "summary_run_id": self.summary_run_id,
                "resume_changes": self.resume_changes}

    def _load(self, progress: dict[str, Any]) -> None:
        self.records = [MemberRecord.from_json(saved) for saved in progress["members"]]
        self.group, self.summary_run_id = progress["group"], progress["summary_run_id"]
        self.resume_changes = list(progress.get("resume_changes", []))

    def _open_loggers(self) -> None:
        """One W&B run per member (continued under its id on resume), and a sweep's summary run.
        Each is kept as soon as it is open, so a failure part-way finishes those already open."""
        setup, logger_cfg = self.setup, self.cfg.logger
        if not self.is_main:
            self.loggers = [NullLogger() for _ in setup.members]
            return
        logger_cfg = tracking.resolve_mode(logger_cfg)  # online without W&B reachable: offline
        recorded = {"jax": jax_environment()}
        if self.resume_changes:
            recorded["resume_changes"] = self.resume_changes
        if not setup.sweep:
            name, group = hydra_job_identity(self.cfg)
            config = OmegaConf.to_container(self.cfg, resolve=True, enum_to_str=True) | recorded
            self.loggers.append(make_logger(logger_cfg, config, setup.run_dir, name=name,
                                            group=group, resume_id=self.records[0].run_id))
        else:
            self.group = self.group or sweep_group(self.cfg)
            for member, record in zip(setup.members, self.records):
                self.loggers.append(make_logger(
                    logger_cfg, member_config(self.cfg, member) | recorded, setup.run_dir,
                    name=member.name, group=self.group, resume_id=record.run_id,
                    system_metrics=False,  # one set of machine charts: the summary run's
                ))
            self.summary_logger = make_logger(
                logger_cfg, OmegaConf.to_container(self.cfg, resolve=True, enum_to_str=True) | recorded,
                setup.run_dir,
                name=f"{self.group}-summary", group=self.group, job_type="sweep-summary",
                resume_id=self.summary_run_id,
            )
            self.summary_run_id = self.summary_logger.run_id
        for record, logger in zip(self.records, self.loggers):
            record.run_id = logger.run_id

    @property
    def main_logger(self) -> NullLogger:
        """The run a single run logs to, or a sweep's summary run."""
        return self.summary_logger if self.setup.sweep else self.loggers[0]

    def _log_gradcheck(self, state: TrainState) -> None:
        """The gradient check of the first member's initial parameters, as a W&B table."""
        if not self.is_main or self.cfg.logger.name == "none" or not self.cfg.logger.log_gradcheck:
            return
        params = jax.tree.map(lambda leaf: leaf[0],
                              self.engine.member_params(jax.device_get(state.params)))
        if sum(leaf.size for leaf in jax.tree.leaves(params)) > GRADCHECK_MAX_PARAMS:
            return
        report = gradcheck(params, *gradcheck_batch(self.setup.splits), **self._model())
        self.main_logger.log_table("gradcheck", *report.table())

    def _model(self) -> dict[str, str]:
        """The cost and hidden activation: what the gradient check and the saved model need."""
        return {"loss": str(self.cfg.loss), "activation": str(self.cfg.model.activation)}

    # ------------------------------------------------------------ every epoch

    @contextmanager
    def progress(self):
        """The epochs still to train. On a terminal: a tqdm bar (trainer.progress), log lines
        written above it; in a log file (stderr not a terminal): one line per evaluation."""
        from tqdm.auto import tqdm

        members = len(self.setup.members)
        self.bar = tqdm(
            range(self.start_epoch + 1, self.trainer.epochs + 1),
            desc="train" if members == 1 else f"sweep ({members} members)",
            unit="epoch", initial=self.start_epoch, total=self.trainer.epochs,
            disable=not (self.trainer.progress and self.is_main and is_terminal()),
            dynamic_ncols=True,
        )
        try:
            with around_progress_bar(not self.bar.disable):
                yield self.bar
        finally:
            self.bar.close()

    @contextmanager
    def profiled(self, epoch: int):
        """trainer.profile_epochs=k: a JAX profiler trace of the first k epochs trained here, in
        <run dir>/profile (TensorBoard's profile plugin or Perfetto read it)."""
        first = self.start_epoch + 1
        last = min(self.start_epoch + self.trainer.profile_epochs, self.trainer.epochs)
        if not (self.is_main and first <= epoch <= last):
            yield
            return
        trace_dir = self.setup.run_dir / "profile"
        if epoch == first:
            jax.profiler.start_trace(str(trace_dir))
        stopped = False
        try:
            yield
        except BaseException:
            jax.profiler.stop_trace()
            stopped = True
            raise
        finally:
            if epoch == last and not stopped:
                jax.profiler.stop_trace()
                log.info(f"profile of epochs {first}-{last}: {trace_dir} "
                         f"(tensorboard --logdir {trace_dir})")

    @property
    def fresh(self) -> bool:
        """Nothing trained or recorded yet (not a resume): epoch 0 is still to be evaluated."""
        return self.start_epoch == 0 and not any(record.history for record in self.records)

    def evaluate_now(self, epoch: int) -> bool:
        return epoch % self.trainer.eval_every == 0 or epoch == self.trainer.epochs

    def train_epoch(self, epoch: int, state: TrainState):
        """engine.epoch, with trainer.debug_nans's FloatingPointError turned into TrainingDiverged
        naming the operation (the epoch re-run op by op) and the last good checkpoint."""
        x, y = self.setup.arrays["x_train"], self.setup.arrays["y_train"]
        try:
            return self.engine.epoch(state, x, y)
        except FloatingPointError as error:
            where = locate_nan(self.engine.epoch_fn, state, x, y)
            raise TrainingDiverged(f"NaN at epoch {epoch} (trainer.debug_nans): "
                                   f"{where or error}; {self._last_checkpoint()}") from error

    @property
    def active(self) -> np.ndarray:
        """(M,) True for the members still training."""
        return np.array([record.divergence is None for record in self.records])

    def guard(self, epoch, previous, new, epoch_losses, finite, results) -> TrainState:
        """The state to go on from: `new`, with every member that is not finite any more (step
        losses or parameters, or its evaluated train/val loss) kept at its `previous` state.

        Raises:
          TrainingDiverged: no member is left.
        """
        trained = np.array(finite, bool)  # step losses and parameters
        evaluated = np.ones_like(trained)
        if results is not None:
            for split in ("train", "val"):
                evaluated &= np.isfinite(results[split]["loss"])
        newly = self.active & ~(trained & evaluated)
        for m in np.flatnonzero(newly):
            self._mark_diverged(epoch, m, new, epoch_losses, trained[m], results)
        active = self.active
        if not active.any():
            raise self._all_diverged()
        if active.all():
            return new
        return self.engine.keep(jnp.asarray(active), new, previous)

    def _mark_diverged(self, epoch, m, new, epoch_losses, trained, results) -> None:
        member_params = [{name: np.asarray(leaf)[m] for name, leaf in layer.items()}
                         for layer in self.engine.member_params(jax.device_get(new.params))]
        losses, name = epoch_losses[m : m + 1], "loss"
        if trained:  # the step losses and parameters were finite: the evaluation overflowed
            name = next(f"{split}/loss" for split in ("train", "val")
                        if not np.isfinite(results[split]["loss"][m]))
            losses = np.array([results[name.split("/")[0]]["loss"][m]])
        message = divergence_message(epoch, losses, member_params, self.setup.arrays["x_train"],
                                     loss_name=name)
        self.records[m].divergence = Divergence(epoch, message)
        self.loggers[m].summarize({"diverged_epoch": epoch})
        if len(self.records) > 1:
            self._say(f"member {m} ({self.setup.members[m].name}) diverged: {message}; "
                      f"frozen at its state after epoch {epoch - 1}, the others train on")

    def _all_diverged(self) -> TrainingDiverged:
        divergences = [record.divergence for record in self.records]
        if len(divergences) == 1:
            message = divergences[0].message
        else:
            epochs = ", ".join(str(d.epoch) for d in divergences)
            message = (f"every member diverged (at epochs {epochs}); member 0: "
                       f"{divergences[0].message}")
        return diverged_error(message, self._last_checkpoint())

    def _last_checkpoint(self) -> str:
        if self.manager is None:
            return "no checkpoint to go back to (trainer.checkpoint_every=0)"
        self.manager.wait_until_finished()
        step = self.manager.latest_step()
        if step is None:
            return "no checkpoint was saved before it"
        return f"last good checkpoint: {Path(self.manager.directory) / str(step)} (epoch {step})"

    def _columns(self, results: dict[str, Any]) -> dict[str, np.ndarray]:
        """train/*, val/* and grads/* of every member from one evaluation, each (M,)."""
        splits = self.setup.splits
        names = splits.label_names  # several outputs: also train/acc/<name>, val/auc/<name>, ...
        columns = split_metrics(results["train"], splits.y_train, "train", names)
        columns |= split_metrics(results["val"], splits.y_val, "val", names)
        return columns | {f"grads/{key}": value for key, value in results["statistics"].items()}

    def log(self, epoch: int, epoch_losses: np.ndarray | None, results: dict[str, Any]) -> None:
        """One history row per active member, also to its W&B run. Epoch 0 (the initial
        parameters, `epoch_losses` None) has no train/epoch_loss: nothing was trained yet."""
        columns = {} if epoch_losses is None else {"train/epoch_loss": epoch_losses}
        columns |= self._columns(results)
        rows = member_rows(columns, {"epoch": epoch})
        self.last_evaluation = (epoch, results)
        for record, logger, row in zip(self.records, self.loggers, rows):
            if record.divergence is not None:
                continue
            record.best_val_loss = min(record.best_val_loss, row["val/loss"])
            row["val/best_loss"] = record.best_val_loss
            record.history.append(row)
            logger.log(row, step=epoch)
        active = self.active
        loss, val_acc = np.mean(columns["train/loss"][active]), np.mean(columns["val/acc"][active])
        if self.bar is not None and not self.bar.disable:
            self.bar.set_postfix(loss=f"{loss:.4f}", val_acc=f"{val_acc:.3f}")
        elif self.trainer.progress and self.is_main:  # not a terminal: a line, not a bar
            who = "" if len(self.records) == 1 else f" (mean of {int(active.sum())} members)"
            log.info(f"epoch {epoch}/{self.trainer.epochs}: train/loss {loss:.4f}  "
                     f"val/acc {val_acc:.3f}{who}")

    def checkpoint(self, epoch: int, state: TrainState) -> None:
        every = self.trainer.checkpoint_every
        if self.manager is not None and (epoch % every == 0 or epoch == self.trainer.epochs):
            checkpoints.save_checkpoint(
                self.manager, state, epoch, self._progress(), self.setup.metadata
            )

    def interrupted(self, state: TrainState) -> RunInterrupted:
        """Ctrl-C: checkpoint the last completed epoch (if checkpointing is on); the error."""
        epoch = int(np.max(np.asarray(state.epoch)))
        saved = "checkpointing is off (trainer.checkpoint_every=0): nothing to resume from"
        if self.manager is not None:
            if self.manager.latest_step() != epoch:
                checkpoints.save_checkpoint(self.manager, state, epoch, self._progress(),
                                            self.setup.metadata)
            self.manager.wait_until_finished()
            saved = (f"checkpoint {self.manager.directory}/{epoch} saved; continue with "
                     "trainer.resume=auto and the same run_dir")
        return RunInterrupted(f"interrupted after epoch {epoch} of {self.trainer.epochs}; {saved}")

    def _say(self, line: str) -> None:
        if self.is_main:
            log.info(line)

    # ------------------------------------------------------------ the end

    def finish(self, state: TrainState) -> dict[str, Any]:
        """Final rows, outputs, W&B summaries; the run's result (a sweep's: over members)."""
        if self.manager is not None:
            self.manager.wait_until_finished()  # the last checkpoint is on disk before W&B ends
        setup = self.setup
        last = self.last_evaluation
        if last is not None and last[0] == self.trainer.epochs and self.active.all():
            results = last[1]
        else:  # frozen members (evaluated before they were put back), or nothing evaluated here
            results = jax.device_get(self.engine.evaluate(state.params, setup.arrays))
        tests = member_rows(split_metrics(results["test"], setup.splits.y_test, "test",
                                          setup.splits.label_names), {})
        frozen = member_rows(self._columns(results), {})
        finals = [self._final_row(m, test, now) for m, (test, now) in enumerate(zip(tests, frozen))]
        params = self.engine.member_params(jax.device_get(state.params))
        if not setup.sweep:
            return self._finish_single(params, finals[0])
        return self._finish_sweep(params, finals)

    def _final_row(self, m: int, test: dict[str, float], now: dict[str, float]):
        """Member m's last evaluation and test metrics; a diverged member's are those of the
        state it was frozen at (`now`: its metrics at the end)."""
        record = self.records[m]
        if record.divergence is None:
            row = record.history[-1] | test
        else:
            best = min(record.best_val_loss, now["val/loss"])
            row = {"epoch": record.divergence.epoch - 1, **now, "val/best_loss": best, **test}
        if not self.setup.sweep:
            return row
        return outputs.member_final(self.setup.members[m], row, record.divergence)

    def _finish_single(self, params, final: dict[str, float]) -> dict[str, Any]:
        (record,), (logger,) = self.records, self.loggers
        if self.is_main:
            single_params = jax.tree.map(lambda leaf: leaf[0], params)
            outputs.write_run_outputs(self.setup.run_dir, record.history, final, single_params,
                                      self.setup.splits, logger, self.trainer.epochs,
                                      self.cfg.logger.plots, model=self._model())
            outputs.print_summary(final, self.setup.run_dir, logger.run_path)
        logger.summarize(final)
        logger.finish(0)
        return final

    def _finish_sweep(self, params, finals: list[dict[str, Any]]) -> dict[str, Any]:
        setup, objective = self.setup, self.cfg.objective
        axes = setup.members[0].swept
        summary = aggregate(finals, objective, axes)
        if not self.is_main:  # every process returns the result; only process 0 writes
            return summary
        by_point, paths = outputs.write_sweep_outputs(
            setup.run_dir, setup.members, [r.history for r in self.records], finals, params,
            summary, self.cfg.logger.plots, splits=setup.splits, model=self._model(),
            grid=self._grid(),
        )
        for member, final, logger in zip(setup.members, finals, self.loggers):
            logger.summarize(final)
            logger.log_model(paths[f"members/{member.index}"], final)
            logger.finish(1 if final["diverged"] else 0)  # a diverged member's run is failed
        self._summarize_sweep(finals, summary, paths.get("curves"))
        if "sweep/best_lr" in summary:
            best = {axis: summary[f"sweep/best_{axis}"] for axis in axes}
            title = (f"final metrics of the best {outputs.point_label(best, axes)} "
                     f"(mean over its finite members)")
        else:
            what = "learning rate" if tuple(axes) == ("lr",) else "grid point"
            title = f"final metrics: no {what} has a finite mean {objective}"
        outputs.print_summary(summary, setup.run_dir, self.summary_logger.run_path, title)
        keys = [key for key in outputs.BY_POINT_KEYS if f"{key}/mean" in by_point[0]]
        outputs.print_by_point(by_point, keys, axes)
        if self.summary_logger.run_path:
            log.info(f"W&B group {self.group!r}: {len(finals)} member runs and one summary run; "
                  f"upload all with: wandb sync "
                  f"{Path(self.summary_logger.run_path).parent.resolve()}/offline-run-*")
        return summary

    def _grid(self) -> dict[str, Any]:
        """grid.json: what makes blocks of one sweep (sweep.block) joinable by deltaprop-gather."""
        return {"block": self.cfg.sweep.block, "grid_members": len(grid_of(self.cfg)),
                "axes": list(self.setup.members[0].swept), "objective": self.cfg.objective,
                "settings": resume.run_settings(self.cfg)}

    def _summarize_sweep(self, finals, summary, curves_path) -> None:
        logger = self.summary_logger
        if curves_path is not None:
            logger.log_images({"plots/sweep_curves": curves_path}, step=self.trainer.epochs)
        columns = [*IDENTITY, *metric_keys(finals)]
        logger.log_table("members", columns, [[row.get(c) for c in columns] for row in finals])
        logger.summarize({k: v for k, v in summary.items() if isinstance(v, (int, float))})
        logger.finish(0)


def _check_checkpoint_dir_free(root: Path, source: checkpoints.CheckpointRef | None) -> None:
    """Refuse to mix a new run's checkpoints with an earlier run's in the same directory."""
    existing = checkpoints.complete_steps(root)
    if not existing:
        return
    if source is not None and source.root.resolve() == root.resolve():
        return
    raise checkpoints.CheckpointError(
        f"{root} already holds checkpoints (epochs {existing[0]}..{existing[-1]}) of an earlier "
        "run; continue it with trainer.resume=auto, or choose another run_dir / hydra.run.dir"
    )
