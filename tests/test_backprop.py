"""The hand-written backward pass against autodiff, closed forms and extreme inputs."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import draw_problem
from hypothesis import given, settings
from hypothesis import strategies as st

import deltaprop

# Jitted once at import: each new shape still compiles once, so keep the example count modest.
# Test data come from numpy: eager jax.random would compile a kernel for every new shape.
manual_grad_jit = jax.jit(deltaprop.manual_grad)
autodiff_grad_jit = jax.jit(jax.grad(deltaprop.loss_fn))
backprop_jit = jax.jit(deltaprop.backprop_trace)
loss_fn_jit = jax.jit(deltaprop.loss_fn)
forward_jit = jax.jit(deltaprop.forward)


@jax.jit
def _both_grads(params, x, y):
    """manual_grad and jax.grad(loss_fn) in one program: one compilation per shape, not two."""
    return deltaprop.manual_grad(params, x, y), jax.grad(deltaprop.loss_fn)(params, x, y)


def _leaf_errors(g1, g2):
    return [
        deltaprop.relative_error(a, b) for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2))
    ]


def _assert_same_structure(grads, params):
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(params)):
        assert g.shape == p.shape
        assert g.dtype == p.dtype


# ---------------------------------------------------------------------------- vs autodiff


@pytest.mark.slow  # one compilation per drawn shape: ~10-20 s on 2 CPU cores
@settings(max_examples=15, deadline=None, database=None)
@given(
    depth=st.integers(1, 6),
    widths=st.lists(st.integers(1, 32), min_size=6, max_size=6),
    n_outputs=st.integers(1, 4),
    batch=st.integers(1, 64),
    seed=st.integers(0, 2**31 - 1),
)
def test_manual_grad_equals_autodiff_float64(depth, widths, n_outputs, batch, seed):
    # depth weight layers: inputs, depth − 1 hidden widths, outputs.
    sizes = [widths[0], *widths[1:depth], n_outputs]
    params, x, y = draw_problem(seed, sizes, batch)
    manual, autodiff = _both_grads(params, x, y)
    _assert_same_structure(manual, params)
    errors = _leaf_errors(manual, autodiff)
    assert max(errors) <= 1e-10, (sizes, batch, errors)


@pytest.mark.parametrize("sizes", [[2, 3, 3, 3, 1], [4, 1], [3, 5, 2], [8, 16, 16, 4]])
def test_manual_grad_equals_autodiff_float32(sizes):
    params, x, y = draw_problem(0, sizes, 16, dtype=np.float32)
    manual, autodiff = _both_grads(params, x, y)
    _assert_same_structure(manual, params)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(manual))
    errors = _leaf_errors(manual, autodiff)
    assert max(errors) <= 1e-5, errors


def test_manual_value_and_grad_returns_loss_fn_and_manual_grad():
    params, x, y = draw_problem(1, [3, 4, 2], 6)
    loss, grads = deltaprop.manual_value_and_grad(params, x, y)
    np.testing.assert_allclose(loss, loss_fn_jit(params, x, y), rtol=1e-14)
    for g, h in zip(jax.tree.leaves(grads), jax.tree.leaves(manual_grad_jit(params, x, y))):
        np.testing.assert_allclose(g, h, rtol=1e-14, atol=1e-18)  # eager vs jit: rounding only


def test_autodiff_at_zero_logits_matches_manual_grad():
    params = [{"W": jnp.zeros((2, 1)), "b": jnp.zeros((1,))}]
    x = jnp.asarray([[1.0, 2.0], [3.0, -1.0]])
    y = jnp.asarray([[1.0], [0.0]])
    errors = _leaf_errors(
        deltaprop.manual_grad(params, x, y), jax.grad(deltaprop.loss_fn)(params, x, y)
    )
    assert max(errors) <= 1e-12


def test_manual_grad_at_zero_logits_matches_the_closed_form():
    # W = 0, b = 0: every logit is 0, σ = 1/2, so ∂L/∂W = Xᵀ(1/2 − y)/N, ∂L/∂b = mean(1/2 − y).
    params = [{"W": jnp.zeros((2, 1)), "b": jnp.zeros((1,))}]
    x = jnp.asarray([[1.0, 2.0], [3.0, -1.0]])
    y = jnp.asarray([[1.0], [0.0]])
    grads = manual_grad_jit(params, x, y)
    np.testing.assert_allclose(grads[0]["W"], [[0.5], [-0.75]], rtol=1e-15)
    np.testing.assert_allclose(grads[0]["b"], [0.0], atol=1e-15)


# ---------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_no_hidden_layer_is_logistic_regression(dtype):
    params, x, y = draw_problem(2, [5, 1], 12, dtype=dtype, bias_scale=1.0)
    w, b = np.asarray(params[0]["W"], np.float64), np.asarray(params[0]["b"], np.float64)
    X, Y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    residual = 1.0 / (1.0 + np.exp(-(X @ w + b))) - Y  # σ(Xw + b) − y, (N, 1)
    grads = manual_grad_jit(params, x, y)
    rtol = 1e-5 if dtype == jnp.float32 else 1e-13
    np.testing.assert_allclose(grads[0]["W"], X.T @ residual / len(X), rtol=rtol, atol=rtol * 1e-2)
    np.testing.assert_allclose(grads[0]["b"], residual.mean(axis=0), rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("sizes", [[3, 4, 1], [3, 4, 3]])
def test_output_delta_is_residual_over_all_elements(sizes):
    params, x, y = draw_problem(3, sizes, 7)
    trace = backprop_jit(params, x, y)
    probabilities = jax.nn.sigmoid(forward_jit(params, x))
    n_outputs = sizes[-1]
    # δ_L = (σ(z_L) − y) / (N·n_L): the derivative of the mean over all N·n_L elements.
    np.testing.assert_allclose(
        trace.deltas[-1], (probabilities - y) / (7 * n_outputs), rtol=1e-13, atol=1e-17
    )


def test_backprop_trace_shapes_and_contents():
    sizes = [3, 5, 4, 2]
    n = 6
    params, x, y = draw_problem(4, sizes, n)
    trace = backprop_jit(params, x, y)
    L = len(sizes)
    assert len(trace.activations) == L
    assert len(trace.pre_activations) == L - 1
    assert len(trace.deltas) == L - 1
    assert len(trace.grads) == L - 1
    np.testing.assert_array_equal(trace.activations[0], x)
    for i, n_l in enumerate(sizes[1:]):
        assert trace.pre_activations[i].shape == (n, n_l)
        assert trace.deltas[i].shape == (n, n_l)
        assert trace.activations[i + 1].shape == (n, n_l)
        np.testing.assert_allclose(
            trace.activations[i + 1], jax.nn.sigmoid(trace.pre_activations[i]), rtol=1e-15
        )
    np.testing.assert_allclose(trace.pre_activations[-1], forward_jit(params, x), rtol=1e-14)
    assert trace.loss.shape == ()
    np.testing.assert_allclose(trace.loss, loss_fn_jit(params, x, y), rtol=1e-14)
    _assert_same_structure(trace.grads, params)
    # ∂L/∂W_l = a_{l−1}ᵀ δ_l and ∂L/∂b_l = Σ_batch δ_l, read back off the trace.
    for i, grad in enumerate(trace.grads):
        np.testing.assert_allclose(
            grad["W"], trace.activations[i].T @ trace.deltas[i], rtol=1e-14, atol=1e-18
        )
        np.testing.assert_allclose(grad["b"], trace.deltas[i].sum(axis=0), rtol=1e-14, atol=1e-18)


# ---------------------------------------------------------------------------- saturation


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_saturated_hidden_units_give_finite_grads_and_zero_delta(dtype):
    # One input of ±1 and a first-layer W of ±1e4: every hidden pre-activation is exactly ±1e4,
    # where σ rounds to 0 or 1 and σ'(z) = a(1 − a) is exactly 0 (not NaN).
    params, _, y = draw_problem(5, [1, 4, 3, 2], 4, dtype=dtype)
    params[0]["W"] = jnp.asarray([[1e4, -1e4, 1e4, -1e4]], dtype)
    params[0]["b"] = jnp.zeros((4,), dtype)
    x = jnp.asarray([[1.0], [-1.0], [1.0], [-1.0]], dtype)
    trace = backprop_jit(params, x, y)
    np.testing.assert_array_equal(np.abs(trace.pre_activations[0]), 1e4)
    assert set(np.unique(np.asarray(trace.activations[1]))) == {0.0, 1.0}
    for leaf in jax.tree.leaves(trace.grads):
        assert np.all(np.isfinite(leaf))
    assert np.all(np.isfinite(trace.loss))
    np.testing.assert_array_equal(trace.deltas[0], 0.0)
    np.testing.assert_array_equal(trace.grads[0]["W"], 0.0)
    np.testing.assert_array_equal(trace.grads[0]["b"], 0.0)
    # The layers above still learn: saturation stops the gradient only below it.
    assert np.any(np.asarray(trace.grads[-1]["W"]) != 0)
    jitted = manual_grad_jit(params, x, y)
    for leaf in jax.tree.leaves(jitted):
        assert np.all(np.isfinite(leaf))
    # Autodiff agrees with the saturated pass (where both are exactly zero, relative error is 0).
    assert max(_leaf_errors(jitted, autodiff_grad_jit(params, x, y))) <= (
        1e-5 if dtype == jnp.float32 else 1e-10
    )


def test_delta_shrinks_by_at_least_four_per_sigmoid_layer():
    # δ_l = (δ_{l+1} W_{l+1}ᵀ) ⊙ σ'(z_l) with σ' ≤ 1/4: element-wise, |δ_l| ≤ |δ_{l+1} W_{l+1}ᵀ| / 4.
    sizes = [4, 6, 6, 6, 1]
    params, x, y = draw_problem(6, sizes, 8)
    trace = backprop_jit(params, x, y)
    for i in range(len(params) - 1):
        upstream = trace.deltas[i + 1] @ params[i + 1]["W"].T  # δ_{l+1} W_{l+1}ᵀ
        assert np.all(np.abs(trace.deltas[i]) <= 0.25 * np.abs(upstream) + 1e-300)


# ---------------------------------------------------------------------------- jit


def test_jitted_manual_grad_compiles_once():
    trace_count = 0

    def counted(params, x, y):
        nonlocal trace_count
        trace_count += 1
        return deltaprop.manual_grad(params, x, y)

    jitted = jax.jit(counted)
    sizes = [3, 4, 2]
    for seed in range(3):
        params, x, y = draw_problem(10 + seed, sizes, 5)
        grads = jitted(params, x, y)
        for g, h in zip(jax.tree.leaves(grads), jax.tree.leaves(manual_grad_jit(params, x, y))):
            np.testing.assert_allclose(g, h, rtol=1e-13, atol=1e-17)
    assert trace_count == 1


# ---------------------------------------------------------------------------- custom_vjp


def test_loss_fn_manual_value_and_grads():
    params, x, y = draw_problem(7, [3, 5, 4, 2], 6)
    np.testing.assert_allclose(
        deltaprop.loss_fn_manual(params, x, y), loss_fn_jit(params, x, y), rtol=1e-14
    )
    through_custom_vjp = jax.jit(jax.grad(deltaprop.loss_fn_manual))(params, x, y)
    assert jax.jit(deltaprop.loss_fn_manual)(params, x, y) == loss_fn_jit(params, x, y)
    _assert_same_structure(through_custom_vjp, params)
    assert max(_leaf_errors(through_custom_vjp, manual_grad_jit(params, x, y))) <= 1e-12
    assert max(_leaf_errors(through_custom_vjp, autodiff_grad_jit(params, x, y))) <= 1e-12


def test_loss_fn_manual_grads_with_respect_to_inputs_and_labels():
    params, x, y = draw_problem(8, [3, 5, 2], 6)
    for argnums in (1, 2):
        ours = jax.grad(deltaprop.loss_fn_manual, argnums=argnums)(params, x, y)
        theirs = jax.grad(deltaprop.loss_fn, argnums=argnums)(params, x, y)
        assert ours.shape == theirs.shape
        assert deltaprop.relative_error(ours, theirs) <= 1e-12


def test_loss_fn_manual_respects_the_outer_cotangent():
    params, x, y = draw_problem(9, [3, 4, 1], 5)
    scaled = jax.grad(lambda p: 3.0 * deltaprop.loss_fn_manual(p, x, y))(params)
    for g, h in zip(jax.tree.leaves(scaled), jax.tree.leaves(manual_grad_jit(params, x, y))):
        np.testing.assert_allclose(g, 3.0 * h, rtol=1e-14, atol=1e-18)


def test_bfloat16_matmuls_stay_close_to_float32():
    params, x, y = draw_problem(11, [4, 8, 2], 16, dtype=np.float32)
    low = jax.jit(lambda p, a, b: deltaprop.manual_grad(p, a, b, jnp.bfloat16))(params, x, y)
    full = manual_grad_jit(params, x, y)
    _assert_same_structure(low, params)
    errors = _leaf_errors(low, full)
    assert max(errors) <= 3e-2, errors
    assert max(errors) > 0  # the low-precision path is really taken


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "function",
    [
        deltaprop.forward,
        deltaprop.loss_fn,
        deltaprop.manual_grad,
        deltaprop.backprop_trace,
        deltaprop.loss_fn_manual,
        manual_grad_jit,
    ],
)
def test_bad_shapes_are_rejected_naming_them(function):
    params, _, _ = draw_problem(0, [3, 4, 2], 5)
    good_y = jnp.zeros((5, 2))
    call = (
        (lambda x, y: function(params, x))
        if function is deltaprop.forward
        else (lambda x, y: function(params, x, y))
    )
    with pytest.raises(ValueError, match=r"x has shape \(5, 4\).*\[3, 4, 2\].*\(N, 3\)"):
        call(jnp.zeros((5, 4)), good_y)
    if function is not deltaprop.forward:
        with pytest.raises(ValueError, match=r"y has shape \(5, 1\).*\(5, 2\)"):
            call(jnp.zeros((5, 3)), jnp.zeros((5, 1)))
        with pytest.raises(ValueError, match=r"y has shape \(4, 2\).*\(5, 2\)"):
            call(jnp.zeros((5, 3)), jnp.zeros((4, 2)))


# ------------------------------------------------------------ costs and hidden activations

COST_SHAPES = [[4, 1], [3, 5, 2], [2, 3, 3, 3, 1], [5, 8, 6, 4]]


@partial(jax.jit, static_argnames=("loss", "activation"))
def _both_grads_with(params, x, y, loss, activation):
    """manual_grad and jax.grad(loss_fn) for one cost and hidden activation, in one program."""
    manual = deltaprop.manual_grad(params, x, y, loss=loss, activation=activation)
    autodiff = jax.grad(deltaprop.loss_fn)(params, x, y, loss=loss, activation=activation)
    return manual, autodiff


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("loss", ["bce", "mse"])
@pytest.mark.parametrize("sizes", COST_SHAPES, ids=str)
def test_manual_grad_equals_autodiff_for_each_cost_and_activation(sizes, loss, activation):
    params, x, y = draw_problem(11, sizes, 9)
    manual, autodiff = _both_grads_with(params, x, y, loss=loss, activation=activation)
    _assert_same_structure(manual, params)
    errors = _leaf_errors(manual, autodiff)
    assert max(errors) <= 1e-10, errors
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(manual)) > 1e-6


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_mse_manual_grad_equals_central_differences(activation):
    from jax.flatten_util import ravel_pytree

    params, x, y = draw_problem(12, [3, 4, 2], 6)
    theta, unravel = ravel_pytree(params)
    loss = jax.jit(lambda t: deltaprop.loss_fn(unravel(t), x, y, loss="mse", activation=activation))
    step = 1e-6
    basis = np.eye(theta.size) * step
    numeric = np.array([(loss(theta + e) - loss(theta - e)) / (2 * step) for e in basis])
    manual = ravel_pytree(deltaprop.manual_grad(params, x, y, loss="mse", activation=activation))[0]
    assert deltaprop.relative_error(manual, numeric) < 1e-7


def test_mse_output_delta_keeps_sigma_prime():
    # δ_L = (a_L − y) ⊙ a_L(1 − a_L) / (N·n_L) for ½(a − y)² averaged over all elements.
    params, x, y = draw_problem(13, [3, 4, 3], 7)
    trace = deltaprop.backprop_trace(params, x, y, loss="mse")
    a = np.asarray(jax.nn.sigmoid(forward_jit(params, x)))
    expected = (a - np.asarray(y)) * a * (1 - a) / (7 * 3)
    np.testing.assert_allclose(trace.deltas[-1], expected, rtol=1e-13, atol=1e-18)
    np.testing.assert_allclose(trace.loss, np.mean(0.5 * (a - np.asarray(y)) ** 2), rtol=1e-14)


def test_the_sigmoid_default_is_the_bce_pass_unchanged():
    params, x, y = draw_problem(14, [3, 4, 2], 5)
    default = backprop_jit(params, x, y)
    explicit = deltaprop.backprop_trace(params, x, y, loss="bce", activation="sigmoid")
    for got, want in zip(jax.tree.leaves(explicit), jax.tree.leaves(default), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-18)


def test_hidden_activations_are_phi_and_the_output_stays_sigmoid():
    params, x, y = draw_problem(15, [3, 4, 4, 2], 5)
    trace = deltaprop.backprop_trace(params, x, y, activation="tanh")
    for z, a in zip(trace.pre_activations[:-1], trace.activations[1:-1], strict=True):
        np.testing.assert_allclose(a, np.tanh(z), rtol=1e-14)
    np.testing.assert_allclose(trace.activations[-1], jax.nn.sigmoid(trace.pre_activations[-1]))
    relu = deltaprop.backprop_trace(params, x, y, activation="relu")
    assert all(float(jnp.min(a)) >= 0 for a in relu.activations[1:-1])


def test_the_learning_slowdown_of_the_quadratic_cost():
    # Nielsen ch. 3: one sigmoid neuron, x = 1 → y = 0, w = b = 2 (a = σ(4) ≈ 0.98, badly
    # wrong and saturated). ∂C/∂w = ∂C/∂b = δ: BCE's a − y ≈ 0.98, the quadratic cost's
    # (a − y) σ'(z) ≈ 0.017: one step of η = 0.15 cuts BCE by ~7%, the quadratic cost by ~0.05%.
    params = [{"W": jnp.asarray([[2.0]]), "b": jnp.asarray([2.0])}]
    x, y = jnp.asarray([[1.0]]), jnp.asarray([[0.0]])
    a = 1 / (1 + np.exp(-4.0))
    decrease = {}
    for loss, delta in (("bce", a), ("mse", a * a * (1 - a))):
        grads = deltaprop.manual_grad(params, x, y, loss=loss)
        np.testing.assert_allclose([grads[0]["W"][0, 0], grads[0]["b"][0]], [delta, delta],
                                   rtol=1e-14)
        stepped = jax.tree.map(lambda p, g: p - 0.15 * g, params, grads)
        before, after = (deltaprop.loss_fn(p, x, y, loss=loss) for p in (params, stepped))
        decrease[loss] = float((before - after) / before)
    assert 0.05 < decrease["bce"] < 0.1 and 0 < decrease["mse"] < 1e-3
    assert decrease["bce"] > 50 * decrease["mse"]
