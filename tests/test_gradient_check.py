"""gradcheck: the per-layer report, finite differences, and that a wrong gradient is caught."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import draw_problem

import deltaprop
from deltaprop.cli.teaching import gradcheck_report, trained_params
from deltaprop.gradient_check import finite_difference_grad
from deltaprop.run.config import read
from deltaprop.settings import GradcheckSettings


def read_gradcheck(cfg):
    return read(cfg, GradcheckSettings)

gradcheck_module = importlib.import_module("deltaprop.gradient_check")


ARCHITECTURES = {
    "textbook": [2, 3, 3, 3, 1],
    "logistic_regression": [4, 1],
    "multi_output": [3, 5, 2],
}


@pytest.mark.parametrize("sizes", ARCHITECTURES.values(), ids=ARCHITECTURES.keys())
def test_gradcheck_passes_for_the_hand_written_pass(sizes):
    params, x, y = draw_problem(0, sizes, 6)
    report = deltaprop.gradcheck(params, x, y)
    assert report.passed
    assert len(report.rows) == 2 * (len(sizes) - 1)
    assert [(row.layer, row.leaf) for row in report.rows] == [
        (layer, leaf) for layer in range(2, len(sizes) + 1) for leaf in ("W", "b")
    ]
    grads = deltaprop.manual_grad(params, x, y)
    for row in report.rows:
        expected_grad = np.asarray(grads[row.layer - 2][row.leaf])
        assert row.shape == expected_grad.shape
        np.testing.assert_allclose(row.norm, np.linalg.norm(expected_grad), rtol=1e-12)
        assert row.norm > 0
        assert row.error_finite_differences <= 1e-6
        assert row.error_autodiff <= 1e-10
        assert row.passed


def test_gradcheck_runs_in_float64_whatever_the_training_precision():
    params, x, y = draw_problem(1, [3, 4, 2], 5, dtype=np.float32)
    report = deltaprop.gradcheck(params, x, y)
    assert report.passed
    # Finite differences in float32 would only reach ~1e-3; float64 gets far below the tolerance.
    assert max(row.error_finite_differences for row in report.rows) <= 1e-9


def test_finite_differences_match_the_logistic_regression_closed_form():
    params, x, y = draw_problem(2, [3, 1], 8)
    X, Y = np.asarray(x), np.asarray(y)
    w, b = np.asarray(params[0]["W"]), np.asarray(params[0]["b"])
    residual = 1.0 / (1.0 + np.exp(-(X @ w + b))) - Y  # σ(Xw + b) − y
    numeric = finite_difference_grad(params, x, y)
    np.testing.assert_allclose(numeric[0]["W"], X.T @ residual / len(X), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(numeric[0]["b"], residual.mean(axis=0), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------- wrong gradients


def _scale_one_leaf(layer, leaf, factor):
    def corrupted(params, x, y):
        grads = deltaprop.manual_grad(params, x, y)
        grads[layer - 2] = dict(grads[layer - 2], **{leaf: grads[layer - 2][leaf] * factor})
        return grads

    return corrupted


def _without_hidden_sigmoid_derivative(params, x, y):
    """A classic mistake: δ_l = δ_{l+1} W_{l+1}ᵀ, forgetting the factor σ'(z_l) = a_l(1 − a_l)."""
    trace = deltaprop.backprop_trace(params, x, y)
    delta = trace.deltas[-1]
    grads = [None] * len(params)
    grads[-1] = {"W": trace.activations[-2].T @ delta, "b": delta.sum(axis=0)}
    for i in range(len(params) - 2, -1, -1):
        delta = delta @ params[i + 1]["W"].T
        grads[i] = {"W": trace.activations[i].T @ delta, "b": delta.sum(axis=0)}
    return grads


def _per_example_delta(params, x, y):
    """Another: δ_L = a_L − y without the 1/(N·n_L) of the mean loss."""
    n_elements = jnp.size(y)
    return jax.tree.map(lambda g: g * n_elements, deltaprop.manual_grad(params, x, y))


@pytest.mark.parametrize(
    ("wrong_grad", "wrong_layers"),
    [
        (_scale_one_leaf(layer=3, leaf="W", factor=1 + 1e-4), {(3, "W")}),
        (_scale_one_leaf(layer=2, leaf="b", factor=-1.0), {(2, "b")}),
        (_without_hidden_sigmoid_derivative, {(2, "W"), (2, "b"), (3, "W"), (3, "b")}),
        (_per_example_delta, {(layer, leaf) for layer in (2, 3, 4) for leaf in ("W", "b")}),
    ],
    ids=["W3_off_by_1e-4", "b2_sign", "no_sigma_prime", "no_mean"],
)
def test_gradcheck_catches_a_wrong_gradient(wrong_grad, wrong_layers):
    params, x, y = draw_problem(3, [3, 4, 4, 2], 5)
    report = deltaprop.gradcheck(params, x, y, gradient_fn=wrong_grad)
    assert not report.passed
    failed = {(row.layer, row.leaf) for row in report.rows if not row.passed}
    assert failed == wrong_layers
    for row in report.rows:
        if (row.layer, row.leaf) in wrong_layers:
            assert row.error_autodiff > 1e-10
            assert row.error_finite_differences > 1e-6
    assert "FAIL" in report.format_table()
    assert "FAILED" in report.format_table()


def test_format_table_lists_every_leaf():
    params, x, y = draw_problem(4, [2, 3, 1], 4)
    table = deltaprop.gradcheck(params, x, y).format_table()
    lines = table.splitlines()
    assert len(lines) == 2 + 4 + 1  # header, rule, one row per leaf, summary
    assert "all passed" in lines[-1]
    assert all(line.rstrip().endswith("pass") for line in lines[2:-1])


def test_gradcheck_passes_a_leaf_whose_gradient_is_zero_by_cancellation():
    # z = ±1 with labels 1, 0: ∂L/∂b = (σ(1) − 1 + σ(−1)) / 2 = 0 exactly in real arithmetic.
    params = [{"W": jnp.ones((1, 1)), "b": jnp.zeros((1,))}]
    x = jnp.asarray([[1.0], [-1.0]])
    y = jnp.asarray([[1.0], [0.0]])
    assert deltaprop.gradcheck(params, x, y).passed


# ---------------------------------------------------------------------------- relative_error


def test_relative_error_values():
    g = np.array([[1.0, -2.0], [3.0, 0.5]])
    assert deltaprop.relative_error(g, g) == 0.0
    assert deltaprop.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    np.testing.assert_allclose(deltaprop.relative_error(g, 2 * g), 1 / 3, rtol=1e-15)
    np.testing.assert_allclose(deltaprop.relative_error(g, -g), 1.0, rtol=1e-15)
    np.testing.assert_allclose(deltaprop.relative_error(g, np.zeros_like(g)), 1.0, rtol=1e-15)
    # Symmetric and scale-free.
    h = g + 1e-3
    assert deltaprop.relative_error(g, h) == deltaprop.relative_error(h, g)
    np.testing.assert_allclose(
        deltaprop.relative_error(1e-8 * g, 1e-8 * h), deltaprop.relative_error(g, h), rtol=1e-12
    )


def test_relative_error_flags_a_perturbed_gradient():
    params, x, y = draw_problem(5, [3, 4, 2], 6)
    grads = jax.jit(deltaprop.manual_grad)(params, x, y)
    autodiff = jax.jit(jax.grad(deltaprop.loss_fn))(params, x, y)
    for g, a in zip(jax.tree.leaves(grads), jax.tree.leaves(autodiff)):
        assert deltaprop.relative_error(g, a) <= 1e-12
        # A perturbation of 1e-6 gives an error of ~5e-7: far above the autodiff tolerance.
        perturbed = deltaprop.relative_error(g * (1 + 1e-6), a)
        assert perturbed > gradcheck_module.TOLERANCE_AUTODIFF
        np.testing.assert_allclose(perturbed, 1e-6 / (2 + 1e-6), rtol=1e-4)


def test_relative_error_of_float32_leaves_is_computed_in_float64():
    a = np.float32(1.0) + np.zeros(4, np.float32)
    b = a + np.float32(2**-23)  # one float32 ulp apart
    error = deltaprop.relative_error(a, b)
    assert isinstance(error, float)
    np.testing.assert_allclose(error, 2**-23 / (2 + 2**-23), rtol=1e-9)


# ---------------------------------------------------------------------------- bad input


def test_gradcheck_rejects_bad_shapes():
    params, _, _ = draw_problem(6, [3, 4, 2], 5)
    with pytest.raises(ValueError, match=r"x has shape \(5, 4\).*\[3, 4, 2\].*\(N, 3\)"):
        deltaprop.gradcheck(params, jnp.zeros((5, 4)), jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"y has shape \(5, 1\).*expected y of shape \(5, 2\)"):
        deltaprop.gradcheck(params, jnp.zeros((5, 3)), jnp.zeros((5, 1)))


# ---------------------------------------------------------------------------- element-wise errors


def test_elementwise_relative_error_values_and_index():
    a = np.array([[1.0, 2.0], [0.0, 4.0]])
    n = np.array([[1.0, 2.2], [0.0, 4.0]])
    error, index = gradcheck_module.elementwise_relative_error(a, n, floor=1e-5)
    np.testing.assert_allclose(error, 0.2 / 4.2, rtol=1e-14)
    assert index == (0, 1)
    # Under the floor an entry counts by its absolute error: |a − n| / floor.
    error, index = gradcheck_module.elementwise_relative_error([3e-7, 1.0], [1e-7, 1.0], 1e-5)
    np.testing.assert_allclose(error, 2e-7 / 1e-5, rtol=1e-12)
    assert index == (0,)
    zeros = np.zeros(3)
    assert gradcheck_module.elementwise_relative_error(zeros, zeros, 1e-5) == (0.0, (0,))
    # The floors are the absolute floors over the tolerances: no new knob.
    assert gradcheck_module.ENTRY_FLOOR_AUTODIFF * gradcheck_module.TOLERANCE_AUTODIFF == (
        pytest.approx(gradcheck_module.ABSOLUTE_FLOOR_AUTODIFF, rel=1e-12))
    assert (gradcheck_module.ENTRY_FLOOR_FINITE_DIFFERENCES
            * gradcheck_module.TOLERANCE_FINITE_DIFFERENCES) == (
        pytest.approx(gradcheck_module.ABSOLUTE_FLOOR_FINITE_DIFFERENCES, rel=1e-12))


def test_correct_gradients_pass_element_wise_far_under_tolerance():
    params, x, y = draw_problem(0, [2, 3, 3, 3, 1], 6)
    report = deltaprop.gradcheck(params, x, y)
    for row in report.rows:
        assert row.autodiff.entry_error <= 1e-13 and row.autodiff.entry_passed
        assert row.finite_differences.entry_error <= 1e-8 and row.finite_differences.entry_passed
        assert len(row.worst_entry) == len(row.shape)


def test_one_wrong_small_entry_hidden_by_the_norm_is_caught_element_wise():
    params, x, y = draw_problem(7, [6, 8, 1], 6)
    grads = jax.jit(deltaprop.manual_grad)(params, x, y)
    leaf = np.asarray(grads[0]["W"])  # (6, 8): 48 entries
    # The smallest entry that is still compared relatively (above the entry floor).
    compared = np.abs(leaf) >= gradcheck_module.ENTRY_FLOOR_AUTODIFF
    candidates = np.where(compared, np.abs(leaf), np.inf)
    index = np.unravel_index(np.argmin(candidates), leaf.shape)
    assert np.abs(leaf[index]) / np.linalg.norm(leaf) < 0.05  # small beside the leaf's norm
    relative = 20 * gradcheck_module.TOLERANCE_AUTODIFF  # entry error ≈ relative / 2 = 10× tol

    def one_wrong_entry(params, x, y):
        grads = deltaprop.manual_grad(params, x, y)
        wrong = grads[0]["W"].at[index].multiply(1 + relative)
        return [dict(grads[0], W=wrong), *grads[1:]]

    report = deltaprop.gradcheck(params, x, y, gradient_fn=one_wrong_entry)
    row = report.rows[0]
    assert (row.layer, row.leaf) == (2, "W")
    assert row.error_autodiff <= gradcheck_module.TOLERANCE_AUTODIFF and row.autodiff.norm_passed
    np.testing.assert_allclose(row.autodiff.entry_error, relative / (2 + relative), rtol=1e-4)
    assert not row.autodiff.entry_passed and not row.passed
    assert row.autodiff.worst_entry == row.worst_entry == tuple(int(i) for i in index)
    assert row.finite_differences.passed  # 1e-9 is far under finite differences' 1e-6
    assert all(other.passed for other in report.rows[1:]) and not report.passed
    line = report.format_table().splitlines()[2]
    assert line.endswith("FAIL") and line.count("*") == 1
    assert f"[{index[0]},{index[1]}]" in line


# ---------------------------------------------------------------------------- injected bugs

TEXTBOOK = [2, 3, 3, 3, 1]


@pytest.mark.parametrize(
    ("bug", "sizes", "bug_layer", "failing_layers"),
    [
        ("drop_sigma_prime", TEXTBOOK, 4, {2, 3, 4}),  # the hidden layer next to the output
        ("drop_sigma_prime", [3, 4, 2], 2, {2}),
        ("missing_mean", TEXTBOOK, 5, {2, 3, 4, 5}),  # δ_L, so every layer
        ("transposed_w", TEXTBOOK, 3, {2, 3}),  # W_4 is the highest square W: δ_3 is wrong
        ("transposed_w", [3, 4, 4], 2, {2}),  # W_3 = W_L square
    ],
)
def test_an_injected_bug_fails_its_layer_and_those_below(bug, sizes, bug_layer, failing_layers):
    from deltaprop.teaching.bugs import gradient_with_bug

    params, x, y = draw_problem(8, sizes, 6)
    gradient, layer = gradient_with_bug(bug, sizes)
    assert layer == bug_layer
    report = deltaprop.gradcheck(params, x, y, gradient_fn=gradient)
    failed = {row.layer for row in report.rows if not row.passed}
    assert failed == failing_layers and not report.passed
    for row in report.rows:
        if row.layer in failing_layers:  # wrong by far more than rounding, in every measure
            assert min(row.error_autodiff, row.error_finite_differences,
                       row.autodiff.entry_error, row.finite_differences.entry_error) > 1e-3
        else:  # the layers above the bug never see it
            assert row.error_autodiff <= 1e-13


def test_missing_mean_makes_every_gradient_n_times_too_large():
    from deltaprop.teaching.bugs import gradient_with_bug

    params, x, y = draw_problem(9, [3, 4, 2], 5)
    gradient, _ = gradient_with_bug("missing_mean", [3, 4, 2])
    for wrong, right in zip(jax.tree.leaves(gradient(params, x, y)),
                            jax.tree.leaves(deltaprop.manual_grad(params, x, y))):
        np.testing.assert_allclose(wrong, 5 * right, rtol=1e-12)
    report = deltaprop.gradcheck(params, x, y, gradient_fn=gradient)
    for row in report.rows:  # ‖5g − g‖ / (‖5g‖ + ‖g‖) = 4/6
        np.testing.assert_allclose(row.error_autodiff, 4 / 6, rtol=1e-12)


def test_no_bug_is_the_hand_written_pass_itself():
    from deltaprop.teaching.bugs import Bug, buggy_grad, gradient_with_bug

    assert gradient_with_bug(Bug.none, TEXTBOOK) == (deltaprop.manual_grad, 5)
    params, x, y = draw_problem(10, TEXTBOOK, 4)  # the copy without a bug is the same recursion
    for copied, right in zip(jax.tree.leaves(buggy_grad(params, x, y, Bug.none, 5)),
                             jax.tree.leaves(deltaprop.manual_grad(params, x, y))):
        np.testing.assert_allclose(copied, right, rtol=1e-13, atol=1e-16)


def test_a_bug_without_a_place_in_the_network_is_refused():
    from deltaprop.errors import InputError
    from deltaprop.teaching.bugs import gradient_with_bug

    shapes = r"W_3 \(4, 5\), W_4 \(5, 2\)"
    with pytest.raises(InputError, match=r"transposed_w needs a square .* " + shapes):
        gradient_with_bug("transposed_w", [3, 4, 5, 2])
    with pytest.raises(InputError, match="drop_sigma_prime needs a hidden layer"):
        gradient_with_bug("drop_sigma_prime", [3, 1])


# ---------------------------------------------------------------------------- from the config


def test_gradcheck_from_config_injects_the_configured_bug(make_cfg):
    report = gradcheck_report(read_gradcheck(make_cfg("gradcheck.inject=drop_sigma_prime",
                                            "model.hidden=[3,3]", config_name="gradcheck")))
    assert {row.layer for row in report.rows if not row.passed} == {2, 3}
    heading = report.heading.splitlines()
    assert heading[0].startswith("at initialization (model.init=xavier, seed 0): network "
                                 "[2, 3, 3, 1], loss=bce, model.activation=sigmoid, 16 training examples")
    assert heading[1] == ("injected bug gradcheck.inject=drop_sigma_prime in layer 3: "
                          "δ_3 = δ_4 W_4ᵀ (⊙ a_3(1 − a_3) dropped)")
    assert report.format_table().splitlines()[:2] == heading


def test_gradcheck_after_epochs_checks_the_trained_parameters(make_cfg):
    from deltaprop.gradient_check import GRADCHECK_BATCH
    from deltaprop.population import initial_params
    from deltaprop.run.setup import model_of, prepare_data

    settings = read_gradcheck(make_cfg("gradcheck.after_epochs=2", config_name="gradcheck"))
    report = gradcheck_report(settings)
    assert report.passed
    assert report.heading.startswith("after 2 epochs of training (optimizer=sgd, lr=1.0, seed 0)")
    splits = prepare_data(settings)
    trained = trained_params(settings, splits, model_of(settings, splits), 2)
    at_trained = deltaprop.gradcheck(trained, splits.x_train[:GRADCHECK_BATCH],
                                     splits.y_train[:GRADCHECK_BATCH])
    assert [row.norm for row in report.rows] == [row.norm for row in at_trained.rows]
    initial = initial_params(0, [2, 4, 1], "xavier", np.float32)
    assert np.max(np.abs(trained[0]["W"] - np.asarray(initial[0]["W"]))) > 1e-3


@pytest.mark.slow
def test_the_trained_parameters_are_those_of_a_training_run(make_cfg, tmp_path):
    from deltaprop.io.files import load_params
    from deltaprop.run.setup import model_of, prepare_data
    from deltaprop.run.train import train

    settings = read_gradcheck(make_cfg("gradcheck.after_epochs=2", config_name="gradcheck"))
    train(make_cfg("trainer.epochs=2", run_dir=tmp_path / "two_epochs"))
    splits = prepare_data(settings)
    trained = trained_params(settings, splits, model_of(settings, splits), 2)
    for ours, run in zip(trained, load_params(tmp_path / "two_epochs" / "params.safetensors")):
        for leaf in ("W", "b"):
            np.testing.assert_allclose(ours[leaf], run[leaf], rtol=1e-6, atol=1e-7)


def test_gradcheck_config_is_validated(make_cfg):
    from hydra.errors import ConfigCompositionException

    from deltaprop.errors import ConfigError

    with pytest.raises(ConfigError, match=r"gradcheck.after_epochs=-1 is invalid"):
        read_gradcheck(make_cfg("gradcheck.after_epochs=-1", config_name="gradcheck"))
    with pytest.raises(ConfigCompositionException):
        make_cfg("gradcheck.inject=drop_sigma", config_name="gradcheck")
    read_gradcheck(make_cfg("gradcheck.after_epochs=3", "gradcheck.inject=transposed_w", config_name="gradcheck"))


@pytest.mark.slow
def test_the_command_line_exits_4_for_an_injected_bug(run_cli):
    done = run_cli("gradcheck.py", "gradcheck.inject=missing_mean", "model.hidden=[3]",
                   "logger=none")
    assert done.returncode == 4, done.stderr[-2000:]
    assert "injected bug gradcheck.inject=missing_mean in layer 3" in done.stdout
    assert done.stdout.count("FAIL") == 4 + 1  # every row, and the summary


@pytest.mark.parametrize(("loss", "activation"), [("mse", "sigmoid"), ("bce", "tanh"),
                                                  ("mse", "relu")])
def test_gradcheck_checks_the_configured_cost_and_activation(loss, activation):
    from deltaprop.backprop import manual_grad

    params, x, y = draw_problem(4, (3, 4, 4, 2), 6)
    report = deltaprop.gradcheck(params, x, y, loss=loss, activation=activation)
    assert report.passed, report.format_table()
    # The sigmoid/BCE gradient checked against this cost's reference fails: the check is real.
    wrong = deltaprop.gradcheck(params, x, y, loss=loss, activation=activation,
                                gradient_fn=manual_grad)
    assert not wrong.passed


def test_gradcheck_from_config_uses_the_runs_cost(make_cfg):
    report = gradcheck_report(read_gradcheck(make_cfg("loss=mse", "model.activation=tanh", config_name="gradcheck")))
    assert report.passed and "loss=mse, model.activation=tanh" in report.heading
    with pytest.raises(deltaprop.errors.ConfigError, match="gradcheck.inject=missing_mean"):
        gradcheck_report(read_gradcheck(make_cfg("loss=mse", "gradcheck.inject=missing_mean", config_name="gradcheck")))
