"""gradcheck: the per-layer report, finite differences, and that a wrong gradient is caught."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import draw_problem

import deltaprop
from deltaprop.gradient_check import finite_difference_grad

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
