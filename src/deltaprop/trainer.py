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
    wandb/offline-run-*    the offline W&B run (logger=wandb)
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from deltaprop import parallel, plots
from deltaprop.config import validate_config
from deltaprop.data import Splits, check_feature_count, load_dataset, split_and_standardize
from deltaprop.diagnostics import evaluate, layer_statistics, roc_auc
from deltaprop.gradcheck import GradcheckReport, gradcheck
from deltaprop.network import Params, forward, init_params
from deltaprop.serialization import save_params
from deltaprop.tracking import make_logger
from deltaprop.training import (
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
    matmul_dtype: Optional[Any]  # bf16: only the matrix products run in lower precision


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


def hydra_job_identity(cfg: DictConfig) -> tuple[Optional[str], Optional[str]]:
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


def run_gradcheck(cfg: DictConfig, params: Optional[Params] = None) -> GradcheckReport:
    """Gradient check of the configured network on a small batch of the configured data."""
    validate_config(cfg)
    splits = prepare_data(cfg)
    if params is None:
        sizes = network_sizes(cfg, splits)
        params = init_params(jax.random.key(cfg.seed), sizes, cfg.model.init, jnp.float32)
    x = splits.x_train[:GRADCHECK_BATCH]
    y = splits.y_train[:GRADCHECK_BATCH]
    return gradcheck(params, x, y)


def split_metrics(
    evaluate_fn: Callable, params: Params, x: jax.Array, y: jax.Array, prefix: str
) -> dict[str, float]:
    """Loss, accuracy and (one output) ROC-AUC of one split, keyed `prefix/...`."""
    result = evaluate_fn(params, x, y)
    metrics = {f"{prefix}/loss": float(result["loss"]), f"{prefix}/acc": float(result["acc"])}
    if y.shape[1] == 1:
        metrics[f"{prefix}/auc"] = roc_auc(np.asarray(y), np.asarray(result["probabilities"]))
    return metrics


def gradcheck_table(report: GradcheckReport) -> tuple[list[str], list[list[Any]]]:
    columns = ["layer", "leaf", "shape", "grad_norm", "err_vs_jax_grad", "err_vs_finite_diff", "pass"]
    rows = [
        [r.layer, r.leaf, str(r.shape), r.norm, r.error_autodiff, r.error_finite_differences,
         r.passed]
        for r in report.rows
    ]
    return columns, rows


def train(cfg: DictConfig) -> dict[str, float]:
    """Train the configured network; return the final metrics (val/best_loss, test/acc, ...).

    Raises:
      ConfigError, DataError (both ValueError): bad input, before any work starts.
    """
    validate_config(cfg)
    if cfg.trainer.distributed:
        parallel.initialize_distributed()
    with precision_scope(cfg.trainer.precision):
        if cfg.trainer.num_seeds > 1 or cfg.sweep.lr:
            from deltaprop.sweep import train_sweep  # K seeds × L learning rates, one program

            return train_sweep(cfg)
        return _train(cfg)


def _train(cfg: DictConfig) -> dict[str, float]:
    from tqdm.auto import tqdm

    precision = precision_of(cfg.trainer.precision)
    splits = prepare_data(cfg)
    sizes = network_sizes(cfg, splits)
    check_feature_count(splits.x_train, sizes[0])
    arrays = cast_splits(splits, precision.dtype)
    run_dir = resolve_run_dir(cfg)

    init_key, data_key = jax.random.split(jax.random.key(cfg.seed))
    params = init_params(init_key, sizes, cfg.model.init, precision.dtype)
    n_train = splits.x_train.shape[0]
    steps_per_epoch = batches_per_epoch(n_train, cfg.trainer.batch_size)
    optimizer = make_optimizer(cfg.optimizer, steps_per_epoch, cfg.trainer.epochs)
    value_and_grad = value_and_grad_fn(cfg.trainer.grad, precision.matmul_dtype)
    state = init_train_state(params, optimizer, data_key)
    sharding = None
    if cfg.trainer.data_parallel:
        mesh = parallel.data_mesh()
        parallel.check_divisible(cfg.trainer.batch_size, n_train, mesh)
        sharding = parallel.batch_sharding(mesh)
        state = parallel.replicate(state, mesh)
        arrays = parallel.replicate(arrays, mesh)
    train_epoch = jax.jit(
        make_train_epoch(optimizer, value_and_grad, cfg.trainer.batch_size, sharding)
    )
    evaluate_fn = jax.jit(evaluate)
    statistics_fn = jax.jit(layer_statistics)

    name, group = hydra_job_identity(cfg)
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    logger = make_logger(cfg.logger, config_dict, run_dir, name=name, group=group)
    exit_code = 1
    try:
        n_params = sum(leaf.size for leaf in jax.tree.leaves(params))
        if n_params <= GRADCHECK_MAX_PARAMS and cfg.logger.log_gradcheck:
            report = gradcheck(
                params, splits.x_train[:GRADCHECK_BATCH], splits.y_train[:GRADCHECK_BATCH]
            )
            logger.log_table("gradcheck", *gradcheck_table(report))

        history: list[dict[str, float]] = []
        best_val_loss = float("inf")
        progress = tqdm(
            range(1, cfg.trainer.epochs + 1),
            desc="train",
            unit="epoch",
            disable=not cfg.trainer.progress,
            dynamic_ncols=True,
        )
        for epoch in progress:
            state, step_losses = train_epoch(state, arrays["x_train"], arrays["y_train"])
            if epoch % cfg.trainer.eval_every and epoch != cfg.trainer.epochs:
                continue
            metrics = {"epoch": epoch, "train/epoch_loss": float(jnp.mean(step_losses))}
            metrics |= split_metrics(
                evaluate_fn, state.params, arrays["x_train"], arrays["y_train"], "train"
            )
            metrics |= split_metrics(
                evaluate_fn, state.params, arrays["x_val"], arrays["y_val"], "val"
            )
            statistics = statistics_fn(state.params, arrays["x_train"], arrays["y_train"])
            metrics |= {f"grads/{key}": float(value) for key, value in statistics.items()}
            best_val_loss = min(best_val_loss, metrics["val/loss"])
            metrics["val/best_loss"] = best_val_loss
            history.append(metrics)
            logger.log(metrics, step=epoch)
            progress.set_postfix(
                loss=f"{metrics['train/loss']:.4f}", val_acc=f"{metrics['val/acc']:.3f}"
            )
        progress.close()

        final = dict(history[-1])
        final |= split_metrics(
            evaluate_fn, state.params, arrays["x_test"], arrays["y_test"], "test"
        )
        write_outputs(run_dir, history, final, state.params, splits, logger, cfg.trainer.epochs)
        logger.summarize(final)
        exit_code = 0
    finally:
        logger.finish(exit_code)
    print_summary(final, run_dir, logger.run_path)
    return final


def write_outputs(run_dir, history, final, params, splits, logger, step) -> None:
    """Metrics history, summary, plots and parameters into the run directory (and to W&B)."""
    with open(run_dir / "metrics.jsonl", "w") as file:
        for row in history:
            file.write(json.dumps(row) + "\n")
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


def print_summary(final: dict[str, float], run_dir: Path, wandb_path: Optional[str]) -> None:
    keys = [key for key in final if key.split("/")[0] in ("train", "val", "test")]
    width = max(len(key) for key in keys)
    lines = ["", "final metrics:"]
    lines += [f"  {key:<{width}}  {final[key]:.4f}" for key in keys]
    lines.append(f"run directory: {run_dir.resolve()}")
    if wandb_path:
        lines.append(f"W&B run: {Path(wandb_path).resolve()}  (upload: wandb sync <that dir>)")
    print("\n".join(lines))
