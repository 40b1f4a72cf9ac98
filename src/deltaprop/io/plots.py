"""Figures written to the run directory (and handed to W&B as images). Matplotlib's Agg backend:
no display needed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot_loss_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Train and validation loss and accuracy against epoch."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "val"):
        loss_axis.plot(epochs, [row[f"{split}/loss"] for row in history], label=split)
        acc_axis.plot(epochs, [row[f"{split}/acc"] for row in history], label=split)
    loss_axis.set(xlabel="epoch", ylabel="BCE loss", yscale="log", title="loss")
    acc_axis.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for axis in (loss_axis, acc_axis):
        axis.legend()
        axis.grid(alpha=0.3)
    return save_figure(figure, path)


# The vanishing-gradient panels: (statistic of grads/layer_l/..., y label, title).
LAYER_PANELS = (
    ("delta_norm", "‖δ_l‖", "error signal ‖δ_l‖"),
    ("grad_b_norm", "‖∂L/∂b_l‖", "speed ‖∂L/∂b_l‖"),
    ("grad_W_rms", "rms of the entries of ∂L/∂W_l", "weight gradient, rms entry"),
)
LN2 = float(np.log(2.0))  # BCE of a constant output p = 1/2
DPI = 100  # pixels per inch of every saved figure
README_WIDTH = 830  # px: a README shows a figure about this wide
# Text sizes (points) of the figures the docs show: at least 9 px when a figure FIGURE_WIDTH
# inches wide is shown README_WIDTH px wide (9 px / (830 / 1100) = 11.9 px = 8.6 pt).
DOCS_TEXT = {"font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10,
             "xtick.labelsize": 9.5, "ytick.labelsize": 9.5, "legend.fontsize": 9.5,
             "figure.titlesize": 11}


def plot_layer_norms(history: list[dict[str, float]], path: Path) -> Path:
    """One run's vanishing-gradient view: per-layer ‖δ_l‖, ‖∂L/∂b_l‖ and rms of ∂L/∂W_l per
    entry (log scale), and the training loss beside ln 2, against epoch."""
    return plot_vanishing_gradients({"": [history]}, path)


def plot_vanishing_gradients(
    runs: dict[str, Sequence[Sequence[dict[str, float]]]], path: Path
) -> Path:
    """One row per run (e.g. per hidden activation), four panels each: ‖δ_l‖, ‖∂L/∂b_l‖ and
    the rms entry of ∂L/∂W_l, one colour per layer l (log scale, shared by the rows), and the
    training loss with a dashed line at ln 2 (the plateau of a constant output p = 1/2).
    Against epoch from the first row (0: the initialization); with several members the line is
    their median and the band their min–max. Every panel has its legend; shown 830 px wide
    (a README), every text is at least 9 px.

    Args:
      runs: label (e.g. "sigmoid") -> the histories of its members, which share their epochs;
        rows have "epoch", "train/loss" and "grads/layer_{l}/{delta_norm, grad_b_norm,
        grad_W_rms}".
    """
    with plt.rc_context(DOCS_TEXT):
        figure, axes = plt.subplots(len(runs), len(LAYER_PANELS) + 1, squeeze=False,
                                    sharex=True, sharey="col",
                                    figsize=(11, 2.9 * len(runs) + 0.7))
        for row_axes, (label, histories) in zip(axes, runs.items()):
            _vanishing_gradient_row(row_axes, label, histories)
        for axis in axes[-1]:
            axis.set_xlabel("epoch (0: initialization)")
        members = max(len(histories) for histories in runs.values())
        if members > 1:
            figure.suptitle(f"median and min–max over {members} seeds")
        return save_figure(figure, path)


def _vanishing_gradient_row(row_axes, label: str, histories) -> None:
    """One run's four panels, each with its legend."""
    epochs = np.array([row["epoch"] for row in histories[0]])
    layers = sorted({int(key.split("/")[1].split("_")[1]) for key in histories[0][0]
                     if key.startswith("grads/layer_")})
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(layers)))
    prefix = f"{label}: " if label else ""
    for axis, (statistic, ylabel, title) in zip(row_axes, LAYER_PANELS):
        for color, layer in zip(colors, layers):
            key = f"grads/layer_{layer}/{statistic}"
            _median_band(axis, epochs, histories, key, color, f"layer {layer}")
        axis.set(ylabel=ylabel, yscale="log", title=prefix + title)
    loss_axis = row_axes[-1]
    _median_band(loss_axis, epochs, histories, "train/loss", "C3", "train loss")
    loss_axis.axhline(LN2, color="gray", linestyle="--", linewidth=1, label="ln 2")
    loss_axis.set(ylabel="BCE loss", title=prefix + "training loss")
    for axis in row_axes:
        axis.grid(alpha=0.3)
        axis.legend(handlelength=1.2, labelspacing=0.2, borderpad=0.3, framealpha=0.8)


def _median_band(axis, epochs, histories, key: str, color, label: str) -> None:
    """The members' median of `key` against epoch, and their min–max as a band."""
    values = np.array([[row[key] for row in history] for history in histories], np.float64)
    axis.plot(epochs, np.median(values, axis=0), color=color, label=label)
    if len(values) > 1:
        axis.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=color,
                          alpha=0.2, linewidth=0)


def plot_decision_boundary(
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    path: Path,
    resolution: int = 200,
) -> Path:
    """P(y=1 | x) over the plane of a 2-D dataset, with the points on top.

    Args:
      predict: maps (M, 2) standardized inputs to (M, 1) probabilities.
      x: (N, 2) standardized inputs.
      y: (N, 1) labels.
    """
    margin = 0.5
    (x_min, y_min), (x_max, y_max) = x.min(0) - margin, x.max(0) + margin
    grid_x, grid_y = np.meshgrid(
        np.linspace(x_min, x_max, resolution), np.linspace(y_min, y_max, resolution)
    )
    grid = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
    probabilities = np.asarray(predict(grid))[:, 0].reshape(grid_x.shape)
    figure, axis = plt.subplots(figsize=(5, 5))
    contour = axis.contourf(grid_x, grid_y, probabilities, levels=20, cmap="RdBu_r", alpha=0.7)
    axis.contour(grid_x, grid_y, probabilities, levels=[0.5], colors="black", linewidths=1)
    axis.scatter(x[:, 0], x[:, 1], c=y[:, 0], cmap="RdBu_r", edgecolors="k", s=12)
    figure.colorbar(contour, ax=axis, label="P(y = 1)")
    axis.set(xlabel="x1 (standardized)", ylabel="x2 (standardized)", title="decision boundary")
    return save_figure(figure, path)


def plot_sweep_curves(
    curves: dict[str, Sequence[Sequence[dict[str, float]]]], path: Path
) -> Path:
    """Mean ± std over seeds of train/val loss and val accuracy, one line per group of members.

    Args:
      curves: label (e.g. "lr=0.1 (n=4)") -> the histories of that group's members, which
        share their epochs.
    """
    panels = [("train/loss", "train loss", True), ("val/loss", "val loss", True),
              ("val/acc", "val accuracy", False)]
    figure, axes = plt.subplots(1, len(panels), figsize=(15, 4))
    for label, histories in curves.items():
        epochs = np.array([row["epoch"] for row in histories[0]])
        for axis, (key, title, log_scale) in zip(axes, panels):
            values = np.array([[row[key] for row in history] for history in histories])
            mean, std = values.mean(axis=0), values.std(axis=0)
            (line,) = axis.plot(epochs, mean, label=label)
            axis.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
            axis.set(xlabel="epoch", title=f"{title}: mean ± std over seeds")
            if log_scale:
                axis.set_yscale("log")
    for axis in axes:
        axis.grid(alpha=0.3)
        if curves:
            axis.legend()
    return save_figure(figure, path)


def save_figure(figure, path: Path) -> Path:
    """Write a figure as PNG (creating its folder) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def plot_learning_slowdown(
    curves: dict[str, dict[str, Sequence[float]]], path: Path, title: str = ""
) -> Path:
    """Nielsen's learning slowdown: the cost (log scale) and the output a against the epoch, one
    line per run; a run labelled "cross-entropy ..." solid, any other dashed. Each panel has its
    legend; shown 830 px wide (a README), every text is at least 9 px.

    Args:
      curves: label -> {"cost": (epochs + 1,), "output": (epochs + 1,)}, epoch 0 first.
      title: above both panels.
    """
    with plt.rc_context(DOCS_TEXT):
        figure, (cost_axis, output_axis) = plt.subplots(1, 2, figsize=(10, 4.2))
        for label, run in curves.items():
            style = "-" if label.startswith("cross-entropy") else "--"
            epochs = np.arange(len(run["cost"]))
            (line,) = cost_axis.plot(epochs, run["cost"], style, label=label)
            output_axis.plot(epochs, run["output"], style, color=line.get_color(), label=label)
        cost_axis.set(xlabel="epoch", ylabel="cost C", yscale="log", title="cost")
        output_axis.set(xlabel="epoch", ylabel="output a = σ(wx + b)", ylim=(0, 1),
                        title="output")
        for axis in (cost_axis, output_axis):
            axis.grid(alpha=0.3)
            axis.legend(handlelength=1.8, labelspacing=0.2, framealpha=0.8)
        if title:
            figure.suptitle(title)
        return save_figure(figure, path)
