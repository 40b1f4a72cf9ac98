"""Tests for deltaprop.run.outputs: what a run leaves behind, in strict JSON, with or without
figures; the decision boundary evaluated a chunk at a time."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from deltaprop.network import SIGMOID
from deltaprop.population import Member
from deltaprop.run import outputs
from deltaprop.run.train import train


def test_json_outputs_are_strict_and_figures_optional(make_cfg, tmp_path):
    """A single-class validation split makes val/auc undefined: written as null, not NaN."""
    path = tmp_path / "data.csv"
    rows = [f"{i},{i % 7},{int(i < 97)}" for i in range(100)]  # three 0-labels: all in train?
    path.write_text("a,b,label\n" + "\n".join(rows) + "\n")
    final = train(make_cfg("dataset=csv", f"dataset.path={path}", "dataset.val_fraction=0.1",
                           "dataset.test_fraction=0.1"))
    run_dir = tmp_path / "run"
    text = (run_dir / "summary.json").read_text() + (run_dir / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    summary = json.loads((run_dir / "summary.json").read_text())
    undefined = [key for key, value in final.items() if isinstance(value, float)
                 and not math.isfinite(value)]
    assert undefined and all(summary[key] is None for key in undefined)
    assert not list(run_dir.glob("*.png"))  # logger.plots=false (conftest's SMALL)


def test_figures_are_written_when_asked(make_cfg, tmp_path):
    train(make_cfg("logger.plots=true"))
    names = sorted(path.name for path in (tmp_path / "run").glob("*.png"))
    assert names == ["decision_boundary.png", "layer_norms.png", "loss_curves.png"]


def test_the_decision_boundary_is_evaluated_a_chunk_at_a_time(monkeypatch):
    monkeypatch.setattr(outputs, "DECISION_GRID_CHUNK", 1000)
    params = [{"W": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)},
              {"W": np.ones((3, 1), np.float32), "b": np.zeros(1, np.float32)}]
    seen = []
    probabilities = outputs._chunked_probabilities(params, SIGMOID)
    grid = np.random.default_rng(0).normal(size=(4500, 2))
    original = outputs.jnp.asarray
    def asarray(a, *args):  # the chunks arrive from the host as NumPy arrays
        if isinstance(a, np.ndarray):
            seen.append(len(a))
        return original(a, *args)

    monkeypatch.setattr(outputs.jnp, "asarray", asarray)
    got = probabilities(grid)
    assert max(seen) <= 1000 and sum(seen) == 4500
    hidden = 1 / (1 + np.exp(-grid.sum(axis=1, keepdims=True)))
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-3 * hidden)), rtol=1e-5)


def test_the_per_lr_table_shows_diverged_members(capsys):
    rows = [{"lr": 0.1, "members": 2, "diverged": 0, "diverged_epochs": [],
             "val/acc/mean": 0.9, "val/acc/std": 0.01},
            {"lr": 1e38, "members": 2, "diverged": 2, "diverged_epochs": [1, 3],
             "val/acc/mean": math.nan, "val/acc/std": math.nan}]
    outputs.print_by_point(rows, ["val/acc"])
    out = capsys.readouterr().out
    assert "lr=0.1        n=2   val/acc 0.9000 ± 0.0100" in out
    assert "lr=1e+38      n=2   (2 diverged at epoch 1, 3) val/acc – ± –" in out


@pytest.mark.parametrize("diverged", [None, 4])
def test_a_member_final_row_says_who_and_whether_it_diverged(diverged):
    from deltaprop.nan_guard import Divergence

    divergence = None if diverged is None else Divergence(diverged, "loss became non-finite")
    row = outputs.member_final(Member(3, 7, 0.5), {"epoch": 2, "val/loss": 0.4, "test/acc": 0.8},
                               divergence)
    assert row == {"member": 3, "seed": 7, "lr": 0.5, "weight_decay": 0.0, "momentum": None,
                   "init_scale": 1.0, "diverged": diverged is not None,
                   "diverged_epoch": diverged, "epoch": 2, "val/loss": 0.4, "test/acc": 0.8}


def test_a_figure_that_fails_to_draw_is_a_warning_and_loses_nothing(make_cfg, tmp_path,
                                                                  monkeypatch, capsys):
    from deltaprop.io import plots

    def broken(history, path):
        raise MemoryError("no memory left for the figure")

    monkeypatch.setattr(plots, "plot_loss_curves", broken)
    train(make_cfg("logger.plots=true"))
    run_dir = tmp_path / "run"
    assert "warning: could not draw loss_curves.png: MemoryError: no memory left" in \
        capsys.readouterr().out
    for name in ("params.safetensors", "summary.json", "metrics.jsonl", "layer_norms.png"):
        assert (run_dir / name).exists(), name
    assert not (run_dir / "loss_curves.png").exists()
