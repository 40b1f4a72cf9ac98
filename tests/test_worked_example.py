"""Tests for deltaprop.teaching.worked_example: the record is backprop's own values, checked;
and experiments/worked_example.py end to end."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import WORKED_LEARNING_RATE as LEARNING_RATE
from hydra import compose, initialize_config_dir

from deltaprop.backprop import backprop_trace
from deltaprop.teaching.render import format_console
from deltaprop.teaching.worked_example import worked_example

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "worked_example.py"


def _numpy_loss(params, x, y) -> float:
    """Mean BCE from logits, in plain numpy: an oracle independent of JAX."""
    a = np.asarray(x)
    for index, layer in enumerate(params):
        z = a @ layer["W"] + layer["b"]
        a = 1 / (1 + np.exp(-z)) if index < len(params) - 1 else a
    y = np.asarray(y)
    return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def test_records_are_exactly_what_backprop_computes(batch, example):
    params, x, y = batch
    trace = jax.jit(backprop_trace)(params, x, y)  # jitted, as the worked example and training run it
    for record in example.layers:
        index = record.layer - 2
        np.testing.assert_array_equal(record.pre_activation, trace.pre_activations[index])
        np.testing.assert_array_equal(record.activation, trace.activations[index + 1])
        np.testing.assert_array_equal(record.delta, trace.deltas[index])
        np.testing.assert_array_equal(record.grad_weights, trace.grads[index]["W"])
        np.testing.assert_array_equal(record.grad_biases, trace.grads[index]["b"])
        np.testing.assert_array_equal(record.weights, params[index]["W"])
    assert example.loss_before == float(trace.loss)


def test_layers_run_from_the_output_down(example):
    assert [record.layer for record in example.layers] == [5, 4, 3, 2]
    assert example.layer(5) is example.layers[0]
    assert example.layer(5).sigmoid_derivative is None  # σ' cancels at the output
    assert all(example.layer(layer).sigmoid_derivative is not None for layer in (2, 3, 4))
    with pytest.raises(KeyError, match="no layer 6"):
        example.layer(6)


def test_deltas_follow_the_recursion(example):
    n_batch, n_out = example.y.shape
    output = example.layer(5)
    # δ_L = (a_L − y) / (N·n_L): the textbook's per-example δ divided by N·n_L.
    np.testing.assert_allclose(
        output.delta, (output.activation - example.y) / (n_batch * n_out), rtol=1e-15
    )
    for layer in (4, 3, 2):
        record, above = example.layer(layer), example.layer(layer + 1)
        a = record.activation
        np.testing.assert_allclose(record.sigmoid_derivative, a * (1 - a), rtol=1e-15)
        assert np.all(record.sigmoid_derivative <= 0.25)
        np.testing.assert_allclose(record.backpropagated, above.delta @ above.weights.T, rtol=1e-14)
        np.testing.assert_allclose(
            record.delta, record.backpropagated * record.sigmoid_derivative, rtol=1e-13
        )


def test_every_check_passes_with_float64_agreement(example):
    assert example.passed
    for record in example.layers:
        assert record.passed
        assert max(record.error_delta, record.error_weights, record.error_biases) < 1e-13
    assert example.error_update < 1e-13


def test_update_is_gradient_descent_and_lowers_the_loss(batch, example):
    _, x, y = batch
    for record in example.layers:
        np.testing.assert_array_equal(
            record.new_weights, record.weights - LEARNING_RATE * record.grad_weights
        )
        np.testing.assert_array_equal(
            record.new_biases, record.biases - LEARNING_RATE * record.grad_biases
        )
    new_params = [
        {"W": record.new_weights, "b": record.new_biases} for record in reversed(example.layers)
    ]
    assert example.loss_after == pytest.approx(_numpy_loss(new_params, x, y), rel=1e-13)
    assert example.loss_after < example.loss_before
    assert example.loss_decreased
    # First order: ΔL ≈ −η‖g‖², negative and of the same size for this η.
    change = example.loss_after - example.loss_before
    assert example.predicted_loss_change < 0
    assert 0.3 < change / example.predicted_loss_change < 3


def test_too_large_a_step_fails_the_example(batch):
    overshoot = worked_example(*batch, learning_rate=1e4)
    assert not overshoot.loss_decreased
    assert not overshoot.passed
    assert "η is too large" in format_console(overshoot)


def test_float32_params_are_checked_in_float64(batch):
    params, x, y = batch
    params32 = jax.tree.map(lambda leaf: np.asarray(leaf, np.float32), params)
    example32 = worked_example(params32, np.asarray(x, np.float32), y, learning_rate=0.1)
    assert example32.layer(2).delta.dtype == np.float64
    assert example32.passed


def test_bad_inputs_raise_before_any_work(batch):
    params, x, y = batch
    with pytest.raises(ValueError, match="learning_rate"):
        worked_example(params, x, y, learning_rate=0.0)
    with pytest.raises(ValueError, match="x has shape"):
        worked_example(params, x[:, :1], y, learning_rate=0.1)


def test_the_entry_point_applies_the_worked_example_experiment_by_default():
    spec = importlib.util.spec_from_file_location("worked_example_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # registers the primary config `worked_example_app`
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        default = compose("worked_example_app")
        other = compose("worked_example_app", overrides=["experiment=vanishing_gradients"])
    assert default.experiment_name == "worked_example"
    assert list(default.model.hidden) == [3, 3, 3]
    assert default.dataset.name == "xor"
    assert other.experiment_name == "vanishing_gradients"


def _run_script(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), f"hydra.run.dir={tmp_path}", "logger=none", *overrides],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
    )


@pytest.mark.slow
def test_entry_point_end_to_end(tmp_path):
    result = _run_script(tmp_path, "++worked_example.batch=3")
    assert result.returncode == 0, result.stderr
    report = tmp_path / "worked_example.md"
    assert report.is_file()
    assert f"report: {report}" in result.stdout
    assert "2-3-3-3-1" in result.stdout  # experiment=worked_example applied by default
    assert "N = 3 examples" in result.stdout
    assert "All checks passed" in result.stdout
    markdown = report.read_text(encoding="utf-8")
    assert re.findall(r"^## Layer (\d)", markdown, flags=re.MULTILINE) == ["1", "5", "4", "3", "2"]


@pytest.mark.slow
def test_entry_point_exits_nonzero_when_a_check_fails(tmp_path):
    # A step this large overshoots: the loss rises, so the run must fail.
    result = _run_script(tmp_path, "optimizer.lr=10000")
    assert result.returncode == 1
    assert "CHECKS FAILED" in result.stdout
    assert (tmp_path / "worked_example.md").is_file()
