"""Tests for deltaprop.teaching.history: T steps of gradient descent, every number of each, checked."""

import dataclasses

import jax
import numpy as np
import pytest
from conftest import WORKED_LEARNING_RATE

from deltaprop.backprop import backprop_trace
from deltaprop.teaching.history import training_history

STEPS = 4


def _numpy_loss(weights, biases, x, y) -> float:
    """Mean BCE from logits in plain numpy, for one state of the parameters."""
    a = np.asarray(x)
    for index, (W, b) in enumerate(zip(weights, biases, strict=True)):
        z = a @ W + b
        a = 1 / (1 + np.exp(-z)) if index < len(weights) - 1 else a
    return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))


@pytest.fixture(scope="module")
def history(batch):
    return training_history(*batch, learning_rate=WORKED_LEARNING_RATE, steps=STEPS)


def test_step_zero_is_the_worked_example(history, example):
    for record in example.layers:
        index = record.layer - 2
        np.testing.assert_allclose(history.activations[index][0], record.activation, rtol=1e-14)
        np.testing.assert_allclose(history.deltas[index][0], record.delta, rtol=1e-13)
        np.testing.assert_allclose(history.grad_weights[index][0], record.grad_weights, rtol=1e-13)
        np.testing.assert_array_equal(history.weights[index][0], record.weights)
    assert history.losses[0] == pytest.approx(example.loss_before, rel=1e-14)
    assert history.losses[1] == pytest.approx(example.loss_after, rel=1e-13)


def test_every_step_is_backprop_then_gradient_descent(history):
    eta, n_layers = WORKED_LEARNING_RATE, len(history.sizes) - 1
    assert history.steps == STEPS
    assert history.weights[0].shape == (STEPS + 1, 2, 3)
    assert history.deltas[-1].shape == (STEPS, 4, 1)
    for t in range(STEPS):
        params = [{"W": history.weights[i][t], "b": history.biases[i][t]} for i in range(n_layers)]
        trace = jax.jit(backprop_trace)(params, history.x, history.y)
        for i in range(n_layers):
            np.testing.assert_allclose(history.deltas[i][t], trace.deltas[i], rtol=1e-12)
            np.testing.assert_allclose(history.grad_biases[i][t], trace.grads[i]["b"], rtol=1e-12)
            # θ_{t+1} = θ_t − η ∂L/∂θ(θ_t)
            np.testing.assert_allclose(
                history.weights[i][t + 1],
                history.weights[i][t] - eta * history.grad_weights[i][t], rtol=1e-15, atol=1e-17)
    for t in range(STEPS + 1):
        weights = [w[t] for w in history.weights]
        biases = [b[t] for b in history.biases]
        assert history.losses[t] == pytest.approx(
            _numpy_loss(weights, biases, history.x, history.y), rel=1e-12)
    assert np.all(np.diff(history.losses) < 0)  # a small enough η: the loss falls every step


def test_every_step_is_checked_against_autodiff(history):
    assert history.errors.shape == (STEPS,)
    assert np.all(history.errors < 1e-12)
    assert history.passed
    strict = dataclasses.replace(history, errors=history.errors + 1.0)
    assert not strict.passed


def test_norms_and_slopes_per_layer_and_step(history):
    norms = history.delta_norms()
    assert norms.shape == (STEPS, 4)
    np.testing.assert_allclose(norms[2, 0], np.linalg.norm(history.deltas[0][2]), rtol=1e-15)
    slopes = history.mean_sigmoid_slopes()
    assert slopes.shape == (STEPS, 3)  # hidden layers 2, 3, 4
    assert np.all((slopes > 0) & (slopes <= 0.25))
    a = history.activations[1][3]
    assert slopes[3, 1] == pytest.approx(float(np.mean(a * (1 - a))), rel=1e-15)


def test_bad_inputs_raise(batch):
    params, x, y = batch
    with pytest.raises(ValueError, match="steps=0"):
        training_history(params, x, y, learning_rate=0.1, steps=0)
    with pytest.raises(ValueError, match="learning_rate"):
        training_history(params, x, y, learning_rate=-1.0, steps=2)
    with pytest.raises(ValueError, match="x has shape"):
        training_history(params, x[:, :1], y, learning_rate=0.1, steps=2)
