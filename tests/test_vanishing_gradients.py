"""Tests for deltaprop.teaching.vanishing_gradients (the spreads, the bound, the plateau, the
table) on synthetic histories, and experiments/vanishing_gradients.py end to end at tiny
settings, in process."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import compose_config, draw_problem

from deltaprop.diagnostics import layer_statistics
from deltaprop.teaching.vanishing_gradients import (
    LN2,
    bias_ratio,
    format_summaries,
    hidden_layer_numbers,
    layer_numbers,
    plateau_end,
    spectral_bound,
    spread,
    summarize,
)


def vanishing_config(*overrides: str):
    """The vanishing_gradients command's config with experiment=vanishing_gradients and `overrides`."""
    return compose_config("experiment=vanishing_gradients", *overrides, config_name="vanishing_gradients")


def row(epoch: int, loss: float, deltas: dict[int, float], biases: dict[int, float]):
    """A history row of a network with layers 2..L (the last one the output)."""
    out = {"epoch": epoch, "train/loss": loss}
    for layer, value in deltas.items():
        out[f"grads/layer_{layer}/delta_norm"] = value
        out[f"grads/layer_{layer}/grad_b_norm"] = biases[layer]
        out[f"grads/layer_{layer}/grad_W_rms"] = value / 10
    for layer in list(deltas)[:-1]:
        out[f"grads/layer_{layer}/saturated"] = 0.0
    return out


# layers 2, 3, 4 hidden, 5 the output
INITIAL = row(0, LN2, {2: 1e-4, 3: 4e-4, 4: 2e-3, 5: 1e-2}, {2: 0.01, 3: 0.05, 4: 0.3, 5: 1.0})


def test_spread_and_bias_ratio_by_hand():
    assert layer_numbers(INITIAL) == [2, 3, 4, 5] and hidden_layer_numbers(INITIAL) == [2, 3, 4]
    assert spread(INITIAL) == pytest.approx(100.0)  # 1e-2 / 1e-4: the output layer over layer 2
    assert spread(INITIAL, hidden_only=True) == pytest.approx(20.0)  # 2e-3 / 1e-4
    assert bias_ratio(INITIAL) == pytest.approx(30.0)  # 0.3 / 0.01, the output layer left out


def test_plateau_end_is_the_first_epoch_below_ln2_minus_the_margin():
    losses = [LN2, LN2 - 0.01, LN2 - 0.04, LN2 - 0.06, 0.2]
    history = [row(epoch, loss, {2: 1.0, 3: 1.0}, {2: 1.0, 3: 1.0})
               for epoch, loss in enumerate(losses)]
    assert plateau_end(history, margin=0.05) == 3
    assert plateau_end(history, margin=0.02) == 2
    assert plateau_end(history[:3], margin=0.05) is None  # never left the plateau


def test_spectral_bound_is_the_product_of_largest_singular_values_times_slopes():
    # W_l = diag(s) has ‖W_l‖₂ = max s: layers 2..4, W_3 and W_4 count (W_2 never multiplies δ)
    params = [{"W": np.eye(2) * 100.0, "b": np.zeros(2)},
              {"W": np.diag([3.0, 1.0]), "b": np.zeros(2)},
              {"W": np.array([[2.0], [0.0]]), "b": np.zeros(1)}]
    assert spectral_bound(params, "sigmoid") == pytest.approx(3.0 * 2.0 / 4**2)
    assert spectral_bound(params, "sigmoid", hidden_only=True) == pytest.approx(3.0 / 4)
    assert spectral_bound(params, "tanh") == pytest.approx(6.0)


def test_the_bound_holds_for_a_random_sigmoid_network():
    """‖δ_2‖ / ‖δ_top‖ ≤ Π ‖W_l‖₂ / 4^k, for top = L and top = L − 1."""
    params, x, y = draw_problem(3, [5, 6, 6, 6, 1], 32, as_numpy=True)
    stats = {f"grads/{key}": float(value) for key, value in layer_statistics(params, x, y).items()}
    for hidden in (False, True):
        measured = 1 / spread(stats, hidden)
        assert measured <= spectral_bound(params, "sigmoid", hidden) * (1 + 1e-12)


def test_summarize_over_members_and_refuses_a_history_without_epoch_0():
    params = [{"W": np.eye(2), "b": np.zeros(2)}] * 4  # ‖W‖₂ = 1: 1/bound = 4^k
    later = row(5, 0.3, {2: 1e-3, 3: 2e-3, 4: 4e-3, 5: 1e-2}, {2: 0.1, 3: 0.2, 4: 0.5, 5: 1.0})
    other = INITIAL | {"grads/layer_2/delta_norm": 2e-4, "grads/layer_2/grad_b_norm": 0.02}
    summary = summarize("sigmoid", [[INITIAL, later], [other, later]], [params, params])
    assert summary["members"] == 2 and summary["last_epoch"] == 5
    assert summary["spread_hidden_at_init"] == pytest.approx(
        {"median": 15.0, "min": 10.0, "max": 20.0, "missing": 0})
    assert summary["spread_with_output_at_init"]["max"] == pytest.approx(100.0)
    assert summary["bound_with_output_at_init"]["median"] == pytest.approx(4.0**3)
    assert summary["bound_hidden_at_init"]["median"] == pytest.approx(4.0**2)
    assert summary["bias_ratio_at_init"]["min"] == pytest.approx(15.0)  # 0.3 / 0.02
    assert summary["bias_ratio_at_end"]["median"] == pytest.approx(5.0)
    assert summary["plateau_end_epoch"] == {"median": 5.0, "min": 5.0, "max": 5.0, "missing": 0}
    assert json.loads(json.dumps(summary)) == summary  # strict JSON as it is
    text = format_summaries([summary])
    assert "sigmoid (2 members" in text and "(bound: >= 64" in text
    with pytest.raises(ValueError, match="epoch 0"):
        summarize("sigmoid", [[later]], [params])


def test_the_experiment_runs_end_to_end(tmp_path):
    """experiments/vanishing_gradients.py in process at tiny settings (one activation, two
    seeds): the sweep's histories start at epoch 0; the figure, its copy and the JSON table."""
    from deltaprop.cli.teaching import vanishing_gradients

    cfg = vanishing_config("logger=none", "logger.plots=false",
        "trainer.progress=false", "model.hidden=[3,3]", "trainer.epochs=2",
        "trainer.limit_batches=2", "dataset=moons", "dataset.n_samples=100", "vanishing_gradients.seeds=2",
        "vanishing_gradients.activations=[sigmoid]", f"run_dir={tmp_path / 'run'}",
        f"vanishing_gradients.figure={tmp_path / 'docs' / 'figure.png'}",
    )
    summaries = vanishing_gradients(cfg)
    assert [summary["name"] for summary in summaries] == ["sigmoid"]
    assert all(summary["members"] == 2 and summary["last_epoch"] == 2 for summary in summaries)
    member = tmp_path / "run" / "sigmoid" / "members" / "member_1" / "metrics.jsonl"
    history = [json.loads(line) for line in member.read_text().splitlines()]
    assert [line["epoch"] for line in history] == [0, 1, 2]
    assert summaries[0]["spread_with_output_at_init"]["max"] == pytest.approx(
        max(spread(json.loads((tmp_path / "run" / "sigmoid" / "members" / f"member_{m}" /
                               "metrics.jsonl").read_text().splitlines()[0])) for m in (0, 1)))
    assert math.isfinite(summaries[0]["bound_hidden_at_init"]["median"])
    figure = (tmp_path / "run" / "vanishing_gradients.png").read_bytes()
    assert figure[:8] == b"\x89PNG\r\n\x1a\n" and len(figure) > 10_000
    assert (tmp_path / "docs" / "figure.png").read_bytes() == figure
    saved = json.loads((tmp_path / "run" / "vanishing_gradients.json").read_text())
    assert saved == json.loads(json.dumps(summaries))
