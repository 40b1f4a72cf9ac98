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


def plot_layer_norms(history: list[dict[str, float]], path: Path) -> Path:
    """Per-layer ‖δ_l‖ and ‖∂L/∂W_l‖ over training (log scale): the vanishing-gradient view."""
    epochs = [row["epoch"] for row in history]
    layers = sorted(
        {key.split("/")[1] for key in history[0] if key.startswith("grads/")},
        key=lambda name: int(name.split("_")[1]),
    )
    figure, (delta_axis, grad_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for layer in layers:
        label = layer.replace("_", " ")
        delta_axis.plot(epochs, [row[f"grads/{layer}/delta_norm"] for row in history], label=label)
        grad_axis.plot(epochs, [row[f"grads/{layer}/grad_W_norm"] for row in history], label=label)
    delta_axis.set(xlabel="epoch", ylabel="‖δ_l‖", yscale="log", title="error signal per layer")
    grad_axis.set(xlabel="epoch", ylabel="‖∂L/∂W_l‖", yscale="log", title="weight gradient")
    for axis in (delta_axis, grad_axis):
        axis.legend()
        axis.grid(alpha=0.3)
    return save_figure(figure, path)


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
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
