"""Tests for deltaprop.teaching.learning_slowdown: Nielsen's one neuron, quadratic cost vs BCE."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import compose_config

from deltaprop.cli import failing_cleanly
from deltaprop.cli.teaching import learning_slowdown
from deltaprop.teaching.learning_slowdown import (
    first_epoch_within,
    neuron_curves,
    slowdown_runs,
)


def slowdown_config(*overrides: str):
    """The learning_slowdown command's config with experiment=learning_slowdown and `overrides`."""
    return compose_config("experiment=learning_slowdown", *overrides, config_name="learning_slowdown")


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_the_curves_are_gradient_descent_with_each_costs_delta():
    """Two epochs by hand: δ = a − y (bce) and (a − y) a(1 − a) (mse), w and b both step by η δ
    (x = 1), the output and the cost read off the parameters of each epoch."""
    for loss in ("bce", "mse"):
        curves = {key: np.asarray(value) for key, value in
                  neuron_curves(2.0, 2.0, 1.0, 0.0, 0.15, 2, loss).items()}
        w, b, weights, outputs, costs = 2.0, 2.0, [], [], []
        for _ in range(3):
            a = sigmoid(w + b)
            weights.append(w)
            outputs.append(a)
            costs.append(-np.log(1 - a) if loss == "bce" else 0.5 * a * a)
            delta = a if loss == "bce" else a * a * (1 - a)
            w, b = w - 0.15 * delta, b - 0.15 * delta
        np.testing.assert_allclose(curves["output"], outputs, rtol=1e-12)
        np.testing.assert_allclose(curves["cost"], costs, rtol=1e-12)
        np.testing.assert_allclose(curves["weight"], weights, rtol=1e-12)
        np.testing.assert_allclose(curves["bias"], curves["weight"], rtol=1e-12)  # x = 1


def test_cross_entropy_gets_the_output_down_much_faster_than_the_quadratic_cost():
    """From w = b = 2 (a ≈ 0.98, saturated): after 50 epochs BCE's output is below 0.1 while the
    quadratic cost's has hardly moved; from (0.6, 0.9) the gap is smaller."""
    runs = {(run.loss, run.start): run for run in slowdown_runs([[2, 2], [0.6, 0.9]], 1.0, 0.0,
                                                                0.15, 300)}
    bce, mse = runs["bce", (2.0, 2.0)], runs["mse", (2.0, 2.0)]
    assert bce.output[0] == mse.output[0] == pytest.approx(sigmoid(4.0))
    assert bce.output[50] < 0.1 and mse.output[50] > 0.97
    assert first_epoch_within(bce, 0.0, 0.1) <= 50 and first_epoch_within(mse, 0.0, 0.1) is None
    assert np.all(np.diff(bce.output) < 0) and np.all(np.diff(mse.output) < 0)
    mild_bce, mild_mse = runs["bce", (0.6, 0.9)], runs["mse", (0.6, 0.9)]
    assert first_epoch_within(mild_bce, 0.0, 0.1) < first_epoch_within(mild_mse, 0.0, 0.1)
    # the quadratic cost's slow start is the saturated start's, not the cost's: from a ≈ 0.82
    # it is within 0.1 before 300 epochs; from a ≈ 0.98 it is not
    assert first_epoch_within(mild_mse, 0.0, 0.1) < 300


def test_the_command_writes_the_figure_and_the_curves_and_rejects_a_bad_value(tmp_path,
                                                                               capsys):
    cfg = slowdown_config("learning_slowdown.epochs=60",
                         "learning_slowdown.starts=[[2,2]]", f"run_dir={tmp_path}")
    data = failing_cleanly(learning_slowdown)(cfg)
    said = capsys.readouterr().out
    assert "cross-entropy (bce), w = 2, b = 2" in said and "quadratic (mse)" in said
    assert "first |a - y| < 0.1 at epoch" in said and "for all 60 epochs" in said
    assert (tmp_path / "learning_slowdown.png").read_bytes().startswith(b"\x89PNG")
    written = json.loads((tmp_path / "learning_slowdown.json").read_text())
    assert written == data and written["learning_rate"] == 0.15
    assert [run["loss"] for run in written["runs"]] == ["bce", "mse"]
    assert all(len(run[key]) == 61 for run in written["runs"] for key in ("cost", "output", "w"))
    assert written["runs"][0]["output_after_50"] < 0.1 < written["runs"][1]["output_after_50"]
    bad = slowdown_config("learning_slowdown.report_epoch=400",
                         f"run_dir={tmp_path / 'bad'}")
    with pytest.raises(SystemExit) as exit_info:
        failing_cleanly(learning_slowdown)(bad)
    assert exit_info.value.code == 2
    assert "learning_slowdown.report_epoch=400" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(("override", "message"), [
    ("learning_slowdown.starts=[[2]]", "learning_slowdown.starts=[[2]] is invalid"),
    ("learning_slowdown.starts=[]", "needs at least one start, each a finite [w, b]"),
    ("learning_slowdown.starts=[[2,abc]]", "learning_slowdown.starts"),
    ("learning_slowdown.threshold=0", "learning_slowdown.threshold=0.0 is invalid"),
    ("learning_slowdown.y=2", "learning_slowdown.y=2.0 is invalid: must be in [0, 1]"),
    ("learning_slowdown.epochs=0", "learning_slowdown.epochs=0 is invalid"),
])
def test_bad_settings_are_refused_naming_the_key(override, message):
    from deltaprop.errors import ConfigError
    from deltaprop.run.config import read
    from deltaprop.settings import LearningSlowdownSettings

    with pytest.raises(ConfigError, match=re.escape(message)):
        read(slowdown_config(override), LearningSlowdownSettings)
    read(slowdown_config("learning_slowdown.starts=[[2,2],[0.6,0.9]]"), LearningSlowdownSettings)  # ints fine
