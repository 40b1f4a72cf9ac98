"""Every figure is written as a real, non-empty PNG (Agg backend, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deltaprop.io import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def history(epochs: int = 4) -> list[dict[str, float]]:
    """Rows shaped like the trainer's metrics.jsonl for a network with layers 2..4."""
    rows = []
    for epoch in range(1, epochs + 1):
        row = {"epoch": epoch}
        for split in ("train", "val"):
            row[f"{split}/loss"] = 0.7 / epoch
            row[f"{split}/acc"] = 1 - 0.4 / epoch
        for layer in (2, 3, 4):
            row[f"grads/layer_{layer}/delta_norm"] = 10.0 ** (layer - 5) / epoch
            row[f"grads/layer_{layer}/grad_W_norm"] = 10.0 ** (layer - 4) / epoch
            row[f"grads/layer_{layer}/grad_b_norm"] = 10.0 ** (layer - 4) / epoch
        row["grads/layer_2/saturated"] = 0.1
        row["grads/layer_3/saturated"] = 0.0
        rows.append(row)
    return rows


def assert_png(path: Path) -> None:
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1000  # a real figure, not an empty image


@pytest.mark.parametrize("plot", [plots.plot_loss_curves, plots.plot_layer_norms])
def test_history_plots_write_a_png(plot, tmp_path):
    path = tmp_path / "nested" / "figure.png"  # the parent directory is created
    returned = plot(history(), path)
    assert Path(returned) == path
    assert_png(path)


def test_decision_boundary_writes_a_png_and_queries_the_plane(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    y = (x[:, :1] > 0).astype(float)
    queries = []

    def predict(grid: np.ndarray) -> np.ndarray:
        queries.append(grid.shape)
        return 1 / (1 + np.exp(-3 * grid[:, :1]))  # (M, 1) probabilities

    path = plots.plot_decision_boundary(predict, x, y, tmp_path / "boundary.png", resolution=30)
    assert queries == [(30 * 30, 2)]
    assert_png(path)
