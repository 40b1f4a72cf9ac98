"""`train(cfg)`: run one configured experiment, a single run or a sweep, and return its metrics.

    validate_config(cfg)                        # once, before anything is written
    setup  = RunSetup.from_config(cfg)          # data, sizes, optimizer, members, run directory
    engine, place = _engine(cfg, setup)         # single | vmap | packed; place: on the devices
    with Recorder(cfg, setup, engine) as record:
        state = record.restore_or(place(engine.init()))
        state = run_epochs(record, engine, state)
        return record.finish(state)

A single run is a population of one member; a sweep (trainer.num_seeds=K, sweep.lr=[...]) is
K × L members trained as one program. Both go through the same loop (loop.py), so both
checkpoint, resume exactly, guard against NaN, train data parallel and write their outputs the
same way (outputs.py has the run directory's files).
"""

from __future__ import annotations

import logging
from typing import Any

import jax
from omegaconf import DictConfig

from deltaprop.io import checkpoints
from deltaprop.io.config import validate_config
from deltaprop.io.console import config_tree, console_output
from deltaprop.io.rundir import run_dir_lock
from deltaprop.nan_guard import TrainingDiverged, debug_nans_scope
from deltaprop.precision import precision_scope
from deltaprop.run import parallel
from deltaprop.run.engines import EngineSpec, make_engine
from deltaprop.run.loop import Recorder, run_epochs
from deltaprop.run.resume import check_resume_changes
from deltaprop.run.setup import RunSetup, describe_environment, jax_environment

__all__ = ["TrainingDiverged", "train"]
log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the configured population; return the final metrics (val/best_loss, test/acc, ...).

    A single run returns its final metrics; a sweep the mean over its finite members of each,
    with its objective (cfg.objective) taken from the best learning rate, and sweep/members,
    sweep/diverged, sweep/best_lr.

    Raises:
      InputError (ConfigError, DataError, CheckpointError, RunDirError): bad input, an unusable
        checkpoint or a run directory in use, found before any training or W&B run starts.
      TrainingDiverged (RuntimeError): every member's loss or parameters became NaN/inf; the
        W&B runs are marked failed and the checkpoints saved before it are kept.
      RunInterrupted (KeyboardInterrupt): Ctrl-C; a final checkpoint is saved first when
        checkpointing is on.
    """
    with console_output():
        validate_config(cfg)
        check_resume_changes(cfg)
        if cfg.trainer.distributed:
            parallel.initialize_distributed()
        if jax.process_index() == 0:
            if cfg.print_config:
                log.info(config_tree(cfg))
            log.info(describe_environment(jax_environment()))
        return _train(cfg)


def _train(cfg: DictConfig) -> dict[str, Any]:
    with (
        precision_scope(cfg.trainer.precision),
        checkpoints.quiet_orbax_logs(),
        debug_nans_scope(cfg.trainer.debug_nans),
    ):
        setup = RunSetup.from_config(cfg)
        engine, place = _engine(cfg, setup)
        with (
            run_dir_lock(setup.run_dir, enabled=jax.process_index() == 0),
            Recorder(cfg, setup, engine) as record,
        ):
            state = record.restore_or(place(engine.init()))
            state = run_epochs(record, engine, state)
            return record.finish(state)


def _engine(cfg: DictConfig, setup: RunSetup):
    """The engine, and how to place its state (replicated on every device, data parallel)."""
    mesh = setup.mesh
    member_mesh = parallel.member_mesh() if cfg.sweep.shard_members else None
    spec = EngineSpec(
        members=setup.members, sizes=setup.sizes, init=cfg.model.init,
        precision=setup.precision, optimizer=setup.optimizer, grad=cfg.trainer.grad,
        batch_size=cfg.trainer.batch_size,
        batch_sharding=None if mesh is None else parallel.batch_sharding(mesh),
        limit_batches=cfg.trainer.limit_batches, loss=cfg.loss,
        activation=cfg.model.activation, member_chunk=cfg.sweep.member_chunk,
        member_mesh=member_mesh,
    )
    engine = make_engine(setup.engine, spec)
    if member_mesh is not None:
        return engine, lambda state: parallel.shard_members(state, member_mesh,
                                                            engine.member_axis_of)
    place = (lambda state: state) if mesh is None else (lambda state: parallel.replicate(state, mesh))
    return engine, place
