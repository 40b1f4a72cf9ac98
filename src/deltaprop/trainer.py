"""The training driver: `train(cfg)` runs one configured experiment and returns its metrics.

This is the I/O edge of the project: it reads the config and the data, calls the pure pieces
(training.py, diagnostics.py), and writes the run directory and the W&B run. Every input is
checked (config ranges, data, shapes) before any training or W&B start.

Run directory after a run:
    metrics.jsonl          one line per evaluation (all logged metrics)
    summary.json           final metrics
    loss_curves.png        train/val loss and accuracy
    layer_norms.png        per-layer ‖δ_l‖ and ‖∂L/∂W_l‖ over training
    decision_boundary.png  2-D datasets only
    params.safetensors     final parameters
    checkpoints/<epoch>/   orbax checkpoints (trainer.checkpoint_every > 0; see checkpointing.py)
    wandb/offline-run-*    the offline W&B run (logger=wandb)

Resume (trainer.resume=auto or PATH) restores the full TrainState and the metrics history, so the
final parameters equal those of an uninterrupted run bit for bit: the epoch function is pure and
evaluation only reads the parameters. After every epoch a jitted all-finite check over the step
losses and the parameters stops a diverged run (TrainingDiverged) before its state is evaluated
or saved.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from deltaprop import checkpointing, parallel, plots
from deltaprop.config import validate_config
from deltaprop.data import Splits, check_feature_count, load_dataset, split_and_standardize
from deltaprop.diagnostics import evaluate, layer_statistics, roc_auc
from deltaprop.gradient_check import GradcheckReport, gradcheck
from deltaprop.nan_guard import (  # noqa: F401  (TrainingDiverged & co. are part of this API)
    TrainingDiverged,
    all_finite,
    debug_nans_scope,
    diverged_error,
    divergence_message,
    first_non_finite_parameter,
    first_non_finite_pre_activation,
    locate_nan,
    with_finite_check,
)
from deltaprop.network import Params, forward, init_params
from deltaprop.serialization import save_params
from deltaprop.tracking import NullLogger, make_logger
from deltaprop.training import (
    TrainState,
    batches_per_epoch,
    init_train_state,
    make_optimizer,
    make_train_epoch,
    value_and_grad_fn,
)

GRADCHECK_BATCH = 16
GRADCHECK_MAX_PARAMS = 20_000  # finite differences cost 4 loss evaluations per parameter


@dataclass(frozen=True)
class Precision:
    dtype: Any  # parameters, optimizer state, loss
    matmul_dtype: Any | None  # bf16: only the matrix products run in lower precision


def precision_of(name: str) -> Precision:
    return {
        "float32": Precision(jnp.float32, None),
        "float64": Precision(jnp.float64, None),
        "bf16": Precision(jnp.float32, jnp.bfloat16),
    }[name]


def precision_scope(name: str):
    """float64 needs jax_enable_x64; scope it to the run instead of flipping it globally."""
    if name == "float64" and not jax.config.jax_enable_x64:
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def prepare_data(cfg: DictConfig) -> Splits:
    """Load, validate, split and standardize (fitted on train only). Raises DataError."""
    data = load_dataset(cfg.dataset, cfg.seed)
    return split_and_standardize(
        data, cfg.dataset.val_fraction, cfg.dataset.test_fraction, cfg.seed
    )


def network_sizes(cfg: DictConfig, splits: Splits) -> list[int]:
    """[n_inputs (from the data), *model.hidden, n_outputs (from the labels)]."""
    return [splits.x_train.shape[1], *cfg.model.hidden, splits.y_train.shape[1]]


def resolve_run_dir(cfg: DictConfig) -> Path:
    """cfg.run_dir, else Hydra's output directory, else ./outputs/<time>."""
    if cfg.get("run_dir"):
        run_dir = Path(cfg.run_dir)
    else:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            run_dir = Path(HydraConfig.get().runtime.output_dir)
        else:
            run_dir = Path("outputs") / time.strftime("%Y-%m-%d_%H-%M-%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


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


def cast_splits(splits: Splits, dtype: Any) -> dict[str, jax.Array]:
    return {
        name: jnp.asarray(getattr(splits, name), dtype)
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    }


def run_gradcheck(cfg: DictConfig, params: Params | None = None) -> GradcheckReport:
    """Gradient check of the configured network on a small batch of the configured data."""
    validate_config(cfg)
    splits = prepare_data(cfg)
    if params is None:
        sizes = network_sizes(cfg, splits)
        init_key, _ = jax.random.split(jax.random.key(cfg.seed))  # as in training
        params = init_params(init_key, sizes, cfg.model.init, jnp.float32)
    x = splits.x_train[:GRADCHECK_BATCH]
    y = splits.y_train[:GRADCHECK_BATCH]
    return gradcheck(params, x, y)


def split_metrics(result: dict[str, jax.Array], y: jax.Array, prefix: str) -> dict[str, float]:
    """Loss, accuracy and (one output) ROC-AUC of one split from `evaluate`, keyed `prefix/...`."""
    metrics = {f"{prefix}/loss": float(result["loss"]), f"{prefix}/acc": float(result["acc"])}
    if y.shape[1] == 1:
        metrics[f"{prefix}/auc"] = roc_auc(np.asarray(y), np.asarray(result["probabilities"]))
    return metrics


@jax.jit
def evaluate_progress(params: Params, x_train, y_train, x_val, y_val) -> dict[str, Any]:
    """Everything logged at an evaluation, as one compiled program: train and validation
    metrics and the per-layer statistics (‖δ_l‖, ‖∂L/∂W_l‖, saturation) on the training split."""
    return {
        "train": evaluate(params, x_train, y_train),
        "val": evaluate(params, x_val, y_val),
        "statistics": layer_statistics(params, x_train, y_train),
    }


def initial_state(
    seed: int, sizes: list[int], init: str, dtype: Any, optimizer: Any
) -> TrainState:
    """Seed → parameters (init key) and data order (data key), built as one compiled program
    (eagerly, every small random op would compile on its own)."""

    def build(seed_key):
        init_key, data_key = jax.random.split(seed_key)
        params = init_params(init_key, sizes, init, dtype)
        return init_train_state(params, optimizer, data_key)

    return jax.jit(build)(jax.random.key(seed))


def gradcheck_table(report: GradcheckReport) -> tuple[list[str], list[list[Any]]]:
    columns = [
        "layer", "leaf", "shape", "grad_norm", "err_vs_jax_grad", "err_vs_finite_diff", "pass"
    ]
    rows = [
        [r.layer, r.leaf, str(r.shape), r.norm, r.error_autodiff, r.error_finite_differences,
         r.passed]
        for r in report.rows
    ]
    return columns, rows


def train(cfg: DictConfig) -> dict[str, float]:
    """Train the configured network; return the final metrics (val/best_loss, test/acc, ...).

    Raises:
      ConfigError, DataError, CheckpointError (all ValueError): bad input or an unusable
        checkpoint, found before any output or W&B run starts.
      TrainingDiverged (RuntimeError): the loss or a parameter became NaN/inf; the W&B run is
        marked failed and the checkpoints saved before it are kept.
    """
    validate_config(cfg)
    if cfg.trainer.distributed:
        parallel.initialize_distributed()
    with precision_scope(cfg.trainer.precision):
        if cfg.trainer.num_seeds > 1 or cfg.sweep.lr:
            from deltaprop.sweep import train_sweep  # K seeds × L learning rates, one program

            return train_sweep(cfg)
        with checkpointing.quiet_orbax_logs():
            return _train(cfg)


def _resume_source(cfg: DictConfig, run_dir: Path) -> checkpointing.CheckpointRef | None:
    """The checkpoint trainer.resume asks for, or None (with a note when `auto` finds none)."""
    resume = cfg.trainer.resume
    if not resume:
        return None
    if resume == "auto":
        root = run_dir / checkpointing.CHECKPOINT_DIR
        found = checkpointing.latest_checkpoint(root)
        if found is None:
            print(f"note: trainer.resume=auto: no complete checkpoint in {root}; starting fresh")
        return found
    return checkpointing.find_checkpoint(Path(resume))


def _check_checkpoint_dir_free(
    root: Path, source: checkpointing.CheckpointRef | None
) -> None:
    """Refuse to mix a new run's checkpoints with an earlier run's in the same directory."""
    existing = checkpointing.complete_steps(root)
    if not existing:
        return
    if source is not None and source.root.resolve() == root.resolve():
        return
    raise checkpointing.CheckpointError(
        f"{root} already holds checkpoints (epochs {existing[0]}..{existing[-1]}) of an earlier "
        "run; continue it with trainer.resume=auto, or choose another run_dir / hydra.run.dir"
    )


def _train(cfg: DictConfig) -> dict[str, float]:
    from tqdm.auto import tqdm

    precision = precision_of(cfg.trainer.precision)
    splits = prepare_data(cfg)
    sizes = network_sizes(cfg, splits)
    check_feature_count(splits.x_train, sizes[0])
    arrays = cast_splits(splits, precision.dtype)
    run_dir = resolve_run_dir(cfg)

    n_train = splits.x_train.shape[0]
    steps_per_epoch = batches_per_epoch(n_train, cfg.trainer.batch_size)
    optimizer = make_optimizer(cfg.optimizer, steps_per_epoch, cfg.trainer.epochs)
    value_and_grad = value_and_grad_fn(cfg.trainer.grad, precision.matmul_dtype)
    state = initial_state(cfg.seed, sizes, cfg.model.init, precision.dtype, optimizer)
    params = state.params

    # Checkpoints: everything is checked before any output or W&B run starts.
    metadata = checkpointing.run_metadata(
        sizes, cfg.dataset.name, splits.feature_names, cfg.optimizer.name, cfg.trainer.precision
    )
    checkpoint_root = run_dir / checkpointing.CHECKPOINT_DIR
    source = _resume_source(cfg, run_dir)
    progress = checkpointing.Progress()
    if source is not None:
        state, progress = checkpointing.restore_checkpoint(source, state, metadata)
        if int(state.epoch) > cfg.trainer.epochs:
            raise checkpointing.CheckpointError(
                f"checkpoint {source.path} is at epoch {int(state.epoch)}, past "
                f"trainer.epochs={cfg.trainer.epochs}"
            )
        print(f"resuming from {source.path} (epoch {int(state.epoch)} of {cfg.trainer.epochs})")
    if cfg.trainer.checkpoint_every:
        _check_checkpoint_dir_free(checkpoint_root, source)
    start_epoch = int(state.epoch)

    sharding = None
    if cfg.trainer.data_parallel:
        mesh = parallel.data_mesh()
        parallel.check_divisible(cfg.trainer.batch_size, n_train, mesh)
        sharding = parallel.batch_sharding(mesh)
        state = parallel.replicate(state, mesh)
        arrays = parallel.replicate(arrays, mesh)
    epoch_fn = make_train_epoch(optimizer, value_and_grad, cfg.trainer.batch_size, sharding)
    train_epoch = jax.jit(with_finite_check(epoch_fn))

    # Several hosts: every process trains, only process 0 writes files and logs.
    is_main = jax.process_index() == 0
    name, group = hydra_job_identity(cfg)
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    logger = NullLogger()
    if is_main:
        logger = make_logger(
            cfg.logger, config_dict, run_dir, name=name, group=group,
            resume_id=progress.wandb_run_id,
        )
    progress.wandb_run_id = logger.run_id
    manager = None
    if cfg.trainer.checkpoint_every:
        manager = checkpointing.open_manager(checkpoint_root, cfg.trainer.keep_checkpoints)
    exit_code = 1
    try:
        n_params = sum(leaf.size for leaf in jax.tree.leaves(params))
        if n_params <= GRADCHECK_MAX_PARAMS and cfg.logger.log_gradcheck and source is None:
            report = gradcheck(
                params, splits.x_train[:GRADCHECK_BATCH], splits.y_train[:GRADCHECK_BATCH]
            )
            logger.log_table("gradcheck", *gradcheck_table(report))

        history = progress.history
        progress_bar = tqdm(
            range(start_epoch + 1, cfg.trainer.epochs + 1),
            desc="train",
            unit="epoch",
            initial=start_epoch,
            total=cfg.trainer.epochs,
            disable=not (cfg.trainer.progress and is_main),
            dynamic_ncols=True,
        )
        with debug_nans_scope(cfg.trainer.debug_nans):
            for epoch in progress_bar:
                previous = state
                try:
                    state, step_losses, finite = train_epoch(
                        state, arrays["x_train"], arrays["y_train"]
                    )
                    finite = bool(finite)  # the one host sync per epoch
                except FloatingPointError as error:  # trainer.debug_nans=true caught a NaN
                    where = locate_nan(epoch_fn, previous, arrays["x_train"], arrays["y_train"])
                    raise TrainingDiverged(
                        f"NaN at epoch {epoch} (trainer.debug_nans): {where or error}"
                    ) from error
                if not finite:  # stop before this state is evaluated or checkpointed
                    message = divergence_message(
                        epoch, step_losses, state.params, arrays["x_train"]
                    )
                    raise diverged_error(message, manager)
                if epoch % cfg.trainer.eval_every == 0 or epoch == cfg.trainer.epochs:
                    results = evaluate_progress(
                        state.params, arrays["x_train"], arrays["y_train"],
                        arrays["x_val"], arrays["y_val"],
                    )
                    metrics = {"epoch": epoch, "train/epoch_loss": float(jnp.mean(step_losses))}
                    metrics |= split_metrics(results["train"], arrays["y_train"], "train")
                    metrics |= split_metrics(results["val"], arrays["y_val"], "val")
                    for loss_name in ("train/loss", "val/loss"):  # a whole split can overflow
                        if not math.isfinite(metrics[loss_name]):
                            message = divergence_message(
                                epoch, jnp.array([metrics[loss_name]]), state.params,
                                arrays["x_train"], loss_name=loss_name,
                            )
                            raise diverged_error(message, manager)
                    metrics |= {
                        f"grads/{key}": float(value)
                        for key, value in results["statistics"].items()
                    }
                    progress.best_val_loss = min(progress.best_val_loss, metrics["val/loss"])
                    metrics["val/best_loss"] = progress.best_val_loss
                    history.append(metrics)
                    logger.log(metrics, step=epoch)
                    progress_bar.set_postfix(
                        loss=f"{metrics['train/loss']:.4f}", val_acc=f"{metrics['val/acc']:.3f}"
                    )
                if manager is not None and (
                    epoch % cfg.trainer.checkpoint_every == 0 or epoch == cfg.trainer.epochs
                ):
                    checkpointing.save_checkpoint(manager, state, progress, metadata)
        progress_bar.close()

        final = dict(history[-1])
        test_result = jax.jit(evaluate)(state.params, arrays["x_test"], arrays["y_test"])
        final |= split_metrics(test_result, arrays["y_test"], "test")
        if is_main:
            write_outputs(
                run_dir, history, final, state.params, splits, logger, cfg.trainer.epochs
            )
        logger.summarize(final)
        exit_code = 0
    finally:
        if manager is not None:
            manager.wait_until_finished()  # a save in flight completes; a diverged state never
            manager.close()  # was handed to it
        logger.finish(exit_code)
    if is_main:
        print_summary(final, run_dir, logger.run_path)
    return final


def write_outputs(run_dir, history, final, params, splits, logger, step) -> None:
    """Metrics history, summary, plots and parameters into the run directory (and to W&B)."""
    with open(run_dir / "metrics.jsonl", "w") as file:
        file.writelines(json.dumps(row) + "\n" for row in history)
    (run_dir / "summary.json").write_text(json.dumps(final, indent=2))
    images = {
        "plots/loss_curves": plots.plot_loss_curves(history, run_dir / "loss_curves.png"),
        "plots/layer_norms": plots.plot_layer_norms(history, run_dir / "layer_norms.png"),
    }
    if splits.x_train.shape[1] == 2:
        predict = jax.jit(lambda x: jax.nn.sigmoid(forward(params, x)))
        images["plots/decision_boundary"] = plots.plot_decision_boundary(
            lambda grid: predict(jnp.asarray(grid, params[0]["W"].dtype)),
            splits.x_train,
            splits.y_train,
            run_dir / "decision_boundary.png",
        )
    logger.log_images(images, step=step)
    params_path = save_params(params, run_dir / "params.safetensors")
    logger.log_artifact("params", "model", params_path)


def print_summary(final: dict[str, float], run_dir: Path, wandb_path: str | None) -> None:
    keys = [key for key in final if key.split("/")[0] in ("train", "val", "test")]
    width = max(len(key) for key in keys)
    lines = ["", "final metrics:"]
    lines += [f"  {key:<{width}}  {final[key]:.4f}" for key in keys]
    lines.append(f"run directory: {run_dir.resolve()}")
    if wandb_path:
        lines.append(f"W&B run: {Path(wandb_path).resolve()}  (upload: wandb sync <that dir>)")
    print("\n".join(lines))
