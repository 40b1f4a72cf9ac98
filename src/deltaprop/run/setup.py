"""Run setup: the composed config turned, once, into everything a run needs.

`RunSetup.from_config(cfg)` loads and checks the data (DataError before anything is written),
splits and standardizes it, sizes the network, builds the optimizer, lists the members and picks
the engine; only then does it create the run directory. The gradient check and the worked
example take their network and data from the same functions, so every entry point starts where
training starts.
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
import numpy as np
import optax
from jax.sharding import Mesh
from omegaconf import DictConfig, OmegaConf

from deltaprop.gradient_check import GradcheckReport, gradcheck
from deltaprop.io.checkpoints import run_metadata
from deltaprop.io.config import ConfigError, parse_block
from deltaprop.io.data import Splits, check_feature_count, load_dataset, split_and_standardize
from deltaprop.network import Params, init_params
from deltaprop.population import AXES, Member, initial_params, member_grid, member_keys
from deltaprop.precision import Precision, float64_scope, precision_of, precision_scope
from deltaprop.run import parallel
from deltaprop.run.resume import data_fingerprint, run_settings
from deltaprop.teaching.bugs import Bug, describe_bug, gradient_with_bug
from deltaprop.training import (
    batches_per_epoch,
    init_train_state,
    make_optimizer,
    make_train_epoch,
    run_momentum,
    value_and_grad_fn,
)

GRADCHECK_BATCH = 16
GRADCHECK_MAX_PARAMS = 20_000  # finite differences cost 4 loss evaluations per parameter


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


def data_seed(cfg: DictConfig) -> int:
    """The seed of the data (synthetic draw, split): dataset.seed, else seed."""
    seed = cfg.dataset.get("seed")
    return int(cfg.seed if seed is None else seed)


def prepare_data(cfg: DictConfig) -> Splits:
    """Load, validate, split and standardize (fitted on train only). Raises DataError.

    trainer.overfit_batches=k keeps only the first k minibatches' worth of training examples:
    the same few examples every epoch, which a working model must fit (loss -> 0)."""
    data = load_dataset(cfg.dataset, data_seed(cfg))
    splits = split_and_standardize(
        data, cfg.dataset.val_fraction, cfg.dataset.test_fraction, data_seed(cfg)
    )
    if cfg.trainer.get("overfit_batches"):
        n = cfg.trainer.overfit_batches * cfg.trainer.batch_size
        splits = dataclasses.replace(splits, x_train=splits.x_train[:n], y_train=splits.y_train[:n])
    return splits


def network_sizes(cfg: DictConfig, splits: Splits) -> list[int]:
    """[n_inputs (from the data), *model.hidden, n_outputs (from the labels)]."""
    return [splits.x_train.shape[1], *cfg.model.hidden, splits.y_train.shape[1]]


SWEPT_AXES = AXES  # sweep.<axis>: a list each


def is_sweep(cfg: DictConfig) -> bool:
    """trainer.num_seeds > 1, any sweep axis or a block of a grid: members get their own
    outputs under members/."""
    return (cfg.trainer.num_seeds > 1 or any(cfg.sweep[axis] for axis in SWEPT_AXES)
            or cfg.sweep.block is not None)


def members_of(cfg: DictConfig) -> list[Member]:
    """The members this run trains: the grid (`grid_of`), or its block sweep.block."""
    grid = grid_of(cfg)
    return grid if cfg.sweep.block is None else block_of(grid, cfg.sweep.block)


def grid_of(cfg: DictConfig) -> list[Member]:
    """K = trainer.num_seeds seeds from `seed` × the product of the sweep's axes, each axis
    left empty holding the run's own value (optimizer.lr, optimizer.weight_decay, the momentum,
    model.init_scale)."""
    sweep, momentum = cfg.sweep, run_momentum(cfg.optimizer)
    if sweep.momentum and momentum is None:
        raise ConfigError(f"sweep.momentum={list(sweep.momentum)} needs an optimizer with "
                          f"momentum (optimizer=momentum or adam, where it is b1), not "
                          f"optimizer={cfg.optimizer.name}")
    axes = [[float(value) for value in sweep[axis]] or [default] for axis, default in (
        ("lr", float(cfg.optimizer.lr)), ("weight_decay", float(cfg.optimizer.weight_decay)),
        ("momentum", momentum), ("init_scale", float(cfg.model.init_scale)))]
    return member_grid(int(cfg.seed), int(cfg.trainer.num_seeds), *axes)


def block_of(grid: list[Member], block: str) -> list[Member]:
    """sweep.block="i/n": the i-th of n contiguous, near-equal blocks of the grid; its members
    keep their indices in the whole grid."""
    index, count = parse_block(block)
    if count > len(grid):
        raise ConfigError(f"sweep.block={block} asks for {count} blocks of a grid of only "
                          f"{len(grid)} members")
    start, stop = (len(grid) * index) // count, (len(grid) * (index + 1)) // count
    return grid[start:stop]


def engine_name(cfg: DictConfig) -> str:
    return str(cfg.sweep.engine) if is_sweep(cfg) else "single"


def resolve_run_dir(cfg: DictConfig) -> Path:
    """cfg.run_dir, else Hydra's output directory, else ./outputs/<time>."""
    if cfg.get("run_dir"):
        return Path(cfg.run_dir)
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path("outputs") / time.strftime("%Y-%m-%d_%H-%M-%S")


def check_wandb_agent(cfg: DictConfig, n_members: int) -> None:
    """A W&B sweep agent gives its trial one run id (WANDB_RUN_ID): a trial is one member."""
    if os.environ.get("WANDB_SWEEP_ID") and cfg.logger.name == "wandb" and n_members > 1:
        axes = " and ".join(f"sweep.{axis}={list(cfg.sweep[axis])}" for axis in SWEPT_AXES
                            if cfg.sweep[axis])
        raise ConfigError(
            f"a W&B sweep agent's trial is one run (WANDB_SWEEP_ID is set), but "
            f"trainer.num_seeds={cfg.trainer.num_seeds}{' and ' + axes if axes else ''} make "
            f"{n_members} members; sweep seeds and hyperparameters in the W&B sweep file instead"
        )


def check_shard_members(cfg: DictConfig, n_members: int) -> None:
    """sweep.shard_members=true: a sweep, one device's worth of members each, one host.

    Raises:
      ConfigError: naming what cannot be honoured.
    """
    if not cfg.sweep.shard_members:
        return
    if not is_sweep(cfg):
        raise ConfigError("sweep.shard_members=true splits a sweep's members over the devices; "
                          "this run has one member (set trainer.num_seeds or a sweep axis)")
    if cfg.trainer.data_parallel:
        raise ConfigError("sweep.shard_members=true and trainer.data_parallel=true both claim "
                          "the devices: choose one (members split, or every batch split)")
    if cfg.trainer.distributed:
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


def hydra_job_identity(cfg: DictConfig) -> tuple[str | None, str | None]:
    """(run name, group): in a multirun each job is its own run, grouped by sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None, None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sweep_dir = Path(hydra_cfg.sweep.dir)
        group = f"{sweep_dir.parent.name}/{sweep_dir.name}"
        return f"{cfg.experiment_name}-{hydra_cfg.job.num}", group
    return None, None


def sweep_group(cfg: DictConfig) -> str:
    """A sweep's W&B group: logger.group, else the Hydra multirun job, else
    sweep-<experiment_name>-<time>."""
    if cfg.logger.group:
        return str(cfg.logger.group)
    name, hydra_group = hydra_job_identity(cfg)
    if hydra_group:
        return f"{hydra_group}/{name}"
    return f"sweep-{cfg.experiment_name}-{time.strftime('%Y-%m-%d_%H-%M-%S')}"


def member_config(cfg: DictConfig, member: Member) -> dict[str, Any]:
    """The config a member's W&B run shows: the run's, with this member's seed and
    hyperparameters (the config of the single run it equals)."""
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    config["seed"] = member.seed
    config["optimizer"]["lr"] = member.lr
    config["optimizer"]["weight_decay"] = member.weight_decay
    if member.momentum is not None:
        config["optimizer"]["b1" if cfg.optimizer.name == "adam" else "momentum"] = member.momentum
    config["model"]["init_scale"] = member.init_scale
    config["member"] = member.index
    config["data_seed"] = data_seed(cfg)  # the split is shared by all members
    return config


@dataclass(frozen=True)
class RunSetup:
    """Everything a run needs, from the config, checked before the run directory exists."""

    precision: Precision
    splits: Splits
    arrays: dict[str, jax.Array]  # x_train, y_train, x_val, ... in the training dtype
    sizes: list[int]
    optimizer: optax.GradientTransformation
    members: list[Member]
    sweep: bool  # outputs per member (members/, members.csv) rather than one run's
    engine: str  # single | packed | vmap
    run_dir: Path
    metadata: dict[str, Any]  # what a checkpoint must agree on (io.checkpoints.run_metadata)
    mesh: Mesh | None  # trainer.data_parallel: every device, each taking a share of each batch

    @classmethod
    def from_config(cls, cfg: DictConfig) -> RunSetup:
        precision = precision_of(cfg.trainer.precision)
        splits = prepare_data(cfg)
        sizes = network_sizes(cfg, splits)
        check_feature_count(splits.x_train, sizes[0])
        n_train = splits.x_train.shape[0]
        steps_per_epoch = batches_per_epoch(n_train, cfg.trainer.batch_size,
                                            cfg.trainer.limit_batches)
        mesh = None
        if cfg.trainer.data_parallel:
            mesh = parallel.data_mesh()
            parallel.check_divisible(cfg.trainer.batch_size, n_train, mesh)
        members = members_of(cfg)
        check_shard_members(cfg, len(members))
        check_wandb_agent(cfg, len(members))
        engine = engine_name(cfg)
        check_objective(cfg.objective)
        metadata = run_metadata(
            sizes, cfg.dataset.name, splits.feature_names, cfg.optimizer.name,
            precision.name, [m.seed for m in members], [m.lr for m in members], engine,
            settings=run_settings(cfg), data=data_fingerprint(splits),
            epochs=int(cfg.trainer.epochs),
        )
        arrays = cast_splits(splits, precision.dtype)
        if mesh is not None:
            arrays = parallel.replicate(arrays, mesh)
        run_dir = resolve_run_dir(cfg)
        run_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            precision=precision,
            splits=splits,
            arrays=arrays,
            sizes=sizes,
            optimizer=make_optimizer(cfg.optimizer, steps_per_epoch, cfg.trainer.epochs),
            members=members,
            sweep=is_sweep(cfg),
            engine=engine,
            run_dir=run_dir,
            metadata=metadata,
            mesh=mesh,
        )


def cast_splits(splits: Splits, dtype: Any) -> dict[str, jax.Array]:
    return {
        name: jnp.asarray(getattr(splits, name), dtype)
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    }


def gradcheck_batch(splits: Splits) -> tuple[np.ndarray, np.ndarray]:
    """The examples a gradient check runs on: the first GRADCHECK_BATCH of the training split."""
    return splits.x_train[:GRADCHECK_BATCH], splits.y_train[:GRADCHECK_BATCH]


def gradcheck_from_config(cfg: DictConfig, params: Params | None = None) -> GradcheckReport:
    """Gradient check of the configured network on a small batch of the configured data.

    It checks at `params` if given, else after gradcheck.after_epochs epochs of the configured
    training (`trained_params`), else at the initial parameters; the gradient under check is
    manual_grad, with the mistake gradcheck.inject if one is asked (deltaprop.teaching.bugs).
    The report's heading says which.

    Raises:
      InputError: bad data; a bug the network has no place for; training that diverged.
    """
    splits = prepare_data(cfg)
    sizes = network_sizes(cfg, splits)
    bug, epochs = Bug(cfg.gradcheck.inject), int(cfg.gradcheck.after_epochs)
    model = {"loss": str(cfg.loss), "activation": str(cfg.model.activation)}
    if bug is not Bug.none and model != {"loss": "bce", "activation": "sigmoid"}:
        raise ConfigError(
            f"gradcheck.inject={bug} is written for sigmoid layers and BCE, not loss={cfg.loss} "
            f"model.activation={cfg.model.activation}"
        )
    gradient, bug_layer = gradient_with_bug(bug, sizes)  # InputError before any training
    if params is not None:
        where = "at the given parameters"
    elif epochs:
        params = trained_params(cfg, splits, sizes, epochs)
        where = (f"after {epochs} epoch{'s' * (epochs != 1)} of training "
                 f"(optimizer={cfg.optimizer.name}, lr={cfg.optimizer.lr}, seed {cfg.seed})")
    else:
        params = initial_params(int(cfg.seed), sizes, cfg.model.init, jnp.float32,
                                float(cfg.model.init_scale))
        where = f"at initialization (model.init={cfg.model.init}, seed {cfg.seed})"
    x, y = gradcheck_batch(splits)
    heading = [(f"{where}: network {sizes}, loss={cfg.loss}, model.activation="
                f"{cfg.model.activation}, {len(x)} training examples of "
                f"dataset={cfg.dataset.name}")]
    if bug is not Bug.none:
        heading.append(f"injected bug gradcheck.inject={bug} in layer {bug_layer}: "
                       f"{describe_bug(bug, bug_layer)}")
    report = gradcheck(params, x, y, gradient_fn=None if bug is Bug.none else gradient, **model)
    return dataclasses.replace(report, heading="\n".join(heading))


def trained_params(cfg: DictConfig, splits: Splits, sizes: list[int], epochs: int) -> Params:
    """The parameters a training run of this config has after `epochs` epochs: the same
    initialization, data order, optimizer and trainer.grad as `python experiments/train.py`
    (single run, seed and optimizer.lr), without its outputs.

    Raises:
      ConfigError: the parameters stopped being finite (training diverged).
    """
    precision = precision_of(cfg.trainer.precision)
    steps_per_epoch = batches_per_epoch(splits.x_train.shape[0], cfg.trainer.batch_size,
                                        cfg.trainer.limit_batches)
    # The schedule spans the run (or the epochs asked, if longer), as in training.
    optimizer = make_optimizer(cfg.optimizer, steps_per_epoch, max(cfg.trainer.epochs, epochs))
    train_epoch = jax.jit(make_train_epoch(
        optimizer, value_and_grad_fn(cfg.trainer.grad, precision.matmul_dtype, str(cfg.loss),
                                     str(cfg.model.activation)),
        cfg.trainer.batch_size, limit_batches=cfg.trainer.limit_batches,
    ))
    with precision_scope(precision.name):
        init_key, data_key = member_keys(int(cfg.seed))
        params = init_params(init_key, sizes, cfg.model.init, precision.dtype,
                             float(cfg.model.init_scale))
        state = init_train_state(params, optimizer, data_key)
        arrays = cast_splits(splits, precision.dtype)
        for _ in range(epochs):
            state, _ = train_epoch(state, arrays["x_train"], arrays["y_train"])
        params = jax.tree.map(np.asarray, state.params)
    if not all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params)):
        raise ConfigError(
            f"gradcheck.after_epochs={epochs}: the parameters stopped being finite during "
            f"training (optimizer.lr={cfg.optimizer.lr}); lower the learning rate or the epochs"
        )
    return params


def worked_example_inputs(
    cfg: DictConfig, batch: int
) -> tuple[Params, np.ndarray, np.ndarray]:
    """(params, x, y) as `python experiments/train.py` would start: float64 params, first batch.

    The data are `cfg.dataset` split and standardized as in training (dataset=xor_table: the
    truth table itself, as a textbook writes it); the params are the initial parameters of
    `cfg.seed`; x, y are the first `batch` examples.

    Raises:
      ConfigError: batch outside 1..the number of examples.
    """
    if cfg.dataset.name == "xor_table":
        data = load_dataset(cfg.dataset, data_seed(cfg))
        x_all, y_all, n_inputs = data.x, data.y, data.x.shape[1]
    else:
        splits = prepare_data(cfg)
        x_all, y_all, n_inputs = splits.x_train, splits.y_train, splits.x_train.shape[1]
    n_examples, batch = x_all.shape[0], int(batch)
    if not 1 <= batch <= n_examples:
        raise ConfigError(
            f"worked_example.batch={batch} must be between 1 and the {n_examples} examples of "
            f"dataset={cfg.dataset.name}"
        )
    sizes = [n_inputs, *cfg.model.hidden, y_all.shape[1]]
    with float64_scope():
        params = initial_params(int(cfg.seed), sizes, cfg.model.init, jnp.float64,
                                float(cfg.model.init_scale))
        params = jax.tree.map(np.asarray, params)
    return params, x_all[:batch], y_all[:batch]
