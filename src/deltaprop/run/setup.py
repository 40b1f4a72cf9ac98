"""Run setup: the settings turned, once, into everything a run needs.

`RunSetup.create(settings)` loads and checks the data (DataError before anything is written),
splits and standardizes it, describes the model, lists the members and builds the engine's
spec; every check that can fail does so here, before the run directory exists. The gradient
check and the worked example take their network and data from the same functions, so every
entry point starts where training starts.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from deltaprop.choices import LoggerBackend
from deltaprop.errors import ConfigError
from deltaprop.io.data import Splits, check_feature_count, load_dataset, split_and_standardize
from deltaprop.model import Model
from deltaprop.population import AXES, Member, member_grid
from deltaprop.precision import Precision, precision_of
from deltaprop.run import parallel
from deltaprop.run.engines import EngineSpec
from deltaprop.run.resume import data_fingerprint
from deltaprop.settings import TrainSettings, flat, parse_block
from deltaprop.training import batches_per_epoch


def objectives() -> list[str]:
    """The metrics a run reports and a Hydra sweeper can optimize (with several outputs,
    auc is the mean over the outputs)."""
    keys = ["train/epoch_loss", "val/best_loss"]
    keys += [f"{split}/{name}" for split in ("train", "val", "test")
             for name in ("loss", "acc", "auc")]
    return keys


def check_objective(objective: str) -> None:
    """Raise ConfigError unless the run reports `objective`: a typo is found before training."""
    if objective not in objectives():
        raise ConfigError(
            f"objective={objective!r} is not a metric this run reports; choose one of: "
            f"{', '.join(objectives())}"
        )


def prepare_data(settings: TrainSettings) -> Splits:
    """Load, validate, split and standardize (fitted on train only). Raises DataError.

    trainer.overfit_batches=k keeps only the first k minibatches' worth of training examples:
    the same few examples every epoch, which a working model must fit (loss -> 0)."""
    dataset, seed = settings.dataset, settings.data_seed
    splits = split_and_standardize(load_dataset(dataset, seed), dataset.val_fraction,
                                   dataset.test_fraction, seed)
    if settings.trainer.overfit_batches:
        n = settings.trainer.overfit_batches * settings.trainer.batch_size
        splits = dataclasses.replace(splits, x_train=splits.x_train[:n], y_train=splits.y_train[:n])
    return splits


def model_of(settings: TrainSettings, splits: Splits) -> Model:
    """[n_inputs (from the data), *model.hidden, n_outputs (from the labels)], the cost, the
    hidden activation and the init scheme."""
    sizes = [splits.x_train.shape[1], *settings.model.hidden, splits.y_train.shape[1]]
    return Model.named(sizes, settings.loss, settings.model.activation, settings.model.init)


def is_sweep(settings: TrainSettings) -> bool:
    """trainer.num_seeds > 1, any sweep axis or a block of a grid: members get their own
    outputs under members/."""
    sweep = settings.sweep
    return (settings.trainer.num_seeds > 1 or any(getattr(sweep, axis) for axis in AXES)
            or sweep.block is not None)


def grid_of(settings: TrainSettings) -> list[Member]:
    """K = trainer.num_seeds seeds from `seed` × the product of the sweep's axes, each axis
    left empty holding the run's own value (optimizer.lr, optimizer.weight_decay, the momentum,
    model.init_scale)."""
    sweep, optimizer = settings.sweep, settings.optimizer
    own = {"lr": optimizer.lr, "weight_decay": optimizer.weight_decay,
           "momentum": optimizer.momentum_value, "init_scale": settings.model.init_scale}
    axes = [[float(value) for value in getattr(sweep, axis)] or [own[axis]] for axis in AXES]
    return member_grid(settings.seed, settings.trainer.num_seeds, *axes)


def block_of(grid: list[Member], block: str) -> list[Member]:
    """sweep.block="i/n": the i-th of n contiguous, near-equal blocks of the grid; its members
    keep their indices in the whole grid."""
    index, count = parse_block(block)
    if count > len(grid):
        raise ConfigError(f"sweep.block={block} asks for {count} blocks of a grid of only "
                          f"{len(grid)} members")
    start, stop = (len(grid) * index) // count, (len(grid) * (index + 1)) // count
    return grid[start:stop]


def members_of(settings: TrainSettings) -> list[Member]:
    """The members this run trains: the grid (`grid_of`), or its block sweep.block."""
    grid = grid_of(settings)
    return grid if settings.sweep.block is None else block_of(grid, settings.sweep.block)


def resolve_run_dir(settings: Any, command: str = "train") -> Path:
    """Where a run writes: run_dir (in a multirun, where run_dir is the sweep's folder: the
    job's folder in it), else Hydra's output directory, else the layout the commands use,
    outputs/<command>/<experiment_name>/<time with microseconds> (one per launch)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    sweep_dir = hydra and hydra.mode == RunMode.MULTIRUN and Path(hydra.sweep.dir)
    if settings.run_dir and Path(settings.run_dir) != sweep_dir:
        return Path(settings.run_dir)
    if hydra is not None:
        return Path(hydra.runtime.output_dir)
    moment = time.time()
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(moment))
    return (Path("outputs") / command / settings.experiment_name
            / f"{stamp}-{int(moment % 1 * 1e6):06d}")


def check_wandb_agent(settings: TrainSettings, n_members: int) -> None:
    """A W&B sweep agent gives its trial one run id (WANDB_RUN_ID): a trial is one member."""
    if os.environ.get("WANDB_SWEEP_ID") and settings.logger.backend == LoggerBackend.wandb \
            and n_members > 1:
        axes = " and ".join(f"sweep.{axis}={list(getattr(settings.sweep, axis))}"
                            for axis in AXES if getattr(settings.sweep, axis))
        raise ConfigError(
            f"a W&B sweep agent's trial is one run (WANDB_SWEEP_ID is set), but "
            f"trainer.num_seeds={settings.trainer.num_seeds}{' and ' + axes if axes else ''} "
            f"make {n_members} members; sweep seeds and hyperparameters in the W&B sweep file "
            "instead"
        )


def check_devices(settings: TrainSettings, n_members: int, n_train: int) -> None:
    """trainer.data_parallel: the batch splits evenly over the devices; sweep.shard_members: a
    sweep, one device's worth of members each, one host, not with data parallel.

    Raises:
      ConfigError: naming what cannot be honoured.
    """
    trainer = settings.trainer
    if trainer.data_parallel:
        parallel.check_divisible(trainer.batch_size, n_train, parallel.data_mesh())
    if not settings.sweep.shard_members:
        return
    if not is_sweep(settings):
        raise ConfigError("sweep.shard_members=true splits a sweep's members over the devices; "
                          "this run has one member (set trainer.num_seeds or a sweep axis)")
    if trainer.data_parallel:
        raise ConfigError("sweep.shard_members=true and trainer.data_parallel=true both claim "
                          "the devices: choose one (members split, or every batch split)")
    if trainer.distributed:
        raise ConfigError("sweep.shard_members=true spans one host's devices; across hosts, run "
                          "blocks of the grid (sweep.block=i/n, one job each) and join them "
                          "with deltaprop-gather")
    parallel.check_members_divisible(n_members, parallel.member_mesh())


def jax_environment() -> dict[str, Any]:
    """Where this run computes: logged at the start and kept in the W&B config (key `jax`)."""
    devices = jax.devices()
    return {"version": jax.__version__, "backend": jax.default_backend(),
            "device_kind": devices[0].device_kind, "device_count": len(devices),
            "local_device_count": jax.local_device_count(),
            "process_count": jax.process_count()}


def describe_environment(env: dict[str, Any]) -> str:
    count = env["device_count"]
    line = (f"JAX {env['version']} on {env['backend']}: {count} device{'s' * (count != 1)} "
            f"({env['device_kind']})")
    if env["process_count"] > 1:
        line += f" over {env['process_count']} processes"
    return line


def cast_splits(splits: Splits, dtype: Any) -> dict[str, jax.Array]:
    return {
        name: jnp.asarray(getattr(splits, name), dtype)
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    }


@dataclass(frozen=True)
class RunSetup:
    """Everything a run needs, from its settings, checked before the run directory exists."""

    settings: TrainSettings  # every key, typed
    model: Model
    precision: Precision
    splits: Splits
    arrays: dict[str, jax.Array]  # x_train, y_train, x_val, ... in the training dtype
    members: tuple[Member, ...]
    grid_size: int  # members of the whole grid (a block trains some of them)
    sweep: bool  # outputs per member (members/, members.csv) rather than one run's
    engine: EngineSpec
    run_dir: Path
    data_hash: str

    @classmethod
    def create(cls, settings: TrainSettings) -> RunSetup:
        """Raises InputError (ConfigError, DataError) before anything is written."""
        trainer = settings.trainer
        check_objective(settings.objective)
        precision = precision_of(trainer.precision)
        splits = prepare_data(settings)
        model = model_of(settings, splits)
        check_feature_count(splits.x_train, model.sizes[0])
        n_train = splits.x_train.shape[0]
        members = members_of(settings)
        check_devices(settings, len(members), n_train)
        check_wandb_agent(settings, len(members))
        engine = EngineSpec.create(
            settings.optimizer, batches_per_epoch(n_train, trainer.batch_size,
                                                  trainer.limit_batches), trainer.epochs,
            layout=str(settings.sweep.engine) if is_sweep(settings) else "single",
            model=model, precision=precision, grad=str(trainer.grad),
            batch_size=trainer.batch_size, limit_batches=trainer.limit_batches,
            n_members=len(members), member_chunk=settings.sweep.member_chunk,
            data_parallel=trainer.data_parallel, shard_members=settings.sweep.shard_members,
        )
        return cls(settings, model, precision, splits, cast_splits(splits, precision.dtype),
                   tuple(members), len(grid_of(settings)), is_sweep(settings), engine,
                   resolve_run_dir(settings), data_fingerprint(splits))

    def checkpoint_metadata(self) -> dict[str, Any]:
        """What a checkpoint of this run records and a resume compares (io.checkpoints)."""
        from deltaprop.io.checkpoints import run_metadata

        return run_metadata(
            self.model.sizes, self.settings.dataset.name, self.splits.feature_names,
            self.settings.optimizer.name, self.precision.name,
            [member.identity() for member in self.members], self.engine.layout,
            settings=flat(self.settings), data=self.data_hash,
        )
