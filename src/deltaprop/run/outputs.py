"""What a finished run leaves behind: files in the run directory, W&B summaries, printed lines.

What matters is written first (metrics, summary, parameters); the figures come last, and one
that fails to draw is a warning, not a lost run.

A single run (one member, no sweep axes):
    metrics.jsonl          one line per evaluation
    summary.json           final metrics
    loss_curves.png        train/val loss and accuracy
    layer_norms.png        per layer ‖δ_l‖, ‖∂L/∂b_l‖, the RMS of ∂L/∂W_l, and the loss, from epoch 0
    decision_boundary.png  2-D datasets only
    params.safetensors     final parameters, feature names and standardizer (for predict)

A sweep (trainer.num_seeds > 1 or a sweep axis: sweep.lr, weight_decay, momentum, init_scale):
    members.csv, members.json        every member's final metrics (member, seed, one column per
                                     axis, diverged, ...)
    summary.json                     means over the finite members of the best grid point, the
                                     objective; by_point: every grid point's mean ± std over
                                     seeds and diverged counts; by_axis: the same per value of
                                     each swept axis, the other axes pooled
    sweep_curves.png                 mean ± std over seeds of the loss and accuracy, per point
    members/member_<i>/              metrics.jsonl, summary.json, params.safetensors

All JSON is strict: NaN and ±inf are written as null.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from deltaprop.io import plots
from deltaprop.io.data import Splits, preprocessing_metadata
from deltaprop.io.files import save_params, write_csv, write_json, write_jsonl
from deltaprop.io.tracking import NullLogger
from deltaprop.metrics import IDENTITY, metric_keys, summarize_by_point
from deltaprop.model import Model
from deltaprop.network import Activation, Params, forward
from deltaprop.population import Member

BY_POINT_KEYS = ("val/best_loss", "val/acc", "test/acc")
DECISION_GRID_CHUNK = 8192  # at most this many grid points per forward pass of the plot

log = logging.getLogger(__name__)


def write_run_outputs(
    run_dir: Path,
    history: list[dict[str, float]],
    final: dict[str, float],
    params: Params,
    splits: Splits,
    logger: NullLogger,
    step: int,
    figures: bool,
    model: Model,
) -> None:
    """A single run: parameters, metrics history, summary, then plots (unless not `figures`),
    and the same to W&B. The model's cost and activation go into the parameter file's metadata
    beside the standardizer: what it takes to apply the network."""
    params_path = save_params(params, run_dir / "params.safetensors",
                              preprocessing_metadata(splits) | model.names)
    write_jsonl(run_dir / "metrics.jsonl", history)
    write_json(run_dir / "summary.json", final)
    logger.log_model(params_path, final)
    if not figures:
        return
    figures_to_draw = {
        "loss_curves": lambda path: plots.plot_loss_curves(history, path),
        "layer_norms": lambda path: plots.plot_layer_norms(history, path),
    }
    if splits.x_train.shape[1] == 2:
        figures_to_draw["decision_boundary"] = lambda path: plots.plot_decision_boundary(
            _chunked_probabilities(params, model.activation), splits.x_train, splits.y_train, path
        )
    images = {f"plots/{name}": path for name, draw in figures_to_draw.items()
              if (path := _drawn(draw, run_dir / f"{name}.png")) is not None}
    logger.log_images(images, step=step)


def write_histories(run_dir: Path, histories: Sequence[list[dict[str, float]]],
                    members: Sequence[Member], sweep: bool) -> None:
    """The evaluations logged so far (metrics.jsonl; a sweep's under members/member_<i>/): what
    a run that stops early, every member diverged, keeps."""
    if not sweep:
        write_jsonl(run_dir / "metrics.jsonl", histories[0])
        return
    for member, history in zip(members, histories):
        directory = run_dir / "members" / f"member_{member.index}"
        directory.mkdir(parents=True, exist_ok=True)
        write_jsonl(directory / "metrics.jsonl", history)


def _drawn(draw, path: Path) -> Path | None:
    """draw(path), or None with one warning line: a figure that fails loses nothing else."""
    try:
        return draw(path)
    except Exception as error:  # noqa: BLE001  (matplotlib and friends raise many types)
        log.warning(f"could not draw {path.name}: {type(error).__name__}: {error}")
        return None


@partial(jax.jit, static_argnames="activation")
def _probabilities(params: Params, x: jax.Array, activation: Activation) -> jax.Array:
    return jax.nn.sigmoid(forward(params, x, activation=activation))  # a_L = σ(z_L)


def _chunked_probabilities(params: Params, activation: Activation):
    """grid (G, 2) -> σ(z_L) (G, 1), a chunk of the grid at a time."""
    dtype = params[0]["W"].dtype

    def probabilities(grid: np.ndarray) -> np.ndarray:
        chunks = np.array_split(grid, -(-len(grid) // DECISION_GRID_CHUNK))  # near-equal sizes
        return np.concatenate([np.asarray(_probabilities(
            params, jnp.asarray(chunk, dtype), activation)) for chunk in chunks])

    return probabilities


def member_final(member: Member, row: dict[str, float], divergence) -> dict[str, Any]:
    """A sweep member's final row: who it is, whether it diverged, then its metrics."""
    return {
        "member": member.index,
        "seed": member.seed,
        **member.hyperparameters(),
        "diverged": divergence is not None,
        "diverged_epoch": None if divergence is None else divergence.epoch,
        **row,
    }


def write_sweep_outputs(
    run_dir: Path,
    members: Sequence[Member],
    histories: Sequence[list[dict[str, float]]],
    finals: list[dict[str, Any]],
    params: Params,
    summary: dict[str, Any],
    figures: bool,
    splits: Splits,
    model: Model,
    grid: dict[str, Any],
) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Every member's directory, the member tables, the summary and (if `figures`) the curves.

    Args:
      params: every member's parameters, member axis first (host arrays).
      summary: metrics.aggregate of `finals`.
      splits: the run's data; their feature names and standardizer go into every member's
        params.safetensors (io.data.preprocessing_metadata), for experiments/predict.py.
      grid: written as grid.json (the grid's size, axes, objective, settings and this run's
        sweep.block): what deltaprop-gather checks before it joins blocks.

    Returns:
      (by-point rows, {"members/<i>": params path[, "curves": the figure]}).
    """
    paths = {}
    for position, (member, history, final) in enumerate(zip(members, histories, finals)):
        directory = run_dir / "members" / f"member_{member.index}"
        directory.mkdir(parents=True, exist_ok=True)
        member_params = [{name: leaf[position] for name, leaf in layer.items()}
                         for layer in params]
        paths[f"members/{member.index}"] = save_params(
            member_params, directory / "params.safetensors",
            preprocessing_metadata(splits) | model.names | {"diverged": final["diverged"]})
        write_jsonl(directory / "metrics.jsonl", history)
        write_json(directory / "summary.json", final)
    write_json(run_dir / "grid.json", grid)
    by_point = write_member_tables(run_dir, finals, summary, members[0].swept)
    if figures:
        curves = _drawn(lambda path: plots.plot_sweep_curves(
            _curves_by_point(members, histories, finals), path), run_dir / "sweep_curves.png")
        if curves is not None:
            paths["curves"] = curves
    return by_point, paths


def write_member_tables(
    run_dir: Path, finals: list[dict[str, Any]], summary: dict[str, Any], axes: Sequence[str]
) -> list[dict[str, Any]]:
    """members.csv, members.json and summary.json (with by_point: every grid point's mean ± std
    over seeds, and by_axis: the same per value of each axis); returns the by-point rows."""
    write_csv(run_dir / "members.csv", finals, [*IDENTITY, *metric_keys(finals)])
    write_json(run_dir / "members.json", finals)
    keys = [key for key in BY_POINT_KEYS if key in metric_keys(finals)]
    by_point = summarize_by_point(finals, keys, axes)
    by_axis = {axis: summarize_by_point(finals, keys, (axis,)) for axis in axes}
    write_json(run_dir / "summary.json", summary | {"by_point": by_point, "by_axis": by_axis})
    return by_point


def point_label(point: dict[str, Any], axes: Sequence[str]) -> str:
    """'lr=0.1 weight_decay=0.01': a grid point's values of the swept axes."""
    return " ".join(f"{axis}={point[axis]:g}" for axis in axes)


def _curves_by_point(members, histories, finals) -> dict[str, list[list[dict[str, float]]]]:
    """Per grid point, the histories of its finite members (diverged ones are only counted)."""
    axes = members[0].swept
    curves = {}
    for row in summarize_by_point(finals, [], axes):
        group = [i for i, final in enumerate(finals)
                 if all(final[axis] == row[axis] for axis in axes)]
        finite = [histories[i] for i in group if not finals[i]["diverged"] and histories[i]]
        diverged = len(group) - len(finite)
        if finite:
            label = f"{point_label(row, axes)} (n={len(finite)}" + (
                f", {diverged} diverged)" if diverged else ")")
            curves[label] = finite
    return curves


def print_summary(
    final: dict[str, Any], run_dir: Path, wandb_path: str | None, title: str = "final metrics"
) -> None:
    keys = [key for key in final if key.split("/")[0] in ("train", "val", "test")]
    width = max((len(key) for key in keys), default=0)
    lines = ["", f"{title}:"]
    lines += [f"  {key:<{width}}  {final[key]:.4f}" for key in keys]
    lines.append(f"run directory: {run_dir.resolve()}")
    if wandb_path:
        lines.append(f"W&B run: {Path(wandb_path).resolve()}  (upload: wandb sync <that dir>)")
    log.info("\n".join(lines))


def print_by_point(
    rows: list[dict[str, Any]], keys: Sequence[str], axes: Sequence[str] = ("lr",)
) -> None:
    """The per-point table: members, diverged members with their epochs, mean ± std of `keys`."""
    what = "learning rate" if tuple(axes) == ("lr",) else "grid point"
    lines = [f"per {what} (mean ± std over finite seeds):"]
    number = lambda value: f"{value:.4f}" if math.isfinite(value) else "–"
    for row in rows:
        cells = [f"{key} {number(row[f'{key}/mean'])} ± {number(row[f'{key}/std'])}"
                 for key in keys]
        diverged = ""
        if row["diverged"]:
            epochs = ", ".join(str(epoch) for epoch in row["diverged_epochs"])
            diverged = f" ({row['diverged']} diverged at epoch {epochs})"
        lines.append(f"  {point_label(row, axes):<13} n={row['members']:<3d}{diverged} "
                     + "   ".join(cells))
    log.info("\n".join(lines))
