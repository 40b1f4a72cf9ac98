"""Evaluation metrics and the per-layer gradient statistics, against hand computations (float64).

Inputs are NumPy and the functions under test run jitted, as the trainer runs them (few XLA
compilations, so the file stays fast).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import draw_problem

from deltaprop.backprop import backprop_trace
from deltaprop.diagnostics import (
    SATURATION_THRESHOLD,
    evaluate,
    layer_statistics,
    progress_metrics,
)
from deltaprop.losses import loss_fn
from deltaprop.model import Model

SIZES = [3, 5, 4, 1]  # layers 2 and 3 hidden, layer 4 the output
statistics_of = jax.jit(layer_statistics)
trace_of = jax.jit(backprop_trace)
autodiff_grad = jax.jit(jax.grad(loss_fn))


def test_layer_statistics_keys_per_layer():
    params, x, y = draw_problem(0, SIZES, 20, as_numpy=True)
    stats = statistics_of(params, x, y)
    expected = set()
    for layer in (2, 3, 4):
        expected |= {f"layer_{layer}/delta_norm", f"layer_{layer}/grad_W_norm",
                     f"layer_{layer}/grad_W_rms", f"layer_{layer}/grad_b_norm"}
    expected |= {"layer_2/saturated", "layer_3/saturated"}  # hidden layers only
    assert set(stats) == expected
    assert all(np.shape(value) == () for value in stats.values())


def test_grad_W_rms_is_the_root_mean_square_entry_of_jax_grad():
    """rms ∂L/∂W_l = ‖∂L/∂W_l‖_F / sqrt(n_{l−1}·n_l) = sqrt(mean of the squared entries) of
    jax.grad's gradient; a 5×4 and a 4×1 matrix of equal entries have equal rms."""
    params, x, y = draw_problem(0, SIZES, 20, as_numpy=True)
    stats = statistics_of(params, x, y)
    autodiff = autodiff_grad(params, x, y)
    for index, layer in enumerate((2, 3, 4)):
        gradient = np.asarray(autodiff[index]["W"])
        np.testing.assert_allclose(stats[f"layer_{layer}/grad_W_rms"],
                                   np.sqrt(np.mean(gradient**2)), rtol=1e-12)
        np.testing.assert_allclose(stats[f"layer_{layer}/grad_W_rms"],
                                   stats[f"layer_{layer}/grad_W_norm"] / np.sqrt(gradient.size),
                                   rtol=1e-12)
    assert float(stats["layer_2/grad_W_rms"]) != pytest.approx(float(stats["layer_2/grad_W_norm"]))


def test_layer_statistics_values_by_hand():
    params, x, y = draw_problem(0, SIZES, 20, as_numpy=True)
    stats = statistics_of(params, x, y)
    trace = trace_of(params, x, y)
    autodiff = autodiff_grad(params, x, y)
    for index, layer in enumerate((2, 3, 4)):
        delta = np.asarray(trace.deltas[index])
        np.testing.assert_allclose(
            stats[f"layer_{layer}/delta_norm"], np.sqrt((delta**2).sum()), rtol=1e-12
        )
        # the gradient norms are those of the true gradient (checked against jax.grad)
        for leaf in ("W", "b"):
            np.testing.assert_allclose(
                stats[f"layer_{layer}/grad_{leaf}_norm"],
                np.sqrt((np.asarray(autodiff[index][leaf]) ** 2).sum()),
                rtol=1e-12,
            )
    for index, layer in enumerate((2, 3)):
        a = np.asarray(trace.activations[index + 1])  # a_l = σ(z_l)
        saturated = np.mean(a * (1 - a) < SATURATION_THRESHOLD)
        assert float(stats[f"layer_{layer}/saturated"]) == pytest.approx(saturated, abs=1e-6)


def test_delta_norm_is_that_of_dloss_dz():
    """δ_l = ∂L/∂z_l, checked through autodiff: add a zero offset to z_l and differentiate."""
    params, x, y = draw_problem(0, SIZES, 20, as_numpy=True)

    @jax.jit
    def dloss_dz(offsets):
        def loss(offsets):
            a = x
            for layer, offset in zip(params, offsets, strict=True):
                z = a @ layer["W"] + layer["b"] + offset
                a = jax.nn.sigmoid(z)
            return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))

        return jax.grad(loss)(offsets)

    stats = statistics_of(params, x, y)
    gradients = dloss_dz([np.zeros((x.shape[0], n)) for n in SIZES[1:]])
    for gradient, layer in zip(gradients, (2, 3, 4), strict=True):
        np.testing.assert_allclose(
            stats[f"layer_{layer}/delta_norm"], np.linalg.norm(gradient), rtol=1e-12
        )


def test_saturation_is_one_when_pre_activations_are_huge():
    params, x, y = draw_problem(0, SIZES, 20, as_numpy=True)
    assert float(statistics_of(params, x, y)["layer_2/saturated"]) < 0.5
    # one of the five units of layer 2 driven to |z| ≥ 1e2 on every example: 1/5 saturated
    W = params[0]["W"].copy()
    W[:, 0] = 1e4 * np.sign(W[:, 0])
    one_unit = [{"W": W, "b": np.r_[0.0, params[0]["b"][1:]]}, *params[1:]]
    x_positive = np.abs(x) + 0.01
    z_2 = x_positive @ W + one_unit[0]["b"]
    assert np.all(np.abs(z_2[:, 0]) >= 1e2) and np.all(np.abs(z_2[:, 1:]) < 5)
    stats = statistics_of(one_unit, x_positive, y)
    assert float(stats["layer_2/saturated"]) == pytest.approx(0.2, abs=1e-6)
    # every z_2 = ±1e4 (the sign of x's first column): σ'(z_2) = 0 exactly
    W = np.zeros_like(params[0]["W"])
    W[0] = 1e4
    saturated = [{"W": W, "b": params[0]["b"] * 0}, *params[1:]]
    stats = statistics_of(saturated, x, y)
    assert float(stats["layer_2/saturated"]) == 1.0
    assert float(stats["layer_3/saturated"]) < 1.0
    assert float(stats["layer_2/delta_norm"]) < 1e-15  # σ' ≈ e^{−|z|}: no error signal left
    assert all(np.isfinite(float(value)) for value in stats.values())


def test_evaluate_by_hand():
    params, x, y = draw_problem(0, SIZES, 20, as_numpy=True)
    evaluate_jit = jax.jit(evaluate)
    result = evaluate_jit(params, x, y)
    probabilities = np.asarray(trace_of(params, x, y).activations[-1])
    np.testing.assert_allclose(result["probabilities"], probabilities, rtol=1e-12)
    z = np.log(probabilities / (1 - probabilities))  # logits, recovered
    bce = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    np.testing.assert_allclose(result["loss"], bce.mean(), rtol=1e-10)
    expected_acc = np.mean((probabilities > 0.5) == (y > 0.5))
    assert float(result["acc"]) == pytest.approx(expected_acc, abs=1e-6)  # a float32 mean
    assert 0 < expected_acc < 1
    perfect = evaluate_jit(params, x, (probabilities > 0.5).astype(np.float64))
    assert float(perfect["acc"]) == 1.0


def test_progress_metrics_is_one_program_of_evaluate_and_statistics():
    params, x, y = draw_problem(0, SIZES, 20, as_numpy=True)
    arrays = {"x_train": x, "y_train": y, "x_val": x[:7], "y_val": y[:7], "x_test": x[7:],
              "y_test": y[7:]}
    got = jax.jit(progress_metrics)(params, arrays)
    evaluate_jit = jax.jit(evaluate)
    for split, (x_split, y_split) in {"val": (x[:7], y[:7]), "test": (x[7:], y[7:])}.items():
        expected = evaluate_jit(params, x_split, y_split)
        assert float(got[split]["loss"]) == pytest.approx(float(expected["loss"]), rel=1e-12)
    expected = jax.jit(layer_statistics)(params, x, y)
    assert set(got["statistics"]) == set(expected)
    for key, value in expected.items():
        assert float(got["statistics"][key]) == pytest.approx(float(value), rel=1e-12), key


def test_evaluate_reports_the_configured_cost_and_relu_saturation_counts_dead_units():
    params, x, y = draw_problem(1, SIZES, 20, as_numpy=True)
    model = Model.named(SIZES, "mse", "relu")
    result = jax.jit(evaluate, static_argnames="model")(params, x, y, model=model)
    probabilities = np.asarray(result["probabilities"])
    np.testing.assert_allclose(result["loss"], np.mean(0.5 * (probabilities - y) ** 2),
                               rtol=1e-13)
    np.testing.assert_allclose(
        result["loss"], loss_fn(params, x, y, loss="mse", activation="relu"), rtol=1e-13
    )
    stats = layer_statistics(params, x, y, model)
    trace = backprop_trace(params, x, y, loss="mse", activation="relu")
    dead = float(np.mean(np.asarray(trace.pre_activations[0]) <= 0))
    assert 0 < dead < 1
    assert float(stats["layer_2/saturated"]) == pytest.approx(dead)
