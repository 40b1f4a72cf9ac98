"""binary_cross_entropy_with_logits and loss_fn: the stable form, extreme logits, the reduction."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import deltaprop

EXTREME_LOGITS = [-1e9, -1e4, -50.0, -17.0, -1.0, 0.0, 1.0, 17.0, 50.0, 1e4, 1e9]


def _reference_bce(logits, labels):
    """max(z, 0) − z y + log1p(e^{−|z|}) in numpy float64."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.float64)
    return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))


def _logistic_regression(weights, bias, dtype):
    return [{"W": jnp.asarray(weights, dtype), "b": jnp.asarray(bias, dtype)}]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("label", [0.0, 1.0])
def test_elementwise_loss_is_finite_and_stable_at_extreme_logits(dtype, label):
    logits = jnp.asarray(EXTREME_LOGITS, dtype)
    loss = deltaprop.binary_cross_entropy_with_logits(logits, jnp.full_like(logits, label))
    assert loss.dtype == jnp.dtype(dtype)
    assert np.all(np.isfinite(loss))
    assert np.all(np.asarray(loss) >= 0)
    # The float32 logits ±1e4, ±1e9 are exact, so the only error is float32 rounding of the result.
    rtol = 1e-6 if dtype == jnp.float32 else 1e-15
    np.testing.assert_allclose(loss, _reference_bce(logits, label), rtol=rtol, atol=1e-30)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_loss_at_saturated_logits_has_exact_values(dtype):
    logits = jnp.asarray([1e4, -1e4, 1e9, -1e9], dtype)
    zeros = deltaprop.binary_cross_entropy_with_logits(logits, jnp.zeros_like(logits))
    ones = deltaprop.binary_cross_entropy_with_logits(logits, jnp.ones_like(logits))
    # Confidently wrong costs |z|, confidently right costs (within rounding of e^{−|z|}) nothing.
    np.testing.assert_array_equal(zeros, np.asarray([1e4, 0.0, 1e9, 0.0], dtype))
    np.testing.assert_array_equal(ones, np.asarray([0.0, 1e4, 0.0, 1e9], dtype))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("scale", [1e4, 1e9])
def test_loss_fn_is_finite_at_extreme_logits(dtype, scale):
    # Logistic regression with w = scale and x = ±1 gives logits exactly ±scale.
    params = _logistic_regression([[scale]], [0.0], dtype)
    x = jnp.asarray([[1.0], [-1.0], [1.0], [-1.0]], dtype)
    y = jnp.asarray([[0.0], [0.0], [1.0], [1.0]], dtype)
    loss = deltaprop.loss_fn(params, x, y)
    assert loss.dtype == jnp.dtype(dtype)
    assert np.isfinite(loss)
    # Two of the four examples are wrong by |z| = scale, two are right: mean = scale / 2.
    np.testing.assert_allclose(loss, scale / 2, rtol=1e-7)
    grads = deltaprop.manual_grad(params, x, y)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(grads))


def test_loss_fn_beats_the_naive_log_sigmoid_form():
    # Where log(σ(z)) fails (σ rounds to 1 at z ≈ 16.6 in float32), the stable form does not.
    z = jnp.asarray([20.0], jnp.float32)
    with np.errstate(divide="ignore"):
        naive = -np.log(1 - np.asarray(jax.nn.sigmoid(z)))
    assert np.isinf(naive[0])
    stable = deltaprop.binary_cross_entropy_with_logits(z, jnp.zeros_like(z))
    np.testing.assert_allclose(stable, _reference_bce([20.0], [0.0]), rtol=1e-6)


def test_loss_fn_is_the_mean_over_all_elements():
    rng = np.random.default_rng(0)
    params = deltaprop.init_params(jax.random.key(0), [3, 4, 3], dtype=jnp.float64)
    x = jnp.asarray(rng.normal(size=(5, 3)))
    y = jnp.asarray(rng.integers(0, 2, size=(5, 3)), jnp.float64)
    logits = np.asarray(deltaprop.forward(params, x))
    elementwise = _reference_bce(logits, y)
    assert elementwise.shape == (5, 3)
    # torch.nn.BCEWithLogitsLoss(reduction="mean"): the sum over N·n_out = 15 elements, / 15.
    expected = elementwise.sum() / 15
    np.testing.assert_allclose(deltaprop.loss_fn(params, x, y), expected, rtol=1e-14)
    # Not the per-example sum averaged over N only.
    assert not np.isclose(float(deltaprop.loss_fn(params, x, y)), elementwise.sum() / 5)


def test_loss_fn_matches_a_hand_computed_value():
    # z = 0 gives l = log 2 whatever the label.
    params = _logistic_regression([[0.0], [0.0]], [0.0], jnp.float64)
    x = jnp.asarray([[1.0, 2.0], [3.0, 4.0]])
    y = jnp.asarray([[0.0], [1.0]])
    np.testing.assert_allclose(deltaprop.loss_fn(params, x, y), np.log(2.0), rtol=1e-15)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_matches_optax_for_moderate_logits(dtype):
    rng = np.random.default_rng(1)
    logits = jnp.asarray(5 * rng.normal(size=(64, 3)), dtype)
    labels = jnp.asarray(rng.integers(0, 2, size=(64, 3)), dtype)
    ours = deltaprop.binary_cross_entropy_with_logits(logits, labels)
    theirs = optax.sigmoid_binary_cross_entropy(logits, labels)
    rtol = 1e-5 if dtype == jnp.float32 else 1e-12
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-6 if dtype == jnp.float32 else 0)
    np.testing.assert_allclose(jnp.mean(ours), jnp.mean(theirs), rtol=rtol)


def test_loss_fn_matches_optax_through_a_network():
    rng = np.random.default_rng(2)
    params = deltaprop.init_params(jax.random.key(2), [4, 6, 2], dtype=jnp.float64)
    x = jnp.asarray(rng.normal(size=(8, 4)))
    y = jnp.asarray(rng.integers(0, 2, size=(8, 2)), jnp.float64)
    expected = optax.sigmoid_binary_cross_entropy(deltaprop.forward(params, x), y).mean()
    np.testing.assert_allclose(deltaprop.loss_fn(params, x, y), expected, rtol=1e-13)


def _autodiff_derivative(logits, label):
    return jax.vmap(jax.grad(lambda z: deltaprop.binary_cross_entropy_with_logits(z, label)))(
        logits
    )


@pytest.mark.parametrize("label", [0.0, 1.0])
def test_derivative_of_the_elementwise_loss_is_sigmoid_minus_label(label):
    logits = jnp.asarray([z for z in EXTREME_LOGITS if z != 0.0], jnp.float64)
    derivative = _autodiff_derivative(logits, label)
    assert np.all(np.isfinite(derivative))
    np.testing.assert_allclose(derivative, jax.nn.sigmoid(logits) - label, atol=1e-15)


@pytest.mark.parametrize("label", [0.0, 1.0])
def test_derivative_of_the_elementwise_loss_at_zero_logit(label):
    derivative = _autodiff_derivative(jnp.zeros((1,), jnp.float64), label)
    np.testing.assert_allclose(derivative, [0.5 - label], atol=1e-15)


def test_loss_fn_rejects_mismatched_shapes():
    params = deltaprop.init_params(jax.random.key(3), [3, 4, 2])
    with pytest.raises(ValueError, match=r"x has shape \(5, 2\).*\[3, 4, 2\].*\(N, 3\)"):
        deltaprop.loss_fn(params, jnp.zeros((5, 2)), jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"y has shape \(5, 1\).*expected y of shape \(5, 2\)"):
        deltaprop.loss_fn(params, jnp.zeros((5, 3)), jnp.zeros((5, 1)))
    with pytest.raises(ValueError, match=r"y has shape \(5,\)"):
        deltaprop.loss_fn(params, jnp.zeros((5, 3)), jnp.zeros((5,)))


# ------------------------------------------------------------------- the quadratic cost


def test_quadratic_cost_is_half_the_squared_error():
    outputs = jnp.asarray([0.0, 0.25, 0.9, 1.0])
    labels = jnp.asarray([1.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(
        deltaprop.losses.quadratic_cost(outputs, labels), [0.5, 0.03125, 0.005, 0.0], rtol=1e-15
    )


def test_mse_loss_fn_is_the_mean_of_half_squared_sigmoid_errors():
    params = _logistic_regression([[1.0], [-2.0]], [0.5], jnp.float64)
    x = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    y = jnp.asarray([[1.0], [0.0], [1.0]])
    a = 1 / (1 + np.exp(-np.array([1.5, -1.5, -1.5])))
    expected = np.mean(0.5 * (a - np.array([1.0, 0.0, 1.0])) ** 2)
    np.testing.assert_allclose(deltaprop.loss_fn(params, x, y, loss="mse"), expected, rtol=1e-15)


@pytest.mark.parametrize("loss", ["bce", "mse"])
@pytest.mark.parametrize("label", [0.0, 1.0])
def test_output_delta_is_the_derivative_of_each_cost(loss, label):
    logits = jnp.asarray(EXTREME_LOGITS[2:-2])
    labels = jnp.full_like(logits, label)
    expected = jax.vmap(jax.grad(lambda z: deltaprop.losses.elementwise_loss(loss, z, label)))(
        logits
    )
    got = deltaprop.losses.output_delta(loss, logits, jax.nn.sigmoid(logits), labels)
    # atol: a − y from the rounded a = σ(z) loses a's last bits when a is near y (z = 17, y = 1)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=2e-16)


def test_an_unknown_cost_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="loss='l1' must be one of bce, mse"):
        deltaprop.losses.output_delta("l1", jnp.zeros(1), jnp.zeros(1), jnp.zeros(1))
