"""Tests for deltaprop.teaching.worked_example: the record is backprop's own values, checked;
and experiments/worked_example.py end to end."""

import re
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
    assert [record.layer for record in example.forward_layers] == [2, 3, 4, 5]
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


def test_loss_changes_follow_the_taylor_series_at_eta_and_a_tenth(batch, example):
    params, x, y = batch
    at_eta, at_tenth = example.loss_changes
    assert (at_eta.learning_rate, at_tenth.learning_rate) == (LEARNING_RATE, LEARNING_RATE / 10)
    assert at_eta.actual == pytest.approx(example.loss_after - example.loss_before, rel=1e-12)
    assert at_eta.first_order == pytest.approx(example.predicted_loss_change, rel=1e-15)
    grads = [{"W": r.grad_weights, "b": r.grad_biases} for r in example.forward_layers]
    squared = sum(float(np.sum(g[leaf] ** 2)) for g in grads for leaf in ("W", "b"))
    assert example.squared_gradient_norm == pytest.approx(squared, rel=1e-14)

    # gᵀHg is d²/dt² L(θ − t g) at t = 0: a central second difference in plain numpy agrees.
    def loss_along(t):
        moved = [{"W": p["W"] - t * g["W"], "b": p["b"] - t * g["b"]} for p, g in zip(params, grads)]
        return _numpy_loss(moved, x, y)

    h = 1e-3
    second_difference = (loss_along(h) - 2 * loss_along(0.0) + loss_along(-h)) / h**2
    assert example.curvature == pytest.approx(second_difference, rel=1e-5)
    assert example.error_curvature < 1e-13
    # The first order misses by about ½η gᵀHg/‖g‖²; a tenth of the step, a tenth of the miss.
    assert abs(at_tenth.first_order_miss) == pytest.approx(abs(at_eta.first_order_miss) / 10,
                                                           rel=0.3)
    for change in (at_eta, at_tenth):
        assert abs(change.second_order_miss) < abs(change.first_order_miss) / 5
        assert abs(change.actual - change.first_order) == pytest.approx(
            0.5 * change.learning_rate**2 * abs(example.curvature), rel=0.3)


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


def test_the_by_hand_experiment_is_the_calculator_sized_case():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("worked_example", overrides=["experiment=worked_example_by_hand"])
    assert cfg.dataset.name == "xor_table"
    assert list(cfg.model.hidden) == [2, 2, 2]
    assert cfg.worked_example.mode == "by_hand" and cfg.worked_example.batch == 1
    assert cfg.optimizer.name == "sgd" and cfg.optimizer.lr == 1.0


def test_the_command_applies_the_worked_example_experiment_by_default():
    """conf/worked_example.yaml, the command's own config: experiment=worked_example unless the
    command line names another."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        default = compose("worked_example")
        other = compose("worked_example", overrides=["experiment=vanishing_gradients"])
    assert default.experiment_name == "worked_example"
    assert list(default.model.hidden) == [3, 3, 3]
    assert default.dataset.name == "xor"
    assert other.experiment_name == "vanishing_gradients"


@pytest.fixture
def worked(run_command, tmp_path):
    """(folder, *overrides) -> Completed: deltaprop-worked-example writing into the folder."""

    def run(folder: Path, *overrides: str):
        folder.mkdir(parents=True, exist_ok=True)
        return run_command("worked_example", f"hydra.run.dir={folder}", "logger=none",
                           *overrides)

    return run


def test_entry_point_end_to_end(worked, tmp_path):
    result = worked(tmp_path, "++worked_example.batch=3")
    assert result.returncode == 0, result.stderr
    report = tmp_path / "worked_example.md"
    assert report.is_file()
    assert f"report: {report}" in result.stdout
    assert f"picture: {tmp_path / 'network.svg'}" in result.stdout
    assert "backprop.html" not in result.stdout  # worked_example.page is false by default
    assert "2-3-3-3-1" in result.stdout  # experiment=worked_example applied by default
    assert "N = 3 examples" in result.stdout
    assert "All checks passed" in result.stdout
    assert "z_2[1,1] = " not in result.stdout  # the default mode prints tables only
    markdown = report.read_text(encoding="utf-8")
    layers = re.findall(r"^#+ Layer (\d)", markdown, flags=re.MULTILINE)
    assert layers == ["1", "2", "3", "4", "5", "5", "4", "3", "2"]
    assert "](network.svg)" in markdown
    assert (tmp_path / "network.svg").read_text(encoding="utf-8").startswith("<svg ")


def test_by_hand_mode_is_the_calculator_case(worked, tmp_path):
    result = worked(tmp_path, "worked_example.mode=by_hand", "worked_example.digits=5")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("Worked example by hand: 5-layer sigmoid network 2-2-2-2-1")
    assert "N = 1 example" in out and "(the XOR truth table, as it is)" in out
    assert "rounded to 5 significant digits" in out
    # forward 2 → 5 first, then backward 5 → 2, every unit's arithmetic with its numbers
    order = ["z_2[1] = x[1] W_2[1,1] + x[2] W_2[2,1] + b_2[1] = (0)(", "a_5[1] = σ(z_5[1]) = ",
             "δ_5[1] = (a_5[1] − y[1]) / (N·n_5) = (", "δ_4[1] = δ_5[1] W_5[1,1] σ'(z_4[1]) = (",
             "δ_2[2] = (δ_3[1] W_3[2,1] + δ_3[2] W_3[2,2]) σ'(z_2[2]) = ((",
             "W_2[1,1] ← W_2[1,1] − η ∂L/∂W_2[1,1] = "]
    positions = [out.index(text) for text in order]
    assert positions == sorted(positions)
    assert "η/10 = 0.1" in out
    assert "All checks passed" in out
    four = worked(tmp_path / "four", "worked_example.mode=by_hand", "worked_example.batch=4")
    assert four.returncode == 0, four.stderr
    assert "N = 4 examples" in four.stdout and "δ_2[4,2] = " in four.stdout


def test_entry_point_exits_nonzero_when_a_check_fails(worked, tmp_path):
    # A step this large overshoots: the loss rises, so the run must fail.
    result = worked(tmp_path, "optimizer.lr=10000")
    assert result.returncode == 4  # a failed check (deltaprop.errors)
    assert "CHECKS FAILED" in result.stdout
    assert (tmp_path / "worked_example.md").is_file()


def test_the_worked_example_refuses_a_cost_it_does_not_show(worked, tmp_path):
    done = worked(tmp_path, "loss=mse")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "shows sigmoid layers and BCE" in line and "loss=mse" in line
