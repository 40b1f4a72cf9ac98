"""init_params, forward, predict_proba, check_batch, linear, layer_sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import draw_problem

import deltaprop
from deltaprop.network import check_batch, linear, validate_sizes

SIZES = [3, 5, 4, 2]


def _numpy_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _numpy_forward(params, x):
    """The textbook forward pass in numpy float64: a_l = σ(a_{l-1} W_l + b_l), z_L returned."""
    a = np.asarray(x, np.float64)
    for layer in params[:-1]:
        a = _numpy_sigmoid(a @ np.asarray(layer["W"]) + np.asarray(layer["b"]))
    return a @ np.asarray(params[-1]["W"]) + np.asarray(params[-1]["b"])


# ---------------------------------------------------------------------------- init_params


@pytest.mark.parametrize("init", ["xavier", "normal"])
def test_init_params_shapes_and_zero_biases(init):
    params = deltaprop.init_params(jax.random.key(0), SIZES, init=init)
    assert len(params) == len(SIZES) - 1
    for layer, n_in, n_out in zip(params, SIZES[:-1], SIZES[1:]):
        assert set(layer) == {"W", "b"}
        assert layer["W"].shape == (n_in, n_out)
        assert layer["b"].shape == (n_out,)
        assert np.all(np.asarray(layer["b"]) == 0)
        assert np.any(np.asarray(layer["W"]) != 0)
    assert deltaprop.layer_sizes(params) == tuple(SIZES)


def test_xavier_respects_its_limit_and_uses_the_whole_range():
    sizes = [50, 30, 20]
    params = deltaprop.init_params(jax.random.key(1), sizes, init="xavier", dtype=jnp.float64)
    for layer, n_in, n_out in zip(params, sizes[:-1], sizes[1:]):
        limit = np.sqrt(6.0 / (n_in + n_out))
        magnitude = np.abs(np.asarray(layer["W"]))
        assert magnitude.max() <= limit
        # Uniform on ±limit: with ≥ 600 draws the largest one sits close to the limit.
        assert magnitude.max() >= 0.95 * limit


def test_normal_init_has_std_one_over_sqrt_fan_in():
    n_in = 400
    params = deltaprop.init_params(jax.random.key(2), [n_in, 400], init="normal", dtype=jnp.float64)
    W = np.asarray(params[0]["W"])
    expected = 1.0 / np.sqrt(n_in)
    assert abs(W.std() - expected) <= 0.05 * expected
    assert abs(W.mean()) <= 0.05 * expected


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.bfloat16])
@pytest.mark.parametrize("init", ["xavier", "normal"])
def test_init_params_respects_dtype(dtype, init):
    params = deltaprop.init_params(jax.random.key(3), SIZES, init=init, dtype=dtype)
    for leaf in jax.tree.leaves(params):
        assert leaf.dtype == jnp.dtype(dtype)


def test_init_params_is_deterministic_in_the_key():
    first = deltaprop.init_params(jax.random.key(4), SIZES)
    again = deltaprop.init_params(jax.random.key(4), SIZES)
    other = deltaprop.init_params(jax.random.key(5), SIZES)
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0]["W"], other[0]["W"])
    # Layers get their own keys: two layers of equal shape differ.
    square = deltaprop.init_params(jax.random.key(4), [4, 4, 4])
    assert not np.array_equal(square[0]["W"], square[1]["W"])


def test_unknown_init_scheme_is_rejected():
    with pytest.raises(ValueError, match="init='he'.*xavier.*normal"):
        deltaprop.init_params(jax.random.key(0), SIZES, init="he")


@pytest.mark.parametrize("sizes", [[], [3], (7,)])
def test_fewer_than_two_sizes_is_rejected(sizes):
    with pytest.raises(ValueError, match="at least two layers"):
        deltaprop.init_params(jax.random.key(0), sizes)
    with pytest.raises(ValueError, match=r"sizes=\["):
        validate_sizes(sizes)


@pytest.mark.parametrize("sizes", [[3, 0, 1], [0, 2], [2, -1], [2, 3, 0]])
def test_layer_size_below_one_is_rejected(sizes):
    with pytest.raises(ValueError, match=r"sizes=\[.*\].*>= 1"):
        deltaprop.init_params(jax.random.key(0), sizes)


# ---------------------------------------------------------------------------- forward


def test_forward_matches_a_hand_computed_value():
    # One hidden unit: z_2 = 1·1 + 2·(−1) + 0.5 = −0.5, a_2 = σ(−0.5), z_3 = 2 a_2 − 1.
    params = [
        {"W": jnp.array([[1.0], [2.0]]), "b": jnp.array([0.5])},
        {"W": jnp.array([[2.0]]), "b": jnp.array([-1.0])},
    ]
    logits = deltaprop.forward(params, jnp.array([[1.0, -1.0]]))
    expected = 2.0 / (1.0 + np.exp(0.5)) - 1.0
    np.testing.assert_allclose(logits, [[expected]], rtol=1e-14)


def test_forward_matches_numpy_reference():
    params = deltaprop.init_params(jax.random.key(6), SIZES, dtype=jnp.float64)
    params = [dict(layer, b=layer["b"] + 0.1 * (i + 1)) for i, layer in enumerate(params)]
    _, x, _ = draw_problem(7, SIZES, 9)
    logits = deltaprop.forward(params, x)
    assert logits.shape == (9, SIZES[-1])
    assert logits.dtype == jnp.float64
    np.testing.assert_allclose(logits, _numpy_forward(params, x), rtol=1e-12, atol=1e-14)


def test_forward_casts_inputs_to_the_parameter_dtype():
    params = deltaprop.init_params(jax.random.key(8), SIZES, dtype=jnp.float32)
    x = np.random.default_rng(0).normal(size=(4, SIZES[0]))  # numpy float64
    assert deltaprop.forward(params, x).dtype == jnp.float32


def test_forward_with_no_hidden_layer_is_affine():
    params = deltaprop.init_params(jax.random.key(9), [4, 1], dtype=jnp.float64)
    params[0]["b"] = jnp.array([0.3])
    _, x, _ = draw_problem(10, [4, 1], 6)
    np.testing.assert_allclose(deltaprop.forward(params, x), x @ params[0]["W"] + 0.3, rtol=1e-14)


def test_predict_proba_is_sigmoid_of_forward_and_in_unit_interval():
    params = deltaprop.init_params(jax.random.key(11), SIZES, dtype=jnp.float64)
    _, x, _ = draw_problem(12, SIZES, 10)
    # Scale the output layer so some probabilities saturate to exactly 0 or 1.
    params[-1]["W"] = params[-1]["W"] * 1e4
    probabilities = deltaprop.predict_proba(params, x)
    assert probabilities.shape == (10, SIZES[-1])
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    np.testing.assert_array_equal(probabilities, jax.nn.sigmoid(deltaprop.forward(params, x)))
    assert np.any(np.asarray(probabilities) == 1.0) or np.any(np.asarray(probabilities) == 0.0)


def test_forward_is_jittable_and_agrees_with_eager():
    params = deltaprop.init_params(jax.random.key(13), SIZES, dtype=jnp.float64)
    _, x, _ = draw_problem(14, SIZES, 5)
    np.testing.assert_allclose(
        jax.jit(deltaprop.forward)(params, x), deltaprop.forward(params, x), rtol=1e-14
    )


# ---------------------------------------------------------------------------- linear


def test_linear_is_a_w_plus_b():
    layer = {"W": jnp.array([[1.0, 2.0], [3.0, 4.0]]), "b": jnp.array([0.5, -0.5])}
    np.testing.assert_array_equal(linear(jnp.array([[1.0, 1.0]]), layer), [[4.5, 5.5]])


def test_linear_in_bfloat16_accumulates_in_the_parameter_dtype():
    rng = np.random.default_rng(15)
    a = jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)
    layer = {
        "W": jnp.asarray(rng.normal(size=(16, 4)), jnp.float32),
        "b": jnp.ones((4,), jnp.float32),
    }
    low = linear(a, layer, matmul_dtype=jnp.bfloat16)
    full = linear(a, layer)
    assert low.dtype == jnp.float32
    # bf16 keeps 8 bits of mantissa: about 2-3 significant digits.
    np.testing.assert_allclose(low, full, rtol=5e-2, atol=5e-2)
    assert not np.array_equal(low, full)


# ---------------------------------------------------------------------------- check_batch


def test_check_batch_accepts_matching_shapes():
    params = deltaprop.init_params(jax.random.key(16), SIZES)
    check_batch(params, jnp.zeros((7, SIZES[0])), jnp.zeros((7, SIZES[-1])))
    check_batch(params, jnp.zeros((7, SIZES[0])))


def test_wrong_feature_count_names_both_shapes():
    params = deltaprop.init_params(jax.random.key(17), SIZES)
    with pytest.raises(ValueError, match=r"\(7, 4\).*\[3, 5, 4, 2\].*\(N, 3\)"):
        deltaprop.forward(params, jnp.zeros((7, 4)))
    with pytest.raises(ValueError, match=r"x has shape \(3,\)"):
        deltaprop.forward(params, jnp.zeros((3,)))
    with pytest.raises(ValueError, match=r"x has shape"):
        deltaprop.predict_proba(params, jnp.zeros((2, 1, 3)))


def test_wrong_label_shape_names_the_expected_shape():
    params = deltaprop.init_params(jax.random.key(18), SIZES)
    x = jnp.zeros((7, SIZES[0]))
    with pytest.raises(ValueError, match=r"y has shape \(7,\).*expected y of shape \(7, 2\)"):
        check_batch(params, x, jnp.zeros((7,)))
    with pytest.raises(ValueError, match=r"y has shape \(6, 2\).*\(7, 2\)"):
        check_batch(params, x, jnp.zeros((6, 2)))


def test_check_batch_raises_inside_jit():
    params = deltaprop.init_params(jax.random.key(19), SIZES)
    with pytest.raises(ValueError, match=r"x has shape \(2, 5\)"):
        jax.jit(deltaprop.forward)(params, jnp.zeros((2, 5)))


# ---------------------------------------------------------------- hidden activations


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_activation_derivative_equals_jax_grad(activation):
    from deltaprop.network import activate, activation_derivative

    z = jnp.asarray([-30.0, -2.0, -0.5, -1e-3, 1e-3, 0.5, 2.0, 30.0])
    expected = jax.vmap(jax.grad(lambda t: activate(activation, t)))(z)
    got = activation_derivative(activation, z, activate(activation, z))
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-300)


def test_forward_uses_the_hidden_activation_and_leaves_the_logits_linear():
    params, x, _ = draw_problem(5, SIZES, 4)
    a = np.asarray(x)
    for layer in params[:-1]:
        a = np.tanh(a @ np.asarray(layer["W"]) + np.asarray(layer["b"]))
    expected = a @ np.asarray(params[-1]["W"]) + np.asarray(params[-1]["b"])
    np.testing.assert_allclose(deltaprop.forward(params, x, activation="tanh"), expected, rtol=1e-13)
    with pytest.raises(ValueError, match="model.activation='gelu' must be one of sigmoid, tanh"):
        deltaprop.forward(params, x, activation="gelu")
