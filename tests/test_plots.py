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
            row[f"grads/layer_{layer}/grad_W_rms"] = 10.0 ** (layer - 6) / epoch
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


def test_vanishing_gradients_figure_has_four_panels_per_run_and_bands(tmp_path, monkeypatch):
    """Rows: runs; columns: ‖δ_l‖, ‖∂L/∂b_l‖, rms ∂L/∂W_l (log, a line per layer) and the
    training loss with ln 2; several members: median line, min–max band."""
    drawn = []
    save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: (drawn.append(figure),
                                                                   save(figure, path))[1])
    members = [history(), [row | {"train/loss": 2 * row["train/loss"]} for row in history()]]
    runs = {"sigmoid": members, "relu": [history()]}
    path = plots.plot_vanishing_gradients(runs, tmp_path / "vanishing.png")
    assert_png(path)
    (figure,) = drawn
    axes = figure.axes
    assert len(axes) == 2 * 4
    titles = [axis.get_title() for axis in axes]
    assert titles[:4] == ["sigmoid: error signal ‖δ_l‖", "sigmoid: speed ‖∂L/∂b_l‖",
                          "sigmoid: weight gradient, rms entry", "sigmoid: training loss"]
    assert titles[4].startswith("relu: ")
    assert [axis.get_yscale() for axis in axes[:4]] == ["log", "log", "log", "linear"]
    delta_lines = axes[0].get_lines()
    assert [line.get_label() for line in delta_lines] == ["layer 2", "layer 3", "layer 4"]
    # the median of the members; rms panel: the grad_W_rms values
    np.testing.assert_allclose(axes[3].get_lines()[0].get_ydata(),
                               [1.5 * row["train/loss"] for row in history()])
    np.testing.assert_allclose(axes[2].get_lines()[0].get_ydata(),
                               [row["grads/layer_2/grad_W_rms"] for row in history()])
    assert any(np.allclose(line.get_ydata(), np.log(2)) for line in axes[3].get_lines())
    assert len(axes[0].collections) == 3 and len(axes[4].collections) == 0  # bands: 2 members


def drawn(monkeypatch, draw) -> list:
    """The figures `draw()` saves, kept open for inspection."""
    figures, save = [], plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: (figures.append(figure),
                                                                   save(figure, path))[1])
    draw()
    return figures


def smallest_text_at_readme_width(figure) -> float:
    """The smallest visible text of a saved figure, in px, shown README_WIDTH px wide."""
    import matplotlib.text

    width = figure.get_size_inches()[0] * plots.DPI
    sizes = [text.get_fontsize() * plots.DPI / 72 for text in figure.findobj(matplotlib.text.Text)
             if text.get_visible() and text.get_text().strip()]
    return min(sizes) * min(1.0, plots.README_WIDTH / width)


def test_the_docs_figures_are_readable_at_readme_width_with_a_legend_per_panel(
        tmp_path, monkeypatch):
    """docs/vanishing_gradients.png and docs/learning_slowdown.png: ≥ 9 px text at 830 px."""
    members = [history(), history()]
    runs = {"sigmoid": members, "tanh": members, "relu": members}
    curves = {f"{cost} from {start}": {"cost": np.linspace(1, 0.1, 30),
                                       "output": np.linspace(0.9, 0.1, 30)}
              for cost in ("cross-entropy", "quadratic") for start in ("a", "b")}
    figures = drawn(monkeypatch, lambda: (
        plots.plot_vanishing_gradients(runs, tmp_path / "vanishing.png"),
        plots.plot_learning_slowdown(curves, tmp_path / "slowdown.png", title="one neuron")))
    for figure in figures:
        assert smallest_text_at_readme_width(figure) >= 9.0
        for axis in figure.axes:  # every panel says what its lines are
            legend = axis.get_legend()
            assert legend is not None, axis.get_title()
            assert {t.get_text() for t in legend.get_texts()} == {
                line.get_label() for line in axis.get_lines()}
    vanishing, _ = figures
    assert len(vanishing.axes) == 3 * 4


def test_the_readability_measure_sees_small_text(monkeypatch, tmp_path):
    """An 18-inch figure (the old vanishing-gradient one) has 6-px ticks at 830 px."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(18, 4))
    axis.plot([1, 2], [3, 4])
    figure.canvas.draw()
    assert smallest_text_at_readme_width(figure) < 7
    plt.close(figure)
